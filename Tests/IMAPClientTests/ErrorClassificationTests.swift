import Logging
import NIOCore
import NIOPosix
import Synchronization
import NIOSSL
import Testing
@testable import IMAPClient

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What the socket layer, NIO and NIOSSL throw, and what a person reads for it. No sockets.
@Suite("Transport error classification")
struct ErrorClassificationTests {
    let classifier = ErrorClassifier(host: "imap.example.net", port: 993)

    struct SomethingElse: Error, CustomStringConvertible {
        var description: String { "SomethingElse(detail: internal)" }
    }

    static let table: [(error: any Error & Sendable, phase: ErrorClassifier.Phase, expected: IMAPError)] = [
        (
            IOError(errnoCode: ECONNREFUSED, reason: "connect"), .connecting,
            .connectionRefused(host: "imap.example.net", port: 993)
        ),
        (
            IOError(errnoCode: EHOSTUNREACH, reason: "connect"), .connecting,
            .hostUnreachable(host: "imap.example.net", detail: "no route to host")
        ),
        (
            IOError(errnoCode: ENETUNREACH, reason: "connect"), .connecting,
            .hostUnreachable(host: "imap.example.net", detail: "the network cannot reach it from here")
        ),
        (
            IOError(errnoCode: EADDRNOTAVAIL, reason: "connect"), .connecting,
            .hostUnreachable(host: "imap.example.net", detail: "the network cannot reach it from here")
        ),
        (
            IOError(errnoCode: ETIMEDOUT, reason: "connect"), .connecting,
            .timedOut(phase: "the connection to imap.example.net:993")
        ),
        (
            IOError(errnoCode: EACCES, reason: "connect"), .connecting,
            .hostUnreachable(host: "imap.example.net", detail: "permission denied")
        ),
        (IOError(errnoCode: ECONNRESET, reason: "read"), .session, .connectionClosed(nil)),
        (IOError(errnoCode: EPIPE, reason: "write"), .session, .connectionClosed(nil)),
        (IOError(errnoCode: EACCES, reason: "read"), .session, .connectionClosed(nil)),
        (
            ChannelError.connectTimeout(.seconds(15)), .connecting,
            .timedOut(phase: "the connection to imap.example.net:993")
        ),
        (ChannelError.ioOnClosedChannel, .session, .connectionClosed(nil)),
        (ChannelError.eof, .session, .connectionClosed(nil)),
        (
            SocketAddressError.failedToParseIPString("imap.example.net"), .connecting,
            .hostUnreachable(host: "imap.example.net", detail: "the name could not be resolved")
        ),
        (NIOSSLError.uncleanShutdown, .session, .connectionClosed(nil)),
        (
            NIOSSLError.handshakeFailed(.sslError([.eofDuringHandshake])), .session,
            .tls(
                .handshakeFailed(
                    host: "imap.example.net", reason: "the server closed the connection during the handshake"))
        ),
        (NIOSSLError.failedToLoadCertificate, .connecting, .tls(.invalidTrustRoots)),
        (NIOSSLExtraError.failedToValidateHostname, .session, .tls(.certificateNameMismatch(host: "imap.example.net"))),
        (
            NIOSSLExtraError.cannotUseIPAddressInSNI, .session,
            .tls(
                .handshakeFailed(
                    host: "imap.example.net", reason: "imap.example.net cannot be used as a TLS server name"))
        ),
        (IMAPError.tls(.startTLSNotOffered), .session, .tls(.startTLSNotOffered)),
        (SomethingElse(), .session, .connectionClosed(nil)),
    ]

    @Test(arguments: 0..<Self.table.count)
    func classifies(row: Int) {
        let (error, phase, expected) = Self.table[row]
        let classified = classifier.classify(error, phase: phase)
        #expect(classified.description == expected.description, "\(error)")
        for word in ["NIOSSL", "BoringSSL", "IOError", "ChannelError", "errno", "SomethingElse", "internal"] {
            #expect(!classified.description.contains(word), "\(classified)")
        }
    }

    /// BoringSSL's errors can only be made by a handshake; their description is what is parsed.
    @Test func readsTheReasonOutOfABoringSSLErrorLine() {
        let verify =
            "Error: 268435581 error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED at "
            + "/work/x/.build/checkouts/swift-nio-ssl/Sources/CNIOBoringSSL/ssl/handshake.cc:298"
        #expect(ErrorClassifier.reason(in: verify) == "CERTIFICATE_VERIFY_FAILED")
        #expect(
            classifier.tlsFailure(forReason: "CERTIFICATE_VERIFY_FAILED")
                == .certificateNotTrusted(host: "imap.example.net"))
        let version = "Error: 268435710 error:100000fe:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER at /a/b.cc:12"
        #expect(ErrorClassifier.reason(in: version) == "WRONG_VERSION_NUMBER")
        #expect(
            classifier.tlsFailure(forReason: "WRONG_VERSION_NUMBER")
                == .portSpeaksPlaintext(host: "imap.example.net", port: 993))
        #expect(ErrorClassifier.reason(in: "Error:  EOF during handshake") == nil)
        #expect(classifier.tlsFailure(forReason: "BAD_ECC_CERT") == nil)
        #expect(ErrorClassifier.plainWords("BAD_ECC_CERT") == "the connection could not be secured (bad ecc cert)")
    }

    @Test func tellsATLSRecordFromAnIMAPGreeting() {
        #expect(TLSRecord.begins(ByteBuffer(bytes: [0x16, 0x03, 0x03, 0x00, 0x7a])))
        #expect(TLSRecord.begins(ByteBuffer(bytes: [0x15, 0x03, 0x01])), "an alert is TLS too")
        #expect(TLSRecord.begins(ByteBuffer(bytes: [0x16])), "one byte of a handshake record")
        #expect(!TLSRecord.begins(ByteBuffer(string: "* OK [CAPABILITY IMAP4rev1] ready\r\n")))
        #expect(!TLSRecord.begins(ByteBuffer(bytes: [0x16, 0x01])))
        #expect(!TLSRecord.begins(ByteBuffer()))
    }

    /// The words kept out of the message are still there for whoever debugs: in the debug log.
    @Test func theLibraryDetailGoesToTheDebugLog() {
        let lines = LogLines()
        var logger = Logger(label: "test") { _ in CapturingHandler(lines: lines) }
        logger.logLevel = .debug
        let classified = ErrorClassifier(host: "imap.example.net", port: 993, logger: logger)
            .classify(NIOSSLError.handshakeFailed(.sslError([.eofDuringHandshake])))
        #expect(!classified.description.contains("NIOSSL"))
        let logged = lines.value.withLock { $0 }
        #expect(logged.count == 1)
        #expect(logged.first?.contains("debug") == true)
        #expect(logged.first?.contains("NIOSSLError.handshakeFailed") == true, "\(logged)")
    }
}

final class LogLines: Sendable {
    let value = Mutex<[String]>([])
}

/// Keeps each log line as "level message metadata".
struct CapturingHandler: LogHandler {
    let lines: LogLines
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let line = "\(event.level) \(event.message) \(event.metadata ?? [:])"
        lines.value.withLock { $0.append(line) }
    }
}
