import Foundation
import IMAPClient
import NIOCore
import Testing
import TestSupport

/// The client behind a proxy that breaks the server's side of the connection: every fault must end
/// in a classified `IMAPError`, never in a hang or a crash, and a new connection must work again.
@Suite("IMAP client through a fault-injecting proxy", .serialized, .timeLimit(.minutes(2)))
struct FaultInjectingProxyTests {
    /// Through the proxy, with timeouts short enough that a hang shows up as a failure, not a stall.
    /// Generous waits by default: under a full run's load Dovecot once took over 10 s to answer, and
    /// these tests are about cuts and garbage, not waits (the timeout tests pass their own).
    func configuration(
        _ proxy: FaultInjectingProxy, greetingTimeout: TimeAmount = .seconds(60),
        idleTimeout: TimeAmount = .seconds(60)
    ) -> ServerConfiguration {
        ServerConfiguration(
            host: "127.0.0.1", port: proxy.port, security: .none, connectTimeout: .seconds(5),
            greetingTimeout: greetingTimeout, idleTimeout: idleTimeout)
    }

    /// A message of exactly `size` bytes: headers, then lines of varied bytes (no bare CR or LF).
    func makeMessage(size: Int, id: String) -> ByteBuffer {
        var message = ByteBuffer(string: "From: a@example.com\r\nSubject: \(id)\r\nMessage-ID: <\(id)@test>\r\n\r\n")
        var lineNumber = 0
        while message.readableBytes < size {
            lineNumber += 1
            let line = (0..<70).map { UInt8(33 + ($0 * 7 + lineNumber) % 94) }
            message.writeBytes(line.prefix(max(0, size - message.readableBytes - 2)))
            message.writeString("\r\n")
        }
        return message.getSlice(at: message.readerIndex, length: size)!
    }

    /// Appends `message` to a fresh user's INBOX directly (no proxy); returns the user and the UID.
    func userWithMessage(_ server: DovecotServer, _ message: ByteBuffer) async throws -> (String, UInt32) {
        let user = uniqueUser("proxy")
        let direct = try await IMAPSession.open(
            server.configuration(),
            credentials: .password(username: user, password: DovecotServer.password))
        let result = try await direct.append(
            to: MailboxName(encoded: "INBOX"), flags: [], internalDate: nil, message: message)
        await direct.logout()
        return (user, try #require(result.uid))
    }

    func withProxy<T>(
        _ server: DovecotServer, upstreamPort: Int? = nil, faults: [FaultInjectingProxy.Fault?],
        _ body: (FaultInjectingProxy) async throws -> T
    ) async throws -> T {
        let proxy = try await FaultInjectingProxy.start(upstreamPort: upstreamPort ?? server.imapPort, faults: faults)
        do {
            let result = try await body(proxy)
            await proxy.stop()
            return result
        } catch {
            await proxy.stop()
            throw error
        }
    }

    @Test func dropInsideFetchBodyIsConnectionClosedAndNextConnectionFetchesAll() async throws {
        let server = try await SharedServers.shared.server(.slash)
        let message = makeMessage(size: 200 * 1024, id: "drop")
        let (user, uid) = try await userWithMessage(server, message)
        #expect(uid == 1)
        let credentials = Credentials.password(username: user, password: DovecotServer.password)

        try await withProxy(server, faults: [.dropAfterPattern(Array("BODY[] {".utf8), extraBytes: 1000)]) { proxy in
            let session = try await IMAPSession.open(configuration(proxy), credentials: credentials)
            _ = try await session.select(MailboxName(encoded: "INBOX"))
            let tag = try await session.sendUIDFetch(UIDSet([uid...uid]), items: "UID BODY.PEEK[]")
            var announced: Int?
            var received = ByteBuffer()
            do {
                while let event = try await session.nextEvent(until: tag) {
                    switch event {
                    case .fetchBodyStart(_, _, let size, _): announced = size
                    case .fetchBodyBytes(var bytes): received.writeBuffer(&bytes)
                    default: break
                    }
                }
                Issue.record("the FETCH completed although the proxy cut the connection")
            } catch let error as IMAPError {
                guard case .connectionClosed = error else {
                    Issue.record("expected connectionClosed, got \(error)")
                    return
                }
            }
            #expect(announced == message.readableBytes)
            // The proxy forwarded 1000 bytes past "BODY[] {": the size, "}\r\n", and the body's start.
            let expectedBodyBytes = 1000 - "\(message.readableBytes)}\r\n".utf8.count
            #expect(received.readableBytes == expectedBodyBytes)
            #expect(
                received == message.getSlice(at: message.readerIndex, length: received.readableBytes),
                "the bytes that did arrive are the message's first bytes")

            // The dead session keeps failing with a classified error instead of hanging.
            await #expect(throws: IMAPError.self) { try await session.noop() }
            await session.close()

            // The fault list has one entry: the second connection passes through untouched.
            let again = try await IMAPSession.open(configuration(proxy), credentials: credentials)
            _ = try await again.select(MailboxName(encoded: "INBOX"))
            let fetched = try await fetchAll(again, UIDSet([uid...uid]))
            #expect(fetched.count == 1)
            #expect(fetched.first?.uid == uid)
            #expect(fetched.first?.body.readableBytes == message.readableBytes)
            #expect(fetched.first?.body == message, "body bytes differ")
            await again.logout()
            #expect(proxy.connectionCount == 2)
        }
    }

