import Logging
import NIOCore

/// An authenticated-or-not conversation with one IMAP server over one connection.
///
/// Commands can be pipelined: `send` returns a tag at once and `finish(_:)` collects the completion
/// later; responses to other tags that arrive meanwhile are kept. FETCH data is pulled event by event
/// with `nextEvent(until:)`, so a message body streams through in slices.
///
/// The actor does the I/O; which response belongs to which command, the capabilities and the
/// connection state are kept by its `SessionStateMachine`.
public actor IMAPSession {
    let transport: Transport
    private let logger: Logger
    public private(set) var greeting: ResponseText
    var state: SessionStateMachine
    private var events: [ResponseEvent] = []
    private var eventIndex = 0
    var outgoing = ByteBuffer()
    var append = AppendState.none

    private init(transport: Transport, greeting status: ResponseStatus, text: ResponseText, logger: Logger) {
        self.transport = transport
        self.greeting = text
        self.logger = logger
        self.state = SessionStateMachine(greeting: status, text: text)
    }

    public var capabilities: Set<String> { state.capabilities }

    public var connectionState: IMAPConnectionState { state.connectionState }

    /// Connects, reads the greeting, runs STARTTLS when asked for, and learns the capabilities.
    public static func connect(
        _ configuration: ServerConfiguration, affinity: SessionAffinity? = nil,
        logger: Logger = Logger(label: "mailporter.imap")
    ) async throws -> IMAPSession {
        let transport = try await Transport.connect(configuration, on: affinity?.eventLoop, logger: logger)
        do {
            let greetingEvent: [ResponseEvent]
            do {
                greetingEvent = try await readGreeting(transport)
            } catch IMAPError.timedOut {
                throw IMAPError.timedOut(phase: "the server greeting")
            }
            guard case .untagged(.status(let status, let text)) = greetingEvent.first else {
                throw IMAPError.protocolError("the server did not start with a greeting")
            }
            if status == .bye { throw IMAPError.connectionClosed(text) }
            guard status == .ok || status == .preauth else {
                throw IMAPError.protocolError("unexpected greeting \(status.rawValue)")
            }
            try await transport.setTimeout(configuration.idleTimeout, phase: "a server response")
            let session = IMAPSession(transport: transport, greeting: status, text: text, logger: logger)
            try await session.start(afterGreeting: Array(greetingEvent.dropFirst()), security: configuration.security)
            return session
        } catch {
            await transport.close()
            throw error
        }
    }

    /// How long a plaintext greeting may be late before the port is asked whether it speaks TLS.
    /// Servers greet at once; one that says nothing may be waiting for a TLS handshake.
    static let tlsProbeDelay: TimeAmount = .seconds(1)

    /// The greeting's events. A TLS port is silent until the client speaks, so with `none` or
    /// `tls` a greeting that is late is raced against a probe of the port on a second connection:
    /// "this port speaks TLS" at once, instead of a greeting timeout much later.
    private static func readGreeting(_ transport: Transport) async throws -> [ResponseEvent] {
        let configuration = transport.configuration
        guard configuration.security != .ssl, tlsProbeDelay < configuration.greetingTimeout else {
            return try await transport.nextEvents()
        }
        enum Outcome: Sendable { case greeting([ResponseEvent]), speaksTLS, undecided }
        return try await withThrowingTaskGroup(of: Outcome.self) { group in
            group.addTask { .greeting(try await transport.nextEvents()) }
            group.addTask {
                try await Task.sleep(for: .nanoseconds(tlsProbeDelay.nanoseconds))
                return await transport.peerSpeaksTLS(timeout: .seconds(3)) ? .speaksTLS : .undecided
            }
            while let outcome = try await group.next() {
                switch outcome {
                case .greeting(let events):
                    group.cancelAll()
                    return events
                case .speaksTLS:
                    group.cancelAll()
                    throw IMAPError.tls(.portSpeaksTLS(host: configuration.host, port: configuration.port))
                case .undecided:
                    continue
                }
            }
            throw CancellationError()
        }
    }

    private func start(afterGreeting: [ResponseEvent], security: ConnectionSecurity) async throws {
        events = afterGreeting
        if security == .tls {
            if capabilities.isEmpty { try await refreshCapabilities() }
            guard hasCapability("STARTTLS") else {
                throw IMAPError.tls(.startTLSNotOffered)
            }
            let tag = try await send(Command("STARTTLS"))
            do {
                _ = try await finish(tag)
            } catch IMAPError.commandFailed(_, _, let text) {
                throw IMAPError.tls(.startTLSRefused(text.text))
            }
            guard eventIndex >= events.count else { throw IMAPError.tls(.dataBeforeHandshake) }
            try await transport.startTLS()
            state.tlsStarted()
        }
        if capabilities.isEmpty { try await refreshCapabilities() }
    }

    // MARK: Capabilities

    public func hasCapability(_ name: String) -> Bool { state.hasCapability(name) }

    public func refreshCapabilities() async throws {
        var list: [String]?
        try await run(Command("CAPABILITY")) { event in
            if case .untagged(.capability(let names)) = event { list = names }
        }
        if let list { state.capabilitiesLearned(list) }
    }

    // MARK: Authentication

    public func login(username: String, password: String) async throws {
        var command = Command("LOGIN", isSensitive: true)
        command.addString(username)
        command.addString(password)
        try await authenticate(command, initialResponse: nil)
    }

    /// SASL PLAIN; `authorizationIdentity` logs in as that user with the authentication identity's
    /// password (a master user).
    public func authenticatePlain(authorizationIdentity: String? = nil, username: String, password: String) async throws
    {
        guard hasCapability("AUTH=PLAIN") else { throw IMAPError.capabilityMissing("AUTH=PLAIN") }
        let payload =
            Array((authorizationIdentity ?? "").utf8) + [0] + Array(username.utf8) + [0] + Array(password.utf8)
        try await saslAuthenticate(mechanism: "PLAIN", initialResponse: Base64.encode(payload))
    }

    /// SASL XOAUTH2 with an OAuth 2 access token (Gmail, Microsoft 365).
    public func authenticateXOAuth2(username: String, accessToken: String) async throws {
        guard hasCapability("AUTH=XOAUTH2") else { throw IMAPError.capabilityMissing("AUTH=XOAUTH2") }
        let payload = "user=\(username)\u{1}auth=Bearer \(accessToken)\u{1}\u{1}"
        try await saslAuthenticate(mechanism: "XOAUTH2", initialResponse: Base64.encode(Array(payload.utf8)))
    }

    private func saslAuthenticate(mechanism: String, initialResponse: String) async throws {
        if hasCapability("SASL-IR") {
            try await authenticate(
                Command("AUTHENTICATE", [.text(" \(mechanism) \(initialResponse)")], isSensitive: true),
                initialResponse: nil)
        } else {
            try await authenticate(
                Command("AUTHENTICATE", [.text(" \(mechanism)")], isSensitive: true),
                initialResponse: initialResponse)
        }
    }

    private func authenticate(_ command: Command, initialResponse: String?) async throws {
        let tag = try await send(command)
        var pendingResponse = initialResponse
        var action = state.awaitChallenges(of: tag)
        while true {
            if case .read = action { action = try await nextAction() }
            switch action {
            case .proceed:
                // The first challenge gets the initial response; any later one (an XOAUTH2 error
                // report) gets an empty reply so the server sends its final NO.
                queueText((pendingResponse ?? "") + "\r\n")
                pendingResponse = nil
                try await flush()
                action = .read
            case .completed:
                guard let response = state.takeCompletion(of: tag) else {
                    throw IMAPError.protocolError("missing completion for \(tag.command)")
                }
                guard response.status == .ok else { throw IMAPError.authenticationFailed(response.text) }
                if case .capability? = response.text.code { return }
                try await refreshCapabilities()
                return
            case .read, .deliver, .refused, .unexpectedContinuation:
                throw IMAPError.protocolError("unexpected response to \(tag.command)")
            }
        }
    }

    // MARK: Mailbox commands

    /// Sends ID (RFC 2971) without waiting for the answer: servers that want a client to identify
    /// itself only need it sent before what follows, and the answer would cost a round trip.
    public func announce(_ parameters: [String: String]) async throws {
        guard hasCapability("ID") else { return }
        let fields = parameters.sorted { $0.key < $1.key }.map { "\(quote($0.key)) \(quote($0.value))" }
        _ = try await send(Command("ID", [.text(" (" + fields.joined(separator: " ") + ")")]))
    }

    public func namespace() async throws -> Namespaces? {
        guard hasCapability("NAMESPACE") else { return nil }
        var result: Namespaces?
        try await run(Command("NAMESPACE")) { event in
            if case .untagged(.namespace(let value)) = event { result = value }
        }
        return result
    }

    /// Every mailbox, with special-use attributes and, when `statusItems` is given, their status —
    /// in one round trip with LIST-STATUS, otherwise with a pipelined STATUS per selectable mailbox.
    public func listAll(statusItems: [StatusItem] = []) async throws -> [ListedMailbox] {
        var command = Command("LIST", [.text(" \"\" \"*\"")])
        var returns: [String] = []
        let extended = hasCapability("LIST-EXTENDED") || hasCapability("LIST-STATUS")
        if extended, hasCapability("SPECIAL-USE") { returns.append("SPECIAL-USE") }
        let inlineStatus = hasCapability("LIST-STATUS") && !statusItems.isEmpty
        if inlineStatus { returns.append("STATUS (\(statusItems.map(\.rawValue).joined(separator: " ")))") }
        if !returns.isEmpty { command.add("RETURN (\(returns.joined(separator: " ")))") }

        var entries: [ListEntry] = []
        var statuses: [String: [MailboxStatusItem]] = [:]
        try await run(command) { event in
            switch event {
            case .untagged(.list(let entry)): entries.append(entry)
            case .untagged(.mailboxStatus(let name, let items)): statuses[name.encoded, default: []] += items
            default: break
            }
        }
        if !statusItems.isEmpty, !inlineStatus {
            let selectable = entries.filter { !$0.hasAttribute("\\Noselect") && !$0.hasAttribute("\\NonExistent") }
            var tags: [CommandTag] = []
            for entry in selectable {
                var status = Command("STATUS")
                status.addMailbox(entry.name)
                status.add("(\(statusItems.map(\.rawValue).joined(separator: " ")))")
                tags.append(try await send(status))
            }
            for tag in tags {
                let response = try await finish(
                    tag,
                    onEvent: { event in
                        if case .untagged(.mailboxStatus(let name, let items)) = event {
                            statuses[name.encoded, default: []] += items
                        }
                    }, throwing: false)
                if response.status != .ok { continue }  // a mailbox removed meanwhile: no status
            }
        }
        return entries.map { ListedMailbox(entry: $0, status: statuses[$0.name.encoded].map(MailboxStatus.init)) }
    }

    public func status(_ mailbox: MailboxName, items: [StatusItem]) async throws -> MailboxStatus {
        var command = Command("STATUS")
        command.addMailbox(mailbox)
        command.add("(\(items.map(\.rawValue).joined(separator: " ")))")
        var collected: [MailboxStatusItem] = []
        try await run(command) { event in
            if case .untagged(.mailboxStatus(_, let items)) = event { collected += items }
        }
        return MailboxStatus(collected)
    }

    /// `condstore` asks for modification sequences (RFC 7162) where the server offers CONDSTORE, so
    /// the answer carries HIGHESTMODSEQ and later FETCH and STORE commands may use them.
    public func select(_ mailbox: MailboxName, readOnly: Bool = false, condstore: Bool = false) async throws
        -> SelectedMailbox
    {
        var command = Command(readOnly ? "EXAMINE" : "SELECT")
        command.addMailbox(mailbox)
        if condstore, hasCapability("CONDSTORE") { command.add("(CONDSTORE)") }
        var selected = SelectedMailbox(name: mailbox)
        let response = try await run(command, selecting: mailbox) { event in
            switch event {
            case .untagged(.exists(let count)): selected.exists = Int(count)
            case .untagged(.flags(let flags)): selected.flags = flags
            case .untagged(.status(.ok, let text)):
                switch text.code {
                case .uidValidity(let value)?: selected.uidValidity = value
                case .uidNext(let value)?: selected.uidNext = value
                case .permanentFlags(let flags)?: selected.permanentFlags = flags
                case .other(let name, let argument)? where name.uppercased() == "HIGHESTMODSEQ":
                    selected.highestModSeq = argument.flatMap { UInt64($0) }
                default: break
                }
            default: break
            }
        }
        selected.isReadOnly = response.text.code == .readOnly
        return selected
    }

    /// UID SEARCH with the given criteria (e.g. `ALL`, `SINCE 1-Jan-2020`), using ESEARCH when offered
    /// so a large result is one compact set.
    public func uidSearch(_ criteria: String) async throws -> [UInt32] {
        let useESearch = hasCapability("ESEARCH")
        let command = Command("UID", [.text(useESearch ? " SEARCH RETURN (ALL) \(criteria)" : " SEARCH \(criteria)")])
        var uids: [UInt32] = []
        try await run(command) { event in
            switch event {
            case .untagged(.search(let numbers)): uids += numbers
            case .untagged(.esearch(let result)): uids += result.all?.values ?? []
            default: break
            }
        }
        return uids.sorted()
    }

    /// Creates a mailbox; returns false when it already exists. `specialUse` (e.g. `\Sent`) is set
    /// when the server offers CREATE-SPECIAL-USE.
    @discardableResult
    public func create(_ mailbox: MailboxName, specialUse: String? = nil) async throws -> Bool {
        var command = Command("CREATE")
        command.addMailbox(mailbox)
        if let specialUse, hasCapability("CREATE-SPECIAL-USE") { command.add("(USE (\(specialUse)))") }
        let tag = try await send(command)
        let response = try await finish(tag, onEvent: { _ in }, throwing: false)
        if response.status == .ok { return true }
        if response.text.code == .alreadyExists { return false }
        throw IMAPError.commandFailed(command: "CREATE", status: response.status, text: response.text)
    }

    public func quotaRoot(_ mailbox: MailboxName) async throws -> [QuotaResource] {
        guard hasCapability("QUOTA") else { return [] }
        var command = Command("GETQUOTAROOT")
        command.addMailbox(mailbox)
        var resources: [QuotaResource] = []
        try await run(command) { event in
            if case .untagged(.quota(_, let list)) = event { resources += list }
        }
        return resources
    }

    public func noop() async throws {
        try await run(Command("NOOP")) { _ in }
    }

    /// Says LOGOUT and closes without waiting for the goodbye: every command that mattered has
    /// been answered by then, and the answer would cost a round trip. Errors are ignored since the
    /// session is over either way.
    public func logout() async {
        if state.connectionState != .logout, (try? await send(Command("LOGOUT"))) != nil {
            // Handed to the kernel before the close, so the server still reads it.
            try? await flush()
        }
        await close()
    }

    public func close() async {
        state.closed()
        await transport.close()
    }

    // MARK: Completions

    /// Non-tagged events until `tag` completes, then nil. Completions of other tags are kept.
    public func nextEvent(until tag: CommandTag) async throws -> ResponseEvent? {
        if case .completed = state.awaitCompletion(of: tag) { return nil }
        return try delivered(try await nextAction(), awaiting: tag)
    }

    /// What an action (other than `.read`) means while waiting for `tag`: an event, or nil once
    /// `tag` completed.
    private func delivered(_ action: SessionStateMachine.Action, awaiting tag: CommandTag) throws -> ResponseEvent? {
        switch action {
        case .deliver(let event):
            return event
        case .completed:
            return nil
        case .unexpectedContinuation:
            throw IMAPError.protocolError("unexpected continuation request")
        case .read, .proceed, .refused:
            throw IMAPError.protocolError("unexpected response to \(tag.command)")
        }
    }

    /// `nextEvent(until:)` from the events already read: `.some(nil)` when `tag` completed, nil
    /// when more must be read first.
    private func nextBufferedEvent(until tag: CommandTag) throws -> ResponseEvent?? {
        if case .completed = state.awaitCompletion(of: tag) { return .some(nil) }
        while eventIndex < events.count {
            let action = state.eventArrived(events[eventIndex])
            eventIndex += 1
            if case .read = action { continue }
            return .some(try delivered(action, awaiting: tag))
        }
        return nil
    }

    /// Waits for `tag` to complete, passing other events to `onEvent`; NO/BAD throw unless `throwing` is false.
    @discardableResult
    public func finish(_ tag: CommandTag, onEvent: (ResponseEvent) throws -> Void = { _ in }, throwing: Bool = true)
        async throws -> TaggedResponse
    {
        while true {
            // What already arrived is handed over without an await per event: a FETCH of 100,000
            // flags is 400,000 events, and an async call for each was a fifth of a pass's CPU.
            if let buffered = try nextBufferedEvent(until: tag) {
                guard let event = buffered else { break }
                try onEvent(event)
                continue
            }
            guard let event = try await nextEvent(until: tag) else { break }
            try onEvent(event)
        }
        guard let response = state.takeCompletion(of: tag) else {
            throw IMAPError.protocolError("missing completion for \(tag.command)")
        }
        if throwing, response.status != .ok {
            throw IMAPError.commandFailed(command: tag.command, status: response.status, text: response.text)
        }
        return response
    }

    // MARK: Sending and receiving

    /// Sends a command; literals go non-synchronising where LITERAL+ / LITERAL- allow.
    public func send(_ command: Command) async throws -> CommandTag {
        try await send(command, selecting: nil)
    }

    /// `selecting` is the mailbox of a SELECT or EXAMINE, for the connection state.
    private func send(_ command: Command, selecting mailbox: MailboxName?) async throws -> CommandTag {
        guard case .none = append else { throw IMAPError.usage("an APPEND is still open") }
        let tag = state.commandSent(command.name, selecting: mailbox)
        if !command.isSensitive { logger.trace("C: \(tag.value) \(command.name)") }
        queueText("\(tag.value) \(command.name)")
        for part in command.parts {
            switch part {
            case .text(let text):
                queueText(text)
            case .literal(var bytes):
                if canSendNonSynchronizing(size: bytes.readableBytes) {
                    queueText("{\(bytes.readableBytes)+}\r\n")
                } else {
                    queueText("{\(bytes.readableBytes)}\r\n")
                    try await flush()
                    try await awaitContinuation(for: tag)
                }
                outgoing.writeBuffer(&bytes)
            }
        }
        queueText("\r\n")
        return tag
    }

    func canSendNonSynchronizing(size: Int) -> Bool {
        hasCapability("LITERAL+") || (hasCapability("LITERAL-") && size <= 4096)
    }

    /// Waits for the server's go-ahead for a synchronising literal; a refusal instead is thrown.
    func awaitContinuation(for tag: CommandTag) async throws {
        var action = state.awaitContinuation(of: tag)
        if case .read = action { action = try await nextAction() }
        switch action {
        case .proceed:
            return
        case .refused(let response):
            throw IMAPError.commandFailed(command: tag.command, status: response.status, text: response.text)
        case .read, .deliver, .completed, .unexpectedContinuation:
            throw IMAPError.protocolError("unexpected response to \(tag.command)")
        }
    }

    /// Runs one command to completion, giving its untagged and FETCH events to `onEvent`.
    @discardableResult
    private func run(
        _ command: Command, selecting mailbox: MailboxName? = nil,
        onEvent: (ResponseEvent) throws -> Void
    ) async throws -> TaggedResponse {
        let tag = try await send(command, selecting: mailbox)
        return try await finish(tag, onEvent: onEvent)
    }

    func queueText(_ text: String) { outgoing.writeString(text) }

    func flush() async throws {
        guard outgoing.readableBytes > 0 else { return }
        let bytes = outgoing
        outgoing = ByteBuffer()
        try await transport.write(bytes)
    }

    /// Reads events until the state machine has something for the caller.
    private func nextAction() async throws -> SessionStateMachine.Action {
        while true {
            let action = state.eventArrived(try await nextRawEvent())
            if case .read = action { continue }
            return action
        }
    }

    private func nextRawEvent() async throws -> ResponseEvent {
        if eventIndex >= events.count {
            try await flush()
            events = try await transport.nextEvents()
            eventIndex = 0
        }
        let event = events[eventIndex]
        eventIndex += 1
        return event
    }

    private func quote(_ value: String) -> String {
        var command = Command("")
        command.addString(value)
        if case .text(let text)? = command.parts.first, command.parts.count == 1 {
            let trimmed = String(text.dropFirst())
            return trimmed.hasPrefix("\"") ? trimmed : "\"\(trimmed)\""
        }
        return "NIL"
    }
}
