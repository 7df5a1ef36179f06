import Foundation
import Testing
@testable import SMTPClient

/// The SMTP conversation fed replies by hand: no socket.
@Suite("SMTP session machine")
struct SMTPSessionMachineTests {
    private let credentials = SMTPCredentials(username: "relay-user", password: "s3cret-pass")

    private func machine(
        _ security: SMTPEndpoint.Security = .startTLS, login: Bool = true, recipients: [String] = ["ops@example.com"]
    ) throws -> SMTPSessionMachine {
        SMTPSessionMachine(
            security: security, credentials: login ? credentials : nil, clientName: "mp.test",
            envelope: try SMTPEnvelope(sender: "mp@example.com", recipients: recipients),
            message: Array("body\r\n.\r\n".utf8))
    }

    private func reply(_ code: Int, _ lines: String...) -> SMTPReply { SMTPReply(code: code, lines: lines) }

    private func sent(_ action: SMTPSessionMachine.Action) -> String? {
        if case .send(let line) = action { return line.text }
        return nil
    }

    @Test func aWholeSessionWithSTARTTLSAndAuthPlain() throws {
        var state = try machine()
        #expect(sent(state.replyReceived(reply(220, "relay ready"), moreBytesBuffered: false)) == "EHLO mp.test")
        let ehlo = reply(250, "relay", "PIPELINING", "STARTTLS", "AUTH PLAIN LOGIN")
        #expect(sent(state.replyReceived(ehlo, moreBytesBuffered: false)) == "STARTTLS")
        #expect(state.replyReceived(reply(220, "go ahead"), moreBytesBuffered: false) == .startTLS)
        #expect(state.capabilities.contains("STARTTLS"))
        #expect(sent(state.tlsEstablished()) == "EHLO mp.test")
        #expect(state.capabilities.isEmpty, "what was offered in the clear is forgotten after TLS")
        let action = state.replyReceived(reply(250, "relay", "AUTH PLAIN"), moreBytesBuffered: false)
        let expected = "AUTH PLAIN " + Data("\0relay-user\0s3cret-pass".utf8).base64EncodedString()
        guard case .send(.sensitive(let text, _)) = action else {
            Issue.record("AUTH goes out marked sensitive, got \(action)")
            return
        }
        #expect(text == expected)
        #expect(sent(state.replyReceived(reply(235, "ok"), moreBytesBuffered: false)) == "MAIL FROM:<mp@example.com>")
        #expect(sent(state.replyReceived(reply(250, "ok"), moreBytesBuffered: false)) == "RCPT TO:<ops@example.com>")
        #expect(sent(state.replyReceived(reply(250, "ok"), moreBytesBuffered: false)) == "DATA")
        #expect(
            state.replyReceived(reply(354, "go"), moreBytesBuffered: false) == .sendMessage(Array("body\r\n.\r\n".utf8))
        )
        #expect(state.replyReceived(reply(250, "queued"), moreBytesBuffered: false) == .delivered)
    }

    @Test func authLoginWhenPlainIsNotOffered() throws {
        var state = try machine(.implicitTLS)
        _ = state.replyReceived(reply(220, "ready"), moreBytesBuffered: false)
        let first = state.replyReceived(reply(250, "relay", "AUTH=LOGIN"), moreBytesBuffered: false)
        #expect(first == .send(.sensitive("AUTH LOGIN " + Data("relay-user".utf8).base64EncodedString(), step: "AUTH")))
        let second = state.replyReceived(reply(334, "UGFzc3dvcmQ6"), moreBytesBuffered: false)
        #expect(second == .send(.sensitive(Data("s3cret-pass".utf8).base64EncodedString(), step: "AUTH")))
        #expect(sent(state.replyReceived(reply(235, "ok"), moreBytesBuffered: false)) == "MAIL FROM:<mp@example.com>")
    }

    @Test func bytesBeforeTheHandshakeAreRefused() throws {
        var state = try machine()
        _ = state.replyReceived(reply(220, "ready"), moreBytesBuffered: false)
        _ = state.replyReceived(reply(250, "relay", "STARTTLS"), moreBytesBuffered: false)
        let action = state.replyReceived(reply(220, "go ahead"), moreBytesBuffered: true)
        guard case .fail(let error) = action else {
            Issue.record("expected a refusal, got \(action)")
            return
        }
        #expect(error.code == "tls_failed")
        #expect(!error.isTransient)
        #expect("\(error)".contains("before the TLS handshake"))
    }

    @Test func noSTARTTLSOfferedIsRefusedUnlessTheURLSaysOff() throws {
        var required = try machine(login: false)
        _ = required.replyReceived(reply(220, "ready"), moreBytesBuffered: false)
        let action = required.replyReceived(reply(250, "relay", "8BITMIME"), moreBytesBuffered: false)
        guard case .fail(let error) = action else {
            Issue.record("expected a refusal, got \(action)")
            return
        }
        #expect("\(error)".contains("starttls=off"))
        var plain = try machine(.plain, login: false)
        _ = plain.replyReceived(reply(220, "ready"), moreBytesBuffered: false)
        #expect(
            sent(plain.replyReceived(reply(250, "relay"), moreBytesBuffered: false)) == "MAIL FROM:<mp@example.com>")
    }

    @Test func aPasswordIsNeverSentWithoutTLS() throws {
        var state = try machine(.plain)
        _ = state.replyReceived(reply(220, "ready"), moreBytesBuffered: false)
        let action = state.replyReceived(reply(250, "relay", "AUTH PLAIN LOGIN"), moreBytesBuffered: false)
        guard case .fail(let error) = action else {
            Issue.record("expected a refusal, got \(action)")
            return
        }
        #expect(!"\(error)".contains("s3cret-pass"))
        #expect(error.code == "smtp_refused")
    }

    @Test func repliesAreClassifiedTransientOrPermanent() throws {
        var deferred = try machine(.plain, login: false)
        _ = deferred.replyReceived(reply(220, "ready"), moreBytesBuffered: false)
        _ = deferred.replyReceived(reply(250, "relay"), moreBytesBuffered: false)
        guard case .fail(let transient) = deferred.replyReceived(reply(451, "try later"), moreBytesBuffered: false)
        else { return #expect(Bool(false)) }
        #expect(transient.isTransient)
        #expect(transient.code == "smtp_deferred")

        var refused = try machine(.plain, login: false)
        _ = refused.replyReceived(reply(220, "ready"), moreBytesBuffered: false)
        _ = refused.replyReceived(reply(250, "relay"), moreBytesBuffered: false)
        _ = refused.replyReceived(reply(250, "ok"), moreBytesBuffered: false)
        guard case .fail(let permanent) = refused.replyReceived(reply(550, "no such user"), moreBytesBuffered: false)
        else { return #expect(Bool(false)) }
        #expect(!permanent.isTransient)
        #expect("\(permanent)".contains("RCPT TO"))
        #expect("\(permanent)".contains("550 no such user"))
    }

    @Test func everyRecipientIsGivenBeforeDATA() throws {
        var state = try machine(.plain, login: false, recipients: ["a@example.com", "b@example.com"])
        _ = state.replyReceived(reply(220, "ready"), moreBytesBuffered: false)
        _ = state.replyReceived(reply(250, "relay"), moreBytesBuffered: false)
        #expect(sent(state.replyReceived(reply(250, "ok"), moreBytesBuffered: false)) == "RCPT TO:<a@example.com>")
        #expect(sent(state.replyReceived(reply(250, "ok"), moreBytesBuffered: false)) == "RCPT TO:<b@example.com>")
        #expect(sent(state.replyReceived(reply(251, "forwarded"), moreBytesBuffered: false)) == "DATA")
    }

    @Test func anAddressCannotCarryACommand() {
        #expect(throws: SMTPError.self) {
            try SMTPEnvelope(sender: "mp@example.com", recipients: ["ops@example.com>\r\nRCPT TO:<x@evil.test"])
        }
        #expect(throws: SMTPError.self) { try SMTPEnvelope(sender: "mp@example.com", recipients: []) }
    }
}

