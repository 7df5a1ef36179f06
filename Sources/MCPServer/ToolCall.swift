import Foundation
import MCP

/// Why a tool call was refused before anything was sent, as an error result shows it.
public struct ToolRefusal: Error, Sendable, Equatable {
    public var code: String
    public var message: String
    public var hint: String

    public init(code: String, message: String, hint: String) {
        self.code = code
        self.message = message
        self.hint = hint
    }
}

extension ToolDefinition {
    /// The REST request for `arguments`, or why none is sent: a write needing
    /// `MAILPORTER_ALLOW_MIGRATION=true` while it is false, a missing confirmation, an unknown
    /// argument or a bad id. Field values are the API's to check (its `validation_error` comes back
    /// with the field named); ids are checked here because they go into the path.
    public func request(_ arguments: [String: Value], allowMigration: Bool, idempotencyKey: @autoclosure () -> String)
        -> Result<APIRequest, ToolRefusal>
    {
        if needsAllowMigration && !allowMigration {
            return .failure(Self.gated(name))
        }
        let unknown = arguments.keys.filter { !argumentNames.contains($0) }.sorted()
        if !unknown.isEmpty {
            return .failure(
                ToolRefusal(
                    code: "invalid_arguments",
                    message: "\(name) does not take \(unknown.joined(separator: ", ")).",
                    hint: "Use only the parameters of the tool's input schema."))
        }
        if let confirmation, arguments[confirmation] != .bool(true) {
            return .failure(
                ToolRefusal(
                    code: "confirmation_required",
                    message: "\(name) needs \(confirmation) set to true; nothing was done.",
                    hint: "Ask the user to confirm, then call \(name) again with \(confirmation): true."))
        }
        var idValues: [Int] = []
        for id in ids {
            guard let value = arguments[id], let number = Self.positiveInteger(value) else {
                return .failure(
                    ToolRefusal(
                        code: "invalid_arguments", message: "\(id) must be a positive integer.",
                        hint: "Take the id from the record of a list or get tool."))
            }
            idValues.append(number)
        }
        var path = path(idValues)
        let queryItems = fields.filter { $0.placement == .query }.compactMap { field -> String? in
            guard let value = arguments[field.name], let text = Self.queryText(value) else { return nil }
            return "\(Self.percentEncoded(field.name))=\(Self.percentEncoded(text))"
        }
        if !queryItems.isEmpty { path += "?" + queryItems.joined(separator: "&") }

        var body: [UInt8]?
        let bodyFields = fields.filter { $0.placement == .body }
        if method != "GET" && !bodyFields.isEmpty {
            var object: [String: Value] = [:]
            for field in bodyFields { if let value = arguments[field.name] { object[field.name] = value } }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            body = (try? encoder.encode(Value.object(object))).map { Array($0) } ?? Array("{}".utf8)
        }
        var key: String?
        if isWrite {
            // The bulk start's own field, else the agent's optional key, else a fresh one per call (so
            // the bounded retries after a 429 or 503 replay rather than repeat).
            key = arguments["idempotency_key"]?.stringValue ?? idempotencyKey()
        }
        return .success(APIRequest(method: method, path: path, body: body, idempotencyKey: key))
    }

    static func gated(_ name: String) -> ToolRefusal {
        ToolRefusal(
            code: "migration_writes_disabled",
            message: "\(name) is turned off: this MCP server runs with MAILPORTER_ALLOW_MIGRATION=false.",
            hint:
                "Set MAILPORTER_ALLOW_MIGRATION=true where the server is configured to allow it. Cancel and resume always work."
        )
    }

    static func positiveInteger(_ value: Value) -> Int? {
        switch value {
        case .int(let number) where number >= 1: number
        case .double(let number) where number >= 1 && number == number.rounded() && number < 9e15: Int(number)
        case .string(let text): Int(text).flatMap { $0 >= 1 ? $0 : nil }
        default: nil
        }
    }

    static func queryText(_ value: Value) -> String? {
        switch value {
        case .string(let text): text
        case .int(let number): String(number)
        case .double(let number) where number == number.rounded() && abs(number) < 9e15: String(Int(number))
        case .bool(let flag): flag ? "true" : "false"
        default: nil
        }
    }

    static func percentEncoded(_ text: String) -> String {
        let allowed = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }
}
