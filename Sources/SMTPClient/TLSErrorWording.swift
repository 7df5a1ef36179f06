import NIOCore
import NIOPosix
import NIOSSL

#if canImport(Glibc)
    import Glibc
#endif

/// Turns what NIO and NIOSSL throw into `SMTPError`s in words a person can act on: never a
/// library's type name, reason code path or build path.
enum TLSErrorWording {
    static func classify(_ error: Error, host: String, port: Int) -> SMTPError {
        switch error {
        case let error as SMTPError:
            return error
        case let error as NIOSSLError:
            switch error {
            case .handshakeFailed(let inner):
                return .tls(handshake(inner))
            case .noCertificateToValidate, .unableToValidateCertificate:
                return .tls("the server's certificate is not trusted (set MAILPORTER_SMTP_CA_FILE for a private CA)")
            case .failedToLoadCertificate, .failedToLoadPrivateKey, .noSuchFilesystemObject:
                return .tls("the CA file could not be read as PEM certificates")
            default:
                return .connectionClosed(step: "the TLS session")
            }
        case let error as NIOSSLExtraError where error == .failedToValidateHostname:
            return .tls("the server's certificate is not valid for \(host)")
        case let error as BoringSSLError:
            return .tls(handshake(error))
        case let error as ChannelError:
            if case .connectTimeout = error { return .timedOut(step: "the connection") }
            return .connectionClosed(step: "the session")
        case let error as IOError:
            return .connectionFailed(host: host, port: port, detail: systemMessage(error.errnoCode))
        case let error as NIOConnectionError:
            if let first = error.connectionErrors.first?.error { return classify(first, host: host, port: port) }
            return .connectionFailed(host: host, port: port, detail: "the name could not be resolved")
        default:
            return .connectionFailed(host: host, port: port, detail: "the connection failed")
        }
    }

    private static func handshake(_ error: BoringSSLError) -> String {
        let text = "\(error)"
        if text.contains("CERTIFICATE_VERIFY_FAILED") {
            return "the server's certificate is not trusted (set MAILPORTER_SMTP_CA_FILE for a private CA)"
        }
        if text.contains("WRONG_VERSION_NUMBER") {
            return "the port does not speak TLS (use smtp:// for STARTTLS, smtps:// for TLS from the start)"
        }
        if text.contains("UNSUPPORTED_PROTOCOL") || text.contains("PROTOCOL_VERSION") {
            return "the server offers no TLS version we accept (1.2 or newer)"
        }
        return "the handshake failed"
    }

    static func systemMessage(_ code: CInt) -> String {
        guard let text = strerror(code) else { return "error \(code)" }
        return String(cString: text).lowercased()
    }
}
