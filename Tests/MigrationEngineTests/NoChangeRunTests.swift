import IMAPClient
@testable import MigrationEngine
import Testing

/// When the listed status alone shows that a folder's checkpoint covers it (the fast no-change rerun).
@Suite("Folders finished by their listed status")
struct NoChangeRunTests {
    func status(messages: Int, uidNext: UInt32, uidValidity: UInt32, modSeq: UInt64 = 55) -> MailboxStatus {
        MailboxStatus([.messages(messages), .uidNext(uidNext), .uidValidity(uidValidity), .highestModSeq(modSeq)])
    }

    /// 100 copies, the last pass began at HIGHESTMODSEQ 55 with 116 messages.
    var checkpoint: FolderCheckpoint {
        var checkpoint = FolderCheckpoint(
            sourceUIDValidity: 7, lastSourceUID: 120, copied: 100, skipped: 15, failed: 1, bytes: 9000)
        checkpoint.copiedMap = UIDMap(pairs: (1...100).map { (UInt32($0), UInt32($0)) })
        checkpoint.highestModSeq = 55
        checkpoint.sourceMessages = 116
        return checkpoint
    }

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
        var nothingCopied = checkpoint
        nothingCopied.copiedMap = UIDMap()
        #expect(
            Migration.finishedByStatus(status(messages: 0, uidNext: 500, uidValidity: 9), checkpoint: nothingCopied)?
                .copied == 100)
    }

    /// A delta pass is needed when a flag changed or a message went since the last pass (CONDSTORE),
    /// when the source cannot tell (no CONDSTORE: the flags are compared), and once for a checkpoint
    /// of an earlier version, whose copies have to be matched first.
    @Test func flagChangesExpungesOrNoModSeqNeedAPass() {
        #expect(
            Migration.finishedByStatus(
                status(messages: 116, uidNext: 121, uidValidity: 7, modSeq: 56), checkpoint: checkpoint)
                == nil)
        #expect(
            Migration.finishedByStatus(status(messages: 115, uidNext: 121, uidValidity: 7), checkpoint: checkpoint)
                == nil)
        #expect(
            Migration.finishedByStatus(
                MailboxStatus([.messages(116), .uidNext(121), .uidValidity(7)]), checkpoint: checkpoint) == nil)
        var old = checkpoint
        old.copiedMap = nil
        #expect(Migration.finishedByStatus(status(messages: 116, uidNext: 121, uidValidity: 7), checkpoint: old) == nil)
        // All messages emptied out of a folder whose copies are known: deletions may be due.
        #expect(
            Migration.finishedByStatus(status(messages: 0, uidNext: 121, uidValidity: 7), checkpoint: checkpoint) == nil
        )
    }
}
