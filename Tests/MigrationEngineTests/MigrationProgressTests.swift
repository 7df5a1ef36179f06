import IMAPClient
@testable import MigrationEngine
import Testing

/// The one fold of migration events behind the runner's stored progress and the CLI's line.
@Suite("Migration progress")
struct MigrationProgressTests {
    private func plan(_ source: String, to destination: String, expected: Int) -> FolderPlan {
        FolderPlan(
            source: MailboxName(decoded: source), destination: MailboxName(decoded: destination), expected: expected)
    }

    @Test func eventsFoldIntoPerFolderCountsAndStates() {
        var progress = MigrationProgress()
        progress.apply(.validated)
        #expect(!progress.isPlanned)
        progress.apply(
            .planned([plan("INBOX", to: "INBOX", expected: 3), plan("Sent Items", to: "Sent", expected: 2)]))
        #expect(progress.isPlanned)
        #expect(progress.totals == FolderSummaryCounts(expected: 5))

        progress.apply(.folderStarted(source: "INBOX", destination: "INBOX"))
        progress.apply(.messageCopied(folder: "INBOX", bytes: 100))
        progress.apply(.messageSkipped(folder: "INBOX"))
        progress.apply(.messageCopied(folder: "Elsewhere", bytes: 7))  // not in the plan: ignored
        progress.apply(.retrying(folder: "INBOX", attempt: 1, delaySeconds: 1, reason: "dropped"))
        #expect(progress.folders[0].state == .reconnecting)
        // The next attempt starts from the checkpoint's totals, replacing what the last one counted.
        progress.apply(
            .folderBaseline(source: "INBOX", counts: FolderSummaryCounts(expected: 3, copied: 1, bytes: 100)))
        progress.apply(.messageCopied(folder: "INBOX", bytes: 50))
        progress.apply(.messageFailed(folder: "INBOX", uid: 9, size: 120, internalDate: nil, reason: "refused"))
        #expect(progress.folders[0].counts == FolderSummaryCounts(expected: 3, copied: 2, failed: 1, bytes: 150))

        let summary = FolderSummaryCounts(expected: 3, copied: 2, skipped: 1, bytes: 150)
        progress.apply(.folderFinished(source: "INBOX", summary: summary))
        progress.apply(
            .folderFailed(
                source: "Sent Items", failure: ImportFailure(code: .mailboxQuotaExceeded, message: "full", hint: "")))
        #expect(progress.folders[0].state == .done && progress.folders[0].counts == summary)
        #expect(progress.folders[1].state == .failed(.mailboxQuotaExceeded))
        #expect(progress.totals == FolderSummaryCounts(expected: 5, copied: 2, skipped: 1, bytes: 150))
    }
}
