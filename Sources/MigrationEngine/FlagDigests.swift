import Foundation
import IMAPClient

/// What a source without CONDSTORE looked like when a pass last made the copies' flags equal to
/// it: one digest per run of `segment` copied messages, in source-UID order. The next pass reads
/// the source's flags (it cannot ask what changed), and reads and sets the destination's only for
/// the runs whose digest moved, as mbsync compares against its own record of what it last wrote.
///
/// Exactly as with CONDSTORE's CHANGEDSINCE, a change made at the source is carried and one made
/// only at the destination is not (it may be the user's own, in the mailbox they are moving to).
public struct FlagDigests: Sendable, Equatable {
    /// Copies per digest.
    public var segment: Int
    public var values: [UInt64]

    public init(segment: Int = Self.segmentSize, values: [UInt64]) {
        self.segment = segment
        self.values = values
    }

    /// The digests of `uids` (ascending), run by run; `flags` gives a message's managed flags,
    /// nil when the source no longer has it.
    public init(_ uids: [UInt32], segment: Int = Self.segmentSize, flags: (UInt32) -> [String]?) {
        self.init(segment: segment, values: Self.runs(of: uids, segment: segment).map { Self.digest($0, flags: flags) })
    }

    /// Copies per digest: small enough that a few changed messages spread over the folder leave
    /// most of it unread at the destination; large enough that 100,000 copies keep 8 KB of digests.
    public static let segmentSize = 100

    /// `uids` cut into the runs the digests are taken over.
    public static func runs(of uids: [UInt32], segment: Int) -> [ArraySlice<UInt32>] {
        stride(from: 0, to: uids.count, by: max(1, segment)).map { uids[$0..<min($0 + max(1, segment), uids.count)] }
    }

    /// Whether run `index` is as `earlier` recorded it (taken over the same runs).
    public func matches(_ earlier: FlagDigests?, at index: Int) -> Bool {
        guard let earlier, earlier.segment == segment, index < earlier.values.count, index < values.count else {
            return false
        }
        return earlier.values[index] == values[index]
    }

    /// The digest of one run: its UIDs in order, each with its managed flags sorted (a message gone
    /// from the source counts as such). FNV-1a, 64 bits: stable across processes, unlike `Hasher`.
    public static func digest(_ uids: ArraySlice<UInt32>, flags: (UInt32) -> [String]?) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ byte: UInt8) {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        for uid in uids {
            withUnsafeBytes(of: uid.littleEndian) { for byte in $0 { mix(byte) } }
            guard let messageFlags = flags(uid) else {
                mix(0xff)
                continue
            }
            func mixFlag(_ flag: String) {
                for byte in flag.utf8 { mix(byte) }
                mix(0)
            }
            // In sorted order, as a set; two flags (the usual most) are ordered without an array.
            switch messageFlags.count {
            case 0:
                break
            case 1:
                mixFlag(messageFlags[0])
            case 2:
                let (first, second) = (messageFlags[0], messageFlags[1])
                mixFlag(first <= second ? first : second)
                mixFlag(first <= second ? second : first)
            default:
                for flag in messageFlags.sorted() { mixFlag(flag) }
            }
            mix(1)
        }
        return hash
    }
}

/// Stored as `{"segment": 100, "values": "<base64 of little-endian UInt64s>"}`: a
/// checkpoint is written after every batch, and a JSON array of 1,000 decimal numbers is 20 KB.
extension FlagDigests: Codable {
    private enum CodingKeys: String, CodingKey { case segment, values }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        segment = try container.decode(Int.self, forKey: .segment)
        let bytes = try container.decode(Data.self, forKey: .values)
        guard bytes.count % 8 == 0 else {
            throw DecodingError.dataCorruptedError(
                forKey: .values, in: container, debugDescription: "flag digests are 8 bytes each")
        }
        values = stride(from: 0, to: bytes.count, by: 8).map { offset in
            bytes[bytes.startIndex + offset..<bytes.startIndex + offset + 8].enumerated().reduce(UInt64(0)) {
                $0 | UInt64($1.element) << (8 * UInt64($1.offset))
            }
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(segment, forKey: .segment)
        var bytes = Data(capacity: values.count * 8)
        for value in values { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
        try container.encode(bytes, forKey: .values)
    }
}
