import IMAPClient

/// Where a folder's copy stands, saved after every batch so an interrupted migration resumes.
public struct FolderCheckpoint: Sendable, Codable, Equatable {
    /// The source folder's UIDVALIDITY the UIDs below belong to.
    public var sourceUIDValidity: UInt32
    /// Every source UID up to this one is accounted for (copied, skipped or failed).
    public var lastSourceUID: UInt32
    /// A batch whose APPENDs may have reached the destination before the process stopped.
    public var inFlight: InFlightBatch?
    /// Running totals for this folder, so a resumed run reports the whole job.
    public var copied: Int
    public var skipped: Int
    public var failed: Int
    public var bytes: Int64
    /// Source UID → destination UID of every message this migration appended (from APPENDUID), so a
    /// later pass can carry flag changes and deletions to exactly those copies and no other message.
    /// Nil in checkpoints written before it existed.
    public var copiedMap: UIDMap?
    /// Copies whose destination UID is not known (no APPENDUID, an older checkpoint, a changed
    /// UIDVALIDITY): the next pass matches them by Message-ID or header hash, once.
    public var unmatched: UnmatchedCopies?
    /// The destination folder's UIDVALIDITY that `copiedMap`'s destination UIDs belong to.
    public var destinationUIDValidity: UInt32?
    /// The source folder's HIGHESTMODSEQ (CONDSTORE) when the last finished pass began: the next
    /// pass asks only for flags changed since.
    public var highestModSeq: UInt64?
    /// The source folder's message count when the last finished pass began; fewer means expunges.
    public var sourceMessages: Int?
    /// The source's HIGHESTMODSEQ when a pass last looked for expunged copies (deletions asked for):
    /// a pass that asks for deletions looks again unless nothing changed since.
    public var deletionsCheckedModSeq: UInt64?
    /// The source's flags when a pass without CONDSTORE last set the copies' flags, as digests:
    /// the next such pass reads the destination only where they moved. Nil before the first.
    public var flagDigests: FlagDigests?

    public init(
        sourceUIDValidity: UInt32, lastSourceUID: UInt32 = 0, inFlight: InFlightBatch? = nil,
        copied: Int = 0, skipped: Int = 0, failed: Int = 0, bytes: Int64 = 0
    ) {
        self.sourceUIDValidity = sourceUIDValidity
        self.lastSourceUID = lastSourceUID
        self.inFlight = inFlight
        self.copied = copied
        self.skipped = skipped
        self.failed = failed
        self.bytes = bytes
    }
}

extension FolderSummaryCounts {
    /// What a checkpoint accounts for: its totals, each of them expected.
    init(accountedFor checkpoint: FolderCheckpoint?) {
        let copied = checkpoint?.copied ?? 0, skipped = checkpoint?.skipped ?? 0, failed = checkpoint?.failed ?? 0
        self.init(
            expected: copied + skipped + failed, copied: copied, skipped: skipped, failed: failed,
            bytes: checkpoint?.bytes ?? 0)
    }
}

/// The window between APPEND and checkpoint: source UIDs being copied and the destination's
/// UIDNEXT before the first of them, so a resume can see which already arrived.
public struct InFlightBatch: Sendable, Codable, Equatable {
    public var lastSourceUID: UInt32
    public var destinationUIDValidity: UInt32
    public var destinationUIDNext: UInt32
    /// Source UIDs whose APPEND command was handed to the destination whole (recorded just before
    /// its last bytes go out). The server stores such a command even after the process that sent
    /// it died, possibly only after a restarted run has looked: a resume waits until these have
    /// arrived before it decides what is missing. Nil in checkpoints written before this existed.
    public var sent: UIDSet?

    public init(lastSourceUID: UInt32, destinationUIDValidity: UInt32, destinationUIDNext: UInt32, sent: UIDSet? = nil)
    {
        self.lastSourceUID = lastSourceUID
        self.destinationUIDValidity = destinationUIDValidity
        self.destinationUIDNext = destinationUIDNext
        self.sent = sent
    }
}

/// Copies to be matched by Message-ID (or header hash) within the folder. Nil means every one not
/// yet mapped: every source UID up to `lastSourceUID`, every destination UID.
public struct UnmatchedCopies: Sendable, Codable, Equatable {
    public var source: UIDSet?
    public var destination: UIDSet?

    public init(source: UIDSet? = nil, destination: UIDSet? = nil) {
        self.source = source
        self.destination = destination
    }
}

/// Persists checkpoints; the CLI uses a state file, the service its database.
public protocol CheckpointStore: Sendable {
    func load(folder: String) async throws -> FolderCheckpoint?
    func save(_ checkpoint: FolderCheckpoint, folder: String) async throws
    /// Every folder with a checkpoint, so a folder gone from the source between passes is told.
    func checkpointedFolders() async throws -> [String]
}

/// Checkpoints that live as long as the process: for one-shot runs without resume.
public actor MemoryCheckpointStore: CheckpointStore {
    private var checkpoints: [String: FolderCheckpoint] = [:]

    public init() {}

    public func load(folder: String) -> FolderCheckpoint? { checkpoints[folder] }
    public func save(_ checkpoint: FolderCheckpoint, folder: String) { checkpoints[folder] = checkpoint }
    public func checkpointedFolders() -> [String] { Array(checkpoints.keys) }
}
