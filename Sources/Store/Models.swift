import Foundation

/// What a token may do (SPEC.md §3).
public enum Scope: String, Sendable, CaseIterable {
    case migrationsRead = "migrations:read"
    case migrationsWrite = "migrations:write"
    case mailboxesRead = "mailboxes:read"
    case mailboxesWrite = "mailboxes:write"
    case auditRead = "audit:read"

    /// The scopes that reach migrations, which a plan without migrations blocks.
    public var isMigrationScope: Bool { self == .migrationsRead || self == .migrationsWrite }
}

/// An account's plan and what it allows (SPEC.md §2).
public enum Plan: String, Sendable, Codable, CaseIterable {
    case nano, starter, pro, agency

    /// nano accounts cannot use the migration scopes at all.
    public var allowsMigrations: Bool { self != .nano }

    /// Whether a token of an account on this plan may use `scope`.
    public func allows(_ scope: Scope) -> Bool { allowsMigrations || !scope.isMigrationScope }

    /// Rows accepted in one bulk batch (0 when migrations are not allowed).
    public var maxBulkRowsPerBatch: Int {
        switch self {
        case .nano: 0
        case .starter: 100
        case .pro: 300
        case .agency: 1000
        }
    }

    /// Bulk jobs of one account running at once.
    public var maxConcurrentBulkJobs: Int {
        switch self {
        case .nano: 0
        case .starter: 2
        case .pro: 5
        case .agency: 10
        }
    }

    /// The storage pool shared by the account's mailboxes, in bytes.
    public var storagePoolBytes: Int64 {
        let gb: Int64 = 1_000_000_000
        switch self {
        case .nano: return 5 * gb
        case .starter: return 15 * gb
        case .pro: return 50 * gb
        case .agency: return 200 * gb
        }
    }
}

public struct Account: Sendable, Equatable, Codable {
    public var id: Int64
    public var plan: Plan
    public var notificationEmail: String
    public var createdAt: Date
}

/// A destination mailbox of an account.
public struct Mailbox: Sendable, Equatable, Codable {
    public var id: Int64
    public var accountID: Int64
    /// Stored trimmed and lower-cased; unique per account.
    public var email: String
    public var createdAt: Date
}

/// A token's row. The token itself is never stored, only its SHA-256.
public struct APIToken: Sendable, Equatable, Codable {
    public var id: Int64
    public var accountID: Int64
    public var name: String
    public var scopes: [String]
    /// The first characters of the token, for display (`mp_live_1a2b`).
    public var prefix: String
    public var expiresAt: Date?
    public var lastUsedAt: Date?
    public var lastUsedIP: String?
    public var createdAt: Date

    public func hasScope(_ scope: Scope) -> Bool { scopes.contains(scope.rawValue) }
}

/// What a new migration is made of (SPEC.md §4 start body, resolved and validated by the caller).
public struct NewMigration: Sendable {
    public var accountID: Int64
    public var mailboxID: Int64
    public var batchID: Int64?
    public var provider: String
    public var sourceHost: String
    public var sourcePort: Int
    public var sourceSecurity: String
    public var sourceEmail: String
    public var sourceUsername: String
    public var sourcePassword: String
    public var targetPassword: String?
    /// nil: all folders.
    public var selectedFolders: [String]?
    /// `YYYY-MM-DD`, by INTERNALDATE.
    public var importSince: String?
    public var skipDuplicates: Bool
    /// Mail the account's notification address when the migration ends (single migrations).
    public var notify = false
    /// Run a delta pass this many hours after the last one ended, until finalized.
    public var syncEveryHours: Int?

    public init(
        accountID: Int64, mailboxID: Int64, batchID: Int64? = nil, provider: String,
        sourceHost: String, sourcePort: Int, sourceSecurity: String, sourceEmail: String,
        sourceUsername: String? = nil, sourcePassword: String, targetPassword: String? = nil,
        selectedFolders: [String]? = nil, importSince: String? = nil, skipDuplicates: Bool = true
    ) {
        self.accountID = accountID
        self.mailboxID = mailboxID
        self.batchID = batchID
        self.provider = provider
        self.sourceHost = sourceHost
        self.sourcePort = sourcePort
        self.sourceSecurity = sourceSecurity
        self.sourceEmail = sourceEmail
        self.sourceUsername = sourceUsername ?? sourceEmail
        self.sourcePassword = sourcePassword
        self.targetPassword = targetPassword
        self.selectedFolders = selectedFolders
        self.importSince = importSince
        self.skipDuplicates = skipDuplicates
    }
}

