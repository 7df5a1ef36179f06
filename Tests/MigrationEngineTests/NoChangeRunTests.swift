import IMAPClient
@testable import MigrationEngine
import Testing

/// When the listed status alone shows that a folder's checkpoint covers it (the fast no-change rerun).
@Suite("Folders finished by their listed status")
struct NoChangeRunTests {
    func status(messages: Int, uidNext: UInt32, uidValidity: UInt32) -> MailboxStatus {
        MailboxStatus([.messages(messages), .uidNext(uidNext), .uidValidity(uidValidity)])
    }

    let checkpoint = FolderCheckpoint(
        sourceUIDValidity: 7, lastSourceUID: 120, copied: 100, skipped: 15, failed: 1, bytes: 9000)

    @Test func aCheckpointUpToTheLastUIDFinishesTheFolderWithItsCounts() {
        let counts = Migration.finishedByStatus(
            status(messages: 116, uidNext: 121, uidValidity: 7), checkpoint: checkpoint)
        #expect(counts == FolderSummaryCounts(expected: 116, copied: 100, skipped: 15, failed: 1, bytes: 9000))
    }

    @Test func aNewMessageAnotherUIDValidityOrABatchInFlightNeedALook() {
        #expect(
            Migration.finishedByStatus(status(messages: 117, uidNext: 122, uidValidity: 7), checkpoint: checkpoint)
                == nil)
        #expect(
            Migration.finishedByStatus(status(messages: 116, uidNext: 121, uidValidity: 8), checkpoint: checkpoint)
                == nil)
        var inFlight = checkpoint
        inFlight.inFlight = InFlightBatch(lastSourceUID: 130, destinationUIDValidity: 1, destinationUIDNext: 50)
        #expect(
            Migration.finishedByStatus(status(messages: 116, uidNext: 121, uidValidity: 7), checkpoint: inFlight) == nil
        )
        #expect(Migration.finishedByStatus(status(messages: 3, uidNext: 4, uidValidity: 7), checkpoint: nil) == nil)
        #expect(Migration.finishedByStatus(nil, checkpoint: checkpoint) == nil)
        // A server that lists no UIDNEXT gives no shortcut.
        #expect(Migration.finishedByStatus(MailboxStatus([.messages(116)]), checkpoint: checkpoint) == nil)
    }

    @Test func anEmptyFolderIsFinishedWithOrWithoutACheckpoint() {
        #expect(
            Migration.finishedByStatus(status(messages: 0, uidNext: 1, uidValidity: 3), checkpoint: nil)
                == FolderSummaryCounts())
        #expect(
            Migration.finishedByStatus(status(messages: 0, uidNext: 500, uidValidity: 9), checkpoint: checkpoint)?
                .copied == 100)
    }
}
