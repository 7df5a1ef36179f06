import Crypto
import NIOCore

/// What identifies a message for duplicate detection: its Message-ID, or without one a hash of
/// its header block. Kept as 16 bytes of SHA-256 so 100,000 keys cost under 2 MB.
struct DuplicateKey: Hashable, Sendable {
    let high: UInt64
    let low: UInt64

    init(digestOf bytes: some Sequence<UInt8>, kind: UInt8) {
        var hasher = SHA256()
        hasher.update(data: [kind])
        hasher.update(data: Array(bytes))
        let digest = Array(hasher.finalize())
        var high: UInt64 = 0
        var low: UInt64 = 0
        for index in 0..<8 {
            high = high << 8 | UInt64(digest[index])
            low = low << 8 | UInt64(digest[index + 8])
        }
        self.high = high
        self.low = low
    }

    /// From `BODY[HEADER.FIELDS (MESSAGE-ID)]` text; nil when the message has no usable Message-ID.
    static func messageID(fromHeaderFields header: ByteBuffer) -> DuplicateKey? {
        guard let value = messageIDValue(header) else { return nil }
        return DuplicateKey(digestOf: value.utf8, kind: 1)
    }

    /// From a full header block (`BODY[HEADER]`), bytes exactly as stored.
    static func headerBlock(_ header: ByteBuffer) -> DuplicateKey {
        DuplicateKey(digestOf: header.readableBytesView, kind: 2)
    }

    /// The Message-ID value, unfolded and trimmed, e.g. `<a@b>`.
    static func messageIDValue(_ header: ByteBuffer) -> String? {
        let text = String(decoding: header.readableBytesView, as: UTF8.self)
        var value: String?
        for line in text.split(
            omittingEmptySubsequences: true, whereSeparator: { $0 == "\r\n" || $0 == "\n" || $0 == "\r" })
        {
            if line.first == " " || line.first == "\t" {
                if let current = value { value = current + line.trimmingWhitespace() }
                continue
            }
            if value != nil { break }
            guard let colon = line.firstIndex(of: ":") else { continue }
            if line[..<colon].trimmingWhitespace().lowercased() == "message-id" {
                value = line[line.index(after: colon)...].trimmingWhitespace()
            }
        }
        guard let value, !value.isEmpty else { return nil }
        return value
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let start = firstIndex(where: { !isSpace($0) }), let end = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[start...end])
    }
}