    @Test func dropInsideFetchBodyOverImplicitTLS() async throws {
        let server = try await SharedServers.shared.server(.slash)
        let message = makeMessage(size: 200 * 1024, id: "tls-drop")
        let (user, uid) = try await userWithMessage(server, message)
        try await withProxy(server, upstreamPort: server.imapsPort, faults: [.dropAfterServerBytes(60_000)]) { proxy in
            var config = server.configuration(security: .ssl)
            config.port = proxy.port
            config.greetingTimeout = .seconds(60)
            config.idleTimeout = .seconds(60)
            let session = try await IMAPSession.open(
                config, credentials: .password(username: user, password: DovecotServer.password))
            _ = try await session.select(MailboxName(encoded: "INBOX"))
            let tag = try await session.sendUIDFetch(UIDSet([uid...uid]), items: "UID BODY.PEEK[]")
            var received = 0
            var caught: IMAPError?
            do {
                while let event = try await session.nextEvent(until: tag) {
                    if case .fetchBodyBytes(let bytes) = event { received += bytes.readableBytes }
                }
                Issue.record("the FETCH completed although the proxy cut the connection")
            } catch let error as IMAPError {
                caught = error
            }
            await session.close()
            #expect(received > 0 && received < message.readableBytes)
            let error = try #require(caught, "no classified error")
            // A TCP drop is a closed connection, TLS or not; reconnect logic retries that and not TLS failures.
            guard case .connectionClosed = error else {
                Issue.record("expected connectionClosed, got \(error)")
                return
            }
        }
    }

    @Test func dropInsideGreetingIsConnectionClosed() async throws {
        let server = try await SharedServers.shared.server(.slash)
        try await withProxy(server, faults: [.dropAfterServerBytes(10)]) { proxy in
            do {
                _ = try await IMAPSession.connect(configuration(proxy))
                Issue.record("connected although the greeting was cut")
            } catch let error as IMAPError {
                guard case .connectionClosed = error else {
                    Issue.record("expected connectionClosed, got \(error)"); return
                }
            }
            #expect(proxy.connectionCount == 1)
        }
    }

    @Test func garbageGreetingIsProtocolError() async throws {
        let server = try await SharedServers.shared.server(.slash)
        try await withProxy(server, faults: [.garbageAfter(0, Array("\u{0}\u{1}garbage\r\n".utf8))]) { proxy in
            do {
                _ = try await IMAPSession.open(
                    configuration(proxy),
                    credentials: .password(username: uniqueUser(), password: DovecotServer.password))
                Issue.record("logged in although the greeting was garbage")
            } catch let error as IMAPError {
                guard case .protocolError = error else { Issue.record("expected protocolError, got \(error)"); return }
            }
        }
    }

    @Test func trickleTimesOutQuickly() async throws {
        let server = try await SharedServers.shared.server(.slash)
        try await withProxy(server, faults: [.throttle(bytesPerSecond: 1)]) { proxy in
            let clock = ContinuousClock()
            let start = clock.now
            do {
                _ = try await IMAPSession.open(
                    configuration(proxy, greetingTimeout: .seconds(1), idleTimeout: .milliseconds(500)),
                    credentials: .password(username: uniqueUser(), password: DovecotServer.password))
                Issue.record("connected through a 1 byte/s link within the greeting timeout")
            } catch let error as IMAPError {
                guard case .timedOut(let phase) = error else { Issue.record("expected timedOut, got \(error)"); return }
                #expect(phase.contains("greeting"))
            }
            let elapsed = clock.now - start
            #expect(elapsed < .seconds(10))
            #expect(elapsed >= .milliseconds(900), "the greeting timeout is 1 s")
        }
    }

    @Test func slowButSteadyBodyDoesNotTripTheIdleTimeout() async throws {
        let server = try await SharedServers.shared.server(.slash)
        let message = makeMessage(size: 160 * 1024, id: "slow")
        let (user, uid) = try await userWithMessage(server, message)
        try await withProxy(server, faults: [.throttle(bytesPerSecond: 40_000)]) { proxy in
            // Silence is never longer than 0.1 s, although the body takes about 4 s to arrive: over
            // twice the idle timeout, which is still long enough for a loaded Dovecot's other replies.
            let session = try await IMAPSession.open(
                configuration(proxy, greetingTimeout: .seconds(10), idleTimeout: .milliseconds(1_500)),
                credentials: .password(username: user, password: DovecotServer.password))
            _ = try await session.select(MailboxName(encoded: "INBOX"))
            let clock = ContinuousClock()
            let start = clock.now
            let fetched = try await fetchAll(session, UIDSet([uid...uid]))
            let elapsed = clock.now - start
            #expect(fetched.first?.body == message, "body bytes differ")
            #expect(elapsed >= .milliseconds(3_500), "the proxy forwards at most 40 000 bytes/s")
            await session.logout()
        }
    }
}