/// Per-folder progress of a migration.
public struct FolderProgress: Sendable, Equatable, Codable {
    public enum Status: String, Sendable, Codable, CaseIterable {
        case pending, processing, completed, failed
    }

    public var sourceName: String
    public var destinationName: String
    public var status: Status
    public var expected: Int
    public var imported: Int
    public var failed: Int
    public var skipped: Int
    /// Copies whose flags the last pass made equal to the source's again.
    public var flagsUpdated: Int
    /// Copies the last pass deleted because their source message was expunged.
    public var deleted: Int

    public init(
        sourceName: String, destinationName: String, status: Status = .pending,
        expected: Int = 0, imported: Int = 0, failed: Int = 0, skipped: Int = 0,
        flagsUpdated: Int = 0, deleted: Int = 0
    ) {
        self.sourceName = sourceName
        self.destinationName = destinationName
        self.status = status
        self.expected = expected
        self.imported = imported
        self.failed = failed
        self.skipped = skipped
        self.flagsUpdated = flagsUpdated
        self.deleted = deleted
    }
}

/// A classified failure as stored on a migration (SPEC.md §7).
public struct MigrationError: Sendable, Equatable, Codable {
    public var code: String
    public var message: String
    public var hint: String?

    public init(code: String, message: String, hint: String? = nil) {
        self.code = code
        self.message = message
        self.hint = hint
    }
}

/// A migration as stored, without its credentials (see `Store.credentials(forMigration:)`).
public struct MigrationRecord: Sendable, Equatable {
    public var id: Int64
    public var accountID: Int64
    public var mailboxID: Int64
    /// The destination mailbox's address (nil if the mailbox was removed).
    public var mailboxEmail: String?
    public var batchID: Int64?
    public var provider: String
    public var sourceHost: String
    public var sourcePort: Int
    public var sourceSecurity: String
    public var sourceEmail: String
    public var sourceUsername: String
    public var hasTargetPassword: Bool
    public var selectedFolders: [String]?
    public var importSince: String?
    public var skipDuplicates: Bool
    public var status: MigrationStatus
    public var error: MigrationError?
    public var totalMessages: Int
    public var importedMessages: Int
    public var failedMessages: Int
    public var skippedDuplicates: Int
    /// Bytes of the messages copied, as the runner last wrote them.
    public var bytesCopied: Int64 = 0
    public var folders: [FolderProgress]
    /// Runs that completed: the first copy and every delta pass since.
    public var passes: Int = 0
    public var lastPassAt: Date?
    /// Whether passes also delete the copies of messages expunged at the source.
    public var syncDeletions = false
    /// Hours between scheduled delta passes; nil when none are scheduled (never, or finalized).
    public var syncEveryHours: Int?
    public var leaseOwner: String?
    public var leaseExpiresAt: Date?
    /// The fencing token of the latest claim (see `Lease`).
    public var leaseToken: Int64 = 0
    public var startedAt: Date?
    public var finishedAt: Date?
    public var createdAt: Date
    public var updatedAt: Date

    /// When the next scheduled pass is due: `syncEveryHours` after the last pass ended, while the
    /// migration may run one (`MigrationTransition.sync`). The runner queues it at its first poll
    /// from then on; `Store.queueScheduledPasses` asks the same in SQL.
    public var nextPassAt: Date? {
        guard MigrationTransition.sync.allows(from: status), let hours = syncEveryHours,
            let last = lastPassAt ?? finishedAt
        else { return nil }
        return last.addingTimeInterval(TimeInterval(hours) * 3600)
    }

    /// 0–100: messages accounted for (imported, failed or skipped) out of the total.
    public var progress: Int {
        if status == .completed { return 100 }
        guard totalMessages > 0 else { return 0 }
        let done = importedMessages + failedMessages + skippedDuplicates
        return min(100, max(0, done * 100 / totalMessages))
    }
}

/// Decrypted credentials of a migration, for the runner only. Its description never shows them.
public struct MigrationCredentials: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public var sourcePassword: String
    public var targetPassword: String?

    public var description: String { "MigrationCredentials(redacted)" }
    public var debugDescription: String { description }
}

