import Foundation
import Hummingbird
import NIOCore

/// Reads fields of a JSON object body one by one, collecting a message per bad field so one
/// `validation_error` names them all.
struct BodyReader {
    private let object: JSONValue
    private(set) var problems: [(String, String)] = []

    init(_ object: JSONValue) {
        self.object = object
    }

    /// The body as a JSON object, or 400/413.
    static func read(_ request: Request, context: APIContext, limit: Int) async throws -> (BodyReader, ByteBuffer) {
        try parse(try await collect(request, limit: limit))
    }

    /// Like `read`, but an empty body is an empty object (for routes whose fields are all optional).
    static func readOptional(_ request: Request, context: APIContext, limit: Int) async throws -> (
        BodyReader, ByteBuffer
    ) {
        let buffer = try await collect(request, limit: limit)
        if buffer.readableBytesView.allSatisfy({ [0x20, 0x09, 0x0A, 0x0D].contains($0) }) {
            return (BodyReader(.object([])), ByteBuffer())
        }
        return try parse(buffer)
    }

    /// The whole body, or 413 past `limit`.
    private static func collect(_ request: Request, limit: Int) async throws -> ByteBuffer {
        var request = request
        do {
            return try await request.collectBody(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw APIError.payloadTooLarge(limit)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw APIError.payloadTooLarge(limit)
        }
    }

    /// A JSON object, or 400.
    private static func parse(_ buffer: ByteBuffer) throws -> (BodyReader, ByteBuffer) {
        guard let value = JSONValue.parse(buffer.readableBytesView), case .object = value else {
            throw APIError.invalidJSON
        }
        return (BodyReader(value), buffer)
    }

    mutating func fail(_ field: String, _ message: String) {
        if !problems.contains(where: { $0.0 == field }) { problems.append((field, message)) }
    }

    func isPresent(_ field: String) -> Bool {
        if let value = object[field], value != .null { return true }
        return false
    }

    /// A string of `length` characters (after trimming); nil when absent or null.
    mutating func string(
        _ field: String, required: Bool, length: ClosedRange<Int> = 1...255,
        trim: Bool = true
    ) -> String? {
        switch object[field] {
        case nil, .null?:
            if required { fail(field, "is required") }
            return nil
        case .string(let raw)?:
            let value = trim ? raw.trimmingCharacters(in: .whitespacesAndNewlines) : raw
            guard length.contains(value.count) else {
                fail(
                    field,
                    value.isEmpty && required
                        ? "is required"
                        : "must be \(length.lowerBound) to \(length.upperBound) characters")
                return nil
            }
            guard !value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
                fail(field, "must not contain control characters")
                return nil
            }
            return value
        default:
            fail(field, "must be a string")
            return nil
        }
    }

    /// A string kept exactly as sent (line breaks and all, e.g. CSV `data`); nil when absent or null.
    mutating func text(_ field: String, required: Bool) -> String? {
        switch object[field] {
        case nil, .null?:
            if required { fail(field, "is required") }
            return nil
        case .string(let value)?:
            if value.isEmpty && required { fail(field, "is required") }
            return value
        default:
            fail(field, "must be a string")
            return nil
        }
    }

    mutating func int(_ field: String, required: Bool, range: ClosedRange<Int64>) -> Int64? {
        switch object[field] {
        case nil, .null?:
            if required { fail(field, "is required") }
            return nil
        case .int(let value)?:
            guard range.contains(value) else {
                fail(field, "must be between \(range.lowerBound) and \(range.upperBound)")
                return nil
            }
            return value
        default:
            fail(field, "must be an integer")
            return nil
        }
    }

    mutating func bool(_ field: String) -> Bool? {
        switch object[field] {
        case nil, .null?: return nil
        case .bool(let value)?: return value
        default:
            fail(field, "must be true or false")
            return nil
        }
    }

    mutating func stringArray(_ field: String, maxItems: Int, length: ClosedRange<Int> = 1...255) -> [String]? {
        switch object[field] {
        case nil, .null?: return nil
        case .array(let values)?:
            guard values.count <= maxItems else {
                fail(field, "must have at most \(maxItems) items")
                return nil
            }
            var result: [String] = []
            for value in values {
                guard case .string(let item) = value, length.contains(item.count),
                    !item.unicodeScalars.contains(where: { $0.value < 0x20 })
                else {
                    fail(
                        field,
                        "must be a list of folder names of \(length.lowerBound) to \(length.upperBound) characters")
                    return nil
                }
                if !result.contains(item) { result.append(item) }
            }
            return result
        default:
            fail(field, "must be a list of strings")
            return nil
        }
    }

    /// A list of 1 to `maxItems` strings kept as sent, repeats and all, for a caller that judges
    /// each item on its own (and answers per item); nil when absent or null.
    mutating func strings(_ field: String, maxItems: Int) -> [String]? {
        switch object[field] {
        case nil, .null?: return nil
        case .array(let values)?:
            guard (1...maxItems).contains(values.count) else {
                fail(field, "must have 1 to \(maxItems) items")
                return nil
            }
            var result: [String] = []
            for value in values {
                guard case .string(let item) = value else {
                    fail(field, "must be a list of strings")
                    return nil
                }
                result.append(item)
            }
            return result
        default:
            fail(field, "must be a list of strings")
            return nil
        }
    }

    /// Throws the collected `validation_error`, if any.
    func finish() throws(APIError) {
        if !problems.isEmpty { throw APIError.validation(problems) }
    }
}
