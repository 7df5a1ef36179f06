import Foundation

/// A setting that stops the start, with the one line that says what to fix.
public struct MCPConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) { self.description = description }
}

public enum MCPConfiguration {
    /// `MAILPORTER_ALLOW_MIGRATION`: exactly `true` or `false`, false when unset. Anything else
    /// stops the start, as a typo must not quietly leave writes off (or on).
    public static func allowMigration(_ environment: [String: String]) throws(MCPConfigurationError) -> Bool {
        switch environment["MAILPORTER_ALLOW_MIGRATION"] {
        case nil, "false": return false
        case "true": return true
        case let other?:
            throw MCPConfigurationError(
                "MAILPORTER_ALLOW_MIGRATION must be exactly true or false, not \"\(other.prefix(40))\"")
        }
    }
}

/// What `mailporter mcp` needs: where the API is, the token, and the gate.
public struct StdioConfiguration: Sendable, Equatable {
    /// Scheme, host and port (and a path prefix, if any), without a trailing slash.
    public var baseURL: String
    public var token: String
    public var allowMigration: Bool

    public init(environment: [String: String]) throws(MCPConfigurationError) {
        let url = environment["MAILPORTER_URL"]?.trimmingCharacters(in: .whitespaces) ?? ""
        guard !url.isEmpty else {
            throw MCPConfigurationError(
                "MAILPORTER_URL is not set; set it to the server's address, e.g. http://127.0.0.1:8080")
        }
        guard let parsed = URLComponents(string: url), let scheme = parsed.scheme?.lowercased(),
            scheme == "http" || scheme == "https", let host = parsed.host, !host.isEmpty,
            parsed.query == nil, parsed.user == nil
        else {
            throw MCPConfigurationError(
                "MAILPORTER_URL must be an http:// or https:// address such as http://127.0.0.1:8080, not \"\(url.prefix(80))\""
            )
        }
        baseURL = url.hasSuffix("/") ? String(url.dropLast()) : url
        let token = environment["MAILPORTER_API_TOKEN"]?.trimmingCharacters(in: .whitespaces) ?? ""
        guard !token.isEmpty else {
            throw MCPConfigurationError(
                "MAILPORTER_API_TOKEN is not set; create one with `mailporter tokens create` and set it")
        }
        self.token = token
        allowMigration = try MCPConfiguration.allowMigration(environment)
    }
}
