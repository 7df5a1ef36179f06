import Foundation
import SQLKit
@testable import Store
import Testing
import TestSupport

/// The failed messages of a migration's latest run, as its report lists them: recorded while it
/// runs, upserted by folder and UID, capped per migration, cleaned of control characters, and
/// cleared when a retry or delta pass starts a new run.
@Suite struct FailedMessageStoreTests {
    /// A single migration of a fresh account, claimed (running) by `n1`.
    private func running(_ store: Store) async throws -> (Account, MigrationRecord) {
        let account = try await store.createAccount(plan: .pro, notificationEmail: "ops@acme.example")
        let box = try await store.addMailbox(accountID: account.id, email: "jane@acme.example")
        let record = try await store.createMigration(
            NewMigration(
                accountID: account.id, mailboxID: box.id, provider: "generic_imap", sourceHost: "imap.old.example",
                sourcePort: 993, sourceSecurity: "ssl", sourceEmail: "jane@old.example", sourcePassword: "x"))
        let claimed = try #require(try await store.claimPendingMigration(owner: "n1", leaseSeconds: 30))
        #expect(claimed.id == record.id)
        return (account, claimed)
    }

    private func rowCount(_ store: Store, _ id: Int64) async throws -> Int {
        try await store.database.raw(
            "SELECT COUNT(*) AS n FROM migration_failed_messages WHERE migration_id = \(bind: id)"
        ).first().map { try $0.int("n") } ?? -1
    }

    @Test(arguments: StoreBackend.allCases)
    func aRunsFailuresAreKeptCleanedCappedAndClearedByARetry(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let (account, record) = try await running(store)
            let date = Date(timeIntervalSince1970: 1_682_929_800)
            #expect(
                try await store.recordFailedMessage(
                    try await store.lease(record.id, heldBy: "n1"),
                    FailedMessage(
                        folder: "INBOX", uid: 4_000_000_000, size: 1234, internalDate: date,
                        reason: "  message refused\r\n\u{1B}[31m by\tpolicy\u{202E}  ")))
            #expect(
                try await store.failedMessages(migrationID: record.id) == [
                    FailedMessage(
                        folder: "INBOX", uid: 4_000_000_000, size: 1234, internalDate: date,
                        reason: "message refused [31m by policy")
                ])

            // The same message failing again (a folder retried after a dropped connection): one row, the latest reason.
            let long = String(repeating: "é", count: 1_000)
            #expect(
                try await store.recordFailedMessage(
                    try await store.lease(record.id, heldBy: "n1"),
                    FailedMessage(folder: "INBOX", uid: 4_000_000_000, reason: long)))
            let again = try await store.failedMessages(migrationID: record.id)
            #expect(again.count == 1 && again.first?.size == nil && again.first?.internalDate == nil)
            #expect(again.first?.reason == String(repeating: "é", count: FailedMessage.reasonLimit))

            // Another node's late write, and the cap.
            #expect(
                !(try await store.recordFailedMessage(
                    try await store.lease(record.id, heldBy: "n2"),
                    FailedMessage(folder: "INBOX", uid: 1, reason: "stale"))))
            var kept = 0
            for uid in UInt32(1)...UInt32(Store.failedMessageLimit + 5) {
                if try await store.recordFailedMessage(
                    try await store.lease(record.id, heldBy: "n1"),
                    FailedMessage(folder: "Archive", uid: uid, reason: "refused"))
                {
                    kept += 1
                }
            }
            #expect(kept == Store.failedMessageLimit - 1)
            #expect(try await rowCount(store, record.id) == Store.failedMessageLimit)
            // At the cap, a listed message's row is still updated; an unlisted one is not added.
            #expect(
                try await store.recordFailedMessage(
                    try await store.lease(record.id, heldBy: "n1"),
                    FailedMessage(folder: "Archive", uid: 1, reason: "newer")))
            #expect(try await store.failedMessages(migrationID: record.id).first { $0.uid == 1 }?.reason == "newer")

            // Ended: no more rows, and a retry starts the next run's list empty.
            #expect(try await store.updateStatus(try await store.lease(record.id, heldBy: "n1"), to: .failed))
            #expect(
                !(try await store.recordFailedMessage(
                    try await store.lease(record.id, heldBy: "n1"),
                    FailedMessage(folder: "INBOX", uid: 2, reason: "late"))))
            #expect(try await rowCount(store, record.id) == Store.failedMessageLimit)
            _ = try await store.retryMigration(id: record.id, accountID: account.id)
            #expect(try await store.failedMessages(migrationID: record.id).isEmpty)

            // A delta pass clears too; deleting the migration takes its rows with it.
            try await store.releaseLease(try await store.lease(record.id, heldBy: "n1"))
            _ = try #require(try await store.claimPendingMigration(owner: "n1", leaseSeconds: 30))
            #expect(
                try await store.recordFailedMessage(
                    try await store.lease(record.id, heldBy: "n1"),
                    FailedMessage(folder: "INBOX", uid: 9, reason: "refused")))
            #expect(try await store.updateStatus(try await store.lease(record.id, heldBy: "n1"), to: .completed))
            #expect(try await store.failedMessages(migrationID: record.id).map(\.uid) == [9])
            _ = try await store.syncMigration(id: record.id, accountID: account.id, syncDeletions: false)
            #expect(try await store.failedMessages(migrationID: record.id).isEmpty)
            try await store.releaseLease(try await store.lease(record.id, heldBy: "n1"))
            _ = try #require(try await store.claimPendingMigration(owner: "n1", leaseSeconds: 30))
            #expect(
                try await store.recordFailedMessage(
                    try await store.lease(record.id, heldBy: "n1"),
                    FailedMessage(folder: "INBOX", uid: 10, reason: "refused")))
            _ = try await store.cancelMigration(id: record.id, accountID: account.id)
            try await store.releaseLease(try await store.lease(record.id, heldBy: "n1"))
            try await store.deleteMigration(id: record.id, accountID: account.id)
            #expect(try await rowCount(store, record.id) == 0)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func aBatchRetryClearsItsFailedJobsLists(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let account = try await store.createAccount(plan: .pro, notificationEmail: "ops@acme.example")
            let box = try await store.addMailbox(accountID: account.id, email: "m@acme.example")
            let detail = try await store.createBatch(
                NewBatch(accountID: account.id, name: "q3"),
                jobs: [
                    NewBatchJob(
                        line: 2, mailboxID: box.id, provider: "generic_imap", sourceHost: "imap.old.example",
                        sourcePort: 993, sourceSecurity: "ssl", sourceEmail: "u@old.example", sourcePassword: "p")
                ])
            let job = try #require(try await store.claimPendingMigration(owner: "n1", leaseSeconds: 30))
            #expect(
                try await store.recordFailedMessage(
                    try await store.lease(job.id, heldBy: "n1"),
                    FailedMessage(folder: "INBOX", uid: 3, reason: "refused")))
            #expect(
                try await store.updateStatus(
                    try await store.lease(job.id, heldBy: "n1"), to: .failed,
                    error: MigrationError(code: "destination_over_quota", message: "full", hint: "h")))
            #expect(try await store.failedMessages(migrationID: job.id).count == 1)
            _ = try await store.retryBatch(id: detail.batch.id, accountID: account.id)
            #expect(try await store.failedMessages(migrationID: job.id).isEmpty)
        }
    }
}
