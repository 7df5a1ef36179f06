import Foundation

/// What a notice tells the account (SPEC.md §6).
public enum NoticeEvent: String, Sendable, Codable, CaseIterable {
    /// The batch ended `completed` or `completed_with_errors`.
    case batchFinished = "batch_finished"
    /// The batch paused because the account's storage reached the threshold.
    case batchPausedForStorage = "batch_paused_storage"
    /// More than half of the batch's jobs failed.
    case batchMostJobsFailed = "batch_most_jobs_failed"
    /// A single migration started with `notify: true` ended.
    case migrationEnded = "migration_ended"

    /// The key that makes the notice unique: one per batch (or migration) and event.
    func dedupeKey(batchID: Int64?, migrationID: Int64?) -> String {
        if let batchID { return "batch:\(batchID):\(rawValue)" }
        return "migration:\(migrationID ?? 0):\(rawValue)"
    }
}

/// Where a notice is in its delivery.
public enum NoticeStatus: String, Sendable, Codable, CaseIterable {
    case pending
    /// A delivery service holds it under a lease.
    case sending
    case sent
    /// Refused for good (5xx, or too many attempts): not tried again.
    case failed
}

/// The reasons `pauseBatch` is given; a pause for storage sends a notice.
public enum BatchPauseReason {
    public static let storage = "storage"

    /// `storage`, or a reason that starts with it (`storage: 92% of 15 GB`).
    public static func isStorage(_ reason: String) -> Bool {
        reason.lowercased().hasPrefix(storage)
    }
}

/// Facts captured at the state change, which the records alone will not say later.
public struct NoticeDetail: Sendable, Equatable, Codable {
    public var reason: String?
    /// Storage used when the batch paused, as the caller measured it.
    public var usedBytes: Int64?
    /// The pool it was measured against (configured pools differ from the plan's default).
    public var poolBytes: Int64?

    public init(reason: String? = nil, usedBytes: Int64? = nil, poolBytes: Int64? = nil) {
        self.reason = reason
        self.usedBytes = usedBytes
        self.poolBytes = poolBytes
    }
}

/// One row of the outbox.
public struct Notice: Sendable, Equatable {
    public var id: Int64
    public var accountID: Int64
    public var batchID: Int64?
    public var migrationID: Int64?
    public var event: NoticeEvent
    public var recipient: String
    public var detail: NoticeDetail
    public var status: NoticeStatus
    public var attempts: Int
    public var nextAttemptAt: Date
    public var lastErrorCode: String?
    public var lastError: String?
    public var sentAt: Date?
    public var createdAt: Date
    public var updatedAt: Date
}
