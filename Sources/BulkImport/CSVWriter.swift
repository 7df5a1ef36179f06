import Foundation

/// RFC 4180 output, the counterpart of `CSVReader`: CRLF line ends, and a field quoted (its quotes
/// doubled) when it holds a comma, a quote, CR or LF.
///
/// A text field that a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, tab
/// or CR) gets a leading `'`: a report opened in a spreadsheet never runs what a server sent.
public struct CSVWriter: Sendable {
    public private(set) var text = ""

    public init(header: [String]) {
        append(header.map(Field.text))
    }

    public enum Field: Sendable, Equatable {
        case text(String)
        case number(Int64)
        case empty
    }

    public mutating func append(_ fields: [Field]) {
        text += fields.map(Self.encode).joined(separator: ",") + "\r\n"
    }

    static func encode(_ field: Field) -> String {
        switch field {
        case .empty: return ""
        case .number(let value): return String(value)
        case .text(var value):
            if let first = value.unicodeScalars.first, "=+-@\t\r".unicodeScalars.contains(first) {
                value = "'" + value
            }
            guard value.contains(where: { $0 == "," || $0 == "\"" || $0 == "\r" || $0 == "\n" || $0 == "\r\n" })
            else { return value }
            return "\"" + value.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
    }
}
