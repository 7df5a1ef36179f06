import IMAPClient
import Testing
@testable import MigrationEngine

@Suite("Failure classification")
struct ClassificationTests {
    let migration = Migration(
        request: MigrationRequest(
            source: MailAccount(
                server: ServerConfiguration(host: "imap.old.example", port: 993, security: .ssl),
                credentials: .password(username: "a", password: "p")),
            destination: MailAccount(
                server: ServerConfiguration(host: "imap.new.example", port: 993, security: .ssl),
                credentials: .password(username: "a", password: "p")),
            provider: .gmail), checkpoints: MemoryCheckpointStore())

    @Test func theSameErrorMeansDifferentThingsPerSide() {
        let timeout = IMAPError.timedOut(phase: "a server response")
        #expect(migration.classify(timeout).code == .connectionTimedOut)
        #expect(migration.classify(SidedError(side: .destination, underlying: timeout)).code == .destinationUnavailable)
        #expect(migration.classify(SidedError(side: .destination, underlying: timeout)).isRetryable)
        let full = IMAPError.commandFailed(
            command: "APPEND", status: .no, text: ResponseText(code: .overQuota, text: "Quota exceeded"))
        #expect(migration.classify(SidedError(side: .destination, underlying: full)).code == .mailboxQuotaExceeded)
        let throttled = IMAPError.commandFailed(
            command: "UID", status: .no, text: ResponseText(code: .throttled, text: "slow down"))
        #expect(migration.classify(throttled).code == .sourceThrottled)
        #expect(FolderWorker.isTransient(SidedError(side: .destination, underlying: timeout)))
        #expect(!FolderWorker.isTransient(SidedError(side: .destination, underlying: full)))
    }

    @Test func aRefusedSelectIsRetriedOnceAndServerBugsAlways() {
        let raced = IMAPError.commandFailed(
            command: "SELECT", status: .no, text: ResponseText(code: nil, text: "Mailbox already exists"))
        #expect(FolderWorker.isTransient(SidedError(side: .destination, underlying: raced), attempt: 1))
        #expect(!FolderWorker.isTransient(SidedError(side: .destination, underlying: raced), attempt: 2))
        let bug = IMAPError.commandFailed(
            command: "UID", status: .no, text: ResponseText(code: .serverBug, text: "Internal error"))
        #expect(FolderWorker.isTransient(bug, attempt: 3))
        let refusedAppend = IMAPError.commandFailed(
            command: "APPEND", status: .no, text: ResponseText(code: nil, text: "no"))
        #expect(!FolderWorker.isTransient(SidedError(side: .destination, underlying: refusedAppend), attempt: 1))
        let bad = IMAPError.commandFailed(
            command: "SELECT", status: .bad, text: ResponseText(code: nil, text: "syntax"))
        #expect(!FolderWorker.isTransient(bad, attempt: 1))
    }

    @Test func gmailLoginFailureHintNamesAppPasswords() {
        let refused = IMAPError.authenticationFailed(
            ResponseText(code: .authenticationFailed, text: "Invalid credentials"))
        let failure = migration.classify(refused)
        #expect(failure.code == .authenticationFailed)
        #expect(failure.hint.contains("App Password"))
        #expect(!failure.message.contains("p\u{0}"))
    }
}
