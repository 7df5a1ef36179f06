import Foundation
import MigrationEngine
import SQLKit
@testable import Store
import TestSupport
import Testing

/// The API's reads (`Store.reader`) during the runner's writes: they do not wait for the writer,
/// and they see what was committed before they began. On a database file, as `serve` opens it.
@Suite struct ReaderTests {
    private static func seed(_ store: Store) async throws -> (account: Int64, migration: Int64, batch: Int64) {
        let account = try await store.createAccount(plan: .pro, notificationEmail: "ops@example.com")
        let single = try await store.addMailbox(accountID: account.id, email: "single@example.com")
        let job = try await store.addMailbox(accountID: account.id, email: "job@example.com")
        let record = try await store.createMigration(
            NewMigration(
                accountID: account.id, mailboxID: single.id, provider: "generic_imap", sourceHost: "imap.old.example",
                sourcePort: 993, sourceSecurity: "ssl", sourceEmail: "jane@old.example", sourcePassword: "pw"))
        let batch = try await store.createBatch(
            NewBatch(accountID: account.id, name: "move", folderStrategy: .all),
            jobs: [
                NewBatchJob(
                    line: 2, mailboxID: job.id, provider: "generic_imap", sourceHost: "imap.old.example",
                    sourcePort: 993, sourceSecurity: "ssl", sourceEmail: "joe@old.example", sourcePassword: "pw")
            ])
        return (account.id, record.id, batch.batch.id)
    }

    /// What a GET shows: the migration, the batch with its jobs, and the lists, for the token's account.
    private struct Shown: Sendable, Equatable {
        var migrationImported: Int
        var batchJobs: Int
        var listed: Int
        var batches: Int
    }

    private static func show(_ store: Store, _ ids: (account: Int64, migration: Int64, batch: Int64)) async throws
        -> Shown?
    {
        guard let record = try await store.migration(id: ids.migration, accountID: ids.account),
            let detail = try await store.batchDetail(id: ids.batch, accountID: ids.account),
            try await store.account(id: ids.account) != nil
        else { return nil }
        return Shown(
            migrationImported: record.importedMessages, batchJobs: detail.jobs.count,
            listed: try await store.listMigrations(accountID: ids.account).total,
            batches: try await store.listBatches(accountID: ids.account).total)
    }

    @Test(arguments: StoreBackend.allCases)
    func aReadCompletesWhileALongWriteTransactionHoldsTheWriter(_ backend: StoreBackend) async throws {
        try await withTestDatabase(backend) { database in
            let store = try await database.open()
            let ids = try await Self.seed(store)
            let (inside, entered) = AsyncStream.makeStream(of: Void.self)
            let (release, go) = AsyncStream.makeStream(of: Void.self)
            let writer = Task {
                try await store.transaction { db in
                    try await db.raw(
                        "UPDATE migrations SET imported_messages = 7 WHERE id = \(bind: ids.migration)"
                    ).run()
                    entered.yield()
                    // Held open as a long checkpoint transaction would be, until the read is over.
                    for await _ in release { break }
                }
            }
            for await _ in inside { break }
            let started = ContinuousClock.now
            // The reads race a deadline; whichever ends first lets the transaction go, so a read
            // that waits for the writer ends the test as a failure instead of hanging it.
            let during: Shown?? = await withTaskGroup(of: Shown??.self) { group in
                group.addTask { .some(try? await Self.show(store, ids)) }
                group.addTask {
                    try? await Task.sleep(for: .seconds(5))
                    return .none
                }
                let first = await group.next() ?? .none
                go.finish()
                group.cancelAll()
                return first
            }
            let elapsed = ContinuousClock.now - started
            try await writer.value
            let shown = try #require(during, "the reads waited 5 s for the open transaction")
            // The open transaction's write is not seen before its COMMIT…
            #expect(shown == Shown(migrationImported: 0, batchJobs: 1, listed: 2, batches: 1))
            #expect(elapsed < .seconds(5))
            // … and is seen by the first read after it.
            #expect(try await Self.show(store, ids)?.migrationImported == 7)
            try await store.close()
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func aReadSeesTheWriteItsCallerCommittedJustBefore(_ backend: StoreBackend) async throws {
        try await withTestDatabase(backend) { database in
            let store = try await database.open()
            let ids = try await Self.seed(store)
            // Other reads keep the read connections busy, as polling clients would.
            let pollers = Task {
                await withTaskGroup(of: Void.self) { group in
                    for _ in 0..<4 {
                        group.addTask {
                            while !Task.isCancelled { _ = try? await Self.show(store, ids) }
                        }
                    }
                }
            }
            for value in 1...200 {
                try await store.database.raw(
                    "UPDATE migrations SET imported_messages = \(bind: value) WHERE id = \(bind: ids.migration)"
                ).run()
                let read = try await store.migration(id: ids.migration, accountID: ids.account)
                #expect(read?.importedMessages == value)
                if read?.importedMessages != value { break }
            }
            pollers.cancel()
            await pollers.value
            try await store.close()
        }
    }

    @Test func theSQLiteReadConnectionsRefuseWrites() async throws {
        try await withTestDatabase(.sqlite) { database in
            let store = try await database.open()
            await #expect(throws: (any Error).self) {
                try await store.reader.raw(
                    "INSERT INTO accounts (plan, notification_email, created_at) VALUES ('pro', 'x@example.com', 0)"
                ).run()
            }
            #expect(try await store.accounts().isEmpty)
            try await store.close()
        }
    }

    @Test func aTokensUseIsRecordedOncePerMinuteAndAddress() async throws {
        try await withTestDatabase(.sqlite) { database in
            let store = try await database.open()
            let now = Date(timeIntervalSince1970: 1_700_000_000)
            let account = try await store.createAccount(plan: .pro, notificationEmail: "ops@example.com")
            let (token, _) = try await store.createToken(
                accountID: account.id, name: "ci", scopes: [.migrationsRead], now: now)
            let stored = { try await store.tokens(accountID: account.id).first }
            _ = try #require(try await store.verifyToken(token, ip: "203.0.113.9", now: now))
            #expect(try await stored()?.lastUsedAt == now)
            // Again within the minute from the same address: nothing written.
            #expect(try await store.verifyToken(token, ip: "203.0.113.9", now: now + 30) != nil)
            #expect(try await stored()?.lastUsedAt == now)
            // From another address: recorded.
            #expect(try await store.verifyToken(token, ip: "198.51.100.4", now: now + 31)?.lastUsedIP == "198.51.100.4")
            #expect(try await stored()?.lastUsedAt == now + 31)
            // A minute after the last recorded use: recorded.
            #expect(try await store.verifyToken(token, ip: "198.51.100.4", now: now + 91)?.lastUsedAt == now + 91)
            #expect(try await stored()?.lastUsedAt == now + 91)
            try await store.close()
        }
    }
}
