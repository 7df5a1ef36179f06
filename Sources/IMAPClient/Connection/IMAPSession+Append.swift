import NIOCore

/// APPEND (RFC 9051 §6.3.12) and MULTIAPPEND (RFC 3502), with bodies streamed in as they arrive.
extension IMAPSession {
    /// Whether several messages can stream into one APPEND (MULTIAPPEND, RFC 3502) without waiting
    /// for the server between them (LITERAL+). The server then stores them in one transaction, which
    /// costs it much less than one APPEND per message.
    public var canStreamMultiAppend: Bool { hasCapability("MULTIAPPEND") && hasCapability("LITERAL+") }

    /// Starts an APPEND whose body of `size` bytes follows through `appendBytes` and `endAppend`.
    /// With LITERAL+ nothing is awaited, so appends pipeline; otherwise the server's go-ahead is
    /// awaited and its refusal (e.g. OVERQUOTA) is thrown here.
    public func beginAppend(to mailbox: MailboxName, flags: [String], internalDate: InternalDate?, size: Int)
        async throws -> CommandTag
    {
        guard case .none = append else { throw IMAPError.usage("an APPEND is already open") }
        let tag = state.commandSent("APPEND")
        queueText("\(tag.value) APPEND" + (try appendMailbox(mailbox)))
        try await announceMessage(flags: flags, internalDate: internalDate, size: size, tag: tag)
        append = .single(tag, remaining: size)
        if size == 0 { try await endAppend() }
        return tag
    }

    /// Starts an APPEND of several messages (see `canStreamMultiAppend`); each follows through
    /// `appendMessage`, `appendBytes` and `endAppend`, and `endMultiAppend` sends the command off.
    /// The server stores all of them or none.
    public func beginMultiAppend(to mailbox: MailboxName) throws -> CommandTag {
        guard case .none = append else { throw IMAPError.usage("an APPEND is already open") }
        guard canStreamMultiAppend else { throw IMAPError.usage("the server cannot stream a MULTIAPPEND") }
        let tag = state.commandSent("APPEND")
        queueText("\(tag.value) APPEND" + (try appendMailbox(mailbox)))
        append = .multiple(tag, remaining: nil, messages: 0)
        return tag
    }

    /// The next message of the open MULTIAPPEND, `size` bytes long.
    public func appendMessage(flags: [String], internalDate: InternalDate?, size: Int) async throws {
        guard case .multiple(let tag, nil, let messages) = append else {
            throw IMAPError.usage("no MULTIAPPEND is open between messages")
        }
        try await announceMessage(flags: flags, internalDate: internalDate, size: size, tag: tag)
        append = .multiple(tag, remaining: size, messages: messages + 1)
    }

    /// Sends the open MULTIAPPEND off; its outcome comes from `appendResult`.
    public func endMultiAppend() async throws {
        guard case .multiple(_, nil, let messages) = append else {
            throw IMAPError.usage("no MULTIAPPEND is open between messages")
        }
        guard messages > 0 else { throw IMAPError.usage("a MULTIAPPEND needs at least one message") }
        append = .none
        queueText("\r\n")
        // The server can store the messages only once the command is whole.
        try await flush()
    }

    public func appendBytes(_ bytes: ByteBuffer) async throws {
        guard let remaining = append.remaining else { throw IMAPError.usage("no APPEND message is open") }
        guard bytes.readableBytes <= remaining else {
            throw IMAPError.usage("APPEND body longer than announced")
        }
        append.remaining = remaining - bytes.readableBytes
        if bytes.readableBytes >= 16 * 1024 {
            // Whatever is queued (the APPEND line, earlier small messages) goes out in the same
            // hand-over to the event loop as the chunk: one hop instead of two.
            let queued = outgoing
            outgoing = ByteBuffer()
            try await transport.write(queued.readableBytes > 0 ? [queued, bytes] : [bytes])
        } else {
            var bytes = bytes
            outgoing.writeBuffer(&bytes)
            if outgoing.readableBytes >= 64 * 1024 { try await flush() }
        }
    }

    /// Ends the current message's body; for a single APPEND that also ends the command.
    public func endAppend() async throws {
        guard let remaining = append.remaining else { throw IMAPError.usage("no APPEND message is open") }
        guard remaining == 0 else { throw IMAPError.usage("APPEND body shorter than announced") }
        switch append {
        case .multiple(let tag, _, let messages):
            append = .multiple(tag, remaining: nil, messages: messages)
        case .single, .none:
            append = .none
            queueText("\r\n")
            if outgoing.readableBytes >= 64 * 1024 { try await flush() }
        }
    }

    /// Appends a whole message; returns its result.
    public func append(to mailbox: MailboxName, flags: [String], internalDate: InternalDate?, message: ByteBuffer)
        async throws -> AppendResult
    {
        let tag = try await beginAppend(
            to: mailbox, flags: flags, internalDate: internalDate, size: message.readableBytes)
        if message.readableBytes > 0 {
            try await appendBytes(message)
            try await endAppend()
        }
        return try await appendResult(tag)
    }

    /// The outcome of an APPEND, with the new UIDs when the server reports them (UIDPLUS).
    public func appendResult(_ tag: CommandTag) async throws -> AppendResult {
        let response = try await finish(tag)
        if case .appendUID(let validity, let uids)? = response.text.code {
            return AppendResult(uidValidity: validity, uids: uids)
        }
        return AppendResult(uidValidity: nil, uids: nil)
    }

    /// ` mailbox` for an APPEND line written by hand (the body follows as a streamed literal).
    private func appendMailbox(_ mailbox: MailboxName) throws -> String {
        var name = Command("")
        name.addMailbox(mailbox)
        // Mailbox names that need a literal are rare; they are refused rather than mis-sent.
        guard case .text(let text)? = name.parts.first, name.parts.count == 1 else {
            throw IMAPError.usage("mailbox name needs a literal")
        }
        return text
    }

    /// ` (flags) "date" {size+}` and, for a synchronising literal, the server's go-ahead.
    private func announceMessage(flags: [String], internalDate: InternalDate?, size: Int, tag: CommandTag) async throws
    {
        var header = " (\(flags.joined(separator: " ")))"
        if let internalDate { header += " \"\(internalDate)\"" }
        let nonSynchronizing = canSendNonSynchronizing(size: size)
        header += nonSynchronizing ? " {\(size)+}\r\n" : " {\(size)}\r\n"
        queueText(header)
        if !nonSynchronizing {
            try await flush()
            try await awaitContinuation(for: tag)
        }
    }
}

/// Where the APPEND being written stands: which command, and how many body bytes of the current
/// message are still to come (`nil` between the messages of a MULTIAPPEND).
enum AppendState {
    case none
    case single(CommandTag, remaining: Int)
    case multiple(CommandTag, remaining: Int?, messages: Int)

    var remaining: Int? {
        get {
            switch self {
            case .none: nil
            case .single(_, let remaining): remaining
            case .multiple(_, let remaining, _): remaining
            }
        }
        set {
            switch self {
            case .none: break
            case .single(let tag, _): if let newValue { self = .single(tag, remaining: newValue) }
            case .multiple(let tag, _, let messages): self = .multiple(tag, remaining: newValue, messages: messages)
            }
        }
    }
}
