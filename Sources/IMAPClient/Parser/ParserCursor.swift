import NIOCore

/// Limits that keep a hostile or broken server from making the client buffer without bound.
public struct ParserLimits: Sendable, Equatable {
    /// Bytes one response may take when it has to be buffered whole (everything but message bodies).
    public var maxResponseSize: Int
    /// Largest message body literal accepted; bodies are streamed, this only refuses absurd announcements.
    public var maxBodySize: Int
    /// Deepest parenthesised nesting accepted.
    public var maxNesting: Int

    public init(maxResponseSize: Int = 4 << 20, maxBodySize: Int = 1 << 31, maxNesting: Int = 64) {
        self.maxResponseSize = maxResponseSize
        self.maxBodySize = maxBodySize
        self.maxNesting = maxNesting
    }
}

/// The server sent bytes that are not an IMAP response, or that break a limit.
public enum IMAPParseError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)
    case responseTooLong(limit: Int)
    case literalTooLarge(size: UInt64, limit: Int)
    case nestingTooDeep(limit: Int)

    public var description: String {
        switch self {
        case .malformed(let what): "malformed server response: \(what)"
        case .responseTooLong(let limit): "server response longer than \(limit) bytes"
        case .literalTooLarge(let size, let limit): "server announced a \(size)-byte literal (limit \(limit))"
        case .nestingTooDeep(let limit): "server response nested deeper than \(limit) levels"
        }
    }
}

/// Thrown when the buffered bytes end before the item being parsed; `needed` is the readable size
/// (from the start of the attempt) below which retrying is pointless, when known.
struct ParseIncomplete: Error {
    var needed: Int?
}

enum ASCII {
    static let space: UInt8 = 0x20
    static let cr: UInt8 = 0x0D
    static let lf: UInt8 = 0x0A
    static let quote: UInt8 = 0x22
    static let backslash: UInt8 = 0x5C
    static let openParen: UInt8 = 0x28
    static let closeParen: UInt8 = 0x29
    static let openBracket: UInt8 = 0x5B
    static let closeBracket: UInt8 = 0x5D
    static let openBrace: UInt8 = 0x7B
    static let closeBrace: UInt8 = 0x7D
    static let tilde: UInt8 = 0x7E
    static let plus: UInt8 = 0x2B
    static let minus: UInt8 = 0x2D
    static let star: UInt8 = 0x2A
    static let percent: UInt8 = 0x25
    static let colon: UInt8 = 0x3A
    static let comma: UInt8 = 0x2C
    static let lessThan: UInt8 = 0x3C
    static let greaterThan: UInt8 = 0x3E
    static let zero: UInt8 = 0x30
    static let nine: UInt8 = 0x39

    static func isDigit(_ byte: UInt8) -> Bool { byte >= zero && byte <= nine }

    /// ATOM-CHAR (RFC 9051 §9), leniently accepting 8-bit bytes.
    static func isAtomChar(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x00...0x1F, 0x7F, space, openParen, closeParen, openBrace, percent, star, quote, backslash, closeBracket:
            false
        default:
            true
        }
    }

    /// ASTRING-CHAR: ATOM-CHAR or "]".
    static func isAStringChar(_ byte: UInt8) -> Bool { byte == closeBracket || isAtomChar(byte) }

    /// Bytes of an unknown token in a response we only keep as raw text.
    static func isGenericTokenChar(_ byte: UInt8) -> Bool {
        switch byte {
        case space, cr, lf, openParen, closeParen, quote, 0x00: false
        default: true
        }
    }
}

/// A read position over buffered bytes. Parsing functions throw `ParseIncomplete` when they run
/// out, so the caller can retry the whole item once more bytes arrive; nothing is consumed then.
struct ParserCursor {
    var buffer: ByteBuffer
    let start: Int
    let limits: ParserLimits

    init(buffer: ByteBuffer, limits: ParserLimits) {
        self.buffer = buffer
        self.start = buffer.readerIndex
        self.limits = limits
    }

    var consumed: Int { buffer.readerIndex - start }

    func peek() throws -> UInt8 {
        guard let byte = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { throw ParseIncomplete() }
        return byte
    }

    mutating func next() throws -> UInt8 {
        guard let byte = buffer.readInteger(as: UInt8.self) else { throw ParseIncomplete() }
        return byte
    }

    func malformed(_ what: String) -> IMAPParseError {
        let context = buffer.getBytes(at: buffer.readerIndex, length: min(24, buffer.readableBytes)) ?? []
        let shown = String(decoding: context.map { $0 >= 0x20 && $0 < 0x7F ? $0 : UInt8(ascii: "?") }, as: UTF8.self)
        return .malformed("expected \(what) at \"\(shown)\"")
    }

