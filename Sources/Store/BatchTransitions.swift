import SQLKit

/// A bulk batch's place in its life (SPEC.md §5). Its jobs are migrations with their own statuses;
/// the batch's says what the whole is doing.
public enum BatchStatus: String, Sendable, Codable, CaseIterable {
    /// Jobs wait for slots; none has been claimed since the batch was started, retried or resumed.
    case queued
    /// At least one job has been claimed.
    case processing
    /// Stopped for storage: running jobs went back to the queue at a safe point, queued ones wait.
    case paused
    /// Every job completed.
    case completed
    /// Every job ended, and at least one did not complete.
    case completedWithErrors = "completed_with_errors"
    case cancelled

    /// Statuses whose jobs may still run or wait to run.
    public static let active: [BatchStatus] = [.queued, .processing, .paused]
    /// Statuses whose pending jobs a runner may claim.
    public static let claimable: [BatchStatus] = [.queued, .processing]

    public var isActive: Bool { Self.active.contains(self) }

    /// The label the web page shows.
    public var label: String {
        switch self {
        case .queued: "Queued"
        case .processing: "In Progress"
        case .paused: "Paused"
        case .completed: "Completed"
        case .completedWithErrors: "Completed with errors"
        case .cancelled: "Cancelled"
        }
    }

    static func sqlList(_ statuses: [BatchStatus]) -> String {
        statuses.map { "'\($0.rawValue)'" }.joined(separator: ", ")
    }
}

/// The moves a batch's status may make, in one table beside `MigrationTransition`: the store's SQL
/// conditions come from it and the API's 409s say its rules.
public enum BatchTransition: String, Sendable, CaseIterable {
    /// A runner claimed one of the batch's jobs.
    case start
    /// The account's storage reached the pause threshold.
    case pause
    /// A user's resume after storage was freed: the jobs wait for slots again.
    case resume
    /// The last active job ended: completed, or completed with errors.
    case finish
    /// A user's cancel: queued and running jobs are cancelled.
    case cancel
    /// A user's retry: failed jobs are queued again (also when one job of the batch is retried).
    case retry
    /// A user's delta pass over an ended batch: its completed jobs are queued again and each
    /// carries what changed at its source since (see `MigrationTransition.sync`).
    case sync
    /// A user's delete: the batch and its jobs are removed.
    case delete

    public var from: [BatchStatus] {
        switch self {
        case .start: [.queued]
        case .pause: [.queued, .processing]
        case .resume: [.paused]
        // Paused too: once every job has ended (say, each cancelled on its own) there is
        // nothing left to wait for, and a resume would leave the batch queued forever.
        case .finish: BatchStatus.active
        case .cancel: BatchStatus.active
        case .retry: [.completedWithErrors, .cancelled]
        case .sync: [.completed, .completedWithErrors]
        case .delete: [.completed, .completedWithErrors, .cancelled]
        }
    }

    public var to: [BatchStatus] {
        switch self {
        case .start: [.processing]
        case .pause: [.paused]
        case .resume, .retry, .sync: [.queued]
        case .finish: [.completed, .completedWithErrors]
        case .cancel: [.cancelled]
        case .delete: []
        }
    }

    public func allows(from status: BatchStatus) -> Bool {
        from.contains(status)
    }

    /// The rule, said to whoever asked for the move from another status (the API's 409).
    public var refusal: String {
        switch self {
        case .start: "only a queued batch can start"
        case .pause: "only a queued or running batch can be paused"
        case .resume: "only a paused batch can be resumed"
        case .finish: "only a queued, running or paused batch can finish"
        case .cancel: "only a queued, running or paused batch can be cancelled"
        case .retry: "only a batch that ended with errors or was cancelled can be retried"
        case .sync:
            "only a batch that ended (completed, or completed with errors) with completed jobs can run a delta pass"
        case .delete: "cancel it before deleting it"
        }
    }
}

/// What a user may change on one job of a batch, and from which statuses.
public enum BatchJobChange: String, Sendable, CaseIterable {
    /// A new source password, for a job that failed (then the batch's retry picks it up).
    case updatePassword

    public var from: [MigrationStatus] {
        switch self {
        case .updatePassword: [.failed]
        }
    }

    public var refusal: String {
        switch self {
        case .updatePassword: "only a failed job's password can be changed"
        }
    }
}

extension BatchTransition {
    func sqlFrom(_ column: String = "status") -> SQLQueryString {
        "\(unsafeRaw: column) IN (\(unsafeRaw: BatchStatus.sqlList(from)))"
    }

    var sqlTo: SQLQueryString {
        "\(unsafeRaw: BatchStatus.sqlList(to))"
    }
}

extension BatchJobChange {
    func sqlFrom(_ column: String = "status") -> SQLQueryString {
        "\(unsafeRaw: column) IN (\(unsafeRaw: MigrationStatus.sqlList(from)))"
    }
}
