/// Why an IMAP operation failed. Server text is kept so callers can show it and classify it.
public enum IMAPError: Error, Sendable, CustomStringConvertible {
    /// Nothing listens on the port.
    case connectionRefused(host: String, port: Int)
    /// The name does not resolve, or no route leads to it.
    case hostUnreachable(host: String, detail: String)
    /// No answer within the limit; `phase` says what was waited for (connect, greeting, response).
    case timedOut(phase: String)
    /// Certificate or handshake failure, the wrong kind of port, or STARTTLS refused: never falls
    /// back to clear text.
    case tls(TLSFailure)
    /// The server closed the connection, with its BYE text if it sent one.
    case connectionClosed(ResponseText?)
    /// LOGIN / AUTHENTICATE was refused.
    case authenticationFailed(ResponseText)
    /// A command got NO or BAD.
    case commandFailed(command: String, status: ResponseStatus, text: ResponseText)
    /// The server's bytes broke the grammar or a limit.
    case protocolError(String)
    /// A required capability is missing (e.g. STARTTLS, AUTH=PLAIN).
    case capabilityMissing(String)
    /// The address is not one this client may connect to.
    case addressNotAllowed(host: String, address: String)
    /// The caller misused the client (e.g. a body shorter than announced).
    case usage(String)

    /// The response code carried by the server's reply, if any.
    public var responseCode: ResponseCode? {
        switch self {
        case .connectionClosed(let text): text?.code
        case .authenticationFailed(let text): text.code
        case .commandFailed(_, _, let text): text.code
        default: nil
        }
    }

    public var description: String {
        switch self {
        case .connectionRefused(let host, let port): "connection refused by \(host):\(port)"
        case .hostUnreachable(let host, let detail): "\(host) is unreachable: \(detail)"
        case .timedOut(let phase): "timed out waiting for \(phase)"
        case .tls(let failure): "TLS failed: \(failure)"
        case .connectionClosed(let text): "server closed the connection" + (text.map { ": \($0.text)" } ?? "")
        case .authenticationFailed(let text): "authentication failed: \(text.text)"
        case .commandFailed(let command, let status, let text): "\(command) failed: \(status.rawValue) \(text.text)"
        case .protocolError(let detail): "protocol error: \(detail)"
        case .capabilityMissing(let name): "server does not offer \(name)"
        case .addressNotAllowed(let host, let address): "connections to \(host) (\(address)) are not allowed"
        case .usage(let detail): "client misuse: \(detail)"
        }
    }
}
