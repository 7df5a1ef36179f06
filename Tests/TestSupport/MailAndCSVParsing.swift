import Foundation

/// A received mail taken apart the way a mail reader would: headers unfolded, the RFC 2047 subject
/// and the quoted-printable body decoded.
public struct ParsedMail {
    public var headers: [(String, String)] = []
    public var rawBody = ""

    public init(_ raw: String) {
        let parts = raw.components(separatedBy: "\r\n\r\n")
        rawBody = parts.dropFirst().joined(separator: "\r\n\r\n")
        var unfolded: [String] = []
        for line in (parts.first ?? "").components(separatedBy: "\r\n") {
            if line.hasPrefix(" ") || line.hasPrefix("\t"), !unfolded.isEmpty {
                unfolded[unfolded.count - 1] += line
            } else {
                unfolded.append(line)
            }
        }
        for line in unfolded {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append(
                (String(line[..<colon]), String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces))
            )
        }
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    public var decodedSubject: String? {
        guard let value = header("Subject") else { return nil }
        guard value.hasPrefix("=?") else { return value }
        return value.split(separator: " ").map { word -> String in
            let payload = word.dropFirst("=?UTF-8?B?".count).dropLast(2)
            return String(decoding: Data(base64Encoded: String(payload)) ?? Data(), as: UTF8.self)
        }.joined()
    }

    public var decodedBody: String {
        var bytes: [UInt8] = []
        let lines = rawBody.components(separatedBy: "\r\n")
        for (index, line) in lines.enumerated() {
            var chars = Array(line.utf8)
            let soft = chars.last == UInt8(ascii: "=")
            if soft { chars.removeLast() }
            var position = 0
            while position < chars.count {
                if chars[position] == UInt8(ascii: "="), position + 2 < chars.count,
                    let value = UInt8(
                        String(decoding: chars[(position + 1)...(position + 2)], as: UTF8.self), radix: 16)
                {
                    bytes.append(value)
                    position += 3
                } else {
                    bytes.append(chars[position])
                    position += 1
                }
            }
            if !soft, index < lines.count - 1 { bytes += [0x0D, 0x0A] }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// RFC 4180 read back: quoted fields with doubled quotes, commas and line breaks inside.
public enum CSVRows {
    public static func parse(_ text: String) throws -> [[String]] {
        var rows: [[String]] = []
        var row: [String] = []
        var field = ""
        var quoted = false
        var characters = Array(text)
        if characters.last != "\r\n" && characters.last != "\n" { characters.append("\r\n") }
        var index = 0
        while index < characters.count {
            let character = characters[index]
            if quoted {
                if character == "\"" {
                    if index + 1 < characters.count, characters[index + 1] == "\"" {
                        field.append("\"")
                        index += 1
                    } else {
                        quoted = false
                    }
                } else {
                    field.append(character)
                }
            } else if character == "\"" {
                quoted = true
            } else if character == "," {
                row.append(field)
                field = ""
            } else if character == "\r\n" || character == "\n" {
                row.append(field)
                rows.append(row)
                row = []
                field = ""
            } else {
                field.append(character)
            }
            index += 1
        }
        guard !quoted else { throw ProcessFailure(command: "csv", status: 1, output: "an unclosed quote in the CSV") }
        return rows
    }
}