/// Running totals written by the runner every second or two.
public struct MigrationTotals: Sendable, Equatable {
    public var total: Int
    public var imported: Int
    public var failed: Int
    public var skipped: Int
    /// Bytes of the messages copied (the checkpoints carry them across restarts).
    public var bytes: Int64 = 0

    public init(total: Int = 0, imported: Int = 0, failed: Int = 0, skipped: Int = 0) {
        self.total = total
        self.imported = imported
        self.failed = failed
        self.skipped = skipped
    }
}

/// One page of a listing, with what the `meta` block of a paginated response needs.
public struct Page<Item: Sendable>: Sendable {
    public var items: [Item]
    public var page: Int
    public var perPage: Int
    public var total: Int

    public init(items: [Item], page: Int, perPage: Int, total: Int) {
        self.items = items
        self.page = page
        self.perPage = perPage
        self.total = total
    }

    /// At least 1, so an empty listing still has a page 1.
    public var lastPage: Int { Self.lastPage(total: total, perPage: perPage) }

    public static func lastPage(total: Int, perPage: Int) -> Int {
        guard perPage > 0 else { return 1 }
        return max(1, (total + perPage - 1) / perPage)
    }
}

/// Page and size as asked for, clamped: page ≥ 1, 1 ≤ per_page ≤ 100 (default 20).
public struct PageRequest: Sendable, Equatable {
    public static let defaultPerPage = 20
    public static let maxPerPage = 100

    public var page: Int
    public var perPage: Int

    public init(page: Int? = nil, perPage: Int? = nil) {
        self.page = max(1, page ?? 1)
        self.perPage = min(Self.maxPerPage, max(1, perPage ?? Self.defaultPerPage))
    }

    public var offset: Int {
        let (product, overflow) = (page - 1).multipliedReportingOverflow(by: perPage)
        return overflow ? Int(Int32.max) : product
    }
}

public struct AuditEvent: Sendable, Equatable, Codable {
    public var id: Int64
    public var accountID: Int64
    public var tokenID: Int64?
    public var action: String
    public var resourceType: String
    public var resourceID: String?
    public var ip: String?
    public var requestID: String?
    public var createdAt: Date
}

/// What to do with a request that carries an `Idempotency-Key`.
public enum IdempotencyDecision: Sendable, Equatable {
    /// First time: the caller handles the request, then calls `completeIdempotency` (or `abandonIdempotency`).
    case proceed
    /// The same key and body are being handled right now: 409.
    case inFlight
    /// The same key and body were handled: send this response again.
    case replay(statusCode: Int, body: String)
    /// The same key came with another body: 422 `idempotency_key_reused`.
    case keyReused
}

/// A rate-limit bucket after counting one more request.
public struct RateLimitCount: Sendable, Equatable {
    /// Requests in the current window, this one included.
    public var count: Int
    public var windowStart: Date
    public var windowEnd: Date

    /// Whole seconds until the window ends (at least 1), for `Retry-After`.
    public func retryAfterSeconds(now: Date = Date()) -> Int {
        max(1, Int((windowEnd.timeIntervalSince(now)).rounded(.up)))
    }
}

public enum StoreError: Error, Equatable, CustomStringConvertible {
    /// No such object (or it belongs to another account).
    case notFound
    /// A unique value already exists (e.g. a mailbox address in the account).
    case duplicate(String)
    /// The account already has an active single migration.
    case activeMigrationExists
    /// The operation is not allowed from the migration's current status.
    case invalidStatus(MigrationStatus)
    /// A stored value could not be read.
    case corrupt(String)
    /// The operation is not allowed from the batch's current status.
    case invalidBatchStatus(BatchStatus)
    /// A batch retry found no failed job to queue again.
    case noFailedJobs
    /// A mailbox cannot be deleted while a migration that is not final targets it.
    case mailboxInUse
    /// `:finalize` of a migration that has no scheduled passes.
    case notScheduled

    public var description: String {
        switch self {
        case .notFound: "not found"
        case .duplicate(let what): "already exists: \(what)"
        case .activeMigrationExists: "the account already has an active migration"
        case .invalidStatus(let status): "not allowed while the migration is \(status.rawValue)"
        case .corrupt(let what): "stored data is unreadable: \(what)"
        case .invalidBatchStatus(let status): "not allowed while the batch is \(status.rawValue)"
        case .noFailedJobs: "the batch has no failed jobs"
        case .mailboxInUse: "a migration that has not finished targets the mailbox"
        case .notScheduled: "the migration has no scheduled passes"
        }
    }
}
