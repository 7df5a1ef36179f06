import NIOCore

/// A command line as arguments and literals; the session decides how each literal is sent.
public struct Command: Sendable {
    public enum Part: Sendable {
        case text(String)
        case literal(ByteBuffer)
    }

    /// First word, for errors and logs (never the arguments, which may hold secrets).
    public var name: String
    public var parts: [Part]
    /// Keeps arguments out of logs.
    public var isSensitive: Bool

    public init(_ name: String, _ parts: [Part] = [], isSensitive: Bool = false) {
        self.name = name
        self.parts = parts
        self.isSensitive = isSensitive
    }

    /// Appends ` ` and the text.
    mutating func add(_ text: String) { parts.append(.text(" " + text)) }

    /// Appends ` ` and the value as an astring: atom, quoted string or literal, whichever fits.
    mutating func addString(_ value: String) {
        let bytes = Array(value.utf8)
        if !bytes.isEmpty, bytes.allSatisfy(ASCII.isAStringChar), value.uppercased() != "NIL" {
            parts.append(.text(" " + value))
        } else if bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) {
            var quoted = " \""
            for character in value {
                if character == "\"" || character == "\\" { quoted.append("\\") }
                quoted.append(character)
            }
            parts.append(.text(quoted + "\""))
        } else {
            parts.append(.text(" "))
            parts.append(.literal(ByteBuffer(bytes: bytes)))
        }
    }

    mutating func addMailbox(_ name: MailboxName) { addString(name.encoded) }
}

/// The tag of a sent command, to collect its completion.
public struct CommandTag: Sendable, Hashable, CustomStringConvertible {
    public let value: String
    public let command: String
    public var description: String { value }
}

enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index < bytes.count {
            let remaining = bytes.count - index
            let b0 = bytes[index]
            let b1 = remaining > 1 ? bytes[index + 1] : 0
            let b2 = remaining > 2 ? bytes[index + 2] : 0
            output.append(alphabet[Int(b0 >> 2)])
            output.append(alphabet[Int((b0 & 0x03) << 4 | b1 >> 4)])
            output.append(remaining > 1 ? alphabet[Int((b1 & 0x0F) << 2 | b2 >> 6)] : UInt8(ascii: "="))
            output.append(remaining > 2 ? alphabet[Int(b2 & 0x3F)] : UInt8(ascii: "="))
            index += 3
        }
        return String(decoding: output, as: UTF8.self)
    }
}
