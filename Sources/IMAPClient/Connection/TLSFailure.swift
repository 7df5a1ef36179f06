/// Why a protected connection could not be made, in terms of what a person can change.
///
/// The TLS library's own wording (type names, reason codes, its source paths) never gets here: it
/// goes to the debug log where the error is classified.
public enum TLSFailure: Sendable, Equatable, CustomStringConvertible {
    /// The chain leads to no trusted root: self-signed, issued by a private or unknown CA, or expired.
    case certificateNotTrusted(host: String)
    /// The certificate is valid, but names neither this host name nor this address.
    case certificateNameMismatch(host: String)
    /// Implicit TLS (`ssl`) was asked for, and the port answered in plaintext.
    case portSpeaksPlaintext(host: String, port: Int)
    /// `none` or STARTTLS was asked for, and the port waits for a TLS handshake.
    case portSpeaksTLS(host: String, port: Int)
    case startTLSNotOffered
    case startTLSRefused(String)
    /// Bytes that arrived before the handshake would be unauthenticated plaintext (CVE-2011-0411 style).
    case dataBeforeHandshake
    /// The configured extra trust roots are not PEM certificates.
    case invalidTrustRoots
    /// Any other handshake failure; `reason` is already in plain words.
    case handshakeFailed(host: String, reason: String)

    /// What is wrong.
    public var problem: String {
        switch self {
        case .certificateNotTrusted(let host):
            "the certificate of \(host) is not trusted: it is self-signed, expired, or issued by a certificate authority we do not know"
        case .certificateNameMismatch(let host):
            "the certificate of \(host) is for another name: it does not list \(host)"
        case .portSpeaksPlaintext(let host, let port):
            "\(host):\(port) speaks plaintext IMAP, not TLS"
        case .portSpeaksTLS(let host, let port):
            "\(host):\(port) speaks TLS from the first byte, not plaintext IMAP"
        case .startTLSNotOffered:
            "the server does not offer STARTTLS, and we do not continue without encryption"
        case .startTLSRefused(let text):
            "the server refused STARTTLS: \(text)"
        case .dataBeforeHandshake:
            "the server sent data before the TLS handshake"
        case .invalidTrustRoots:
            "the CA file holds no PEM certificate we can read"
        case .handshakeFailed(let host, let reason):
            "the TLS handshake with \(host) failed: \(reason)"
        }
    }

    /// What a person can do about it.
    public var remedy: String {
        switch self {
        case .certificateNotTrusted:
            "if the server uses its own certificate, pass that certificate (or the CA that signed it) as a CA file"
        case .certificateNameMismatch:
            "connect with a host name the certificate was issued for (see the provider's mail client settings)"
        case .portSpeaksPlaintext:
            "use security none or tls (STARTTLS) for this port, or ssl with the server's TLS port (usually \(ConnectionSecurity.ssl.defaultPort))"
        case .portSpeaksTLS:
            "use security ssl for this port, or none/tls with the server's plaintext port (usually \(ConnectionSecurity.tls.defaultPort))"
        case .startTLSNotOffered:
            "use security ssl with the server's TLS port (usually \(ConnectionSecurity.ssl.defaultPort)) if it has one"
        case .startTLSRefused, .handshakeFailed:
            "check the security setting (ssl for port \(ConnectionSecurity.ssl.defaultPort), tls for STARTTLS on \(ConnectionSecurity.tls.defaultPort)); if it is right, the server's TLS setup needs fixing"
        case .dataBeforeHandshake:
            "something between us and the server tampers with the connection; do not continue over this network"
        case .invalidTrustRoots:
            "pass a file with one or more -----BEGIN CERTIFICATE----- blocks"
        }
    }

    public var description: String { "\(problem); \(remedy)" }
}
