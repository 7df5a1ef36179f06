import Foundation
import MigrationEngine
@testable import Store
import Testing
import TestSupport

/// Leases as several nodes see them: timed by the database's clock, fenced by a token that every
/// claim increments, and a node lock that admits one live process per node id.
@Suite struct LeaseStoreTests {
    private func pendingMigration(_ store: Store) async throws -> MigrationRecord {
        let account = try await store.createAccount(plan: .pro, notificationEmail: "ops@acme.example")
        let box = try await store.addMailbox(accountID: account.id, email: "jane@acme.example")
        return try await store.createMigration(
            NewMigration(
                accountID: account.id, mailboxID: box.id, provider: "generic_imap", sourceHost: "imap.old.example",
                sourcePort: 993, sourceSecurity: "ssl", sourceEmail: "jane@old.example", sourcePassword: "x"))
    }

    /// A node paused past its lease comes back under the same node id as the one that took the
    /// migration over (a restart with that id, say): only the token tells them apart, and every
    /// write of the earlier claim is refused.
    @Test(arguments: StoreBackend.allCases)
    func aTakeOverRefusesEveryWriteOfTheEarlierClaim(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let record = try await pendingMigration(store)
            let now = Date()
            let first = try #require(try await store.claimPendingMigration(owner: "node", leaseSeconds: 30, now: now))
            let stale = try #require(first.lease)
            #expect(stale.migrationID == record.id && stale.owner == "node")
            #expect(try await store.updateStatus(stale, to: .planning))
            #expect(try await store.updateProgress(stale, totals: MigrationTotals(total: 10, imported: 1)))
            let staleCheckpoints = store.checkpointStore(migrationID: record.id, lease: stale)
            try await staleCheckpoints.save(FolderCheckpoint(sourceUIDValidity: 1, lastSourceUID: 1), folder: "INBOX")

            // Its lease runs out; the migration is taken over and resumes where the checkpoint says.
            let second = try #require(
                try await store.claimPendingMigration(owner: "node", leaseSeconds: 30, now: now + 31))
            let current = try #require(second.lease)
            #expect(second.id == record.id && current.token == stale.token + 1)

            #expect(try await store.renewLease(stale, leaseSeconds: 30, now: now + 31) == nil)
            #expect(try await store.updateStatus(stale, to: .processing) == false)
            #expect(
                try await store.updateProgress(
                    stale, totals: MigrationTotals(total: 10, imported: 9),
                    folders: [FolderProgress(sourceName: "INBOX", destinationName: "INBOX", status: .processing)])
                    == false)
            #expect(
                try await store.recordFailedMessage(stale, FailedMessage(folder: "INBOX", uid: 3, reason: "late"))
                    == false)
            await #expect(throws: LeaseLost.self) {
                try await staleCheckpoints.save(
                    FolderCheckpoint(sourceUIDValidity: 1, lastSourceUID: 9), folder: "INBOX")
            }
            #expect(try await store.releaseLease(stale, requeue: true) == false)

            let after = try #require(try await store.migration(id: record.id))
            #expect(after.status == .validating && after.importedMessages == 1 && after.folders.isEmpty)
            #expect(after.leaseToken == current.token)
            #expect(try await store.failedMessages(migrationID: record.id).isEmpty)
            #expect(try await store.loadCheckpoint(migrationID: record.id, folder: "INBOX")?.lastSourceUID == 1)

            // The current holder writes as usual.
            #expect(try await store.renewLease(current, leaseSeconds: 30, now: now + 31) == .validating)
            try await store.checkpointStore(migrationID: record.id, lease: current)
                .save(FolderCheckpoint(sourceUIDValidity: 1, lastSourceUID: 5), folder: "INBOX")
            #expect(try await store.loadCheckpoint(migrationID: record.id, folder: "INBOX")?.lastSourceUID == 5)
            #expect(try await store.updateStatus(current, to: .completed))
            #expect(try await store.releaseLease(current))
        }
    }

    /// No `now` given: the lease's end is the database's clock plus its length, and another claimer
    /// takes it over only once the database says it ran out.
    @Test(arguments: StoreBackend.allCases)
    func leasesRunOutByTheDatabasesClock(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let record = try await pendingMigration(store)
            let before = Date()
            let held = try #require(try await store.claimPendingMigration(owner: "a", leaseSeconds: 3))
            let expires = try #require(held.leaseExpiresAt)
            // The database runs on this machine: its clock and the test's agree to within a second.
            #expect(abs(expires.timeIntervalSince(before) - 3) < 1.5, "\(expires) vs \(before)")
            #expect(try await store.runningCount() == 1)
            #expect(try await store.claimPendingMigration(owner: "b", leaseSeconds: 3) == nil)
            try await Task.sleep(for: .milliseconds(3_500))
            #expect(try await store.runningCount() == 0)
            let takenOver = try #require(try await store.claimPendingMigration(owner: "b", leaseSeconds: 3))
            #expect(takenOver.id == record.id && takenOver.leaseOwner == "b")
        }
    }

    /// Two processes under one node id: the second gets no lock (and so leaves the first's leases
    /// alone) until the first lets go; other ids are free all along.
    @Test(arguments: StoreBackend.allCases)
    func theNodeLockAdmitsOneLiveProcessPerNodeID(_ backend: StoreBackend) async throws {
        try await withTestDatabase(backend) { database in
            let first = try await database.open()
            let second = try await database.open()
            let held = try #require(try await first.lockNode("node a/1"))
            #expect(try await second.lockNode("node a/1") == nil)
            let other = try #require(try await second.lockNode("node-b"))
            await held.release()
            let taken = try #require(try await second.lockNode("node a/1"))
            #expect(try await first.lockNode("node a/1") == nil)
            await taken.release()
            await other.release()
            try await first.close()
            try await second.close()
        }
    }
}
