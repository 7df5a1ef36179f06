import Foundation
@testable import Store
import TestSupport
import Testing

/// `sync_every_hours`: a completed migration's next delta pass is queued once that long has passed
/// since its last pass ended, under the rule of one active single migration per account, until
/// `finalizeMigration` ends the schedule.
@Suite struct ScheduledPassTests {
    @Test(arguments: StoreBackend.allCases)
    func aDuePassIsQueuedOnceAndFinalizeEndsTheSchedule(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let account = try await store.createAccount(plan: .pro, notificationEmail: "ops@example.com")
            let box = try await store.addMailbox(accountID: account.id, email: "user@example.com")
            func start(hours: Int?) async throws -> MigrationRecord {
                var new = NewMigration(
                    accountID: account.id, mailboxID: box.id, provider: "generic_imap", sourceHost: "imap.example.net",
                    sourcePort: 993, sourceSecurity: "ssl", sourceEmail: "jane@example.net", sourcePassword: "pw")
                new.syncEveryHours = hours
                return try await store.createMigration(new)
            }
            // As a runner would: claim, complete, release.
            func complete(_ id: Int64, at time: Date) async throws {
                let claimed = try #require(try await store.claimPendingMigration(owner: "runner", leaseSeconds: 30))
                #expect(claimed.id == id)
                let lease = try await store.lease(id, heldBy: "runner")
                #expect(try await store.updateStatus(lease, to: .completed, now: time))
                #expect(try await store.releaseLease(lease))
            }
            let ended = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 - 86_400 * 10).rounded())
            let scheduled = try await start(hours: 2)
            #expect(scheduled.syncEveryHours == 2)
            try await complete(scheduled.id, at: ended)
            let once = try await start(hours: nil)
            try await complete(once.id, at: ended)
            #expect(try await store.migration(id: scheduled.id)?.nextPassAt == ended.addingTimeInterval(7200))
            #expect(try await store.migration(id: once.id)?.nextPassAt == nil)

            #expect(try await store.queueScheduledPasses(now: ended.addingTimeInterval(7199)).isEmpty)
            // Due, but the account has another single migration active: it waits.
            let other = try await start(hours: nil)
            #expect(try await store.queueScheduledPasses(now: ended.addingTimeInterval(7200)).isEmpty)
            _ = try await store.cancelMigration(id: other.id, accountID: account.id)
            let queued = try await store.queueScheduledPasses(now: ended.addingTimeInterval(7200))
            #expect(queued.map(\.id) == [scheduled.id])
            #expect(queued.first?.status == .pending)
            let audit = try await store.auditEvents(accountID: account.id).items.filter {
                $0.action == "migration_synced"
            }
            #expect(audit.map(\.resourceID) == [String(scheduled.id)] && audit.first?.tokenID == nil)
            #expect(try await store.queueScheduledPasses(now: ended.addingTimeInterval(7201)).isEmpty, "queued once")

            let second = ended.addingTimeInterval(9000)
            try await complete(scheduled.id, at: second)
            #expect(try await store.migration(id: scheduled.id)?.nextPassAt == second.addingTimeInterval(7200))
            let finalized = try await store.finalizeMigration(id: scheduled.id, accountID: account.id)
            #expect(finalized.syncEveryHours == nil && finalized.nextPassAt == nil && finalized.status == .completed)
            #expect(try await store.queueScheduledPasses(now: second.addingTimeInterval(86_400 * 30)).isEmpty)
            await #expect(throws: StoreError.notScheduled) {
                try await store.finalizeMigration(id: scheduled.id, accountID: account.id)
            }
            await #expect(throws: StoreError.notFound) {
                try await store.finalizeMigration(id: scheduled.id, accountID: account.id + 1)
            }
        }
    }
}
