import BulkImport
import Testing

/// The strict RFC 4180 reader: what it reads, where it says each record starts, and what it refuses.
@Suite struct CSVReaderTests {
    static func fields(_ text: String) throws -> [[String]] {
        try CSVReader.read(text).map(\.fields)
    }

    static func error(_ text: String) -> CSVError? {
        do {
            _ = try CSVReader.read(text)
            return nil
        } catch {
            return error
        }
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var input: String
        var expected: [[String]]
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        // RFC 4180 §2, examples 1–7.
        Case(
            name: "CRLF records", input: "aaa,bbb,ccc\r\nzzz,yyy,xxx\r\n",
            expected: [["aaa", "bbb", "ccc"], ["zzz", "yyy", "xxx"]]),
        Case(
            name: "no final line break", input: "aaa,bbb,ccc\r\nzzz,yyy,xxx",
            expected: [["aaa", "bbb", "ccc"], ["zzz", "yyy", "xxx"]]),
        Case(
            name: "quoted fields", input: "\"aaa\",\"bbb\",\"ccc\"\r\nzzz,yyy,xxx",
            expected: [["aaa", "bbb", "ccc"], ["zzz", "yyy", "xxx"]]),
        Case(
            name: "line break in quotes", input: "\"aaa\",\"b\r\nbb\",\"ccc\"\r\nzzz,yyy,xxx",
            expected: [["aaa", "b\r\nbb", "ccc"], ["zzz", "yyy", "xxx"]]),
        Case(name: "doubled quote", input: "\"aaa\",\"b\"\"bb\",\"ccc\"", expected: [["aaa", "b\"bb", "ccc"]]),
        Case(name: "empty fields", input: "a,,c\r\n,,\r\n", expected: [["a", "", "c"], ["", "", ""]]),
        Case(name: "LF only", input: "a,b\nc,d\n", expected: [["a", "b"], ["c", "d"]]),
        Case(name: "lone CR", input: "a,b\rc,d", expected: [["a", "b"], ["c", "d"]]),
        Case(
            name: "password with comma and quote",
            input: "jane@example.net,\"pa,ss\"\"word\",jane@acme.example\n",
            expected: [["jane@example.net", "pa,ss\"word", "jane@acme.example"]]),
        Case(
            name: "only quotes in a password", input: "a@b.c,\"\"\"\"\"\",d@e.f",
            expected: [["a@b.c", "\"\"", "d@e.f"]]),
        Case(
            name: "trimmed outside quotes, kept inside",
            input: "  jane@example.net \t, \"  spaced pw \" ,\tjane@acme.example  ",
            expected: [["jane@example.net", "  spaced pw ", "jane@acme.example"]]),
        Case(name: "BOM dropped", input: "\u{FEFF}a,b,c\n", expected: [["a", "b", "c"]]),
        Case(
            name: "blank and comment lines skipped",
            input: "# exported 2026-01-01\n\n   \r\na,b,c\n#x,y,z\n\t\nd,e,f\n",
            expected: [["a", "b", "c"], ["d", "e", "f"]]),
        Case(
            name: "a # inside a field is data", input: "a,#b,c\n\"#d\",e,f",
            expected: [["a", "#b", "c"], ["#d", "e", "f"]]),
        Case(
            name: "a # line inside quotes is data", input: "a,\"x\n# not a comment\",c",
            expected: [["a", "x\n# not a comment", "c"]]),
        Case(
            name: "unicode kept", input: "jürgen@bücher.example,pässwörd🔑,ök@acme.example",
            expected: [["jürgen@bücher.example", "pässwörd🔑", "ök@acme.example"]]),
        Case(name: "empty input", input: "", expected: []),
        Case(name: "only a BOM and comments", input: "\u{FEFF}# nothing\n", expected: []),
    ]

    @Test(arguments: cases)
    func reads(_ test: Case) throws {
        #expect(try Self.fields(test.input) == test.expected)
    }

    @Test func recordsKnowTheirPhysicalStartLine() throws {
        let input = "# header comment\r\n\r\na,\"multi\r\nline\r\nfield\",c\r\n\nd,e,f\n# c\n\"g\ng\",h,i\nj,k,l"
        let records = try CSVReader.read(input)
        #expect(records.map(\.line) == [3, 7, 9, 11])
        #expect(records[0].fields[1] == "multi\r\nline\r\nfield")
    }

    @Test func lineNumbersAfterABOMAndLoneCRs() throws {
        let records = try CSVReader.read("\u{FEFF}a\rb\r\rc")
        #expect(records.map(\.line) == [1, 2, 4])
    }

    @Test func anUnterminatedQuoteNamesTheLineItOpenedOn() throws {
        let error = try #require(Self.error("a,b,c\nd,\"secret-pw,f\ng,h,i\n"))
        #expect(error.line == 2)
        #expect(error.message.hasPrefix("Line 2:"))
        #expect(!error.message.contains("secret-pw"))
    }

