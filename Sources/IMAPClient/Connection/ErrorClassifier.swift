import Logging
import NIOCore
import NIOPosix
import NIOSSL

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Turns what the socket layer, NIO and NIOSSL throw into `IMAPError`s a person can act on.
///
/// Matches on the error types and the platform's errno names, never on type-name strings or
/// Linux errno numbers. The library's own description (type names, BoringSSL reason codes and
/// the source paths of its build) goes to the debug log only.
struct ErrorClassifier: Sendable {
    let host: String
    let port: Int
    let logger: Logger

    /// Whether the error came while connecting (errors a running session cannot meet then mean
    /// the host is unreachable, not that a connection was lost).
    enum Phase: Sendable { case connecting, session }

    init(host: String, port: Int, logger: Logger = Logger(label: "mailporter.imap")) {
        self.host = host
        self.port = port
        self.logger = logger
    }

    init(_ configuration: ServerConfiguration, logger: Logger) {
        self.init(host: configuration.host, port: configuration.port, logger: logger)
    }

    func classify(_ error: Error, phase: Phase = .session) -> IMAPError {
        if let error = error as? IMAPError { return error }
        let classified = classifyLibraryError(error, phase: phase)
        logger.debug(
            "connection error",
            metadata: [
                "host": "\(host)", "port": "\(port)", "error": "\(String(reflecting: error))",
                "classified": "\(classified)",
            ])
        return classified
    }

    private func classifyLibraryError(_ error: Error, phase: Phase) -> IMAPError {
        switch error {
        case let error as ChannelError:
            if case .connectTimeout = error { return connectTimedOut }
            // Closed channels, half-closures and EOF: the connection is gone, which is retried.
            return .connectionClosed(nil)
        case let error as IOError:
            return classify(errno: error.errnoCode, phase: phase)
        case let error as NIOConnectionError:
            if error.dnsAError != nil || error.dnsAAAAError != nil, error.connectionErrors.isEmpty {
                return .hostUnreachable(host: host, detail: "the name could not be resolved")
            }
            return error.connectionErrors.first.map { classifyLibraryError($0.error, phase: .connecting) }
                ?? .hostUnreachable(host: host, detail: "no address could be connected to")
        case is SocketAddressError, is SocketAddressError.UnknownHost:
            return .hostUnreachable(host: host, detail: "the name could not be resolved")
        case let error as NIOSSLError:
            return classify(error)
        case let error as BoringSSLError:
            return classify(handshake: error)
        case let error as NIOSSLExtraError:
            if error == .failedToValidateHostname { return .tls(.certificateNameMismatch(host: host)) }
            if error == .cannotUseIPAddressInSNI || error == .invalidSNIHostname
                || error == .serverHostnameImpossibleToMatch
            {
                return .tls(.handshakeFailed(host: host, reason: "\(host) cannot be used as a TLS server name"))
            }
            return .tls(.handshakeFailed(host: host, reason: "the connection could not be secured"))
        case is NIOSSLCloseTimedOutError, is NIOTLSUnwrappingError:
            return .connectionClosed(nil)
        default:
            return .connectionClosed(nil)
        }
    }

    private var connectTimedOut: IMAPError { .timedOut(phase: "the connection to \(host):\(port)") }

    func classify(errno code: CInt, phase: Phase) -> IMAPError {
        switch code {
        case ECONNREFUSED:
            return .connectionRefused(host: host, port: port)
        case ETIMEDOUT:
            return connectTimedOut
        case ECONNRESET, EPIPE, ECONNABORTED, ENOTCONN, ESHUTDOWN:
            // A drop, retried like one.
            return .connectionClosed(nil)
        case EHOSTUNREACH, EHOSTDOWN:
            return .hostUnreachable(host: host, detail: "no route to host")
        case ENETUNREACH, ENETDOWN, EADDRNOTAVAIL, EAFNOSUPPORT:
            return .hostUnreachable(host: host, detail: "the network cannot reach it from here")
        default:
            return phase == .connecting
                ? .hostUnreachable(host: host, detail: Self.systemMessage(code))
                : .connectionClosed(nil)
        }
    }

