import Foundation
import MigrationEngine
import SQLKit
@testable import Store
import Testing
import TestSupport

/// The outbox: a notice is written with the change that causes it, once per batch (or migration)
/// and event, and claimed, retried and marked by the delivery service under a lease.
@Suite struct NotificationStoreTests {
    private func batch(_ store: Store, jobs count: Int) async throws -> (Account, BatchDetail) {
        let account = try await store.createAccount(plan: .pro, notificationEmail: "ops@acme.example")
        var jobs: [NewBatchJob] = []
        for index in 0..<count {
            let box = try await store.addMailbox(accountID: account.id, email: "m\(index)@acme.example")
            jobs.append(
                NewBatchJob(
                    line: index + 2, mailboxID: box.id, provider: "generic_imap", sourceHost: "imap.old.example",
                    sourcePort: 993, sourceSecurity: "ssl", sourceEmail: "u\(index)@old.example",
                    sourcePassword: "secret-\(index)"))
        }
        return (account, try await store.createBatch(NewBatch(accountID: account.id, name: "Q3 move"), jobs: jobs))
    }

    /// Claims every pending job and ends each as `outcome(index)` says.
    private func end(_ store: Store, jobs: Int, _ outcome: (Int) -> MigrationStatus) async throws {
        for index in 0..<jobs {
            let claimed = try #require(try await store.claimPendingMigration(owner: "n1", leaseSeconds: 30))
            let status = outcome(index)
            let error =
                status == .failed ? MigrationError(code: "authentication_failed", message: "no", hint: "h") : nil
            #expect(
                try await store.updateStatus(try await store.lease(claimed.id, heldBy: "n1"), to: status, error: error))
            try await store.releaseLease(try await store.lease(claimed.id, heldBy: "n1"))
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func aFinishedBatchQueuesOneNoticeWhateverRepeatsTheEnd(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let (account, detail) = try await batch(store, jobs: 3)
            try await end(store, jobs: 3) { $0 == 0 ? .failed : .completed }
            var notices = try await store.allNotices()
            #expect(notices.map(\.event) == [.batchFinished])
            #expect(notices.first?.batchID == detail.batch.id)
            #expect(notices.first?.recipient == "ops@acme.example")
            #expect(notices.first?.status == .pending)
            #expect(try await store.batch(id: detail.batch.id)?.status == .completedWithErrors)

            // A retry and a second end: the pair (batch, finished) is taken, nothing new is queued.
            _ = try await store.retryBatch(id: detail.batch.id, accountID: account.id)
            try await end(store, jobs: 1) { _ in .completed }
            notices = try await store.allNotices()
            #expect(notices.count == 1)
            // Written with the ending itself: the same statement path a second time adds nothing.
            try await store.transaction { db in
                try await Store.recordNotice(.batchFinished, batchID: detail.batch.id, db, now: Date())
            }
            #expect(try await store.allNotices().count == 1)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func moreThanHalfFailedIsToldOnceAndNotForHalf(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            _ = try await batch(store, jobs: 4)
            // Two of four failed: half, not more than half.
            try await end(store, jobs: 2) { _ in .failed }
            #expect(try await store.allNotices().isEmpty)
            try await end(store, jobs: 2) { _ in .failed }
            let events = try await store.allNotices().map(\.event)
            #expect(events == [.batchMostJobsFailed, .batchFinished])
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func aPauseForStorageIsToldWithItsFiguresAndOtherPausesAreNot(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let (_, first) = try await batch(store, jobs: 1)
            let second = try await store.createBatch(
                NewBatch(accountID: first.batch.accountID, name: "other"),
                jobs: [
                    NewBatchJob(
                        line: 2, mailboxID: first.jobs[0].migration.mailboxID, provider: "generic_imap",
                        sourceHost: "h", sourcePort: 993, sourceSecurity: "ssl", sourceEmail: "x@old.example",
                        sourcePassword: "p")
                ])
            #expect(try await store.pauseBatch(id: first.batch.id, reason: "storage", usedBytes: 13_800_000_000))
            #expect(try await store.pauseBatch(id: second.batch.id, reason: "maintenance"))
            let notices = try await store.allNotices()
            #expect(notices.map(\.event) == [.batchPausedForStorage])
            #expect(notices.first?.detail == NoticeDetail(reason: "storage", usedBytes: 13_800_000_000))
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func aSingleMigrationIsToldOnlyWhenItAskedTo(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let account = try await store.createAccount(plan: .pro, notificationEmail: "ops@acme.example")
            let box = try await store.addMailbox(accountID: account.id, email: "jane@acme.example")
            var new = NewMigration(
                accountID: account.id, mailboxID: box.id, provider: "gmail", sourceHost: "imap.gmail.com",
                sourcePort: 993, sourceSecurity: "ssl", sourceEmail: "jane@gmail.com", sourcePassword: "x")
            let quiet = try await store.createMigration(new)
            _ = try await store.cancelMigration(id: quiet.id, accountID: account.id)
            #expect(try await store.allNotices().isEmpty)
            new.notify = true
            let loud = try await store.createMigration(new)
            let claimed = try #require(try await store.claimPendingMigration(owner: "n1", leaseSeconds: 30))
            #expect(claimed.id == loud.id)
            try await store.updateStatus(try await store.lease(loud.id, heldBy: "n1"), to: .completed)
            let notices = try await store.allNotices()
            #expect(notices.map(\.event) == [.migrationEnded])
            #expect(notices.first?.migrationID == loud.id)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func deliveryIsLeasedRetriedAndMarked(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            _ = try await batch(store, jobs: 1)
            try await end(store, jobs: 1) { _ in .completed }
            let now = Date()
            let notice = try #require(try await store.claimNotice(owner: "a", leaseSeconds: 60, now: now))
            #expect(notice.attempts == 1 && notice.status == .sending)
            // Held by a: another node gets nothing until the lease runs out.
            #expect(try await store.claimNotice(owner: "b", leaseSeconds: 60, now: now) == nil)
            let later = now.addingTimeInterval(120)
            let taken = try #require(try await store.claimNotice(owner: "b", leaseSeconds: 60, now: later))
            #expect(taken.id == notice.id && taken.attempts == 2)
            // a's late result is ignored; b's counts.
            #expect(try await !store.markNoticeSent(id: notice.id, owner: "a"))
            #expect(
                try await store.markNoticeFailed(
                    id: notice.id, owner: "b", code: "smtp_deferred", message: "451",
                    retryAt: later.addingTimeInterval(30),
                    now: later))
            #expect(try await store.claimNotice(owner: "b", leaseSeconds: 60, now: later) == nil, "not due yet")
            let again = try #require(
                try await store.claimNotice(owner: "b", leaseSeconds: 60, now: later.addingTimeInterval(31)))
            #expect(again.lastErrorCode == "smtp_deferred")
            #expect(try await store.markNoticeSent(id: again.id, owner: "b"))
            #expect(try await store.allNotices().map(\.status) == [.sent])
            #expect(
                try await store.claimNotice(owner: "b", leaseSeconds: 60, now: later.addingTimeInterval(999)) == nil)
        }
    }

    @Test func theOutboxVersionAppliesWithOrWithoutAVersion3() async throws {
        for withVersion3 in [false, true] {
            let store = try await Store.openInMemorySQLite()
            // Back to a database at version 2, as every one was before the outbox.
            for statement in [
                "DROP TABLE notifications", "DELETE FROM schema_migrations WHERE version = 4",
                "ALTER TABLE migrations DROP COLUMN notify", "ALTER TABLE migrations DROP COLUMN bytes_copied",
            ] {
                try await store.database.raw(SQLQueryString(statement)).run()
            }
            var migrations = Schema.migrations
            if withVersion3 {
                migrations.append(
                    SchemaMigration(version: 3, name: "lead") { _ in ["CREATE TABLE lead_v3 (x INTEGER)"] })
            }
            #expect(try await Schema.migrate(store.database, migrations: migrations) == (withVersion3 ? [3, 4] : [4]))
            #expect(try await store.allNotices().isEmpty)
            try await store.close()
        }
    }
}
