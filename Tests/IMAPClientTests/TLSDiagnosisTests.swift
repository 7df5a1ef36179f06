import IMAPClient
import Testing
import TestSupport

/// A new user's mistakes against a real Dovecot: each must end, quickly, in a message that says
/// what to change, in words and not in the TLS library's type names or its build paths.
@Suite("TLS failures a person can act on", .timeLimit(.minutes(2)))
struct TLSDiagnosisTests {
    static let libraryWords = [
        "NIOSSL", "BoringSSL", "OPENSSL", ".build", "checkouts", "IOError", "ChannelError", "errno",
    ]

    /// Connects, expecting failure; the error and how long it took to come.
    func failure(_ configuration: ServerConfiguration) async -> (IMAPError?, Duration) {
        let clock = ContinuousClock()
        let start = clock.now
        do {
            let session = try await IMAPSession.connect(configuration)
            await session.close()
            Issue.record("connected to \(configuration.host):\(configuration.port) with \(configuration.security)")
            return (nil, clock.now - start)
        } catch let error as IMAPError {
            return (error, clock.now - start)
        } catch {
            Issue.record("unclassified error \(error)")
            return (nil, clock.now - start)
        }
    }

    func expectNoLibraryWords(_ error: IMAPError?, sourceLocation: SourceLocation = #_sourceLocation) {
        let text = "\(error.map { "\($0)" } ?? "")"
        for word in Self.libraryWords {
            #expect(!text.contains(word), "\"\(word)\" in: \(text)", sourceLocation: sourceLocation)
        }
    }

    @Test func selfSignedCertificateIsNotTrustedAndItsCAFileFixesThat() async throws {
        let server = try DovecotServer.start(layout: .slash, certificate: .init(selfSigned: true))
        defer { server.stop() }
        for security in [ConnectionSecurity.ssl, .tls] {
            var configuration = server.configuration(security: security)
            configuration.additionalTrustRootsPEM = []
            let (error, _) = await failure(configuration)
            guard case .tls(.certificateNotTrusted(let host))? = error else {
                Issue.record("\(security): expected an untrusted certificate, got \(String(describing: error))")
                continue
            }
            #expect(host == "127.0.0.1")
            let text = "\(error.map { "\($0)" } ?? "")"
            #expect(text.contains("not trusted") && text.contains("self-signed") && text.contains("CA file"), "\(text)")
            expectNoLibraryWords(error)
        }
        // What the message advises works: the certificate itself as the CA file.
        let trusted = try await IMAPSession.connect(server.configuration(security: .ssl))
        await trusted.close()
    }

    @Test func certificateForAnotherNameSaysSo() async throws {
        let server = try DovecotServer.start(layout: .slash, certificate: .init(names: ["DNS:mail.example.test"]))
        defer { server.stop() }
        for security in [ConnectionSecurity.tls, .ssl] {
            let (error, elapsed) = await failure(server.configuration(security: security))
            guard case .tls(.certificateNameMismatch(let host))? = error else {
                Issue.record("\(security): expected a certificate for another name, got \(String(describing: error))")
                continue
            }
            #expect(host == "127.0.0.1")
            #expect("\(error.map { "\($0)" } ?? "")".contains("is for another name"))
            #expect(elapsed < .seconds(20), "took \(elapsed)")
            expectNoLibraryWords(error)
        }
    }

    @Test func sslAgainstThePlaintextPortSaysItSpeaksPlaintext() async throws {
        let server = try await SharedServers.shared.server(.slash)
        var configuration = server.configuration(security: .ssl)
        configuration.port = server.imapPort
        configuration.greetingTimeout = .seconds(30)
        let (error, elapsed) = await failure(configuration)
        guard case .tls(.portSpeaksPlaintext(_, let port))? = error else {
            Issue.record("expected a plaintext port, got \(String(describing: error))")
            return
        }
        #expect(port == server.imapPort)
        let text = "\(error.map { "\($0)" } ?? "")"
        #expect(text.contains("speaks plaintext") && text.contains("use security none or tls"), "\(text)")
        #expect(elapsed < .seconds(20), "took \(elapsed); the greeting timeout is 30 s")
        expectNoLibraryWords(error)
    }

    /// A TLS port says nothing until the client speaks: this must not wait for the greeting timeout.
    @Test(arguments: [ConnectionSecurity.none, .tls])
    func plaintextAgainstTheTLSPortSaysItSpeaksTLS(security: ConnectionSecurity) async throws {
        let server = try await SharedServers.shared.server(.slash)
        var configuration = server.configuration(security: security)
        configuration.port = server.imapsPort
        configuration.greetingTimeout = .seconds(30)
        let (error, elapsed) = await failure(configuration)
        guard case .tls(.portSpeaksTLS(_, let port))? = error else {
            Issue.record("expected a TLS port, got \(String(describing: error))")
            return
        }
        #expect(port == server.imapsPort)
        let text = "\(error.map { "\($0)" } ?? "")"
        #expect(text.contains("speaks TLS") && text.contains("use security ssl"), "\(text)")
        #expect(elapsed < .seconds(20), "took \(elapsed); the greeting timeout is 30 s")
        expectNoLibraryWords(error)
    }
}
