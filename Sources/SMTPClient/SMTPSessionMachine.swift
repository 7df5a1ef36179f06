import Foundation

/// The login a relay wants (SASL PLAIN or LOGIN, over TLS only).
public struct SMTPCredentials: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public var username: String
    public var password: String

    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }

    public var description: String { "SMTPCredentials(\(username), password redacted)" }
    public var debugDescription: String { description }
}

/// One mail's SMTP session (RFC 5321) as a value with no I/O: greeting, EHLO, STARTTLS and EHLO
/// again, AUTH, MAIL FROM, RCPT TO, DATA, the message. The client feeds it each reply (and the
/// end of a TLS handshake) and does what the returned action says, so every rule of the exchange
/// is tested without a socket.
struct SMTPSessionMachine {
    enum Action: Equatable {
        /// Write this command line (CRLF is added by the writer).
        case send(SMTPCommandLine)
        /// Put TLS under the session now; report `tlsEstablished()` when it is up.
        case startTLS
        /// Write the message (already dot-stuffed and ended with `.` CRLF).
        case sendMessage([UInt8])
        /// The message was accepted: say QUIT and close.
        case delivered
        case fail(SMTPError)
    }

    enum State: Equatable {
        case greeting
        case ehlo
        case startTLS
        case handshaking
        case authPlain
        case authLoginUser
        case authLoginPassword
        case mailFrom
        case recipient(Int)
        case data
        case message
        case done
        case failed
    }

    private(set) var state = State.greeting
    private(set) var tlsActive: Bool
    private(set) var capabilities: Set<String> = []
    private(set) var authMechanisms: Set<String> = []
    private let security: SMTPEndpoint.Security
    private let credentials: SMTPCredentials?
    private let clientName: String
    private let envelope: SMTPEnvelope
    private let message: [UInt8]

    init(
        security: SMTPEndpoint.Security, credentials: SMTPCredentials?, clientName: String, envelope: SMTPEnvelope,
        message: [UInt8]
    ) {
        self.security = security
        self.tlsActive = security == .implicitTLS
        self.credentials = credentials
        self.clientName = clientName
        self.envelope = envelope
        self.message = message
    }

    /// What the reply being waited for answers, for errors and timeouts.
    var step: String {
        switch state {
        case .greeting: "the greeting"
        case .ehlo: "EHLO"
        case .startTLS: "STARTTLS"
        case .handshaking: "the TLS handshake"
        case .authPlain, .authLoginUser, .authLoginPassword: "AUTH"
        case .mailFrom: "MAIL FROM"
        case .recipient: "RCPT TO"
        case .data: "DATA"
        case .message: "the message"
        case .done, .failed: "QUIT"
        }
    }

    // MARK: Inputs

    /// A complete reply arrived; `moreBytesBuffered` says whether bytes after it are already in.
    mutating func replyReceived(_ reply: SMTPReply, moreBytesBuffered: Bool) -> Action {
        switch state {
        case .greeting:
            guard reply.code == 220 else { return refuse(reply) }
            return sendEHLO()
        case .ehlo:
            guard reply.code == 250 else { return refuse(reply) }
            learnCapabilities(reply)
            return afterEHLO()
        case .startTLS:
            guard reply.code == 220 else {
                if reply.isPositive { return refuse(reply) }
                return fail(.tls("the server refused STARTTLS with \(reply.code) \(reply.text)"))
            }
            // Bytes that came with or after the go-ahead were sent before the handshake: a
            // man in the middle could have put them there, to be read as if they came over TLS.
            guard !moreBytesBuffered else {
                return fail(.tls("the server sent data before the TLS handshake (a possible injection); refusing"))
            }
            state = .handshaking
            return .startTLS
        case .handshaking:
            return fail(.protocolError("the server spoke before the TLS handshake"))
        case .authPlain, .authLoginPassword:
            guard reply.code == 235 else { return refuseAuthentication(reply) }
            return sendMailFrom()
        case .authLoginUser:
            guard reply.code == 334, let credentials else { return refuseAuthentication(reply) }
            state = .authLoginPassword
            return .send(.sensitive(base64(Array(credentials.password.utf8)), step: "AUTH"))
        case .mailFrom:
            guard reply.code == 250 else { return refuse(reply) }
            return sendRecipient(0)
        case .recipient(let index):
            guard reply.code == 250 || reply.code == 251 else { return refuse(reply) }
            if index + 1 < envelope.recipients.count { return sendRecipient(index + 1) }
            state = .data
            return .send(.plain("DATA"))
        case .data:
            guard reply.code == 354 else { return refuse(reply) }
            state = .message
            return .sendMessage(message)
        case .message:
            guard reply.code == 250 else { return refuse(reply) }
            state = .done
            return .delivered
        case .done, .failed:
            return .fail(.protocolError("the server sent a reply after the session ended"))
        }
    }

