import NIOCore
import Testing
@testable import IMAPClient

/// The session's routing of responses to commands and its connection state, fed events by hand.
@Suite("Session state machine")
struct SessionStateMachineTests {
    private func machine(greeting: ResponseStatus = .ok, code: ResponseCode? = nil) -> SessionStateMachine {
        SessionStateMachine(greeting: greeting, text: ResponseText(code: code, text: "ready"))
    }

    private func tagged(_ tag: CommandTag, _ status: ResponseStatus = .ok, code: ResponseCode? = nil) -> ResponseEvent {
        .tagged(TaggedResponse(tag: tag.value, status: status, text: ResponseText(code: code, text: "done")))
    }

    @Test func tagsAreNumberedInOrder() {
        var state = machine()
        #expect(state.commandSent("NOOP") == CommandTag(value: "M1", command: "NOOP"))
        #expect(state.commandSent("LIST") == CommandTag(value: "M2", command: "LIST"))
    }

    @Test func aCommandsDataIsDeliveredUntilItsCompletion() {
        var state = machine()
        let fetch = state.commandSent("UID")
        #expect(state.awaitCompletion(of: fetch) == .read)
        #expect(state.eventArrived(.fetchStart(sequence: 1)) == .deliver(.fetchStart(sequence: 1)))
        #expect(state.eventArrived(.untagged(.exists(4))) == .deliver(.untagged(.exists(4))))
        #expect(state.eventArrived(tagged(fetch)) == .completed)
        #expect(state.wait == .nothing)
        #expect(state.takeCompletion(of: fetch)?.status == .ok)
        #expect(state.takeCompletion(of: fetch) == nil, "a completion is handed over once")
    }

    @Test func anotherCommandsCompletionIsKeptForLater() {
        var state = machine()
        let first = state.commandSent("STATUS")
        let second = state.commandSent("STATUS")
        #expect(state.awaitCompletion(of: second) == .read)
        #expect(state.eventArrived(tagged(first, .no)) == .read)
        #expect(state.eventArrived(tagged(second)) == .completed)
        // The first is complete already: nothing is read for it.
        #expect(state.awaitCompletion(of: first) == .completed)
        #expect(state.takeCompletion(of: first)?.status == .no)
    }

    @Test func aContinuationWhileAwaitingDataIsAProtocolError() {
        var state = machine()
        let tag = state.commandSent("NOOP")
        _ = state.awaitCompletion(of: tag)
        #expect(state.eventArrived(.continuation("go ahead")) == .unexpectedContinuation)
    }

    @Test func aLiteralsGoAheadIgnoresUntaggedDataAndKeepsOtherCompletions() {
        var state = machine()
        let earlier = state.commandSent("NOOP")
        let append = state.commandSent("APPEND")
        #expect(state.awaitContinuation(of: append) == .read)
        #expect(state.eventArrived(.untagged(.exists(9))) == .read)
        #expect(state.eventArrived(tagged(earlier)) == .read)
        #expect(state.eventArrived(.continuation("Ready")) == .proceed)
        #expect(state.wait == .nothing)
        #expect(state.takeCompletion(of: earlier) != nil)
    }

    @Test func aLiteralRefusedInsteadOfItsGoAhead() {
        var state = machine()
        let append = state.commandSent("APPEND")
        _ = state.awaitContinuation(of: append)
        let refusal = TaggedResponse(
            tag: append.value, status: .no,
            text: ResponseText(code: .overQuota, text: "Quota exceeded"))
        #expect(state.eventArrived(.tagged(refusal)) == .refused(refusal))
        #expect(state.takeCompletion(of: append) == nil, "a refusal is the caller's at once, not kept")
    }

