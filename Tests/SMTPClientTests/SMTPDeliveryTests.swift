import Foundation
import Logging
import NIOCore
import Synchronization
import Testing
import TestSupport
@testable import SMTPClient

/// The client against a real aiosmtpd (STARTTLS and AUTH required, its own certificate trusted
/// through the CA file) and against a scripted relay for the faults a real one will not make.
@Suite("SMTP delivery", .serialized, .timeLimit(.minutes(3)))
struct SMTPDeliveryTests {
    static func configuration(_ sink: SMTPSink, url: String? = nil, login: Bool = true, trust: Bool = true) throws
        -> SMTPConfiguration
    {
        var configuration = SMTPConfiguration(
            endpoint: try SMTPEndpoint(url: url ?? "smtp://127.0.0.1:\(sink.port)"),
            connectTimeout: .seconds(5), replyTimeout: .seconds(10))
        if login {
            configuration.credentials = SMTPCredentials(username: sink.options.user, password: sink.options.password)
        }
        if trust {
            configuration.additionalTrustRootsPEM = [try String(contentsOfFile: sink.certificatePath, encoding: .utf8)]
        }
        return configuration
    }

    static func message(subject: String = "Bulk import \"Q3\" completed", body: String = "All 3 mailboxes done.\n")
        -> MailMessage
    {
        MailMessage(
            from: "Mailporter <mp@example.com>", to: ["ops@example.com"], subject: subject, body: body,
            messageID: MailMessage.messageID(key: "test", sender: "mp@example.com"))
    }

    @Test func aMailGoesThroughSTARTTLSAndAuthToARealServer() async throws {
        let sink = try await SMTPSink.start()
        defer { sink.stop() }
        let subject = "Import « Büro » terminé"
        let body = "Zeile eins\n.leading dot\n" + String(repeating: "lang ", count: 300) + "\nEnde\n"
        try await SMTPClient(configuration: try Self.configuration(sink))
            .send(Self.message(subject: subject, body: body), envelopeSender: "mp@example.com")
        let mails = sink.received()
        try #require(mails.count == 1, "\(sink.log)")
        #expect(mails[0].sender == "mp@example.com")
        #expect(mails[0].recipients == ["ops@example.com"])
        let parsed = ParsedMail(mails[0].raw)
        #expect(parsed.header("From") == "Mailporter <mp@example.com>")
        #expect(parsed.header("To") == "ops@example.com")
        #expect(parsed.decodedSubject == subject)
        #expect(parsed.header("Date")?.hasSuffix("+0000") == true)
        #expect(parsed.header("Message-ID")?.hasSuffix("@example.com>") == true)
        #expect(parsed.decodedBody == body.replacingOccurrences(of: "\n", with: "\r\n"))
    }

