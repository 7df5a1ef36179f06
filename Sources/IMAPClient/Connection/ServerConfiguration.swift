import NIOCore

/// How the connection is protected.
public enum ConnectionSecurity: String, Sendable, CaseIterable {
    /// Implicit TLS from the first byte (port 993).
    case ssl
    /// Plain connection upgraded with STARTTLS; refusing to go on in the clear if that fails.
    case tls
    /// No encryption.
    case none

    /// The IANA port for this kind of connection: 993 for implicit TLS (imaps), 143 for IMAP.
    public var defaultPort: Int { self == .ssl ? 993 : 143 }
}

/// Where and how to connect.
public struct ServerConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var security: ConnectionSecurity
    /// Verify the server certificate chain and name. Turning it off is an explicit opt-out.
    public var verifyCertificates: Bool
    /// Extra PEM certificates to trust (e.g. a private CA); the system roots stay trusted.
    public var additionalTrustRootsPEM: [String]
    public var connectTimeout: TimeAmount
    public var greetingTimeout: TimeAmount
    /// Longest silence accepted while a response is awaited.
    public var idleTimeout: TimeAmount
    public var limits: ParserLimits
    /// Decides, after DNS resolution, whether an address may be connected to.
    public var addressFilter: @Sendable (SocketAddress) -> Bool

    public init(
        host: String,
        port: Int,
        security: ConnectionSecurity,
        verifyCertificates: Bool = true,
        additionalTrustRootsPEM: [String] = [],
        connectTimeout: TimeAmount = .seconds(15),
        greetingTimeout: TimeAmount = .seconds(30),
        idleTimeout: TimeAmount = .seconds(120),
        limits: ParserLimits = ParserLimits(),
        addressFilter: @escaping @Sendable (SocketAddress) -> Bool = { _ in true }
    ) {
        self.host = host
        self.port = port
        self.security = security
        self.verifyCertificates = verifyCertificates
        self.additionalTrustRootsPEM = additionalTrustRootsPEM
        self.connectTimeout = connectTimeout
        self.greetingTimeout = greetingTimeout
        self.idleTimeout = idleTimeout
        self.limits = limits
        self.addressFilter = addressFilter
    }
}