    @Test func textAfterAClosingQuoteNamesItsLine() throws {
        let error = try #require(Self.error("a,b,c\n\n\"x\ny\"oops-secret,b,c\n"))
        #expect(error.line == 4)
        #expect(error.message.contains("Line 4"))
        #expect(!error.message.contains("oops-secret"))
    }

    @Test func aQuoteInsideAnUnquotedFieldNamesItsLine() throws {
        let error = try #require(Self.error("a,b,c\nd,pa\"ss-secret,f\n"))
        #expect(error.line == 2)
        #expect(!error.message.contains("pa"))
    }

    @Test func twoMegabytesAreReadAndOneByteMoreIsRefused() throws {
        let row = "user@example.net,password,user@acme.example\n"
        var text = String(repeating: row, count: CSVReader.maxBytes / row.utf8.count)
        text += String(repeating: "#", count: CSVReader.maxBytes - text.utf8.count)
        #expect(text.utf8.count == 2 * 1024 * 1024)
        #expect(try CSVReader.read(text).count == CSVReader.maxBytes / row.utf8.count)
        let error = try #require(Self.error(text + "#"))
        #expect(error.line == nil)
        #expect(error.message.contains("2 MB"))
        #expect(error.message.contains("2097152 bytes"))
        #expect(throws: CSVError.self) { try CSVReader.read(bytes: Array((text + "#").utf8)) }
    }

    @Test func bytesThatAreNotUTF8AreRefused() throws {
        var bytes = Array("a,b,c\nd,".utf8)
        bytes += [0xC3, 0x28]
        bytes += Array(",f\n".utf8)
        #expect(
            throws: CSVError(line: nil, message: "The CSV is not valid UTF-8 text; save it as UTF-8 and send it again.")
        ) {
            try CSVReader.read(bytes: bytes)
        }
        #expect(try CSVReader.read(bytes: Array("\u{FEFF}a,é\r\n".utf8)).map(\.fields) == [["a", "é"]])
    }
}

/// Random rows written out with random (but correct) quoting read back as the same rows, on the
/// lines the writer put them.
@Suite struct CSVRoundTripTests {
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let pieces: [String] = [
        "a", "Z", "0", "@", ".", " ", "\t", ",", "\"", "\r\n", "\n", "#", "é", "🔑", "x y", "''", ";",
    ]

    static func randomField(_ random: inout Generator) -> String {
        let length = Int.random(in: 0...8, using: &random)
        return (0..<length).map { _ in Self.pieces.randomElement(using: &random) ?? "a" }.joined()
    }

    /// Quotes what must be quoted (and, at random, what need not be); pads unquoted fields and
    /// quoted ones with spaces the reader must trim.
    static func write(_ field: String, first: Bool, _ random: inout Generator) -> String {
        // Scalars, not Characters: "\r\n" is one Character, and a lone "\n" is not it.
        let mustQuote =
            field.unicodeScalars.contains(where: { ",\"\r\n".unicodeScalars.contains($0) }) || field.first == " "
            || field.first == "\t"
            || field.last == " " || field.last == "\t" || (first && field.hasPrefix("#")) || field.isEmpty && first
        let pad = Bool.random(using: &random) ? " " : ""
        if mustQuote || Bool.random(using: &random) {
            return pad + "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\"" + pad
        }
        return pad + field + pad
    }

    static func lineBreaks(in text: String) -> Int {
        // Swift treats "\r\n" as one Character: count line ends as the reader does.
        text.unicodeScalars.reduce(into: (count: 0, previousCR: false)) { state, scalar in
            if scalar == "\n" {
                if !state.previousCR { state.count += 1 }
                state.previousCR = false
            } else if scalar == "\r" {
                state.count += 1
                state.previousCR = true
            } else {
                state.previousCR = false
            }
        }.count
    }

    @Test func randomRowsReadBackUnchanged() throws {
        var random = Generator(state: 0xC5F_2026)
        for _ in 0..<500 {
            let rowCount = Int.random(in: 0...12, using: &random)
            var rows: [[String]] = []
            var text = Bool.random(using: &random) ? "\u{FEFF}" : ""
            var lines: [Int] = []
            for _ in 0..<rowCount {
                if Int.random(in: 0..<5, using: &random) == 0 {
                    text += Bool.random(using: &random) ? "# note, \"x\"\n" : "\r\n"
                }
                let fields = (0..<Int.random(in: 1...6, using: &random)).map { _ in Self.randomField(&random) }
                rows.append(fields)
                lines.append(Self.lineBreaks(in: text) + 1)
                text += fields.enumerated().map { Self.write($1, first: $0 == 0, &random) }.joined(separator: ",")
                text += ["\n", "\r\n", "\r"].randomElement(using: &random) ?? "\n"
            }
            let records = try CSVReader.read(text)
            #expect(records.map(\.fields) == rows)
            #expect(records.map(\.line) == lines)
        }
    }
}