    @Test func anUntrustedCertificateIsRefusedForGood() async throws {
        let sink = try await SMTPSink.start()
        defer { sink.stop() }
        let error = await #expect(throws: SMTPError.self) {
            try await SMTPClient(configuration: try Self.configuration(sink, trust: false))
                .send(Self.message(), envelopeSender: "mp@example.com")
        }
        #expect(error?.code == "tls_failed")
        #expect(error?.isTransient == false)
        #expect(error.map { "\($0)" }?.contains("MAILPORTER_SMTP_CA_FILE") == true, "\(String(describing: error))")
        #expect(sink.received().isEmpty)
    }

    @Test func aWrongPasswordIsAPermanentRefusalThatNamesNoPassword() async throws {
        let sink = try await SMTPSink.start()
        defer { sink.stop() }
        var configuration = try Self.configuration(sink)
        configuration.credentials = SMTPCredentials(username: sink.options.user, password: "wrong-Zq81")
        let error = await #expect(throws: SMTPError.self) {
            try await SMTPClient(configuration: configuration).send(Self.message(), envelopeSender: "mp@example.com")
        }
        #expect(error?.isTransient == false)
        #expect(error.map { "\($0)" }?.contains("535") == true, "\(String(describing: error))")
        #expect(error.map { "\($0)" }?.contains("wrong-Zq81") == false)
    }

    @Test func aServerWithoutSTARTTLSIsRefusedUnlessTheURLSaysOff() async throws {
        var options = SMTPSink.Options()
        options.startTLS = false
        let sink = try await SMTPSink.start(options)
        defer { sink.stop() }
        let error = await #expect(throws: SMTPError.self) {
            try await SMTPClient(configuration: try Self.configuration(sink, login: false))
                .send(Self.message(), envelopeSender: "mp@example.com")
        }
        #expect(error?.code == "smtp_refused")
        #expect(sink.received().isEmpty)
        let plain = try Self.configuration(sink, url: "smtp://127.0.0.1:\(sink.port)?starttls=off", login: false)
        try await SMTPClient(configuration: plain).send(Self.message(), envelopeSender: "mp@example.com")
        #expect(sink.received().count == 1)
        // And a password is still not sent in the clear, even when the URL allows no TLS.
        let withLogin = try Self.configuration(sink, url: "smtp://127.0.0.1:\(sink.port)?starttls=off")
        await #expect(throws: SMTPError.self) {
            try await SMTPClient(configuration: withLogin).send(Self.message(), envelopeSender: "mp@example.com")
        }
        #expect(!sink.log.contains(sink.options.password))
    }

    // MARK: Faults from a scripted relay

    static func scripted(_ answer: @escaping @Sendable (String) -> String?, greeting: String? = "220 fake ready\r\n")
        async throws -> ScriptedSMTPServer
    {
        try await ScriptedSMTPServer(greeting: greeting, answer: answer)
    }

    static func plainConfiguration(_ port: Int, replyTimeout: TimeAmount = .seconds(5)) throws -> SMTPConfiguration {
        SMTPConfiguration(
            endpoint: try SMTPEndpoint(url: "smtp://127.0.0.1:\(port)?starttls=off"), connectTimeout: .seconds(5),
            replyTimeout: replyTimeout)
    }

    /// A relay that accepts everything; `override` answers first where it returns something.
    static func relay(_ override: @escaping @Sendable (String) -> String? = { _ in nil })
        -> @Sendable (String) -> String?
    {
        let inData = Mutex(false)
        return { line in
            if let answer = override(line) { return answer }
            let data = inData.withLock { $0 }
            if data {
                if line == "." {
                    inData.withLock { $0 = false }
                    return "250 queued\r\n"
                }
                return nil
            }
            switch line.prefix(4).uppercased() {
            case "EHLO": return "250-fake\r\n250 8BITMIME\r\n"
            case "DATA":
                inData.withLock { $0 = true }
                return "354 go ahead\r\n"
            case "QUIT": return "221 bye\r\n"
            default: return "250 ok\r\n"
            }
        }
    }

    @Test func aPermanentRefusalIsClassifiedAndStopsTheSession() async throws {
        let server = try await Self.scripted(
            Self.relay { $0.hasPrefix("MAIL FROM") ? "554 5.7.1 sender refused\r\n" : nil })
        defer { Task { await server.stop() } }
        let error = await #expect(throws: SMTPError.self) {
            try await SMTPClient(configuration: try Self.plainConfiguration(server.port))
                .send(Self.message(), envelopeSender: "mp@example.com")
        }
        #expect(error?.isTransient == false)
        #expect(error?.code == "smtp_rejected")
        #expect(!server.received.contains { $0.hasPrefix("RCPT") || $0 == "DATA" })
    }

    @Test func aDeferralIsTransient() async throws {
        let server = try await Self.scripted(Self.relay { $0 == "." ? "451 4.3.0 try later\r\n" : nil })
        defer { Task { await server.stop() } }
        let error = await #expect(throws: SMTPError.self) {
            try await SMTPClient(configuration: try Self.plainConfiguration(server.port))
                .send(Self.message(), envelopeSender: "mp@example.com")
        }
        #expect(error?.isTransient == true)
        #expect(error?.code == "smtp_deferred")
    }

    @Test func garbageIsAProtocolError() async throws {
        let server = try await Self.scripted(Self.relay { $0.hasPrefix("EHLO") ? "HTTP/1.1 400 Bad Request\r\n" : nil })
        defer { Task { await server.stop() } }
        let error = await #expect(throws: SMTPError.self) {
            try await SMTPClient(configuration: try Self.plainConfiguration(server.port))
                .send(Self.message(), envelopeSender: "mp@example.com")
        }
        #expect(error?.code == "protocol_error")
        #expect(error?.isTransient == false)
    }

    @Test func aSilentServerTimesOutAtTheStepItIsSilentIn() async throws {
        let server = try await Self.scripted(Self.relay { $0 == "DATA" ? "" : nil })
        defer { Task { await server.stop() } }
        let error = await #expect(throws: SMTPError.self) {
            try await SMTPClient(configuration: try Self.plainConfiguration(server.port, replyTimeout: .seconds(1)))
                .send(Self.message(), envelopeSender: "mp@example.com")
        }
        #expect(error == .timedOut(step: "DATA"))
        #expect(error?.isTransient == true)
        let mute = try await Self.scripted({ _ in nil }, greeting: nil)
        defer { Task { await mute.stop() } }
        let greetingError = await #expect(throws: SMTPError.self) {
            try await SMTPClient(configuration: try Self.plainConfiguration(mute.port, replyTimeout: .seconds(1)))
                .send(Self.message(), envelopeSender: "mp@example.com")
        }
        #expect(greetingError == .timedOut(step: "the greeting"))
    }

    @Test func bytesInjectedBeforeTheTLSHandshakeAreRefused() async throws {
        let server = try await Self.scripted(
            Self.relay { line in
                if line.hasPrefix("EHLO") { return "250-fake\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n" }
                // The go-ahead and, in the same packet, a reply meant to be read as if it came over TLS.
                if line == "STARTTLS" { return "220 go ahead\r\n250-injected\r\n250 AUTH PLAIN\r\n" }
                return nil
            })
        defer { Task { await server.stop() } }
        var configuration = SMTPConfiguration(
            endpoint: try SMTPEndpoint(url: "smtp://127.0.0.1:\(server.port)"), connectTimeout: .seconds(5),
            replyTimeout: .seconds(5))
        configuration.credentials = SMTPCredentials(username: "u", password: "never-sent-Kx")
        let error = await #expect(throws: SMTPError.self) {
            try await SMTPClient(configuration: configuration).send(Self.message(), envelopeSender: "mp@example.com")
        }
        #expect(error?.code == "tls_failed")
        #expect("\(error.map { "\($0)" } ?? "")".contains("before the TLS handshake"))
        #expect(!server.received.contains { $0.hasPrefix("AUTH") || $0.contains("never-sent") })
    }

    @Test func aRefusedConnectionIsTransient() async throws {
        let refusing = try RefusingPort()
        let error = await #expect(throws: SMTPError.self) {
            try await SMTPClient(configuration: try Self.plainConfiguration(refusing.port))
                .send(Self.message(), envelopeSender: "mp@example.com")
        }
        #expect(error?.isTransient == true)
        #expect(error?.code == "host_unreachable")
        #expect(!"\(error.map { "\($0)" } ?? "")".contains("Error"), "no library type name")
    }
}