@Suite("SMTP reply parser")
struct ReplyParserTests {
    @Test func multiLineRepliesAreJoined() throws {
        var parser = ReplyParser()
        parser.append(Array("250-relay.test hello\r\n250-STARTTLS\r\n250 AUTH PLAIN".utf8))
        #expect(try parser.next() == nil, "the last line has not ended yet")
        parser.append(Array("\r\n220 next".utf8))
        #expect(try parser.next() == SMTPReply(code: 250, lines: ["relay.test hello", "STARTTLS", "AUTH PLAIN"]))
        #expect(parser.hasBufferedBytes)
        #expect(try parser.next() == nil)
    }

    @Test func aBareLFEndsALineAndACodeAloneIsAReply() throws {
        var parser = ReplyParser()
        parser.append(Array("354\n".utf8))
        #expect(try parser.next() == SMTPReply(code: 354, lines: [""]))
        #expect(!parser.hasBufferedBytes)
    }

    @Test func garbageIsAProtocolError() {
        var parser = ReplyParser()
        parser.append(Array("HTTP/1.1 400 Bad Request\r\n".utf8))
        #expect(throws: SMTPError.self) { try parser.next() }
        var changing = ReplyParser()
        changing.append(Array("250-one\r\n251 two\r\n".utf8))
        #expect(throws: SMTPError.self) { try changing.next() }
        var endless = ReplyParser()
        endless.append(Array(repeating: UInt8(ascii: "2"), count: ReplyParser.maxLineLength + 10))
        #expect(throws: SMTPError.self) { try endless.next() }
    }
}

