import IMAPClient

/// A classified reason an import (or a connection test) failed, with a hint a person can act on
/// (SPEC.md §7). The codes are the API's `error_code` values.
public struct ImportFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Codable, CaseIterable {
        case authenticationFailed = "authentication_failed"
        case connectionTimedOut = "connection_timed_out"
        case hostUnreachable = "host_unreachable"
        case tlsFailed = "tls_failed"
        case mailboxQuotaExceeded = "mailbox_quota_exceeded"
        case sourceThrottled = "source_throttled"
        case privateHostBlocked = "private_host_blocked"
        case protocolError = "protocol_error"
        case destinationUnavailable = "destination_unavailable"
        case cancelled
    }

    public var code: Code
    public var message: String
    public var hint: String
    /// Worth trying again later without changing anything.
    public var isRetryable: Bool {
        switch code {
        case .connectionTimedOut, .sourceThrottled, .destinationUnavailable, .hostUnreachable: true
        default: false
        }
    }

    public init(code: Code, message: String, hint: String) {
        self.code = code
        self.message = message
        self.hint = hint
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// Which end of a migration an error came from; the same IMAP error means different things.
public enum ImportSide: String, Sendable {
    case source
    case destination
}

/// Known source providers; presets and hints depend on them.
public enum Provider: String, Sendable, Codable, CaseIterable {
    case gmail
    case outlook
    case yahoo
    case icloud
    case genericIMAP = "generic_imap"

    /// Host and security a user of this provider needs not type; the port is the security's
    /// default. `server(host:port:security:)` applies it.
    public var preset: (host: String, security: ConnectionSecurity)? {
        switch self {
        case .gmail: ("imap.gmail.com", .ssl)
        case .outlook: ("outlook.office365.com", .ssl)
        case .yahoo: ("imap.mail.yahoo.com", .ssl)
        case .icloud: ("imap.mail.me.com", .ssl)
        case .genericIMAP: nil
        }
    }

    /// Connections to one account at once that stay clear of the provider's limit.
    public var maxConnections: Int {
        switch self {
        case .gmail: 4
        case .outlook, .yahoo, .icloud: 3
        case .genericIMAP: 4
        }
    }

    /// Gmail, Yahoo and iCloud refuse the account's normal password over IMAP.
    public var needsAppPassword: Bool { self == .gmail || self == .yahoo || self == .icloud }

    /// What to check when this provider refuses a login (SPEC.md §7): the hint of
    /// `authentication_failed`, and what the Import page shows before a login is tried.
    public var loginHint: String {
        switch self {
        case .gmail:
            "Google refuses normal passwords over IMAP: create an App Password at myaccount.google.com/apppasswords (2-Step Verification must be on) and use it."
        case .yahoo, .icloud:
            "\(self == .yahoo ? "Yahoo" : "iCloud") requires an App Password for IMAP; your regular password will not work."
        case .outlook, .genericIMAP:
            "Re-check the username and password. On cPanel-style hosts try the username without the domain (alice instead of alice@example.com), or the reverse."
        }
    }
}

extension ImportFailure {
    /// Turns a client error into the classified failure a user sees.
    public static func classify(_ error: Error, side: ImportSide, provider: Provider = .genericIMAP, host: String = "")
        -> ImportFailure
    {
        if let failure = error as? ImportFailure { return failure }
        if error is CancellationError {
            return ImportFailure(
                code: .cancelled, message: "The import was cancelled.", hint: "Retry it to continue where it stopped.")
        }
        guard let error = error as? IMAPError else {
            return ImportFailure(
                code: .protocolError, message: "Unexpected error: \(error)", hint: "Retry; if it persists, report it.")
        }
        let server = host.isEmpty ? "the \(side.rawValue) server" : host
        switch error.responseCode {
        case .overQuota?:
            return quotaExceeded(detail: serverText(error))
        case .throttled?, .limit?:
            if side == .destination { return destinationUnavailable(serverText(error)) }
            return ImportFailure(
                code: .sourceThrottled, message: "\(server) is limiting how fast we may read: \(serverText(error))",
                hint: "Mailporter backs off and retries; if it keeps failing, retry the import later.")
        case .unavailable?:
            if side == .destination { return destinationUnavailable(serverText(error)) }
            return ImportFailure(
                code: .sourceThrottled, message: "\(server) is temporarily unavailable: \(serverText(error))",
                hint: "Retry the import later.")
        default:
            break
        }
        switch error {
        case .authenticationFailed(let text):
            if side == .destination {
                return ImportFailure(
                    code: .authenticationFailed, message: "The destination mailbox refused the login: \(text.text)",
                    hint: "Check the target password, or the service's master-user settings.")
            }
            return authenticationFailed(text.text, provider: provider)
        case .connectionRefused(let host, let port):
            if side == .destination { return destinationUnavailable("connection refused by \(host):\(port)") }
            return ImportFailure(
                code: .hostUnreachable, message: "\(host) refused the connection on port \(port).",
                hint:
                    "Check the server address and port (IMAP over SSL is usually \(ConnectionSecurity.ssl.defaultPort), STARTTLS \(ConnectionSecurity.tls.defaultPort))."
            )
        case .hostUnreachable(let host, let detail):
            if side == .destination { return destinationUnavailable("\(host): \(detail)") }
            return ImportFailure(
                code: .hostUnreachable, message: "\(host) could not be reached: \(detail).",
                hint:
                    "Verify the server address (see your old host's mail client settings) and that its IMAP port is open."
            )
        case .timedOut(let phase):
            if side == .destination { return destinationUnavailable("timed out waiting for \(phase)") }
            return ImportFailure(
                code: .connectionTimedOut, message: "\(server) did not answer in time (waiting for \(phase)).",
                hint: "Verify the server address and port, and that no firewall blocks it; then retry.")
        case .tls(let failure):
            return tlsFailed(failure, side: side)
        case .addressNotAllowed(let host, let address):
            return ImportFailure(
                code: .privateHostBlocked, message: "\(host) resolves to \(address), a private or local address.",
                hint:
                    "Use the provider's public IMAP host. Operators can allow private hosts with MAILPORTER_ALLOW_PRIVATE_HOSTS=true."
            )
        case .connectionClosed(let text):
            if side == .destination {
                return destinationUnavailable("connection closed" + (text.map { ": \($0.text)" } ?? ""))
            }
            return ImportFailure(
                code: .connectionTimedOut,
                message: "\(server) closed the connection" + (text.map { ": \($0.text)" } ?? "") + ".",
                hint: "This is often temporary; retry the import.")
        case .protocolError(let detail), .capabilityMissing(let detail), .usage(let detail):
            return ImportFailure(
                code: .protocolError, message: "\(server) answered in a way we cannot use: \(detail)",
                hint: "Check that the host is an IMAP server; if it is, report this error.")
        case .commandFailed(let command, let status, let text):
            if side == .destination { return destinationUnavailable("\(command) \(status.rawValue): \(text.text)") }
            return ImportFailure(
                code: .protocolError, message: "\(server) refused \(command): \(text.text)",
                hint: "Retry; if it persists, check the account on the old provider.")
        }
    }

    static func serverText(_ error: IMAPError) -> String {
        switch error {
        case .commandFailed(_, _, let text), .authenticationFailed(let text): text.text
        case .connectionClosed(let text?): text.text
        default: error.description
        }
    }

    /// The TLS failure's own words; a certificate to trust is named with where each entry point takes it.
    static func tlsFailed(_ failure: TLSFailure, side: ImportSide) -> ImportFailure {
        var hint = failure.remedy
        if case .certificateNotTrusted = failure {
            hint +=
                side == .source
                ? " (mailporter test-connection --ca-file, migrate --source-ca-file; MAILPORTER_SOURCE_CA_FILE for the service)"
                : " (mailporter migrate --dest-ca-file; MAILPORTER_DEST_CA_FILE for the service)"
        }
        return ImportFailure(code: .tlsFailed, message: sentence(failure.problem), hint: sentence(hint))
    }

    /// "the port…" as "The port….".
    static func sentence(_ text: String) -> String {
        guard let first = text.first else { return text }
        return first.uppercased() + text.dropFirst() + (text.hasSuffix(".") ? "" : ".")
    }

    static func quotaExceeded(detail: String) -> ImportFailure {
        ImportFailure(
            code: .mailboxQuotaExceeded, message: "The destination mailbox is full: \(detail)",
            hint: "Upgrade the plan for more storage, or import recent mail first with the date filter (import_since).")
    }

    static func destinationUnavailable(_ detail: String) -> ImportFailure {
        ImportFailure(
            code: .destinationUnavailable, message: "The destination server is unavailable: \(detail)",
            hint: "This is on our side; the import can be retried once the service is back.")
    }

    static func authenticationFailed(_ serverText: String, provider: Provider) -> ImportFailure {
        ImportFailure(
            code: .authenticationFailed, message: "The source server refused the login: \(serverText)",
            hint: provider.loginHint)
    }
}
