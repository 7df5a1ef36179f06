import Foundation
import HTTPAPI
import Testing

@Suite("JSON text the API writes")
struct JSONValueTests {
    @Test func stringsNeedingEscapesRoundTripThroughAStandardParser() throws {
        let strings = [
            "plain", "", "quote \" and backslash \\", "line\nreturn\r\ttab", "\u{0}\u{1}\u{1f}",
            "Grüße 日本語 📎", "line\u{2028}and\u{2029}paragraph", "ends with é\u{2028}", "\u{E2}\u{80}",
        ]
        let value = JSONValue.object(strings.enumerated().map { ("k\($0.offset)\"", .string($0.element)) })
        let text = value.serialized
        #expect(!text.contains("\u{2028}") && !text.contains("\u{2029}"), "JavaScript reads them as line ends")
        #expect(!text.unicodeScalars.contains { $0.value < 0x20 })
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: String])
        for (index, string) in strings.enumerated() { #expect(parsed["k\(index)\""] == string) }
        #expect(JSONValue.array([.int(-3), .bool(true), .null, .double(1.5)]).serialized == "[-3,true,null,1.5]")
    }
}
