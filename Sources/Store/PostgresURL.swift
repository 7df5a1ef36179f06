import Foundation

/// A `postgres://user:password@host:port/database?sslmode=…` URL, parsed once so that the CLI can
/// refuse a bad one at start-up and every message can name the database without its password.
public struct PostgresURL: Sendable, Equatable {
    /// How the connection uses TLS (libpq's `sslmode` names are accepted; see `parse`).
    public enum TLSMode: String, Sendable, Equatable {
        /// Plain TCP.
        case disable
        /// TLS when the server offers it, with full certificate and host name verification.
        case prefer
        /// TLS or no connection, with full certificate and host name verification.
        case require
    }

    public var host: String
    public var port: Int
    public var username: String
    /// Never printed: `redacted` and `description` leave it out.
    public var password: String?
    public var database: String
    public var tls: TLSMode

    /// A problem with the URL itself, worded for the person who set it (never quoting the password).
    public struct Invalid: Error, Equatable, CustomStringConvertible {
        public var reason: String
        public var description: String { reason }
    }

    public static let defaultPort = 5432

    /// Parses `postgres://` or `postgresql://` URLs. The user name, host and database are required
    /// (one server holds many databases; guessing one would migrate the wrong schema); the port
    /// defaults to 5432; `sslmode` (or `tlsmode`) is `disable`, `prefer` (default; also `allow`) or
    /// `require` (also `verify-ca`, `verify-full`). Percent-escapes in user and password are decoded.
    public static func parse(_ text: String) throws(Invalid) -> PostgresURL {
        let example = "postgres://USER:PASSWORD@HOST:5432/DATABASE"
        guard let components = URLComponents(string: text) else {
            throw Invalid(reason: "the PostgreSQL URL is not a valid URL; expected \(example)")
        }
        guard let scheme = components.scheme?.lowercased(), scheme == "postgres" || scheme == "postgresql" else {
            throw Invalid(reason: "a PostgreSQL URL starts with postgres://; expected \(example)")
        }
        guard let host = components.host, !host.isEmpty else {
            throw Invalid(reason: "the PostgreSQL URL names no host; expected \(example)")
        }
        guard let username = components.user, !username.isEmpty else {
            throw Invalid(reason: "the PostgreSQL URL names no user; expected \(example)")
        }
        let database = String(components.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty, !database.contains("/") else {
            throw Invalid(reason: "the PostgreSQL URL names no database (the path after the port); expected \(example)")
        }
        let port = components.port ?? defaultPort
        guard (1...65535).contains(port) else {
            throw Invalid(reason: "the PostgreSQL URL's port must be between 1 and 65535")
        }
        var tls = TLSMode.prefer
        for item in components.queryItems ?? [] {
            switch item.name.lowercased() {
            case "sslmode", "tlsmode":
                switch item.value?.lowercased() ?? "" {
                case "disable": tls = .disable
                case "allow", "prefer": tls = .prefer
                case "require", "verify-ca", "verify-full": tls = .require
                default:
                    throw Invalid(reason: "sslmode must be disable, prefer or require")
                }
            default:
                throw Invalid(reason: "unknown PostgreSQL URL parameter \(item.name); only sslmode is understood")
            }
        }
        return PostgresURL(
            host: host, port: port, username: username, password: components.password,
            database: database.removingPercentEncoding ?? database, tls: tls)
    }

    /// The URL with the password replaced by `***`: what logs and messages show.
    public var redacted: String {
        let userPart = password == nil ? username : "\(username):***"
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return "postgres://\(userPart)@\(hostPart):\(port)/\(database)"
    }
}

extension PostgresURL: CustomStringConvertible {
    public var description: String { redacted }
}