    @Test func saslChallengesUntilTheCompletion() {
        var state = machine()
        let tag = state.commandSent("AUTHENTICATE")
        #expect(state.awaitChallenges(of: tag) == .read)
        #expect(state.eventArrived(.continuation("")) == .proceed)
        #expect(state.eventArrived(.continuation("eyJzdGF0dXMiOiI0MDEifQ==")) == .proceed)
        #expect(state.eventArrived(.untagged(.status(.ok, ResponseText(code: nil, text: "hi")))) == .read)
        #expect(state.eventArrived(tagged(tag, .no)) == .completed)
        #expect(state.takeCompletion(of: tag)?.status == .no)
        #expect(state.connectionState == .notAuthenticated)
    }

    @Test func capabilitiesFromTheGreetingUntaggedDataAndCompletionCodes() {
        var state = machine(code: .capability(["IMAP4rev1", "starttls"]))
        #expect(state.hasCapability("STARTTLS"))
        state.tlsStarted()
        #expect(state.capabilities.isEmpty)
        let capability = state.commandSent("CAPABILITY")
        _ = state.awaitCompletion(of: capability)
        #expect(
            state.eventArrived(.untagged(.capability(["IMAP4rev1", "AUTH=PLAIN"])))
                == .deliver(.untagged(.capability(["IMAP4rev1", "AUTH=PLAIN"]))))
        #expect(state.hasCapability("auth=plain"))
        let login = state.commandSent("LOGIN")
        _ = state.awaitCompletion(of: login)
        _ = state.eventArrived(tagged(login, code: .capability(["IMAP4rev1", "UIDPLUS"])))
        #expect(!state.hasCapability("UIDPLUS"), "a completion's code is learned when it is taken")
        _ = state.takeCompletion(of: login)
        #expect(state.hasCapability("UIDPLUS") && !state.hasCapability("AUTH=PLAIN"))
    }

    @Test func connectionStatesFollowRFC9051() {
        var state = machine()
        #expect(state.connectionState == .notAuthenticated)
        let refusedSelect = state.commandSent("SELECT", selecting: MailboxName(encoded: "INBOX"))
        _ = state.eventArrived(tagged(refusedSelect, .bad))
        #expect(state.connectionState == .notAuthenticated, "SELECT before login moves nothing")

        let failedLogin = state.commandSent("LOGIN")
        _ = state.eventArrived(tagged(failedLogin, .no))
        #expect(state.connectionState == .notAuthenticated)
        let login = state.commandSent("LOGIN")
        _ = state.eventArrived(tagged(login))
        #expect(state.connectionState == .authenticated)

        let inbox = MailboxName(encoded: "INBOX")
        let select = state.commandSent("SELECT", selecting: inbox)
        #expect(state.connectionState == .authenticated, "the state moves with the completion")
        _ = state.eventArrived(tagged(select))
        #expect(state.connectionState == .selected(inbox))
        let examine = state.commandSent("EXAMINE", selecting: MailboxName(encoded: "Gone"))
        _ = state.eventArrived(tagged(examine, .no))
        #expect(state.connectionState == .authenticated, "a failed SELECT leaves no mailbox selected")

        let again = state.commandSent("SELECT", selecting: inbox)
        _ = state.eventArrived(tagged(again))
        let close = state.commandSent("CLOSE")
        _ = state.eventArrived(tagged(close))
        #expect(state.connectionState == .authenticated)

        _ = state.commandSent("LOGOUT")
        #expect(state.connectionState == .logout)
    }

    @Test func preauthGreetingAndByeAndClose() {
        var preauth = machine(greeting: .preauth)
        #expect(preauth.connectionState == .authenticated)
        _ = preauth.eventArrived(.untagged(.status(.bye, ResponseText(code: nil, text: "shutting down"))))
        #expect(preauth.connectionState == .logout)

        var closed = machine()
        closed.closed()
        #expect(closed.connectionState == .logout)
        let login = closed.commandSent("LOGIN")
        _ = closed.eventArrived(tagged(login))
        #expect(closed.connectionState == .logout, "nothing leaves the logout state")
    }
}
