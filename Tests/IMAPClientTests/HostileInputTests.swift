import NIOCore
import Testing
@testable import IMAPClient

@Suite("Response parser: hostile input")
struct HostileInputTests {
    @Test func unterminatedLiteralWaitsWithoutError() throws {
        var parser = ResponseParser()
        parser.append(ByteBuffer(string: "* LIST () \"/\" {20}\r\nonly ten b"))
        #expect(try parser.next() == nil)
        #expect(parser.bufferedBytes < 100)
    }

    @Test func hugeLiteralAnnouncementIsRefused() {
        #expect(throws: IMAPParseError.literalTooLarge(size: 1 << 40, limit: ParserLimits().maxBodySize)) {
            _ = try parse("* 1 FETCH (BODY[] {1099511627776}\r\nabc")
        }
        #expect(throws: IMAPParseError.literalTooLarge(size: 1 << 40, limit: ParserLimits().maxResponseSize)) {
            _ = try parse("* LIST () \"/\" {1099511627776}\r\nabc")
        }
        #expect(throws: IMAPParseError.self) {
            _ = try parse("* 1 FETCH (BODY[] {99999999999999999999999}\r\n")
        }
    }

    @Test(arguments: [1 << 16, 1 << 20])
    func tenMegabyteLineIsRefusedWithBoundedBuffering(chunkSize: Int) throws {
        let limits = ParserLimits()
        var parser = ResponseParser(limits: limits)
        let chunk = ByteBuffer(repeating: UInt8(ascii: "a"), count: chunkSize)
        parser.append(ByteBuffer(string: "* OK "))
        var sent = 0
        var failure: Error?
        while sent < 10 << 20 {
            parser.append(chunk)
            sent += chunkSize
            do {
                _ = try parser.next()
            } catch {
                failure = error
                break
            }
            #expect(parser.bufferedBytes <= limits.maxResponseSize + chunkSize)
        }
        #expect(failure as? IMAPParseError == .responseTooLong(limit: limits.maxResponseSize))
        #expect(sent <= limits.maxResponseSize + 2 * chunkSize)
    }

    @Test func deepNestingIsRefused() {
        let deep = String(repeating: "(", count: 10_000) + String(repeating: ")", count: 10_000)
        #expect(throws: IMAPParseError.nestingTooDeep(limit: 64)) {
            _ = try parse("* 1 FETCH (BODYSTRUCTURE \(deep))\r\n")
        }
        #expect(throws: IMAPParseError.nestingTooDeep(limit: 64)) {
            _ = try parse("* XWEIRD \(deep)\r\n")
        }
    }

    @Test(arguments: [
        "\u{0}\u{1}\u{2}garbage\r\n",
        "* \r\n",
        "A1 MAYBE done\r\n",
        "* LIST (\\Foo \"/\" x\r\n",
        "* 1 FETCH (UID abc)\r\n",
        "* 1 FETCH (INTERNALDATE \"yesterday\")\r\n",
        "* 1 FETCH UID 1\r\n",
        "* OK [UIDVALIDITY x] y\r\n",
        "* STATUS x (MESSAGES)\r\n",
        "* 99999999999 EXISTS\r\n",
        "* SEARCH 1 2 x\r\n",
        "* LIST () \"ab\" x\r\n",
        "* OK [APPENDUID 1 2:] x\r\n",
        "* 1 FETCH (FLAGS (\\Seen \"x\r\n",
        "* 1 FETCH (FLAGS (\\ \\Seen))\r\n",
        "* 1 FETCH (FLAGS (\\(Seen))\r\n",
    ])
    func garbageIsAnError(input: String) {
        #expect(throws: IMAPParseError.self) { _ = try parse(input) }
    }
}
