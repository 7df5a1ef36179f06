import IMAPClient

/// Which source folders an import covers when no explicit list is given.
public enum FolderStrategy: String, Sendable, Codable, CaseIterable {
    /// Every selectable folder.
    case all
    /// INBOX and the special-use folders (Sent, Drafts, Trash, Junk, Archive).
    case standard
    /// INBOX only.
    case inboxOnly = "inbox_only"
}

/// Everything one migration needs to know.
public struct MigrationRequest: Sendable {
    public var source: MailAccount
    public var destination: MailAccount
    public var provider: Provider
    /// Source folder names as the user sees them (Unicode, source separator); nil means use `strategy`.
    public var selectedFolders: [String]?
    public var strategy: FolderStrategy
    /// Only messages whose INTERNALDATE is on or after this day (UTC).
    public var since: InternalDate?
    public var skipDuplicates: Bool
    /// Folders copied at once, each on its own pair of connections; capped by the provider's limit.
    public var parallelFolders: Int
    /// Messages per FETCH/APPEND batch; a checkpoint is written after each.
    public var batchSize: Int
    /// Connection attempts per folder before the migration fails.
    public var maxAttempts: Int
    /// Where the destination offers MULTIAPPEND, a batch's messages go in APPEND commands of about
    /// this many bytes; the server stores each command's messages all or none, in one transaction.
    public var appendGroupBytes: Int
    /// How long a resumed folder waits for the APPENDs an interrupted run sent whole to show up at
    /// the destination (see `InFlightBatch.sent`) before it takes them as refused and appends again.
    public var interruptedAppendWait: Duration = .seconds(30)
    /// Remove from the destination the copies whose source message was expunged since they were
    /// copied. Off by default: a pass then never deletes anything.
    public var propagateDeletions = false
    /// Source UIDs per FETCH FLAGS command when comparing flags without CONDSTORE (pipelined).
    public var flagBatchSize = 5000

    public init(
        source: MailAccount, destination: MailAccount, provider: Provider = .genericIMAP,
        selectedFolders: [String]? = nil, strategy: FolderStrategy = .all, since: InternalDate? = nil,
        skipDuplicates: Bool = true, parallelFolders: Int = 4, batchSize: Int = 500, maxAttempts: Int = 6,
        appendGroupBytes: Int = 16 << 20
    ) {
        self.source = source
        self.destination = destination
        self.provider = provider
        self.selectedFolders = selectedFolders
        self.strategy = strategy
        self.since = since
        self.skipDuplicates = skipDuplicates
        self.parallelFolders = parallelFolders
        self.batchSize = batchSize
        self.maxAttempts = maxAttempts
        self.appendGroupBytes = appendGroupBytes
    }

    var effectiveParallelism: Int { max(1, min(parallelFolders, provider.maxConnections)) }

    /// SEARCH criteria for the messages the migration covers: not flagged \Deleted, and from `since` on.
    var searchCriteria: String {
        var criteria = "NOT DELETED"
        if let since { criteria += " SINCE \(since.searchDate)" }
        return criteria
    }
}
