/// The storage pool of each plan (SPEC.md §2): the plan's default unless the operator configured
/// another (`MAILPORTER_STORAGE_POOLS`, e.g. `starter=15GB,pro=500MB`). Every reader of a pool size
/// (the API's figures, the storage watch) asks this, so a configured pool holds everywhere.
public struct StoragePools: Sendable, Equatable {
    public private(set) var overrides: [Plan: Int64]

    public init(overrides: [Plan: Int64] = [:]) {
        self.overrides = overrides
    }

    public func bytes(for plan: Plan) -> Int64 { overrides[plan] ?? plan.storagePoolBytes }

    public struct ParseFailure: Error, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// Reads `plan=size` pairs separated by commas; a size is a whole number of bytes with an
    /// optional decimal unit (KB, MB, GB, TB) or binary one (KiB, MiB, GiB, TiB).
    public init(parsing text: String) throws {
        var overrides: [Plan: Int64] = [:]
        for pair in text.split(separator: ",", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, let plan = Plan(rawValue: parts[0].lowercased()) else {
                throw ParseFailure(
                    description:
                        "each entry must be plan=size with plan one of \(Plan.allCases.map(\.rawValue).joined(separator: ", ")), e.g. starter=15GB"
                )
            }
            guard let bytes = Self.bytes(parts[1]), bytes > 0 else {
                throw ParseFailure(
                    description: "the size for \(plan.rawValue) must be a positive number of bytes, KB, MB, GB or TB")
            }
            overrides[plan] = bytes
        }
        self.overrides = overrides
    }

    static func bytes(_ text: String) -> Int64? {
        let units: [(suffix: String, factor: Int64)] = [
            ("KIB", 1 << 10), ("MIB", 1 << 20), ("GIB", 1 << 30), ("TIB", 1 << 40),
            ("KB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000), ("B", 1),
        ]
        let upper = text.uppercased().replacingOccurrences(of: " ", with: "")
        for unit in units where upper.hasSuffix(unit.suffix) {
            guard let number = Int64(upper.dropLast(unit.suffix.count)) else { return nil }
            let (product, overflow) = number.multipliedReportingOverflow(by: unit.factor)
            return overflow ? nil : product
        }
        return Int64(upper)
    }
}
