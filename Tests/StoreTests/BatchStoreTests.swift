import Foundation
import MigrationEngine
import SQLKit
@testable import Store
import TestSupport
import Testing

/// An account with `count` mailboxes, `m0@acme.example`…
private func account(_ store: Store, plan: Plan = .pro, mailboxes count: Int) async throws -> (Account, [Mailbox]) {
    let account = try await store.createAccount(plan: plan, notificationEmail: "ops@acme.example")
    var boxes: [Mailbox] = []
    for index in 0..<count {
        boxes.append(try await store.addMailbox(accountID: account.id, email: "m\(index).a\(account.id)@acme.example"))
    }
    return (account, boxes)
}

private func jobs(_ boxes: [Mailbox], password: String = "pw, \"quoted\" secret") -> [NewBatchJob] {
    boxes.enumerated().map { index, box in
        NewBatchJob(
            line: index + 2, mailboxID: box.id, provider: "generic_imap", sourceHost: "imap.old.example",
            sourcePort: 993, sourceSecurity: "ssl", sourceEmail: "user\(index)@old.example",
            sourcePassword: password)
    }
}

/// Batches as the API and the runner use them: created whole, claimed under their rules, ended
/// by their jobs, and changed only as `BatchTransition` says.
@Suite struct BatchStoreTests {
    @Test(arguments: StoreBackend.allCases)
    func aBatchIsCreatedWithAllItsJobsOrNotAtAll(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let (acme, boxes) = try await account(store, mailboxes: 3)
            let (other, otherBoxes) = try await account(store, mailboxes: 1)
            let detail = try await store.createBatch(
                NewBatch(accountID: acme.id, name: "acme move", folderStrategy: .inboxOnly, importSince: "2024-01-01"),
                jobs: jobs(boxes))
            #expect(detail.batch.status == .queued)
            #expect(detail.batch.counts.jobs == 3 && detail.batch.counts.pending == 3)
            #expect(detail.jobs.map(\.line) == [2, 3, 4])
            #expect(
                detail.jobs.allSatisfy { $0.migration.batchID == detail.batch.id && $0.migration.status == .pending })
            #expect(
                detail.jobs.allSatisfy {
                    $0.migration.selectedFolders == ["INBOX"] && $0.migration.importSince == "2024-01-01"
                })
            // Visible as migrations too, and not the account's one active single migration.
            #expect(try await store.listMigrations(accountID: acme.id).total == 3)
            #expect(try await store.activeSingleMigrationCount(accountID: acme.id) == 0)
            let single = try await store.createMigration(
                NewMigration(
                    accountID: acme.id, mailboxID: boxes[0].id, provider: "gmail", sourceHost: "imap.gmail.com",
                    sourcePort: 993, sourceSecurity: "ssl", sourceEmail: "jane@gmail.com", sourcePassword: "x"))
            #expect(single.batchID == nil)

            // Passwords sealed at rest, readable for the runner.
            let raw = try await store.database.raw(
                "SELECT source_password_enc FROM migrations WHERE batch_id = \(bind: detail.batch.id)"
            )
            .all().map { try $0.decode(column: "source_password_enc", as: String.self) }
            #expect(raw.count == 3 && raw.allSatisfy { !$0.contains("quoted") })
            #expect(
                try await store.credentials(forMigration: detail.jobs[0].migration.id)?.sourcePassword
                    == "pw, \"quoted\" secret")
            #expect(
                !String(describing: jobs(boxes)).contains("quoted")
                    && !String(reflecting: jobs(boxes)[0]).contains("quoted"))

            // One job's mailbox in another account: nothing at all is stored.
            await #expect(throws: StoreError.notFound) {
                try await store.createBatch(NewBatch(accountID: acme.id, name: "bad"), jobs: jobs(boxes + otherBoxes))
            }
            #expect(try await store.listBatches(accountID: acme.id).total == 1)
            #expect(try await store.listMigrations(accountID: acme.id).total == 4)
            // Other accounts see nothing.
            #expect(try await store.batch(id: detail.batch.id, accountID: other.id) == nil)
            #expect(try await store.batchDetail(id: detail.batch.id, accountID: other.id) == nil)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func listingIsPagedNewestFirstAndFiltered(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let (acme, boxes) = try await account(store, mailboxes: 1)
            var ids: [Int64] = []
            for index in 0..<5 {
                ids.append(
                    try await store.createBatch(NewBatch(accountID: acme.id, name: "b\(index)"), jobs: jobs(boxes))
                        .batch.id)
            }
            _ = try await store.cancelBatch(id: ids[1], accountID: acme.id)
            let page = try await store.listBatches(accountID: acme.id, page: PageRequest(page: 2, perPage: 2))
            #expect(page.total == 5 && page.lastPage == 3)
            #expect(page.items.map(\.id) == [ids[2], ids[1]])
            #expect(page.items[1].counts.cancelled == 1)
            let cancelled = try await store.listBatches(accountID: acme.id, status: .cancelled)
            #expect(cancelled.items.map(\.id) == [ids[1]])
            #expect(try await store.listBatches(accountID: acme.id, status: .paused).total == 0)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func jobsAreClaimedWithinThePlanAndTheBatchEndsWithThem(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let (starter, boxes) = try await account(store, plan: .starter, mailboxes: 3)
            let batch = try await store.createBatch(NewBatch(accountID: starter.id, name: "s"), jobs: jobs(boxes)).batch
            let first = try #require(try await store.claimPendingMigration(owner: "r", leaseSeconds: 30))
            #expect(try await store.batch(id: batch.id)?.status == .processing)
            let second = try #require(try await store.claimPendingMigration(owner: "r", leaseSeconds: 30))
            // Starter: two jobs at once; the third waits as pending, it is not refused.
            #expect(try await store.claimPendingMigration(owner: "r", leaseSeconds: 30) == nil)
            #expect(try await store.batch(id: batch.id)?.counts.pending == 1)

            #expect(try await store.updateStatus(try await store.lease(first.id, heldBy: "r"), to: .completed))
            #expect(try await store.batch(id: batch.id)?.status == .processing)
            let third = try #require(try await store.claimPendingMigration(owner: "r", leaseSeconds: 30))
            #expect(try await store.updateStatus(try await store.lease(third.id, heldBy: "r"), to: .completed))
            #expect(
                try await store.updateStatus(
                    try await store.lease(second.id, heldBy: "r"), to: .failed,
                    error: MigrationError(code: "authentication_failed", message: "The source refused the login.")))
            let ended = try #require(try await store.batch(id: batch.id))
            #expect(ended.status == .completedWithErrors)
            #expect(ended.finishedAt != nil)
            #expect(ended.counts.completed == 2 && ended.counts.failed == 1 && ended.counts.progress == 100)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func aBatchWhoseJobsAllCompleteIsCompleted(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let (acme, boxes) = try await account(store, mailboxes: 2)
            let batch = try await store.createBatch(NewBatch(accountID: acme.id, name: "ok"), jobs: jobs(boxes)).batch
            while let job = try await store.claimPendingMigration(owner: "r", leaseSeconds: 30) {
                #expect(try await store.updateStatus(try await store.lease(job.id, heldBy: "r"), to: .completed))
            }
            #expect(try await store.batch(id: batch.id)?.status == .completed)
            await #expect(throws: StoreError.invalidBatchStatus(.completed)) {
                try await store.retryBatch(id: batch.id, accountID: acme.id)
            }
            try await store.deleteBatch(id: batch.id, accountID: acme.id)
            #expect(try await store.batch(id: batch.id) == nil)
            #expect(try await store.listMigrations(accountID: acme.id).total == 0)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func cancelStopsQueuedAndRunningJobs(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let (acme, boxes) = try await account(store, mailboxes: 3)
            let (other, _) = try await account(store, mailboxes: 0)
            let batch = try await store.createBatch(NewBatch(accountID: acme.id, name: "c"), jobs: jobs(boxes)).batch
            let running = try #require(try await store.claimPendingMigration(owner: "r", leaseSeconds: 30))
            #expect(try await store.updateStatus(try await store.lease(running.id, heldBy: "r"), to: .completed))
            let held = try #require(try await store.claimPendingMigration(owner: "r", leaseSeconds: 30))
            await #expect(throws: StoreError.notFound) {
                try await store.cancelBatch(id: batch.id, accountID: other.id)
            }
            await #expect(throws: StoreError.invalidBatchStatus(.processing)) {
                try await store.deleteBatch(id: batch.id, accountID: acme.id)
            }
            let cancelled = try await store.cancelBatch(id: batch.id, accountID: acme.id)
            #expect(cancelled.batch.status == .cancelled)
            #expect(cancelled.jobs.map(\.migration.status) == [.completed, .cancelled, .cancelled])
            // The runner holding a job sees the cancel at its next renewal; its late write changes nothing.
            #expect(
                try await store.renewLease(try await store.lease(held.id, heldBy: "r"), leaseSeconds: 30) == .cancelled)
            #expect(try await store.updateStatus(try await store.lease(held.id, heldBy: "r"), to: .completed) == false)
            #expect(try await store.claimPendingMigration(owner: "r", leaseSeconds: 30) == nil)
            await #expect(throws: StoreError.invalidBatchStatus(.cancelled)) {
                try await store.cancelBatch(id: batch.id, accountID: acme.id)
            }
            await #expect(throws: StoreError.invalidBatchStatus(.cancelled)) {
                try await store.resumeBatch(id: batch.id, accountID: acme.id)
            }
            try await store.deleteBatch(id: batch.id, accountID: acme.id)
            await #expect(throws: StoreError.notFound) { try await store.deleteBatch(id: batch.id, accountID: acme.id) }
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func aFailedJobGetsANewPasswordAndTheRetryQueuesOnlyFailedJobs(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let (acme, boxes) = try await account(store, mailboxes: 3)
            let batch = try await store.createBatch(NewBatch(accountID: acme.id, name: "r"), jobs: jobs(boxes)).batch
            var ids: [Int64] = []
            while let job = try await store.claimPendingMigration(owner: "r", leaseSeconds: 30) { ids.append(job.id) }
            #expect(ids.count == 3)
            // While it runs, the password cannot change.
            await #expect(throws: StoreError.invalidStatus(.validating)) {
                try await store.updateBatchJobPassword(
                    batchID: batch.id, jobID: ids[0], accountID: acme.id, password: "new")
            }
            #expect(
                try await store.updateProgress(
                    try await store.lease(ids[0], heldBy: "r"), totals: MigrationTotals(total: 9, imported: 3),
                    folders: [FolderProgress(sourceName: "INBOX", destinationName: "INBOX", expected: 9, imported: 3)]))
            let failure = MigrationError(code: "authentication_failed", message: "The source refused the login.")
            #expect(
                try await store.updateStatus(try await store.lease(ids[0], heldBy: "r"), to: .failed, error: failure))
            #expect(try await store.releaseLease(try await store.lease(ids[0], heldBy: "r")))
            #expect(try await store.updateStatus(try await store.lease(ids[1], heldBy: "r"), to: .completed))
            #expect(try await store.updateStatus(try await store.lease(ids[2], heldBy: "r"), to: .completed))
            #expect(try await store.batch(id: batch.id)?.status == .completedWithErrors)

            await #expect(throws: StoreError.invalidStatus(.completed)) {
                try await store.updateBatchJobPassword(
                    batchID: batch.id, jobID: ids[1], accountID: acme.id, password: "new")
            }
            await #expect(throws: StoreError.notFound) {
                try await store.updateBatchJobPassword(
                    batchID: batch.id + 1, jobID: ids[0], accountID: acme.id, password: "new")
            }
            let job = try await store.updateBatchJobPassword(
                batchID: batch.id, jobID: ids[0], accountID: acme.id,
                password: "fixed, \"new\" pw")
            #expect(job.line == 2)
            #expect(try await store.credentials(forMigration: ids[0])?.sourcePassword == "fixed, \"new\" pw")

            let retried = try await store.retryBatch(id: batch.id, accountID: acme.id)
            #expect(retried.batch.status == .queued && retried.batch.finishedAt == nil)
            #expect(retried.jobs.map(\.migration.status) == [.pending, .completed, .completed])
            #expect(
                retried.jobs[0].migration.error == nil && retried.jobs[0].migration.folders.isEmpty
                    && retried.jobs[0].migration.totalMessages == 0)
            let again = try #require(try await store.claimPendingMigration(owner: "r", leaseSeconds: 30))
            #expect(again.id == ids[0])
            #expect(try await store.batch(id: batch.id)?.status == .processing)
            #expect(try await store.updateStatus(try await store.lease(ids[0], heldBy: "r"), to: .completed))
            #expect(try await store.batch(id: batch.id)?.status == .completed)
        }
    }

    /// `:sync` of a batch: only once it ended; its completed jobs (not the failed one) go back to the
    /// queue with the deletions choice, and the batch is queued again.
    @Test(arguments: StoreBackend.allCases)
    func aSyncQueuesTheCompletedJobsOfAnEndedBatch(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let (acme, boxes) = try await account(store, mailboxes: 2)
            let batch = try await store.createBatch(NewBatch(accountID: acme.id, name: "s"), jobs: jobs(boxes)).batch
            await #expect(throws: StoreError.invalidBatchStatus(.queued)) {
                try await store.syncBatch(id: batch.id, accountID: acme.id, syncDeletions: true)
            }
            var ids: [Int64] = []
            while let job = try await store.claimPendingMigration(owner: "r", leaseSeconds: 30) { ids.append(job.id) }
            #expect(try await store.updateStatus(try await store.lease(ids[0], heldBy: "r"), to: .completed))
            #expect(
                try await store.updateStatus(
                    try await store.lease(ids[1], heldBy: "r"), to: .failed,
                    error: MigrationError(code: "x", message: "y")))
            #expect(try await store.batch(id: batch.id)?.status == .completedWithErrors)

            let synced = try await store.syncBatch(id: batch.id, accountID: acme.id, syncDeletions: true)
            #expect(synced.batch.status == .queued && synced.batch.finishedAt == nil)
            #expect(synced.jobs.map(\.migration.status) == [.pending, .failed])
            #expect(synced.jobs[0].migration.syncDeletions && !synced.jobs[1].migration.syncDeletions)
            #expect(synced.jobs[0].migration.passes == 1)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func aRetryWithNothingFailedChangesNothing(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let (acme, boxes) = try await account(store, mailboxes: 2)
            let batch = try await store.createBatch(NewBatch(accountID: acme.id, name: "n"), jobs: jobs(boxes)).batch
            let detail = try await store.cancelBatch(id: batch.id, accountID: acme.id)
            #expect(detail.jobs.allSatisfy { $0.migration.status == .cancelled })
            await #expect(throws: StoreError.noFailedJobs) {
                try await store.retryBatch(id: batch.id, accountID: acme.id)
            }
            #expect(try await store.batch(id: batch.id)?.status == .cancelled)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func aPausedBatchsJobsWaitAndResumeWhereTheyStopped(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let (acme, boxes) = try await account(store, mailboxes: 2)
            let batch = try await store.createBatch(NewBatch(accountID: acme.id, name: "p"), jobs: jobs(boxes)).batch
            let running = try #require(try await store.claimPendingMigration(owner: "r", leaseSeconds: 30))
            try await store.saveCheckpoint(
                FolderCheckpoint(sourceUIDValidity: 7), migrationID: running.id, folder: "INBOX")
            await #expect(throws: StoreError.invalidBatchStatus(.processing)) {
                try await store.resumeBatch(id: batch.id, accountID: acme.id)
            }
            #expect(try await store.pauseBatch(id: batch.id, reason: "storage at 91% of the pool"))
            #expect(try await store.pauseBatch(id: batch.id, reason: "again") == false)
            let paused = try #require(try await store.batch(id: batch.id))
            #expect(paused.status == .paused && paused.pauseReason == "storage at 91% of the pool")
            // The running job is told to stop (it is queued again) and lets go; nothing is claimed meanwhile.
            #expect(
                try await store.renewLease(try await store.lease(running.id, heldBy: "r"), leaseSeconds: 30) == .pending
            )
            #expect(try await store.releaseLease(try await store.lease(running.id, heldBy: "r")))
            #expect(try await store.claimPendingMigration(owner: "r", leaseSeconds: 30) == nil)
            // A single migration of the same account is not held up by the paused batch.
            let single = try await store.createMigration(
                NewMigration(
                    accountID: acme.id, mailboxID: boxes[0].id, provider: "gmail", sourceHost: "imap.gmail.com",
                    sourcePort: 993, sourceSecurity: "ssl", sourceEmail: "jane@gmail.com", sourcePassword: "x"))
            #expect(try await store.claimPendingMigration(owner: "r", leaseSeconds: 30)?.id == single.id)

            let resumed = try await store.resumeBatch(id: batch.id, accountID: acme.id)
            #expect(resumed.batch.status == .queued && resumed.batch.pauseReason == nil)
            let again = try #require(try await store.claimPendingMigration(owner: "r", leaseSeconds: 30))
            #expect(again.id == running.id)
            #expect(try await store.checkpoints(migrationID: running.id)["INBOX"]?.sourceUIDValidity == 7)
            #expect(try await store.activeBatchIDs(accountID: acme.id) == [batch.id])
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func aPausedBatchWhoseLastJobIsCancelledEnds(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let (acme, boxes) = try await account(store, mailboxes: 1)
            let batch = try await store.createBatch(NewBatch(accountID: acme.id, name: "p"), jobs: jobs(boxes)).batch
            #expect(try await store.pauseBatch(id: batch.id, reason: "storage"))
            let job = try #require(try await store.batchDetail(id: batch.id)?.jobs.first)
            _ = try await store.cancelMigration(id: job.migration.id, accountID: acme.id)
            #expect(try await store.batch(id: batch.id)?.status == .completedWithErrors)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func claimsTakeTurnsAcrossAccounts(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let (big, bigBoxes) = try await account(store, plan: .agency, mailboxes: 6)
            let (small, smallBoxes) = try await account(store, plan: .starter, mailboxes: 2)
            _ = try await store.createBatch(NewBatch(accountID: big.id, name: "big"), jobs: jobs(bigBoxes))
            _ = try await store.createBatch(NewBatch(accountID: small.id, name: "small"), jobs: jobs(smallBoxes))
            var owners: [Int64] = []
            while let job = try await store.claimPendingMigration(owner: "r", leaseSeconds: 30, maxRunning: 4) {
                owners.append(job.accountID)
            }
            // The small account's jobs were created last, yet it gets half of the four slots.
            #expect(owners == [big.id, small.id, big.id, small.id])
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func aJobRetriedOnItsOwnReopensItsBatch(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let (acme, boxes) = try await account(store, mailboxes: 1)
            let batch = try await store.createBatch(NewBatch(accountID: acme.id, name: "o"), jobs: jobs(boxes)).batch
            let job = try #require(try await store.claimPendingMigration(owner: "r", leaseSeconds: 30))
            _ = try await store.cancelMigration(id: job.id, accountID: acme.id)
            #expect(try await store.batch(id: batch.id)?.status == .completedWithErrors)
            _ = try await store.retryMigration(id: job.id, accountID: acme.id)
            #expect(try await store.batch(id: batch.id)?.status == .queued)
        }
    }

    @Test(arguments: BatchTransition.allCases)
    func batchMovesAsTheSpecSays(_ transition: BatchTransition) {
        let spec: [BatchTransition: Set<BatchStatus>] = [
            .start: [.queued], .pause: [.queued, .processing], .resume: [.paused],
            .finish: [.queued, .processing, .paused],
            .cancel: [.queued, .processing, .paused], .retry: [.completedWithErrors, .cancelled],
            .sync: [.completed, .completedWithErrors],
            .delete: [.completed, .completedWithErrors, .cancelled],
        ]
        for status in BatchStatus.allCases {
            #expect(transition.allows(from: status) == (spec[transition]?.contains(status) ?? false))
        }
    }
}