@Suite("SMTP message")
struct MailMessageTests {
    @Test func dotStuffingAndCRLF() throws {
        let data = try MessageData.encode(Array("Hi\n.hidden\r\n..two\rlast".utf8))
        #expect(String(decoding: data, as: UTF8.self) == "Hi\r\n..hidden\r\n...two\r\nlast\r\n.\r\n")
    }

    @Test func linesOver998OctetsAreRefused() throws {
        let fits = String(repeating: "a", count: 998)
        #expect(throws: Never.self) { try MessageData.encode(Array(fits.utf8)) }
        #expect(throws: SMTPError.self) { try MessageData.encode(Array((fits + "a").utf8)) }
    }

    @Test func headersHoldNoLineBreaksFromUserData() throws {
        let message = MailMessage(
            from: "Mailporter <mp@example.com>", to: ["ops@example.com"],
            subject: "Batch \"Q3\"\r\nBcc: victim@example.com", body: "x",
            date: Date(timeIntervalSince1970: 1_796_256_000), messageID: "<id@example.com>")
        let text = String(decoding: message.rendered(), as: UTF8.self)
        let headers = text.components(separatedBy: "\r\n\r\n")[0].components(separatedBy: "\r\n")
        #expect(!headers.contains { $0.hasPrefix("Bcc:") })
        #expect(headers.contains("Subject: Batch \"Q3\"  Bcc: victim@example.com"))
        #expect(headers.contains("Date: Thu, 03 Dec 2026 00:00:00 +0000"))
        #expect(headers.contains("Message-ID: <id@example.com>"))
        #expect(headers.contains("From: Mailporter <mp@example.com>"))
        #expect(headers.contains("To: ops@example.com"))
    }

    @Test func aNonASCIISubjectIsEncodedAndEveryLineIsShort() throws {
        let subject = "Import « Büro Zürich » terminé — " + String(repeating: "é", count: 60)
        let body = String(repeating: "Grüße ", count: 400) + "\n.\nend"
        let message = MailMessage(
            from: "mp@example.com", to: ["ops@example.com"], subject: subject, body: body, messageID: "<a@b>")
        let text = String(decoding: try MessageData.encode(message.rendered()), as: UTF8.self)
        let lines = text.components(separatedBy: "\r\n")
        #expect(lines.allSatisfy { $0.utf8.count <= 78 })
        #expect(text.utf8.allSatisfy { $0 < 0x80 }, "everything on the wire is ASCII")
        let subjectLines = lines.drop { !$0.hasPrefix("Subject:") }.prefix {
            $0.hasPrefix("Subject:") || $0.hasPrefix(" ")
        }
        let words = subjectLines.joined().replacingOccurrences(of: "Subject: ", with: "").split(separator: " ")
        let decoded = words.map { word -> String in
            let payload = word.dropFirst("=?UTF-8?B?".count).dropLast(2)
            return String(decoding: Data(base64Encoded: String(payload)) ?? Data(), as: UTF8.self)
        }.joined()
        #expect(decoded == subject)
    }
}

@Suite("SMTP URL")
struct SMTPEndpointTests {
    @Test func theThreeForms() throws {
        #expect(
            try SMTPEndpoint(url: "smtp://mail.example.com:587")
                == SMTPEndpoint(host: "mail.example.com", port: 587, security: .startTLS))
        #expect(
            try SMTPEndpoint(url: "smtp://mail.example.com")
                == SMTPEndpoint(host: "mail.example.com", port: 587, security: .startTLS))
        #expect(
            try SMTPEndpoint(url: "smtps://mail.example.com:465")
                == SMTPEndpoint(host: "mail.example.com", port: 465, security: .implicitTLS))
        #expect(
            try SMTPEndpoint(url: "smtp://127.0.0.1:25?starttls=off")
                == SMTPEndpoint(host: "127.0.0.1", port: 25, security: .plain))
        #expect(try SMTPEndpoint(url: "smtp://[::1]:2525?starttls=off").host == "::1")
    }

    @Test func mistakesAreRefusedWithTheFormsToUse() {
        for text in [
            "mail.example.com:587", "http://x:25", "smtp://user:pw@x:587", "smtp://x:0", "smtp://x:587?tls=1",
            "smtps://x:465?starttls=off", "smtp://:25",
        ] {
            #expect(throws: SMTPEndpoint.ParseError.self, "\(text)") { try SMTPEndpoint(url: text) }
        }
        do {
            _ = try SMTPEndpoint(url: "smtp://user:pw@x:587")
        } catch {
            #expect(!error.description.contains("pw@"), "the password given in the URL is not echoed")
        }
    }
}
