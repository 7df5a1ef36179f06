import IMAPClient

/// What a migration reports as it goes; totals, percent, throughput and ETA follow from these.
public enum MigrationEvent: Sendable {
    /// Both logins worked.
    case validated
    /// The folder plan with the counts after the date filter.
    case planned([FolderPlan])
    case folderStarted(source: String, destination: String)
    /// Each attempt at a folder starts from these totals (non-zero when resuming from a checkpoint);
    /// counts from an earlier, interrupted attempt are replaced by them.
    case folderBaseline(source: String, counts: FolderSummaryCounts)
    case messageCopied(folder: String, bytes: Int)
    case messageSkipped(folder: String)
    /// A message this run could not copy and why (the server's words). `size` and `internalDate`
    /// are the source's, when its metadata arrived before the failure; never any content.
    case messageFailed(folder: String, uid: UInt32, size: Int?, internalDate: InternalDate?, reason: String)
    /// A connection dropped or the server throttled; the folder resumes from its checkpoint.
    case retrying(folder: String, attempt: Int, delaySeconds: Double, reason: String)
    /// Something a person watching should know that changes no count (a folder left out of the
    /// plan and why, a wait for an interrupted run's last APPEND).
    case notice(folder: String, message: String)
    case folderFinished(source: String, summary: FolderSummaryCounts)
    case folderFailed(source: String, failure: ImportFailure)
}

public struct FolderSummaryCounts: Sendable, Equatable, Codable {
    public var expected: Int
    public var copied: Int
    public var skipped: Int
    public var failed: Int
    public var bytes: Int64
    /// Copies whose flags or keywords this pass made equal to the source's again.
    public var flagsUpdated: Int
    /// Copies this pass removed from the destination because their source message was expunged.
    public var deleted: Int

    public init(
        expected: Int = 0, copied: Int = 0, skipped: Int = 0, failed: Int = 0, bytes: Int64 = 0,
        flagsUpdated: Int = 0, deleted: Int = 0
    ) {
        self.expected = expected
        self.copied = copied
        self.skipped = skipped
        self.failed = failed
        self.bytes = bytes
        self.flagsUpdated = flagsUpdated
        self.deleted = deleted
    }

    private enum CodingKeys: String, CodingKey {
        case expected, copied, skipped, failed, bytes, flagsUpdated, deleted
    }

    /// Counts stored before the pass counts existed read as zero passes' worth.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            expected: try container.decode(Int.self, forKey: .expected),
            copied: try container.decode(Int.self, forKey: .copied),
            skipped: try container.decode(Int.self, forKey: .skipped),
            failed: try container.decode(Int.self, forKey: .failed),
            bytes: try container.decode(Int64.self, forKey: .bytes),
            flagsUpdated: try container.decodeIfPresent(Int.self, forKey: .flagsUpdated) ?? 0,
            deleted: try container.decodeIfPresent(Int.self, forKey: .deleted) ?? 0)
    }

    /// The counts of several folders added up.
    public init(sum parts: [FolderSummaryCounts]) {
        self.init()
        for part in parts {
            expected += part.expected
            copied += part.copied
            skipped += part.skipped
            failed += part.failed
            bytes += part.bytes
            flagsUpdated += part.flagsUpdated
            deleted += part.deleted
        }
    }

    /// Every expected message is accounted for.
    public var isComplete: Bool { copied + skipped + failed >= expected }
}