@Suite struct BatchSchemaUpgradeTests {
    /// A database made by a release with only v1 gets v2 on its next start, and what it held still reads.
    @Test func aVersion1DatabaseIsUpgradedInPlace() async throws {
        let path = NSTemporaryDirectory() + "mailporter-upgrade-\(UUID().uuidString).sqlite"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let secrets = SecretBox.random()
        // A v1 database: everything v2 made taken away again, and a migration of that release.
        let first = try await Store.openSQLite(path: path, secrets: secrets)
        let old = first.database
        try await old.raw("DROP TABLE bulk_batches").run()
        try await old.raw("ALTER TABLE migrations DROP COLUMN batch_line").run()
        try await old.raw("DELETE FROM schema_migrations WHERE version = 2").run()
        // And what v4 (the notification outbox) made.
        try await old.raw("DROP TABLE notifications").run()
        try await old.raw("ALTER TABLE migrations DROP COLUMN notify").run()
        try await old.raw("ALTER TABLE migrations DROP COLUMN bytes_copied").run()
        try await old.raw("DELETE FROM schema_migrations WHERE version = 4").run()
        // …and what v5 (delta passes) added.
        for (table, column) in [
            ("migrations", "passes"), ("migrations", "last_pass_at"), ("migrations", "sync_deletions"),
            ("migration_folders", "flags_updated"), ("migration_folders", "deleted"),
        ] {
            try await old.raw("ALTER TABLE \(unsafeRaw: table) DROP COLUMN \(unsafeRaw: column)").run()
        }
        try await old.raw("DELETE FROM schema_migrations WHERE version = 5").run()
        // …and v6's failed-message list.
        try await old.raw("DROP TABLE migration_failed_messages").run()
        try await old.raw("DELETE FROM schema_migrations WHERE version = 6").run()
        // …and v7's fencing token.
        try await old.raw("ALTER TABLE migrations DROP COLUMN lease_token").run()
        try await old.raw("DELETE FROM schema_migrations WHERE version = 7").run()
        // …and v8's scheduled passes (the index first: SQLite keeps a column an index names).
        try await old.raw("DROP INDEX migrations_scheduled").run()
        try await old.raw("ALTER TABLE migrations DROP COLUMN sync_every_hours").run()
        try await old.raw("DELETE FROM schema_migrations WHERE version = 8").run()
        #expect(try await first.schemaVersions() == [1])
        let sealed = try secrets.seal("old-pw")
        try await old.raw(
            "INSERT INTO accounts (plan, notification_email, created_at) VALUES ('pro', 'a@acme.example', 1)"
        ).run()
        try await old.raw("INSERT INTO mailboxes (account_id, email, created_at) VALUES (1, 'm@acme.example', 1)").run()
        try await old.raw(
            """
            INSERT INTO migrations (account_id, mailbox_id, provider, source_host, source_port, source_security, source_email,
                source_username, source_password_enc, skip_duplicates, status, created_at, updated_at)
            VALUES (1, 1, 'gmail', 'imap.gmail.com', 993, 'ssl', 'j@gmail.com', 'j@gmail.com', \(bind: sealed), 1, 'completed', 1, 1)
            """
        ).run()
        try await first.close()

        let store = try await Store.openSQLite(path: path, secrets: secrets)
        #expect(try await store.schemaVersions() == Schema.migrations.map(\.version))
        let migration = try #require(try await store.migration(id: 1, accountID: 1))
        #expect(migration.status == .completed && migration.batchID == nil)
        #expect(migration.syncEveryHours == nil && migration.nextPassAt == nil, "no passes scheduled")
        #expect(try await store.credentials(forMigration: 1)?.sourcePassword == "old-pw")
        #expect(try await store.failedMessages(migrationID: 1).isEmpty)
        let box = try #require(try await store.mailboxes(accountID: 1).first)
        let detail = try await store.createBatch(NewBatch(accountID: 1, name: "after upgrade"), jobs: jobs([box]))
        #expect(detail.jobs.map(\.line) == [2])
        try await store.close()
    }
}
