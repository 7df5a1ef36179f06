import Foundation
import MigrationEngine

extension FolderStrategy {
    /// The `selected_folders` a job of a batch with this strategy is stored with: nil for every
    /// folder, and for `standard` too, since only the source's folder list says which folders are
    /// special-use (the runner passes the batch's strategy to the engine for that).
    var jobSelectedFolders: [String]? {
        self == .inboxOnly ? ["INBOX"] : nil
    }
}

/// What a new batch is made of; its jobs are `NewMigration`s with the batch's settings.
public struct NewBatch: Sendable {
    public var accountID: Int64
    public var name: String
    public var folderStrategy: FolderStrategy
    public var perRowServer: Bool
    /// `YYYY-MM-DD`, by INTERNALDATE.
    public var importSince: String?
    public var skipDuplicates: Bool

    public init(
        accountID: Int64, name: String, folderStrategy: FolderStrategy = .all, perRowServer: Bool = false,
        importSince: String? = nil, skipDuplicates: Bool = true
    ) {
        self.accountID = accountID
        self.name = name
        self.folderStrategy = folderStrategy
        self.perRowServer = perRowServer
        self.importSince = importSince
        self.skipDuplicates = skipDuplicates
    }
}

/// One row of the CSV becoming a job: where it goes and what it logs in with. Its description
/// never shows the passwords.
public struct NewBatchJob: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The CSV line the row started on.
    public var line: Int
    public var mailboxID: Int64
    public var provider: String
    public var sourceHost: String
    public var sourcePort: Int
    public var sourceSecurity: String
    public var sourceEmail: String
    public var sourceUsername: String
    public var sourcePassword: String
    public var targetPassword: String?

    public init(
        line: Int, mailboxID: Int64, provider: String, sourceHost: String, sourcePort: Int,
        sourceSecurity: String, sourceEmail: String, sourceUsername: String? = nil, sourcePassword: String,
        targetPassword: String? = nil
    ) {
        self.line = line
        self.mailboxID = mailboxID
        self.provider = provider
        self.sourceHost = sourceHost
        self.sourcePort = sourcePort
        self.sourceSecurity = sourceSecurity
        self.sourceEmail = sourceEmail
        self.sourceUsername = sourceUsername ?? sourceEmail
        self.sourcePassword = sourcePassword
        self.targetPassword = targetPassword
    }

    public var description: String { "NewBatchJob(line: \(line), mailbox: \(mailboxID), source: \(sourceEmail))" }
    public var debugDescription: String { description }
}

/// How many of a batch's jobs are where, and the messages they account for.
public struct BatchCounts: Sendable, Equatable {
    public var jobs = 0
    public var pending = 0
    public var running = 0
    public var completed = 0
    public var failed = 0
    public var cancelled = 0
    public var totalMessages = 0
    public var importedMessages = 0
    public var failedMessages = 0
    public var skippedDuplicates = 0

    public init() {}

    /// 0–100: the share of jobs that have ended (each job's own progress is on the job).
    public var progress: Int {
        guard jobs > 0 else { return 0 }
        let finished = completed + failed + cancelled
        return min(100, finished * 100 / jobs)
    }
}

/// A batch as stored, with its jobs counted.
public struct BatchRecord: Sendable, Equatable {
    public var id: Int64
    public var accountID: Int64
    public var name: String
    public var status: BatchStatus
    public var folderStrategy: FolderStrategy
    public var perRowServer: Bool
    public var importSince: String?
    public var skipDuplicates: Bool
    /// Why the batch is paused (nil unless paused).
    public var pauseReason: String?
    public var counts: BatchCounts
    public var finishedAt: Date?
    public var createdAt: Date
    public var updatedAt: Date
}

/// A batch's job: the migration record and the CSV line it came from.
public struct BatchJob: Sendable, Equatable {
    public var line: Int?
    public var migration: MigrationRecord
}

/// A batch with every job.
public struct BatchDetail: Sendable, Equatable {
    public var batch: BatchRecord
    public var jobs: [BatchJob]
}