    mutating func expect(_ byte: UInt8, _ what: String) throws {
        guard try peek() == byte else { throw malformed(what) }
        buffer.moveReaderIndex(forwardBy: 1)
    }

    mutating func accept(_ byte: UInt8) throws -> Bool {
        guard try peek() == byte else { return false }
        buffer.moveReaderIndex(forwardBy: 1)
        return true
    }

    mutating func expectSpace() throws { try expect(ASCII.space, "a space") }

    mutating func skipSpaces() throws {
        while try peek() == ASCII.space { buffer.moveReaderIndex(forwardBy: 1) }
    }

    /// CRLF, or a bare LF from a sloppy server.
    mutating func expectEndOfLine() throws {
        if try accept(ASCII.cr) {
            try expect(ASCII.lf, "LF after CR")
        } else {
            try expect(ASCII.lf, "end of line")
        }
    }

    func atEndOfLine() throws -> Bool {
        let byte = try peek()
        return byte == ASCII.cr || byte == ASCII.lf
    }

    /// One or more bytes accepted by `isChar`. Running out mid-token is incomplete: more may follow.
    /// The bytes are read in place and become the string at once: a token of up to 15 bytes (a
    /// flag, a UID's attribute name) is then a small string, with nothing allocated for it.
    mutating func token(_ what: String, _ isChar: (UInt8) -> Bool) throws -> String {
        let length = buffer.readableBytesView.prefix(while: isChar).count
        guard length < buffer.readableBytes else { throw ParseIncomplete() }
        guard length > 0, let text = buffer.readString(length: length) else { throw malformed(what) }
        return text
    }

    /// `token`, upper-cased: for keywords compared by name, which servers send upper-case anyway.
    mutating func upperToken(_ what: String, _ isChar: (UInt8) -> Bool) throws -> String {
        let text = try token(what, isChar)
        return text.utf8.contains(where: { $0 >= 0x61 && $0 <= 0x7A }) ? text.uppercased() : text
    }

    mutating func atom() throws -> String { try token("an atom", ASCII.isAtomChar) }

    mutating func number(_ what: String = "a number") throws -> UInt64 {
        var value: UInt64 = 0
        var digits = 0
        while ASCII.isDigit(try peek()) {
            let digit = UInt64(try next() - ASCII.zero)
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(digit)
            guard !overflow1, !overflow2 else { throw IMAPParseError.malformed("number too large") }
            value = sum
            digits += 1
        }
        guard digits > 0 else { throw malformed(what) }
        return value
    }

    mutating func number32(_ what: String = "a number") throws -> UInt32 {
        let value = try number(what)
        guard value <= UInt64(UInt32.max) else { throw IMAPParseError.malformed("\(what) out of range: \(value)") }
        return UInt32(value)
    }

    /// `quoted`, unescaped. CR and LF are not allowed inside.
    mutating func quoted() throws -> [UInt8] {
        try expect(ASCII.quote, "a quoted string")
        var bytes: [UInt8] = []
        while true {
            var byte = try next()
            switch byte {
            case ASCII.quote:
                return bytes
            case ASCII.backslash:
                byte = try next()
                guard byte == ASCII.quote || byte == ASCII.backslash else {
                    throw IMAPParseError.malformed("bad escape in quoted string")
                }
            case ASCII.cr, ASCII.lf:
                throw IMAPParseError.malformed("line break inside a quoted string")
            default:
                break
            }
            bytes.append(byte)
        }
    }

    /// `{n}` / `{n+}` / `~{n}` followed by CRLF; returns n. Caller checks n against its limit.
    mutating func literalHeader() throws -> UInt64 {
        _ = try accept(ASCII.tilde)
        try expect(ASCII.openBrace, "a literal")
        let size = try number("a literal size")
        _ = try accept(ASCII.plus)
        try expect(ASCII.closeBrace, "'}'")
        try expectEndOfLine()
        return size
    }

