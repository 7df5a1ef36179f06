import SQLKit

/// The moves a migration's status may make (SPEC.md §4), in one table: for each move, the statuses
/// it may leave from and where it goes. The store's SQL conditions are generated from it and the
/// API's refusals name its rules, so a rule changes here or nowhere.
public enum MigrationTransition: String, Sendable, CaseIterable {
    /// A runner takes a queued migration that no runner holds.
    case claim
    /// A runner takes over a running migration whose runner died (its lease ran out), resuming it
    /// from its checkpoints.
    case takeOver
    /// The runner holding a migration walks it on: validating → planning → processing →
    /// completed | failed.
    case advance
    /// The runner holding a migration lets go at a safe point (shutdown, restart): back to the queue.
    case requeue
    /// A user's cancel. A runner holding the migration sees it at its next lease renewal and stops.
    case cancel
    /// A user's retry: back to the queue, keeping what was already copied.
    case retry
    /// A user's delta pass of a completed migration: back to the queue like a retry, keeping its
    /// checkpoints, so it copies what is new and carries what changed at the source.
    case sync
    /// A user's delete: the migration, its folders, checkpoints and stored credentials are removed.
    case delete

    /// The statuses the move may leave from.
    public var from: [MigrationStatus] {
        switch self {
        case .claim: [.pending]
        case .takeOver, .advance, .requeue: MigrationStatus.running
        case .cancel: MigrationStatus.active
        case .retry: [.failed, .cancelled]
        case .sync: [.completed]
        case .delete: MigrationStatus.terminal
        }
    }

    /// The statuses the move may end in: one, except for `advance` (the runner names the step) and
    /// `delete` (none: the migration is gone).
    public var to: [MigrationStatus] {
        switch self {
        case .claim, .takeOver: [.validating]
        case .advance: [.planning, .processing, .completed, .failed]
        case .requeue, .retry, .sync: [.pending]
        case .cancel: [.cancelled]
        case .delete: []
        }
    }

    /// Whether the move may leave from `status`.
    public func allows(from status: MigrationStatus) -> Bool {
        from.contains(status)
    }

    /// The rule, said to whoever asked for the move from another status (the API's 409).
    public var refusal: String {
        switch self {
        case .claim: "only a queued migration can be claimed"
        case .takeOver: "only a running migration can be taken over"
        case .advance: "only a running migration can be advanced"
        case .requeue: "only a running migration can be queued again"
        case .cancel: "only an active migration can be cancelled"
        case .retry: "only a failed or cancelled migration can be retried"
        case .sync: "only a completed migration can run a delta pass (retry a failed or cancelled one)"
        case .delete: "cancel it before deleting it"
        }
    }
}

extension MigrationTransition {
    /// `column IN (…)` over the statuses the move may leave from.
    func sqlFrom(_ column: String = "status") -> SQLQueryString {
        "\(unsafeRaw: column) IN (\(unsafeRaw: MigrationStatus.sqlList(from)))"
    }

    /// The status the move writes, as an SQL literal: only for the moves with one destination.
    var sqlTo: SQLQueryString {
        "\(unsafeRaw: MigrationStatus.sqlList(to))"
    }
}