    /// The TLS handshake asked for by `.startTLS` completed.
    mutating func tlsEstablished() -> Action {
        guard state == .handshaking else { return fail(.protocolError("a TLS handshake nobody asked for")) }
        tlsActive = true
        // What the server offered in the clear may have been altered: learn it again (RFC 3207 §4.2).
        capabilities = []
        authMechanisms = []
        return sendEHLO()
    }

    // MARK: Steps

    private mutating func sendEHLO() -> Action {
        state = .ehlo
        return .send(.plain("EHLO \(clientName)"))
    }

    private mutating func afterEHLO() -> Action {
        if security == .startTLS, !tlsActive {
            guard capabilities.contains("STARTTLS") else {
                return fail(
                    .refused(
                        "the mail server does not offer STARTTLS, and the URL requires it"
                            + " (add ?starttls=off only for a relay on a trusted network)"))
            }
            state = .startTLS
            return .send(.plain("STARTTLS"))
        }
        guard let credentials else { return sendMailFrom() }
        guard tlsActive else {
            return fail(
                .refused(
                    "a password is not sent without TLS: use smtps:// or STARTTLS, or no MAILPORTER_SMTP_USER"
                        + " for a relay that needs no login"))
        }
        if authMechanisms.contains("PLAIN") {
            state = .authPlain
            let payload = [0] + Array(credentials.username.utf8) + [0] + Array(credentials.password.utf8)
            return .send(.sensitive("AUTH PLAIN \(base64(payload))", step: "AUTH"))
        }
        if authMechanisms.contains("LOGIN") {
            state = .authLoginUser
            return .send(.sensitive("AUTH LOGIN \(base64(Array(credentials.username.utf8)))", step: "AUTH"))
        }
        return fail(.refused("the mail server offers neither AUTH PLAIN nor AUTH LOGIN"))
    }

    private mutating func sendMailFrom() -> Action {
        state = .mailFrom
        return .send(.plain("MAIL FROM:<\(envelope.sender)>"))
    }

    private mutating func sendRecipient(_ index: Int) -> Action {
        state = .recipient(index)
        return .send(.plain("RCPT TO:<\(envelope.recipients[index])>"))
    }

    private mutating func learnCapabilities(_ reply: SMTPReply) {
        // The first line is the server's name; each further line is one extension (RFC 5321 §4.1.1.1).
        for line in reply.lines.dropFirst() {
            let words = line.uppercased().split(whereSeparator: { $0 == " " || $0 == "=" })
            guard let keyword = words.first else { continue }
            capabilities.insert(String(keyword))
            if keyword == "AUTH" { authMechanisms.formUnion(words.dropFirst().map(String.init)) }
        }
    }

    private mutating func refuse(_ reply: SMTPReply) -> Action {
        if reply.isTransientFailure { return fail(.transientReply(step: step, reply: reply)) }
        if reply.isPermanentFailure { return fail(.permanentReply(step: step, reply: reply)) }
        return fail(.unexpectedReply(step: step, reply: reply))
    }

    private mutating func refuseAuthentication(_ reply: SMTPReply) -> Action {
        if reply.isPermanentFailure {
            return fail(
                .refused(
                    "the mail server refused the login with \(reply.code) \(reply.text);"
                        + " check MAILPORTER_SMTP_USER and the SMTP password"))
        }
        return refuse(reply)
    }

    private mutating func fail(_ error: SMTPError) -> Action {
        state = .failed
        return .fail(error)
    }
}

/// A command line to write, and whether it may be logged.
enum SMTPCommandLine: Equatable {
    case plain(String)
    /// Holds a secret: never logged, and an error names only its step.
    case sensitive(String, step: String)

    var text: String {
        switch self {
        case .plain(let text), .sensitive(let text, _): text
        }
    }
}

/// The envelope: who the mail is from and to, checked so no address can carry a command.
public struct SMTPEnvelope: Sendable, Equatable {
    public var sender: String
    public var recipients: [String]

    public init(sender: String, recipients: [String]) throws(SMTPError) {
        guard !recipients.isEmpty else { throw .invalidMessage("a mail needs at least one recipient") }
        for address in [sender] + recipients {
            try Self.check(address)
        }
        self.sender = sender
        self.recipients = recipients
    }

    static func check(_ address: String) throws(SMTPError) {
        let forbidden: Set<Character> = ["<", ">", " ", "\t", "\r", "\n", "\r\n", "\0"]
        guard !address.isEmpty, address.utf8.count <= 254, address.contains("@"),
            !address.contains(where: { forbidden.contains($0) || $0.asciiValue.map { $0 < 0x20 } == true })
        else {
            throw .invalidMessage("\(address.debugDescription.prefix(80)) is not a mail address the relay can take")
        }
    }
}

func base64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }
