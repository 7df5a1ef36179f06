/// A migration's place in its life (SPEC.md §4):
/// `pending → validating → planning → processing → completed | failed | cancelled`.
public enum MigrationStatus: String, Sendable, Codable, CaseIterable {
    /// Queued for a worker slot.
    case pending
    /// Connecting and logging in to both sides.
    case validating
    /// Building the folder plan and counting messages.
    case planning
    /// Copying messages.
    case processing
    case completed
    case failed
    case cancelled

    /// Statuses a migration can still move out of on its own: the account's "active" migration.
    public static let active: [MigrationStatus] = [.pending, .validating, .planning, .processing]
    /// Statuses in which a runner holds the migration (it counts against the global limit).
    public static let running: [MigrationStatus] = [.validating, .planning, .processing]
    /// Final statuses.
    public static let terminal: [MigrationStatus] = [.completed, .failed, .cancelled]

    public var isActive: Bool { Self.active.contains(self) }
    public var isRunning: Bool { Self.running.contains(self) }
    public var isTerminal: Bool { Self.terminal.contains(self) }

    /// Whether a retry may start from here (see `MigrationTransition.retry`).
    public var isRetryable: Bool { MigrationTransition.retry.allows(from: self) }

    /// The label the web page shows.
    public var label: String {
        switch self {
        case .pending: "Queued"
        case .validating, .planning: "Preparing"
        case .processing: "Running"
        case .completed: "Completed"
        case .failed: "Failed"
        case .cancelled: "Cancelled"
        }
    }

    /// `poll_hint_seconds`: 5 while pending/validating/planning, 10 while processing, nil when terminal.
    public var pollHintSeconds: Int? {
        switch self {
        case .pending, .validating, .planning: 5
        case .processing: 10
        case .completed, .failed, .cancelled: nil
        }
    }

    /// `'a', 'b'` for an SQL `IN (…)` list (the values are fixed identifiers, never user input).
    static func sqlList(_ statuses: [MigrationStatus]) -> String {
        statuses.map { "'\($0.rawValue)'" }.joined(separator: ", ")
    }
}
