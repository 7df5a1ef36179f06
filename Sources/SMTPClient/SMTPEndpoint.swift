/// Where the relay is and how the connection is protected, from `MAILPORTER_SMTP_URL`:
/// `smtp://host:587` (STARTTLS required), `smtp://host:25?starttls=off` (a local relay in the
/// clear), `smtps://host:465` (TLS from the first byte).
public struct SMTPEndpoint: Sendable, Equatable {
    public enum Security: String, Sendable, Equatable {
        /// TLS from the first byte (port 465, RFC 8314).
        case implicitTLS
        /// STARTTLS, and no mail in the clear when the server does not offer it.
        case startTLS
        /// No TLS: only for a relay on the same host or network, said so in the URL.
        case plain
    }

    public var host: String
    public var port: Int
    public var security: Security

    public init(host: String, port: Int, security: Security) {
        self.host = host
        self.port = port
        self.security = security
    }

    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// Parses the URL; the error says what form is expected. Credentials in the URL are refused,
    /// so a password never sits in a value that is printed or logged.
    public init(url text: String) throws(ParseError) {
        let forms = "use smtp://host:587, smtps://host:465 or smtp://host:25?starttls=off"
        func fail(_ why: String) -> ParseError { ParseError(description: "MAILPORTER_SMTP_URL \(why); \(forms)") }
        let trimmed = text.trimmingWhitespace
        guard let schemeEnd = trimmed.range(of: "://") else { throw fail("has no scheme") }
        let scheme = trimmed[..<schemeEnd.lowerBound].lowercased()
        var rest = trimmed[schemeEnd.upperBound...]
        var query = ""
        if let mark = rest.firstIndex(of: "?") {
            query = String(rest[rest.index(after: mark)...])
            rest = rest[..<mark]
        }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        guard !rest.contains("@") else {
            throw fail("must not hold credentials (set MAILPORTER_SMTP_USER and MAILPORTER_SMTP_PASSWORD)")
        }
        guard !rest.contains("/") else { throw fail("must not have a path") }
        var host = Substring(rest)
        var portText: Substring?
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { throw fail("has an unclosed [ in its host") }
            let after = host[host.index(after: close)...]
            if after.hasPrefix(":") {
                portText = after.dropFirst()
            } else if !after.isEmpty {
                throw fail("has a bad host")
            }
            host = host[host.index(after: host.startIndex)..<close]
        } else if let colon = host.lastIndex(of: ":") {
            portText = host[host.index(after: colon)...]
            host = host[..<colon]
        }
        guard !host.isEmpty, host.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else { throw fail("has no host") }
        var port: Int?
        if let portText {
            guard let number = Int(portText), (1...65535).contains(number) else {
                throw fail("has a port that is not 1-65535")
            }
            port = number
        }
        var startTLS = true
        for pair in query.split(separator: "&") where !pair.isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1).map { $0.lowercased() }
            guard parts.count == 2, parts[0] == "starttls" else { throw fail("has an unknown parameter \(pair)") }
            switch parts[1] {
            case "off", "false": startTLS = false
            case "on", "true", "required": startTLS = true
            default: throw fail("has starttls=\(parts[1]) (use starttls=off)")
            }
        }
        switch scheme {
        case "smtp":
            self.init(host: String(host), port: port ?? 587, security: startTLS ? .startTLS : .plain)
        case "smtps":
            guard startTLS else { throw fail("cannot turn STARTTLS off for smtps (it is TLS from the start)") }
            self.init(host: String(host), port: port ?? 465, security: .implicitTLS)
        default:
            throw fail("has the scheme \(scheme)")
        }
    }

    /// The URL as it can be shown (no credentials are ever part of it).
    public var displayURL: String {
        let bracketed = host.contains(":") ? "[\(host)]" : host
        switch security {
        case .implicitTLS: return "smtps://\(bracketed):\(port)"
        case .startTLS: return "smtp://\(bracketed):\(port)"
        case .plain: return "smtp://\(bracketed):\(port)?starttls=off"
        }
    }
}

extension StringProtocol {
    var trimmingWhitespace: String {
        String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
