/// An account's storage against its pool (SPEC.md §2, §5): a batch pauses at 90% of the pool, and
/// a paused batch resumes only below it.
public struct StorageFigures: Sendable, Equatable {
    /// The share of the pool at which a batch pauses.
    public static let pauseThresholdPercent = 90

    public var poolBytes: Int64
    public var usedBytes: Int64
    /// Whether `usedBytes` was read from the destination; false when nothing measures it yet.
    public var measured: Bool

    public init(poolBytes: Int64, usedBytes: Int64, measured: Bool) {
        self.poolBytes = max(0, poolBytes)
        self.usedBytes = max(0, usedBytes)
        self.measured = measured
    }

    public var freeBytes: Int64 { max(0, poolBytes - usedBytes) }

    /// The usage at which a batch pauses, rounded down to a byte.
    public var pauseThresholdBytes: Int64 { poolBytes / 100 * Int64(Self.pauseThresholdPercent) }

    /// Used as a whole percentage of the pool (100 for an empty pool).
    public var usedPercent: Int {
        guard poolBytes > 0 else { return 100 }
        return Int(min(usedBytes, poolBytes) * 100 / poolBytes)
    }

    /// At or above the threshold: a batch pauses, and a resume is refused.
    public var isAtPauseThreshold: Bool { usedBytes >= pauseThresholdBytes }
}

/// How current a storage reading must be, by what asks for it.
public enum StorageReading: Sendable, Equatable {
    /// What was last measured (plus what was appended since), never a new measurement: reads that
    /// must answer at once, like a batch's GET polled while it runs.
    case cached
    /// The last measurement while it is recent, else a new one: a preview, which a person asks for.
    case recent
    /// Measured now: a resume, which must see space just freed.
    case fresh
}
