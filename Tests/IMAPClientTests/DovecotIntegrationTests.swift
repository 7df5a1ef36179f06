import Foundation
import IMAPClient
import NIOCore
import Testing
import TestSupport

func fetchAll(_ session: IMAPSession, _ uids: UIDSet) async throws -> [FetchedMessage] {
    try await session.uidFetch(uids.description, items: "UID FLAGS INTERNALDATE BODY.PEEK[]")
}

func login(_ server: DovecotServer, _ user: String, security: ConnectionSecurity = .none) async throws -> IMAPSession {
    try await IMAPSession.open(
        server.configuration(security: security),
        credentials: .password(username: user, password: DovecotServer.password))
}

@Suite("IMAP client against a real Dovecot", .serialized)
struct DovecotIntegrationTests {
    @Test func loginRightAndWrong() async throws {
        let server = try await SharedServers.shared.server(.dot)
        let session = try await login(server, uniqueUser())
        #expect(await session.hasCapability("IMAP4rev1"))
        #expect(await session.hasCapability("LITERAL+"))
        await session.logout()

        do {
            _ = try await IMAPSession.open(
                server.configuration(),
                credentials: .password(username: uniqueUser(), password: "wrong"))
            Issue.record("a wrong password logged in")
        } catch let error as IMAPError {
            guard case .authenticationFailed(let text) = error else {
                Issue.record("expected authenticationFailed, got \(error)")
                return
            }
            #expect(text.code == .authenticationFailed)
            #expect(text.text.contains("Authentication failed"))
        }
    }

    @Test func implicitTLSVerifiesCertificates() async throws {
        let server = try await SharedServers.shared.server(.slash)
        let user = uniqueUser()
        let trusted = try await login(server, user, security: .ssl)
        await trusted.logout()

        var untrusted = server.configuration(security: .ssl)
        untrusted.additionalTrustRootsPEM = []
        do {
            _ = try await IMAPSession.open(
                untrusted, credentials: .password(username: user, password: DovecotServer.password))
            Issue.record("a self-signed certificate was accepted without being trusted")
        } catch let error as IMAPError {
            guard case .tls = error else { Issue.record("expected a TLS error, got \(error)"); return }
        }

        untrusted.verifyCertificates = false
        let optedOut = try await IMAPSession.open(
            untrusted, credentials: .password(username: user, password: DovecotServer.password))
        await optedOut.logout()
    }

    @Test func startTLSUpgradesAndRelearnsCapabilities() async throws {
        let server = try await SharedServers.shared.server(.dot)
        let plain = try await IMAPSession.connect(server.configuration(security: .none))
        #expect(await plain.hasCapability("STARTTLS"))
        await plain.close()

        let session = try await IMAPSession.connect(server.configuration(security: .tls))
        #expect(await !session.hasCapability("STARTTLS"), "capabilities must be learned again after STARTTLS")
        try await session.authenticate(.password(username: uniqueUser(), password: DovecotServer.password))
        try await session.noop()
        await session.logout()

        var untrusted = server.configuration(security: .tls)
        untrusted.additionalTrustRootsPEM = []
        await #expect(throws: IMAPError.self) { _ = try await IMAPSession.connect(untrusted) }
    }

    @Test func connectionRefusedIsClassified() async throws {
        let closed = try RefusingPort()
        let port = closed.port
        defer { withExtendedLifetime(closed) {} }
        do {
            _ = try await IMAPSession.connect(ServerConfiguration(host: "127.0.0.1", port: port, security: .none))
            Issue.record("connected to a closed port")
        } catch let error as IMAPError {
            guard case .connectionRefused(_, let refusedPort) = error else { Issue.record("got \(error)"); return }
            #expect(refusedPort == port)
        }
    }

    @Test(arguments: [DovecotServer.Layout.dot, .slash])
    func listShowsNamespaceSeparatorAndSpecialUse(layout: DovecotServer.Layout) async throws {
        let server = try await SharedServers.shared.server(layout)
        let session = try await login(server, uniqueUser())
        let nested = MailboxName(decoded: server.folder("Projekte/Übung 台北 & 📧"))
        #expect(try await session.create(nested))
        #expect(try await session.create(nested) == false, "creating it again reports that it exists")
        _ = try await session.append(
            to: nested, flags: [], internalDate: nil, message: ByteBuffer(string: "Subject: x\r\n\r\nhi\r\n"))

        let namespaces = try #require(try await session.namespace())
        #expect(namespaces.personal.first?.prefix == (layout == .dot ? "INBOX." : ""))
        #expect(namespaces.personal.first?.separator == server.separator)

        let mailboxes = try await session.listAll(statusItems: [.messages, .uidValidity])
        let byName = Dictionary(uniqueKeysWithValues: mailboxes.map { ($0.name.decoded, $0) })
        #expect(byName[server.folder("Sent")]?.specialUse == "\\Sent")
        #expect(byName[server.folder("Drafts")]?.specialUse == "\\Drafts")
        #expect(byName["INBOX"]?.status?.messages == 0)
        #expect(byName[server.folder("Projekte/Übung 台北 & 📧")]?.status?.messages == 1)
        #expect(byName[server.folder("Projekte/Übung 台北 & 📧")]?.entry.separator == server.separator)
        #expect(byName[server.folder("Projekte")]?.isSelectable == false)
        await session.logout()
    }

