import MCP

/// JSON Schema fragments the tool table is written in, so each field reads as one line.
enum Schema {
    static func string(_ description: String, maxLength: Int? = 255, enum values: [String]? = nil) -> Value {
        var schema: [String: Value] = ["type": "string", "description": .string(description)]
        if let values { schema["enum"] = .array(values.map(Value.string)) }
        if let maxLength, values == nil { schema["maxLength"] = .int(maxLength) }
        return .object(schema)
    }

    /// A secret: `writeOnly`, so a host may mask it in its UI.
    static func password(_ description: String) -> Value {
        .object([
            "type": "string", "description": .string(description), "minLength": 1, "maxLength": 255,
            "writeOnly": true,
        ])
    }

    static func integer(_ description: String, minimum: Int = 1, maximum: Int? = nil) -> Value {
        var schema: [String: Value] = [
            "type": "integer", "description": .string(description), "minimum": .int(minimum),
        ]
        if let maximum { schema["maximum"] = .int(maximum) }
        return .object(schema)
    }

    static func boolean(_ description: String) -> Value {
        .object(["type": "boolean", "description": .string(description)])
    }

    static func date(_ description: String) -> Value {
        .object([
            "type": "string", "description": .string(description), "pattern": #"^\d{4}-\d{2}-\d{2}$"#,
            "minLength": 10, "maxLength": 10,
        ])
    }

    static func strings(_ description: String, maxItems: Int) -> Value {
        .object([
            "type": "array", "description": .string(description), "minItems": 1, "maxItems": .int(maxItems),
            "items": ["type": "string", "minLength": 1, "maxLength": 255],
        ])
    }

    /// `"type": "object"` with the fields in order and the required ones named; nothing else accepted.
    static func object(_ properties: [(String, Value)], required: [String]) -> Value {
        .object([
            "type": "object",
            "properties": .object(Dictionary(properties, uniquingKeysWith: { first, _ in first })),
            "required": .array(required.map(Value.string)),
            "additionalProperties": false,
        ])
    }

    /// An output schema: an object with at least these members, more allowed (the API may grow).
    static func output(_ properties: [(String, Value)], required: [String]) -> Value {
        .object([
            "type": "object",
            "properties": .object(Dictionary(properties, uniquingKeysWith: { first, _ in first })),
            "required": .array(required.map(Value.string)),
        ])
    }

    static func types(_ names: String...) -> Value {
        .object(["type": .array(names.map(Value.string))])
    }
}