    private func classify(_ error: NIOSSLError) -> IMAPError {
        switch error {
        case .handshakeFailed(let reason):
            return classify(handshake: reason)
        case .failedToLoadCertificate, .failedToLoadPrivateKey, .noSuchFilesystemObject:
            return .tls(.invalidTrustRoots)
        case .noCertificateToValidate, .unableToValidateCertificate:
            return .tls(.certificateNotTrusted(host: host))
        case .cannotMatchULabel:
            return .tls(.handshakeFailed(host: host, reason: "\(host) cannot be used as a TLS server name"))
        // A TCP drop under TLS surfaces as an unclean shutdown; it is a dropped connection, not a
        // certificate or handshake problem, and must be retried like one.
        case .uncleanShutdown, .shutdownFailed, .writeDuringTLSShutdown, .readInInvalidTLSState, .cannotFindPeerIP:
            return .connectionClosed(nil)
        default:
            return .connectionClosed(nil)
        }
    }

    private func classify(handshake error: BoringSSLError) -> IMAPError {
        switch error {
        case .sslError(let stack), .unknownError(let stack), .invalidSNIName(let stack), .failedToSetALPN(let stack):
            if stack.contains(.eofDuringHandshake) || stack.contains(.eofDuringAdditionalCertficiateChainValidation) {
                return .tls(
                    .handshakeFailed(host: host, reason: "the server closed the connection during the handshake"))
            }
            for entry in stack {
                if let failure = tlsFailure(forReason: Self.reason(in: entry.description)) { return .tls(failure) }
            }
            let reasons = stack.compactMap { Self.reason(in: $0.description) }
            return .tls(.handshakeFailed(host: host, reason: Self.plainWords(reasons.last)))
        case .zeroReturn, .syscallError:
            return .tls(.handshakeFailed(host: host, reason: "the server closed the connection during the handshake"))
        default:
            return .tls(.handshakeFailed(host: host, reason: "the connection could not be secured"))
        }
    }

    /// The failures a BoringSSL reason name stands for, where one is known.
    func tlsFailure(forReason reason: String?) -> TLSFailure? {
        switch reason {
        case "CERTIFICATE_VERIFY_FAILED":
            return .certificateNotTrusted(host: host)
        case "WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST":
            return .portSpeaksPlaintext(host: host, port: port)
        case "UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION":
            return .handshakeFailed(host: host, reason: "the server offers no TLS version we accept (1.2 or newer)")
        case "NO_SHARED_CIPHER", "NO_CIPHERS_AVAILABLE", "NO_COMMON_SIGNATURE_ALGORITHMS",
            "SSLV3_ALERT_HANDSHAKE_FAILURE":
            return .handshakeFailed(host: host, reason: "the server and we have no cipher in common")
        case "TLSV1_ALERT_UNRECOGNIZED_NAME":
            return .handshakeFailed(host: host, reason: "the server does not know the name \(host)")
        case "TLSV1_CERTIFICATE_REQUIRED", "SSLV3_ALERT_BAD_CERTIFICATE":
            return .handshakeFailed(host: host, reason: "the server wants a client certificate")
        default:
            return nil
        }
    }

    /// The reason name in a BoringSSL error line such as
    /// `Error: 268435581 error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED at /path/ssl.cc:123`.
    static func reason(in description: Substring) -> String? {
        guard let start = description.firstRange(of: "error:") else { return nil }
        var line = description[start.upperBound...]
        if let path = line.firstRange(of: " at ") { line = line[..<path.lowerBound] }
        guard let reason = line.split(separator: ":").last, line.split(separator: ":").count >= 4 else { return nil }
        return String(reason)
    }

    static func reason(in description: String) -> String? { reason(in: Substring(description)) }

    /// `BAD_ECC_CERT` as "bad ecc cert": still the library's term, but neither a type name nor a path.
    static func plainWords(_ reason: String?) -> String {
        guard let reason, !reason.isEmpty else { return "the connection could not be secured" }
        return "the connection could not be secured (" + String(reason.lowercased().map { $0 == "_" ? " " : $0 }) + ")"
    }

    static func systemMessage(_ code: CInt) -> String {
        guard let text = strerror(code) else { return "error \(code)" }
        return String(cString: text).lowercased()
    }
}
