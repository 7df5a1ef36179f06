import Testing
import TestSupport
@testable import IMAPClient

@Suite("Modified UTF-7")
struct ModifiedUTF7Tests {
    @Test(arguments: [
        ("INBOX", "INBOX"),
        ("Tom & Jerry", "Tom &- Jerry"),
        ("&", "&-"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("Gesendete Objekte", "Gesendete Objekte"),
        ("📧 Inbox", "&2D3c5w- Inbox"),
        ("Корзина", "&BBoEPgRABDcEOAQ9BDA-"),
        ("a\u{7F}b", "a&AH8-b"),
    ])
    func encodesAndDecodesExactly(decoded: String, encoded: String) throws {
        #expect(ModifiedUTF7.encode(decoded) == encoded)
        #expect(try ModifiedUTF7.decode(encoded) == decoded)
    }

    @Test func roundTripsRandomNames() throws {
        var random = SeededRandom(state: 42)
        let pool: [Unicode.Scalar] = [
            "a", "Z", "&", "-", " ", ".", "/", "é", "ü", "中", "文", "😀", "🇩", "\u{7F}", "\u{1}", "+", ",",
        ]
        for _ in 0..<2000 {
            var name = String.UnicodeScalarView()
            for _ in 0..<Int.random(in: 0...12, using: &random) { name.append(pool.randomElement(using: &random)!) }
            let text = String(name)
            let encoded = ModifiedUTF7.encode(text)
            #expect(encoded.utf8.allSatisfy { $0 >= 0x20 && $0 <= 0x7E })
            #expect(try ModifiedUTF7.decode(encoded) == text)
        }
    }

    @Test(arguments: [
        "&",  // unterminated
        "&Jjo",  // unterminated
        "&Jj!-",  // not base64
        "&AGE-",  // printable ASCII hidden in a shift
        "&Jjo-&Jjo-",  // two shifts in a row
        "&2D0-",  // lone high surrogate
        "&AOk=-",  // padding is not part of modified base64
        "&AOl-",  // non-zero padding bits
        "caf\u{E9}",  // raw 8-bit
        "a\tb",  // control character
    ])
    func rejectsMalformed(encoded: String) {
        #expect(throws: ModifiedUTF7.DecodingError.self) { try ModifiedUTF7.decode(encoded) }
    }
}
