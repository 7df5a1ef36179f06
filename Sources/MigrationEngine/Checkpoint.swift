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

/// Persists checkpoints; the CLI uses a state file, the service its database.
public protocol CheckpointStore: Sendable {
    func load(folder: String) async throws -> FolderCheckpoint?
    func save(_ checkpoint: FolderCheckpoint, folder: String) async throws
}

/// Checkpoints that live as long as the process: for one-shot runs without resume.
public actor MemoryCheckpointStore: CheckpointStore {
    private var checkpoints: [String: FolderCheckpoint] = [:]

    public init() {}

    public func load(folder: String) -> FolderCheckpoint? { checkpoints[folder] }
    public func save(_ checkpoint: FolderCheckpoint, folder: String) { checkpoints[folder] = checkpoint }
}
