/// Why a mail was not delivered, classified for the outbox: a transient failure is tried again
/// later with backoff, a permanent one is recorded and not tried again.
///
/// Messages name the server's words and what to check; never a password, nor a library's type.
public enum SMTPError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The server answered 4xx (RFC 5321 §4.2.1: the same command may succeed later).
    case transientReply(step: String, reply: SMTPReply)
    /// The server answered 5xx: it will refuse the same again.
    case permanentReply(step: String, reply: SMTPReply)
    /// The server's reply did not fit the step (say, 354 to MAIL FROM).
    case unexpectedReply(step: String, reply: SMTPReply)
    case connectionFailed(host: String, port: Int, detail: String)
    case connectionClosed(step: String)
    case timedOut(step: String)
    case tls(String)
    /// The session cannot go on safely or as configured (no STARTTLS, AUTH without TLS, no mechanism).
    case refused(String)
    case protocolError(String)
    /// The message or its configuration is wrong (a line over 998 octets, a bad address).
    case invalidMessage(String)

    /// Whether trying again later may succeed.
    public var isTransient: Bool {
        switch self {
        case .transientReply, .connectionFailed, .connectionClosed, .timedOut: true
        case .permanentReply, .unexpectedReply, .tls, .refused, .protocolError, .invalidMessage: false
        }
    }

    /// A stable code for the outbox and the API.
    public var code: String {
        switch self {
        case .transientReply: "smtp_deferred"
        case .permanentReply: "smtp_rejected"
        case .unexpectedReply, .protocolError: "protocol_error"
        case .connectionFailed: "host_unreachable"
        case .connectionClosed: "connection_closed"
        case .timedOut: "connection_timed_out"
        case .tls: "tls_failed"
        case .refused: "smtp_refused"
        case .invalidMessage: "invalid_message"
        }
    }

    public var description: String {
        switch self {
        case .transientReply(let step, let reply):
            "the mail server deferred \(step) with \(reply.code) \(reply.text); it is tried again later"
        case .permanentReply(let step, let reply):
            "the mail server refused \(step) with \(reply.code) \(reply.text)"
        case .unexpectedReply(let step, let reply):
            "the mail server answered \(step) with an unexpected \(reply.code) \(reply.text)"
        case .connectionFailed(let host, let port, let detail):
            "could not connect to the mail server \(host):\(port): \(detail)"
        case .connectionClosed(let step):
            "the mail server closed the connection during \(step)"
        case .timedOut(let step):
            "the mail server did not answer \(step) in time"
        case .tls(let detail):
            "TLS with the mail server failed: \(detail)"
        case .refused(let detail), .protocolError(let detail), .invalidMessage(let detail):
            detail
        }
    }
}
