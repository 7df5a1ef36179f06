/// One record of a CSV document and the physical line it starts on (1-based, counting every line
/// break of the input, those inside quoted fields and skipped lines included).
public struct CSVRecord: Sendable, Equatable {
    public var line: Int
    public var fields: [String]

    public init(line: Int, fields: [String]) {
        self.line = line
        self.fields = fields
    }
}

/// Why a CSV document was refused. The message names a line where there is one, and never a
/// field's content: the fields hold passwords.
public struct CSVError: Error, Sendable, Equatable, CustomStringConvertible {
    public var line: Int?
    public var message: String

    public init(line: Int?, message: String) {
        self.line = line
        self.message = message
    }

    public var description: String { message }
}

/// A strict RFC 4180 reader that knows where each record starts.
///
/// Beyond the RFC, as people paste CSV: CRLF, LF or a lone CR ends a line; a UTF-8 byte order mark
/// is dropped; blank lines and lines starting with `#` (outside a quoted field) are skipped;
/// unquoted fields are trimmed of spaces and tabs, and so is the space around a quoted field, but
/// never the inside of the quotes. Strict where the RFC is: a quote in an unquoted field, text
/// after a closing quote and a quote never closed are errors naming their line, not guesses.
public enum CSVReader {
    /// 2 MiB, the largest `data` a batch accepts (SPEC.md §5).
    public static let maxBytes = 2 * 1024 * 1024

    /// Reads text as it arrives from a JSON body (already Unicode; only its size is checked).
    public static func read(_ text: String) throws(CSVError) -> [CSVRecord] {
        try read(utf8: Array(text.utf8))
    }

    /// Reads raw bytes (a file): refused when over `maxBytes` or not UTF-8.
    public static func read(bytes: [UInt8]) throws(CSVError) -> [CSVRecord] {
        try checkSize(bytes.count)
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw CSVError(line: nil, message: "The CSV is not valid UTF-8 text; save it as UTF-8 and send it again.")
        }
        return try read(utf8: bytes)
    }

    private static func checkSize(_ count: Int) throws(CSVError) {
        guard count <= maxBytes else {
            throw CSVError(
                line: nil, message: "The CSV is larger than 2 MB (\(maxBytes) bytes); split it into several batches.")
        }
    }

    private static let quote = UInt8(ascii: "\"")
    private static let comma = UInt8(ascii: ",")
    private static let lf = UInt8(ascii: "\n")
    private static let cr = UInt8(ascii: "\r")
    private static let hash = UInt8(ascii: "#")

    private static func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 }
    private static func isLineEnd(_ byte: UInt8) -> Bool { byte == lf || byte == cr }

    /// `bytes` is valid UTF-8. Every delimiter is ASCII, so no multi-byte character is ever split.
    private static func read(utf8 bytes: [UInt8]) throws(CSVError) -> [CSVRecord] {
        try checkSize(bytes.count)
        var cursor = Cursor(bytes: bytes)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { cursor.index = 3 }
        var records: [CSVRecord] = []
        while !cursor.atEnd {
            if cursor.skipBlankOrCommentLine() { continue }
            records.append(try cursor.record())
        }
        return records
    }

    private struct Cursor {
        let bytes: [UInt8]
        var index = 0
        var line = 1

        init(bytes: [UInt8]) {
            self.bytes = bytes
        }

        var atEnd: Bool { index >= bytes.count }
        var current: UInt8? { index < bytes.count ? bytes[index] : nil }

        /// At a line end: steps over it (CRLF as one) and counts the line.
        mutating func consumeLineEnd() {
            if bytes[index] == cr, index + 1 < bytes.count, bytes[index + 1] == lf { index += 1 }
            index += 1
            line += 1
        }

        mutating func skipSpaces() {
            while let byte = current, isSpace(byte) { index += 1 }
        }

        /// At the start of a line: skips it if it is blank or a comment.
        mutating func skipBlankOrCommentLine() -> Bool {
            let start = index
            if current == hash {
                while let byte = current, !isLineEnd(byte) { index += 1 }
                if !atEnd { consumeLineEnd() }
                return true
            }
            skipSpaces()
            guard let byte = current else { return true }
            if isLineEnd(byte) {
                consumeLineEnd()
                return true
            }
            index = start
            return false
        }

        mutating func record() throws(CSVError) -> CSVRecord {
            let start = line
            var fields: [String] = []
            while true {
                fields.append(try field())
                guard let byte = current else { break }
                if byte == comma {
                    index += 1
                    continue
                }
                consumeLineEnd()
                break
            }
            return CSVRecord(line: start, fields: fields)
        }

        /// One field, leaving the cursor on the comma or line end after it (or at the end).
        mutating func field() throws(CSVError) -> String {
            skipSpaces()
            if current == quote { return try quotedField() }
            let start = index
            var end = index
            while let byte = current, byte != comma, !isLineEnd(byte) {
                if byte == quote {
                    throw CSVError(
                        line: line,
                        message: "Line \(line): a quote inside a field that does not start with one; "
                            + "put the whole field in double quotes and double each quote inside it (\"\").")
                }
                index += 1
                if !isSpace(byte) { end = index }
            }
            return String(decoding: bytes[start..<end], as: UTF8.self)
        }

        mutating func quotedField() throws(CSVError) -> String {
            let opened = line
            index += 1
            var value: [UInt8] = []
            while true {
                guard let byte = current else {
                    throw CSVError(
                        line: opened,
                        message: "Line \(opened): a quoted field is never closed; "
                            + "end it with a double quote, and double each quote inside it (\"\").")
                }
                if byte == quote {
                    if index + 1 < bytes.count, bytes[index + 1] == quote {
                        value.append(quote)
                        index += 2
                        continue
                    }
                    index += 1
                    break
                }
                if byte == lf || (byte == cr && !(index + 1 < bytes.count && bytes[index + 1] == lf)) { line += 1 }
                value.append(byte)
                index += 1
            }
            skipSpaces()
            if let byte = current, byte != comma, !isLineEnd(byte) {
                throw CSVError(
                    line: line,
                    message: "Line \(line): text after a closing quote; "
                        + "a quote inside a quoted field must be doubled (\"\"), and a comma must follow the field.")
            }
            return String(decoding: value, as: UTF8.self)
        }
    }
}
