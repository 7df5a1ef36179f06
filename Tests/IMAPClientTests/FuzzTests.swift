import NIOCore
import Testing
import TestSupport
@testable import IMAPClient

@Suite("Response parser: fuzzing")
struct FuzzTests {
    static let corpus: [String] = [
        "* OK [CAPABILITY IMAP4rev1 LITERAL+ ID] ready\r\n",
        "* LIST (\\HasNoChildren \\Sent) \".\" \"INBOX.Sent Items\"\r\n",
        "* LIST () \"/\" {5}\r\nab]cd\r\n",
        "* STATUS INBOX (MESSAGES 3 UIDNEXT 9)\r\n",
        "* 3 FETCH (UID 7 FLAGS (\\Seen kw) INTERNALDATE \"01-Jan-2020 10:00:00 +0000\" BODY[] {10}\r\n0123456789)\r\n",
        "* 4 FETCH (BODY[HEADER.FIELDS (MESSAGE-ID)] {20}\r\nMessage-ID: <a@b>\r\n\r\n UID 8)\r\n",
        "A7 OK [APPENDUID 5 10:12] done\r\n",
        "* ESEARCH (TAG \"A1\") UID ALL 1:3,7\r\n",
        "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n",
        "+ go ahead\r\n",
        "* BYE bye\r\n",
    ]

    /// Random and mutated inputs must give events or a parse error (never a crash, a hang or
    /// buffering past the limits) and the same result however the bytes are split.
    @Test func randomAndMutatedResponses() throws {
        let seed = UInt64(0x5EED_0001)
        var random = SeededRandom(state: seed)
        let limits = ParserLimits(maxResponseSize: 64 * 1024, maxBodySize: 1 << 20, maxNesting: 16)
        let alphabet = Array("()[]{}<>\"\\ *+~:,.0123456789ABCNILOKFETCHUIDBODY\r\n\u{0}\u{FF}".utf8)
        for iteration in 0..<4000 {
            var bytes: [UInt8]
            if iteration % 4 == 0 {
                bytes = (0..<Int.random(in: 1...200, using: &random)).map { _ in
                    alphabet.randomElement(using: &random) ?? 0
                }
            } else {
                bytes = Array(Self.corpus.randomElement(using: &random)!.utf8)
                for _ in 0..<Int.random(in: 1...4, using: &random) {
                    let position = Int.random(in: 0..<bytes.count, using: &random)
                    switch Int.random(in: 0..<4, using: &random) {
                    case 0: bytes[position] = alphabet.randomElement(using: &random) ?? 0
                    case 1: bytes.remove(at: position)
                    case 2: bytes.insert(alphabet.randomElement(using: &random) ?? 0, at: position)
                    default: bytes.insert(contentsOf: bytes[position...].prefix(8), at: position)
                    }
                    if bytes.isEmpty { bytes = [0x2A] }
                }
            }
            // A final line end lets a parser that waits for one see the whole input either way.
            bytes += [ASCII.cr, ASCII.lf]
            let whole = Result { try parse(bytes: bytes, limits: limits) }
            let split = Result {
                try parse(bytes: bytes, chunkSize: Int.random(in: 1...7, using: &random), limits: limits)
            }
            switch (whole, split) {
            case (.success(let a), .success(let b)):
                #expect(a == b, "seed \(seed) iteration \(iteration): chunking changed the result")
            case (.failure(let a), .failure(let b)):
                #expect(a is IMAPParseError, "seed \(seed) iteration \(iteration): \(a)")
                #expect(b is IMAPParseError, "seed \(seed) iteration \(iteration): \(b)")
            default:
                Issue.record(
                    "seed \(seed) iteration \(iteration): whole and split inputs disagree: \(whole) vs \(split)")
            }
        }
    }
}