    /// Whether a literal (`{` or `~{`) starts here; `~` alone is an ordinary atom character.
    func atLiteral() throws -> Bool {
        let byte = try peek()
        if byte == ASCII.openBrace { return true }
        guard byte == ASCII.tilde else { return false }
        guard let following = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt8.self) else {
            throw ParseIncomplete()
        }
        return following == ASCII.openBrace
    }

    /// A literal's bytes, read whole: only for small literals in buffered responses.
    mutating func literal() throws -> [UInt8] {
        let size = try literalHeader()
        guard size <= UInt64(limits.maxResponseSize) else {
            throw IMAPParseError.literalTooLarge(size: size, limit: limits.maxResponseSize)
        }
        let count = Int(size)
        guard let bytes = buffer.readBytes(length: count) else {
            throw ParseIncomplete(needed: consumed + count)
        }
        return bytes
    }

    /// `string`: quoted or literal.
    mutating func string() throws -> [UInt8] {
        if try peek() == ASCII.quote { return try quoted() }
        if try atLiteral() { return try literal() }
        throw malformed("a string")
    }

    /// `nstring`: NIL or a string.
    mutating func nstring() throws -> [UInt8]? {
        if try peek() == ASCII.quote || atLiteral() { return try string() }
        let word = try atom()
        guard word.uppercased() == "NIL" else {
            throw IMAPParseError.malformed("expected NIL or a string, got \(word)")
        }
        return nil
    }

    /// `astring`: an atom (with "]" allowed) or a string.
    mutating func astring() throws -> String {
        if try peek() == ASCII.quote || atLiteral() { return String(decoding: try string(), as: UTF8.self) }
        return try token("an astring", ASCII.isAStringChar)
    }

    /// Everything up to (not including) the end of the line.
    mutating func textToEndOfLine() throws -> String {
        var bytes: [UInt8] = []
        while true {
            let byte = try peek()
            if byte == ASCII.cr || byte == ASCII.lf { break }
            bytes.append(byte)
            buffer.moveReaderIndex(forwardBy: 1)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `flag-list`: `(` flags `)`; flags keep their case and leading backslash.
    mutating func flagList() throws -> [String] {
        try expect(ASCII.openParen, "'(' starting a flag list")
        var flags: [String] = []
        while true {
            try skipSpaces()
            if try accept(ASCII.closeParen) { return flags }
            if try peek() == ASCII.backslash {
                // `\*`, or a backslash and an atom, read as one token.
                let next = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt8.self)
                if next == ASCII.star {
                    buffer.moveReaderIndex(forwardBy: 2)
                    flags.append("\\*")
                    continue
                }
                let atomLength = buffer.readableBytesView.dropFirst().prefix(while: ASCII.isAtomChar).count
                guard atomLength + 1 < buffer.readableBytes else { throw ParseIncomplete() }
                guard atomLength > 0, let flag = buffer.readString(length: atomLength + 1) else {
                    throw malformed("an atom")
                }
                flags.append(flag)
            } else {
                flags.append(try atom())
            }
        }
    }

    /// `sequence-set` of plain numbers as in APPENDUID/COPYUID/ESEARCH.
    mutating func uidSet() throws -> UIDSet {
        var ranges: [ClosedRange<UInt32>] = []
        repeat {
            let first = try number32("a UID")
            var second = first
            if try accept(ASCII.colon) { second = try number32("a UID") }
            ranges.append(min(first, second)...max(first, second))
        } while try accept(ASCII.comma)
        return UIDSet(ranges)
    }

    /// Any value, as raw text: for parts of responses we keep but do not interpret.
    mutating func genericValue(depth: Int = 0) throws -> String {
        let byte = try peek()
        if byte == ASCII.openParen {
            guard depth < limits.maxNesting else { throw IMAPParseError.nestingTooDeep(limit: limits.maxNesting) }
            buffer.moveReaderIndex(forwardBy: 1)
            var items: [String] = []
            while true {
                try skipSpaces()
                if try accept(ASCII.closeParen) { break }
                if try atEndOfLine() { throw malformed("')'") }
                items.append(try genericValue(depth: depth + 1))
            }
            return "(" + items.joined(separator: " ") + ")"
        }
        if byte == ASCII.quote {
            return "\"" + String(decoding: try quoted(), as: UTF8.self) + "\""
        }
        if try atLiteral() {
            return "\"" + String(decoding: try literal(), as: UTF8.self) + "\""
        }
        var text = try token("a value", ASCII.isGenericTokenChar)
        // `BODY[HEADER.FIELDS (A B)]` style tokens carry a parenthesised list inside brackets.
        if text.last != "]", text.contains("[") {
            if try peek() == ASCII.openParen {
                text += try genericValue(depth: depth + 1)
                if try peek() != ASCII.space, !(try atEndOfLine()), try peek() != ASCII.closeParen {
                    text += try token("a value", ASCII.isGenericTokenChar)
                }
            }
        }
        return text
    }

    /// Raw values up to the end of the line (not consuming it).
    mutating func genericValuesToEndOfLine() throws -> String {
        var items: [String] = []
        while true {
            try skipSpaces()
            if try atEndOfLine() { break }
            items.append(try genericValue())
        }
        return items.joined(separator: " ")
    }
}
