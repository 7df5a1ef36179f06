import Foundation

/// A plain-text mail as RFC 5322 wants it: `Date`, `Message-ID`, `From`, `To`, `Subject` (RFC 2047
/// encoded words when it is not ASCII), MIME headers, and a quoted-printable UTF-8 body, so every
/// line is short ASCII whatever the text holds and whether or not the relay offers 8BITMIME.
///
/// Every header value is user data (a batch name, an address): CR, LF and other control characters
/// are taken out, so none can start a header of its own.
public struct MailMessage: Sendable, Equatable {
    public var from: String
    public var to: [String]
    public var subject: String
    public var body: String
    public var date: Date
    public var messageID: String

    public init(from: String, to: [String], subject: String, body: String, date: Date = Date(), messageID: String) {
        self.from = from
        self.to = to
        self.subject = subject
        self.body = body
        self.date = date
        self.messageID = messageID
    }

    /// A Message-ID that is unique by construction: `key` names the mail (the outbox row), the
    /// domain is the sender's.
    public static func messageID(key: String, sender: String) -> String {
        let domain = sender.split(separator: "@").last.map(String.init) ?? "mailporter.invalid"
        let local = key.filter { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-") }
        return "<\(local.isEmpty ? "mail" : local).\(UUID().uuidString.lowercased())@\(headerSafe(domain))>"
    }

    /// The message in wire form, CRLF line ends, before dot-stuffing.
    public func rendered() -> [UInt8] {
        var lines = [
            "Date: \(Self.rfc5322Date(date))",
            "Message-ID: \(Self.headerSafe(messageID))",
            "From: \(Self.headerSafe(from))",
            "To: \(to.map(Self.headerSafe).joined(separator: ", "))",
            "Subject: \(Self.encodedSubject(Self.headerSafe(subject)))",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: quoted-printable",
            "",
        ]
        lines += QuotedPrintable.encode(body)
        return Array(lines.joined(separator: "\r\n").utf8) + Array("\r\n".utf8)
    }

    /// User data fit for one header line: control characters (CR and LF first) become spaces.
    static func headerSafe(_ value: String) -> String {
        let cleaned = String(
            value.unicodeScalars.map { scalar -> Character in
                scalar.value < 0x20 || scalar.value == 0x7F || (0x80...0x9F).contains(scalar.value)
                    || scalar == "\u{2028}" || scalar == "\u{2029}" ? " " : Character(scalar)
            })
        // A header line stays well under 998 octets whatever was given.
        return String(cleaned.prefix(400))
    }

    /// The subject as is when it is printable ASCII, else as RFC 2047 B-encoded words of at most
    /// 75 characters each, folded onto continuation lines, never splitting a character.
    static func encodedSubject(_ subject: String) -> String {
        if subject.allSatisfy({ $0.isASCII }) { return subject }
        var words: [String] = []
        var chunk: [UInt8] = []
        // 39 bytes of UTF-8 make 52 of base64: "=?UTF-8?B?" + 52 + "?=" is 64, and with
        // "Subject: " in front the first line is 73 characters (RFC 5322 §2.1.1 wants 78 at most).
        for character in subject {
            let bytes = Array(String(character).utf8)
            if chunk.count + bytes.count > 39 {
                words.append("=?UTF-8?B?\(base64(chunk))?=")
                chunk = []
            }
            chunk += bytes
        }
        if !chunk.isEmpty { words.append("=?UTF-8?B?\(base64(chunk))?=") }
        return words.joined(separator: "\r\n ")
    }

    /// `Thu, 03 Dec 2026 09:50:39 +0000` (RFC 5322 §3.3), always in UTC.
    static func rfc5322Date(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: date)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int?) -> String {
            let number = value ?? 0
            return number < 10 ? "0\(number)" : "\(number)"
        }
        let day = days[((parts.weekday ?? 1) - 1) % 7]
        let month = months[((parts.month ?? 1) - 1) % 12]
        return "\(day), \(two(parts.day)) \(month) \(parts.year ?? 1970) "
            + "\(two(parts.hour)):\(two(parts.minute)):\(two(parts.second)) +0000"
    }
}

/// Quoted-printable (RFC 2045 §6.7) for a UTF-8 text body: lines of at most 76 characters.
enum QuotedPrintable {
    static func encode(_ text: String) -> [String] {
        let normalized = text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
        var lines = normalized.split(separator: "\n", omittingEmptySubsequences: false)
        // A text that ends with a line break has no empty line after it.
        if lines.count > 1, lines.last?.isEmpty == true { lines.removeLast() }
        return lines.flatMap { encodeLine(Array($0.utf8)) }
    }

    private static func encodeLine(_ bytes: [UInt8]) -> [String] {
        var lines: [String] = []
        var current = ""
        let hex = Array("0123456789ABCDEF")
        for (index, byte) in bytes.enumerated() {
            let isLast = index == bytes.count - 1
            let literal =
                (byte >= 33 && byte <= 126 && byte != UInt8(ascii: "=")) || (byte == 0x20 && !isLast)
                || (byte == 0x09 && !isLast)
            let piece =
                literal ? String(UnicodeScalar(byte)) : "=\(hex[Int(byte >> 4)])\(hex[Int(byte & 0x0F)])"
            // A soft line break ("=") keeps every line at 76 characters or fewer.
            if current.count + piece.count > 75 {
                lines.append(current + "=")
                current = ""
            }
            current += piece
        }
        lines.append(current)
        return lines
    }
}

/// The DATA payload (RFC 5321 §4.5.2): CRLF line ends, a leading "." doubled, lines of at most
/// 998 octets, ended by "." on a line of its own.
enum MessageData {
    static let maxLineLength = 998

    static func encode(_ message: [UInt8]) throws(SMTPError) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(message.count + message.count / 50 + 5)
        var line: [UInt8] = []
        func endLine() throws(SMTPError) {
            guard line.count <= maxLineLength else {
                throw .invalidMessage("the message has a line of \(line.count) octets; at most \(maxLineLength) go")
            }
            if line.first == UInt8(ascii: ".") { output.append(UInt8(ascii: ".")) }
            output += line
            output += [0x0D, 0x0A]
            line.removeAll(keepingCapacity: true)
        }
        var index = 0
        while index < message.count {
            let byte = message[index]
            if byte == 0x0D {
                // CRLF, or a bare CR: either ends the line.
                if index + 1 < message.count, message[index + 1] == 0x0A { index += 1 }
                try endLine()
            } else if byte == 0x0A {
                try endLine()
            } else {
                line.append(byte)
            }
            index += 1
        }
        if !line.isEmpty { try endLine() }
        output += Array(".\r\n".utf8)
        return output
    }
}
