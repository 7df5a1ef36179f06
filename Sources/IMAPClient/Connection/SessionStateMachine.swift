/// The states of an IMAP connection (RFC 9051 §3).
public enum IMAPConnectionState: Sendable, Equatable {
    case notAuthenticated
    case authenticated
    case selected(MailboxName)
    case logout
}

/// An `IMAPSession`'s bookkeeping as a value, with no I/O: the tags handed out, what the session is
/// reading for, completions that came back for commands nobody is waiting on yet, the capabilities
/// and the connection state.
///
/// The session tells it each input (a command went out, the caller waits for something, an event
/// arrived) and does what the returned action says. Every rule of which response belongs to which
/// command lives here, so it is tested without a socket.
struct SessionStateMachine {
    /// What the session is reading events for.
    enum Wait: Equatable {
        case nothing
        /// The command's untagged and FETCH data, then its completion.
        case completion(CommandTag)
        /// The server's go-ahead (`+`) for a synchronising literal of the command.
        case continuation(CommandTag)
        /// A SASL exchange: challenges, each answered by the caller, until the completion.
        case challenges(CommandTag)
    }

    /// What the session does next.
    enum Action: Equatable {
        /// Nothing for the caller: read the next event.
        case read
        /// An untagged or FETCH event while a command's data is awaited.
        case deliver(ResponseEvent)
        /// The awaited command completed; `takeCompletion` hands over its response.
        case completed
        /// The server asked for the literal or the next SASL response.
        case proceed
        /// The command awaiting a go-ahead was answered with its completion instead.
        case refused(TaggedResponse)
        /// A continuation request while none was expected.
        case unexpectedContinuation
    }

    /// How a command's completion moves the connection state.
    private enum Transition {
        case authenticates
        case selects(MailboxName)
        case deselects
    }

    private(set) var connectionState: IMAPConnectionState
    private(set) var capabilities: Set<String> = []
    private(set) var wait = Wait.nothing
    private var tagCounter = 0
    /// Completions of commands not (yet) awaited, by tag.
    private var completions: [String: TaggedResponse] = [:]
    /// Commands out whose completion changes the connection state, by tag.
    private var transitions: [String: Transition] = [:]

    /// A connection whose greeting was OK or PREAUTH (RFC 9051 §7.1.4).
    init(greeting status: ResponseStatus, text: ResponseText) {
        connectionState = status == .preauth ? .authenticated : .notAuthenticated
        if case .capability(let list)? = text.code { capabilitiesLearned(list) }
    }

    func hasCapability(_ name: String) -> Bool { capabilities.contains(name.uppercased()) }

    // MARK: Inputs

    /// A command goes out; `selecting` is the mailbox of a SELECT or EXAMINE. Returns its tag.
    mutating func commandSent(_ name: String, selecting mailbox: MailboxName? = nil) -> CommandTag {
        tagCounter += 1
        let tag = CommandTag(value: "M\(tagCounter)", command: name)
        switch name.uppercased() {
        case "LOGIN", "AUTHENTICATE": transitions[tag.value] = .authenticates
        case "SELECT", "EXAMINE": if let mailbox { transitions[tag.value] = .selects(mailbox) }
        case "CLOSE", "UNSELECT": transitions[tag.value] = .deselects
        case "LOGOUT": connectionState = .logout
        default: break
        }
        return tag
    }

    mutating func capabilitiesLearned(_ list: [String]) { capabilities = Set(list.map { $0.uppercased() }) }

    /// The channel is protected now: what was offered before must be learned again (RFC 9051 §6.2.1).
    mutating func tlsStarted() { capabilities = [] }

    /// The connection is closed.
    mutating func closed() { connectionState = .logout }

    /// The caller wants `tag`'s data and completion: `.completed` when it is already in, else `.read`.
    mutating func awaitCompletion(of tag: CommandTag) -> Action {
        // Called once per event of a FETCH: while the wait stands, the completion has not come.
        if case .completion(let awaited) = wait, awaited == tag { return .read }
        if completions[tag.value] != nil {
            wait = .nothing
            return .completed
        }
        wait = .completion(tag)
        return .read
    }

    /// The caller has sent a synchronising literal's size and waits for the go-ahead.
    mutating func awaitContinuation(of tag: CommandTag) -> Action {
        if let response = completions.removeValue(forKey: tag.value) {
            wait = .nothing
            return .refused(response)
        }
        wait = .continuation(tag)
        return .read
    }

    /// The caller has sent AUTHENTICATE and answers challenges until its completion.
    mutating func awaitChallenges(of tag: CommandTag) -> Action {
        if completions[tag.value] != nil {
            wait = .nothing
            return .completed
        }
        wait = .challenges(tag)
        return .read
    }

    /// One event from the server.
    mutating func eventArrived(_ event: ResponseEvent) -> Action {
        switch event {
        case .tagged(let response):
            return completionArrived(response)
        case .continuation:
            switch wait {
            case .continuation:
                wait = .nothing
                return .proceed
            case .challenges:
                return .proceed
            case .completion, .nothing:
                return .unexpectedContinuation
            }
        case .untagged(.capability(let list)):
            capabilitiesLearned(list)
        case .untagged(.status(.bye, _)):
            connectionState = .logout
        default:
            break
        }
        if case .completion = wait { return .deliver(event) }
        return .read
    }

    /// The response of a completed command, once; its CAPABILITY code, if any, is learned.
    mutating func takeCompletion(of tag: CommandTag) -> TaggedResponse? {
        guard let response = completions.removeValue(forKey: tag.value) else { return nil }
        if case .capability(let list)? = response.text.code { capabilitiesLearned(list) }
        return response
    }

    // MARK: Routing

    private mutating func completionArrived(_ response: TaggedResponse) -> Action {
        if let transition = transitions.removeValue(forKey: response.tag) {
            apply(transition, succeeded: response.status == .ok)
        }
        switch wait {
        case .continuation(let tag) where tag.value == response.tag:
            wait = .nothing
            return .refused(response)
        case .completion(let tag) where tag.value == response.tag,
            .challenges(let tag) where tag.value == response.tag:
            completions[response.tag] = response
            wait = .nothing
            return .completed
        default:
            completions[response.tag] = response
            return .read
        }
    }

    /// The moves of RFC 9051 §3's diagram; a command refused in the wrong state moves nothing.
    private mutating func apply(_ transition: Transition, succeeded: Bool) {
        switch (transition, connectionState) {
        case (_, .logout):
            break
        case (.authenticates, .notAuthenticated):
            if succeeded { connectionState = .authenticated }
        case (.selects(let mailbox), .authenticated), (.selects(let mailbox), .selected):
            // A failed SELECT or EXAMINE still deselects the mailbox that was selected.
            connectionState = succeeded ? .selected(mailbox) : .authenticated
        case (.deselects, .selected):
            if succeeded { connectionState = .authenticated }
        default:
            break
        }
    }
}
