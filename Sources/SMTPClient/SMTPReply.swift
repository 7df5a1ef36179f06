/// One complete server reply (RFC 5321 §4.2): a three-digit code and its text lines.
public struct SMTPReply: Sendable, Equatable {
    public var code: Int
    public var lines: [String]

    public init(code: Int, lines: [String]) {
        self.code = code
        self.lines = lines
    }

    /// 2xx and 3xx: the step went ahead.
    public var isPositive: Bool { (200..<400).contains(code) }
    /// 4xx: the server may accept the same thing later.
    public var isTransientFailure: Bool { (400..<500).contains(code) }
    /// 5xx: the same thing will be refused again.
    public var isPermanentFailure: Bool { (500..<600).contains(code) }

    /// The text as one line, for a message to a person.
    public var text: String { lines.joined(separator: " ") }
}

/// Splits received bytes into replies; keeps a partial line until its end arrives.
///
/// Line ends are CRLF; a bare LF is accepted too, as servers in the wild send it. Lines longer than
/// `maxLineLength` and replies of more than `maxLines` lines are refused, so a hostile or broken
/// server cannot grow memory without end.
struct ReplyParser {
    static let maxLineLength = 4096
    static let maxLines = 200

    private var buffer: [UInt8] = []
    private var pendingLines: [String] = []
    private var pendingCode: Int?

    /// Whether bytes were received that are not yet part of a returned reply.
    var hasBufferedBytes: Bool { !buffer.isEmpty || !pendingLines.isEmpty }

    mutating func append(_ bytes: some Sequence<UInt8>) {
        buffer.append(contentsOf: bytes)
    }

    /// The next complete reply, or nil until more bytes arrive.
    mutating func next() throws(SMTPError) -> SMTPReply? {
        while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
            var end = newline
            if end > 0, buffer[end - 1] == UInt8(ascii: "\r") { end -= 1 }
            let line = Array(buffer[..<end])
            buffer.removeSubrange(...newline)
            if let reply = try take(line) { return reply }
        }
        if buffer.count > Self.maxLineLength {
            throw .protocolError("the server sent a reply line longer than \(Self.maxLineLength) bytes")
        }
        return nil
    }

    private mutating func take(_ line: [UInt8]) throws(SMTPError) -> SMTPReply? {
        guard line.count <= Self.maxLineLength else {
            throw .protocolError("the server sent a reply line longer than \(Self.maxLineLength) bytes")
        }
        guard line.count >= 3, line[0..<3].allSatisfy({ (0x30...0x39).contains($0) }),
            (0x32...0x35).contains(line[0])
        else {
            throw .protocolError("the server sent something that is not an SMTP reply")
        }
        let code = Int(line[0] - 0x30) * 100 + Int(line[1] - 0x30) * 10 + Int(line[2] - 0x30)
        let separator = line.count > 3 ? line[3] : UInt8(ascii: " ")
        guard separator == UInt8(ascii: " ") || separator == UInt8(ascii: "-") else {
            throw .protocolError("the server sent something that is not an SMTP reply")
        }
        if let pendingCode, pendingCode != code {
            throw .protocolError("the server changed its reply code within one reply")
        }
        let text = line.count > 4 ? String(decoding: line[4...], as: UTF8.self) : ""
        pendingLines.append(text)
        guard pendingLines.count <= Self.maxLines else {
            throw .protocolError("the server sent a reply of more than \(Self.maxLines) lines")
        }
        if separator == UInt8(ascii: "-") {
            pendingCode = code
            return nil
        }
        let reply = SMTPReply(code: code, lines: pendingLines)
        pendingLines = []
        pendingCode = nil
        return reply
    }
}
