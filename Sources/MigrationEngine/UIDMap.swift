import IMAPClient

/// Which destination message each copied source message became (from APPENDUID), kept as runs:
/// a batch appended in order maps a run of source UIDs onto a run of destination UIDs, so a folder
/// of 100,000 copies is a handful of entries. Stored as `[[source, destination, count], …]`.
public struct UIDMap: Sendable, Equatable {
    /// Source UIDs `source ..< source + count` became `destination ..< destination + count`.
    public struct Run: Sendable, Equatable {
        public var source: UInt32
        public var destination: UInt32
        public var count: UInt32

        var sourceEnd: UInt32 { source &+ (count &- 1) }
    }

    /// Ordered by source UID, not overlapping.
    public private(set) var runs: [Run] = []

    public init() {}

    public init(pairs: [(source: UInt32, destination: UInt32)]) {
        self.init()
        insert(pairs)
    }

    public var count: Int { runs.reduce(0) { $0 + Int($1.count) } }
    public var isEmpty: Bool { runs.isEmpty }

    /// Every pair, in source order.
    public var pairs: [(source: UInt32, destination: UInt32)] {
        runs.flatMap { run in (0..<run.count).map { (run.source &+ $0, run.destination &+ $0) } }
    }

    /// The source UIDs copied, as ranges.
    public var sources: UIDSet {
        var ranges: [ClosedRange<UInt32>] = []
        for run in runs {
            if let last = ranges.last, last.upperBound &+ 1 == run.source {
                ranges[ranges.count - 1] = last.lowerBound...run.sourceEnd
            } else {
                ranges.append(run.source...run.sourceEnd)
            }
        }
        return UIDSet(ranges)
    }

    /// The destination UIDs written, as ranges.
    public var destinations: UIDSet {
        UIDSet.compact(runs.flatMap { run in (0..<run.count).map { run.destination &+ $0 } })
    }

    public func destination(of source: UInt32) -> UInt32? {
        var low = 0
        var high = runs.count - 1
        while low <= high {
            let middle = (low + high) / 2
            let run = runs[middle]
            if source < run.source {
                high = middle - 1
            } else if source > run.sourceEnd {
                low = middle + 1
            } else {
                return run.destination &+ (source - run.source)
            }
        }
        return nil
    }

    /// Adds pairs; a source UID already mapped takes the new destination. New sources above every
    /// mapped one (each batch's) extend the last run without rebuilding the rest.
    public mutating func insert(_ new: [(source: UInt32, destination: UInt32)]) {
        guard !new.isEmpty else { return }
        let sorted = new.sorted { $0.source < $1.source }
        if let last = runs.last, let first = sorted.first, first.source > last.sourceEnd {
            append(sorted)
            return
        }
        var all = Dictionary(pairs.map { ($0.source, $0.destination) }, uniquingKeysWith: { $1 })
        for pair in sorted { all[pair.source] = pair.destination }
        runs = []
        append(all.sorted { $0.key < $1.key }.map { (source: $0.key, destination: $0.value) })
    }

    public func inserting(_ new: [(source: UInt32, destination: UInt32)]) -> UIDMap {
        var copy = self
        copy.insert(new)
        return copy
    }

    public mutating func remove(sources removed: Set<UInt32>) {
        guard !removed.isEmpty else { return }
        let kept = pairs.filter { !removed.contains($0.source) }
        runs = []
        append(kept)
    }

    /// Appends pairs sorted by source, all above the last run.
    private mutating func append(_ sorted: [(source: UInt32, destination: UInt32)]) {
        for pair in sorted {
            if let last = runs.last, pair.source == last.sourceEnd &+ 1,
                pair.destination == last.destination &+ last.count
            {
                runs[runs.count - 1].count += 1
            } else {
                runs.append(Run(source: pair.source, destination: pair.destination, count: 1))
            }
        }
    }
}

extension UIDMap: Codable {
    public init(from decoder: any Decoder) throws {
        let triples = try decoder.singleValueContainer().decode([[UInt32]].self)
        self.init()
        for triple in triples {
            guard triple.count == 3, triple[2] > 0, UInt64(triple[0]) + UInt64(triple[2]) - 1 <= UInt64(UInt32.max),
                runs.last.map({ triple[0] > $0.sourceEnd }) ?? true
            else {
                throw DecodingError.dataCorrupted(
                    .init(
                        codingPath: decoder.codingPath,
                        debugDescription: "a UID map run is [source, destination, count], in source order"))
            }
            runs.append(Run(source: triple[0], destination: triple[1], count: triple[2]))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(runs.map { [$0.source, $0.destination, $0.count] })
    }
}