    @Test func appendThenFetchTwentyMegabytesExactly() async throws {
        let server = try await SharedServers.shared.server(.slash)
        let session = try await login(server, uniqueUser())
        var message = ByteBuffer(string: "From: a@example.com\r\nSubject: big\r\nMessage-ID: <big@test>\r\n\r\n")
        // Every byte value but CR/LF inside lines, and a bare "." line now and then.
        var line: [UInt8] = (0..<76).map { UInt8(($0 * 37 + 11) % 256) }.map { $0 == 10 || $0 == 13 ? 32 : $0 }
        var lineNumber = 0
        while message.readableBytes < 20 << 20 {
            lineNumber += 1
            line[lineNumber % 76] = UInt8(truncatingIfNeeded: lineNumber | 0x40)
            message.writeBytes(line)
            message.writeString(lineNumber % 1000 == 0 ? "\r\n.\r\n" : "\r\n")
        }
        let date = try #require(InternalDate(parsing: "07-Feb-2014 21:52:25 -0800"))
        let flags = ["\\Seen", "\\Flagged", "\\Answered", "$Forwarded", "project-x"]
        let result = try await session.append(
            to: MailboxName(encoded: "INBOX"), flags: flags, internalDate: date, message: message)
        let uid = try #require(result.uid)

        let selected = try await session.select(MailboxName(encoded: "INBOX"))
        #expect(selected.exists == 1)
        #expect(selected.uidValidity == result.uidValidity)
        let fetched = try await fetchAll(session, UIDSet([uid...uid]))
        #expect(fetched.count == 1)
        let copy = try #require(fetched.first)
        #expect(copy.uid == uid)
        #expect(copy.body.readableBytes == message.readableBytes)
        #expect(copy.body == message, "body bytes differ")
        #expect(Set(copy.flags).isSuperset(of: flags))
        #expect(copy.internalDate?.secondsSince1970 == date.secondsSince1970)
        await session.logout()
    }

    @Test func pipelinedAppendsAndSearch() async throws {
        let server = try await SharedServers.shared.server(.dot)
        let session = try await login(server, uniqueUser())
        let inbox = MailboxName(encoded: "INBOX")
        var tags: [CommandTag] = []
        for index in 0..<200 {
            let body = ByteBuffer(string: "Subject: \(index)\r\nMessage-ID: <\(index)@p>\r\n\r\nbody \(index)\r\n")
            let date = InternalDate(secondsSince1970: 1_500_000_000 + Int64(index) * 86_400)
            tags.append(
                try await session.beginAppend(
                    to: inbox, flags: index % 2 == 0 ? ["\\Seen"] : [], internalDate: date,
                    size: body.readableBytes))
            try await session.appendBytes(body)
            try await session.endAppend()
        }
        var uids: [UInt32] = []
        for tag in tags { uids.append(try #require(try await session.appendResult(tag).uid)) }
        #expect(uids == uids.sorted() && Set(uids).count == 200)

        _ = try await session.select(inbox)
        #expect(try await session.uidSearch("ALL") == uids)
        let since = InternalDate(secondsSince1970: 1_500_000_000 + 150 * 86_400)
        #expect(try await session.uidSearch("SINCE \(since.searchDate)").count == 50)
        let status = try await session.status(inbox, items: [.messages, .uidNext])
        #expect(status.messages == 200)
        #expect(await session.canStreamMultiAppend)
        let multi = try await session.appendAll(
            to: inbox,
            messages: [
                ([], nil, ByteBuffer(string: "Subject: m1\r\n\r\n1\r\n")),
                (["\\Draft"], nil, ByteBuffer(string: "Subject: m2\r\n\r\n2\r\n")),
            ])
        #expect(multi.count == 2)
        await session.logout()
    }

    @Test func masterUserLogsInAsTheUser() async throws {
        let server = try await SharedServers.shared.server(.slash)
        let user = uniqueUser()
        let master = try await IMAPSession.open(
            server.configuration(),
            credentials: .master(
                user: user, masterUsername: DovecotServer.masterUser, masterPassword: DovecotServer.masterPassword))
        _ = try await master.append(
            to: MailboxName(encoded: "INBOX"), flags: [], internalDate: nil,
            message: ByteBuffer(string: "Subject: via master\r\n\r\nx\r\n"))
        await master.logout()

        let own = try await login(server, user)
        #expect(try await own.status(MailboxName(encoded: "INBOX"), items: [.messages]).messages == 1)
        await own.logout()

        await #expect(throws: IMAPError.self) {
            _ = try await IMAPSession.open(
                server.configuration(),
                credentials: .master(
                    user: user, masterUsername: DovecotServer.masterUser, masterPassword: "wrong"))
        }
    }

    @Test func quotaAndOverQuota() async throws {
        let server = try DovecotServer.start(layout: .dot, quotaKB: 64)
        defer { server.stop() }
        let session = try await login(server, uniqueUser())
        let inbox = MailboxName(encoded: "INBOX")
        let resources = try await session.quotaRoot(inbox)
        #expect(resources.first { $0.name == "STORAGE" }?.limit == 64)
        _ = try await session.append(
            to: inbox, flags: [], internalDate: nil, message: ByteBuffer(repeating: 0x41, count: 40_000))
        do {
            _ = try await session.append(
                to: inbox, flags: [], internalDate: nil, message: ByteBuffer(repeating: 0x42, count: 40_000))
            Issue.record("append beyond the quota succeeded")
        } catch let error as IMAPError {
            #expect(error.responseCode == .overQuota)
        }
        // The session is still usable after the refusal.
        #expect(try await session.status(inbox, items: [.messages]).messages == 1)
        await session.logout()
    }
}
