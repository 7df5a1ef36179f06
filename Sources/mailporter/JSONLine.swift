#if canImport(Glibc)
import Glibc
#endif

/// A JSON value for the one-line objects the commands print (events, admin objects, folder counts).
enum JSONValue {
    case string(String)
    case int(Int64)
    case double(Double)
    case bool(Bool)
    case null
    case strings([String])

    static func int(_ value: Int) -> JSONValue { .int(Int64(value)) }

    var encoded: String {
        switch self {
        case .string(let text): jsonString(text)
        case .int(let number): "\(number)"
        case .double(let number): "\(number)"
        case .bool(let flag): flag ? "true" : "false"
        case .null: "null"
        case .strings(let items): "[" + items.map(jsonString).joined(separator: ",") + "]"
        }
    }
}

enum JSONLine {
    /// Prints an object as one JSON line, keys in the given order, flushed so a reading process sees it at once.
    static func print(_ fields: [(String, JSONValue)]) {
        Swift.print("{" + fields.map { "\(jsonString($0.0)):\($0.1.encoded)" }.joined(separator: ",") + "}")
        fflush(nil)
    }
}

/// A JSON string literal.
func jsonString(_ value: String) -> String {
    var out = "\""
    for scalar in value.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 {
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}
