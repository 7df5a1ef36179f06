import Foundation
import Logging
import MigrationEngine
@testable import Store
import Synchronization
import TestSupport
import Testing

/// Counts the work notices a store's `listenForWork` delivers.
private final class NoticeCount: Sendable {
    private let count = Mutex(0)
    var value: Int { count.withLock { $0 } }
    func add() { count.withLock { $0 += 1 } }

    /// Waits until at least `expected` arrived; false after `timeout`.
    func reach(_ expected: Int, within timeout: Duration = .seconds(10)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if value >= expected { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return value >= expected
    }
}

/// Keeps every message logged through it.
private struct RecordingLogHandler: LogHandler {
    final class Messages: Sendable {
        private let lines = Mutex<[String]>([])
        var all: [String] { lines.withLock { $0 } }
        func add(_ line: String) { lines.withLock { $0.append(line) } }
    }

    let messages: Messages
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) { messages.add("\(event.level) \(event.message)") }
}

/// Set once to let the spinners go.
private final class Latch: Sendable {
    private let state = Mutex((open: false, spinning: 0))
    var isOpen: Bool { state.withLock { $0.open } }
    var spinning: Int { state.withLock { $0.spinning } }
    func open() { state.withLock { $0.open = true } }
    func arrived() { state.withLock { $0.spinning += 1 } }
}

/// Several nodes on one PostgreSQL database: work notices between their stores, and the
/// housekeeping purge that only one of them runs at a time.
@Suite("Store across nodes")
struct MultiNodeStoreTests {
    /// Starts `listener` listening and waits until a notice of `sender`'s reaches it, so the checks
    /// that follow do not race the LISTEN. Returns the count (reset to what it holds then).
    private func listening(_ listener: Store, to sender: Store) async throws -> (NoticeCount, Task<Void, Never>) {
        let notices = NoticeCount()
        let task = Task { await listener.listenForWork { notices.add() } }
        let deadline = ContinuousClock.now + .seconds(20)
        while notices.value == 0, ContinuousClock.now < deadline {
            try await Store.announceWork(sender.database, sender.flavor)
            try await Task.sleep(for: .milliseconds(100))
        }
        try #require(notices.value > 0, "the listener never heard a notice")
        try await Task.sleep(for: .milliseconds(300))  // the probes still in flight
        return (notices, task)
    }

    private func newMigration(account: Int64, mailbox: Int64) -> NewMigration {
        NewMigration(
            accountID: account, mailboxID: mailbox, batchID: nil, provider: "generic_imap",
            sourceHost: "imap.example.net", sourcePort: 993, sourceSecurity: "ssl", sourceEmail: "jane@example.net",
            sourcePassword: "pw", targetPassword: "target-pw", selectedFolders: nil, importSince: nil,
            skipDuplicates: false)
    }

    /// What queues or cancels work tells the other nodes at once; what is refused tells nobody.
    @Test func queuedRetriedAndCancelledWorkIsAnnouncedToAnotherNode() async throws {
        try await withTestDatabase(.postgres) { database in
            let api = try await database.open()
            let worker = try await database.open()
            let (notices, listener) = try await listening(worker, to: api)
            defer { listener.cancel() }
            #expect(worker.announcesWork)

            let account = try await api.createAccount(plan: .pro, notificationEmail: "ops@example.com")
            let box = try await api.addMailbox(accountID: account.id, email: "user@example.com")
            var expected = notices.value + 1
            let migration = try await api.createMigration(newMigration(account: account.id, mailbox: box.id))
            #expect(await notices.reach(expected), "create: \(notices.value) of \(expected)")

            expected += 1
            _ = try await api.cancelMigration(id: migration.id, accountID: account.id)
            #expect(await notices.reach(expected), "cancel: \(notices.value) of \(expected)")

            // A second cancel is refused: its transaction sends nothing.
            await #expect(throws: StoreError.self) {
                _ = try await api.cancelMigration(id: migration.id, accountID: account.id)
            }
            expected += 1
            _ = try await api.retryMigration(id: migration.id, accountID: account.id)
            #expect(await notices.reach(expected), "retry: \(notices.value) of \(expected)")
            try await Task.sleep(for: .milliseconds(300))
            #expect(notices.value == expected, "the refused cancel sent a notice")

            expected += 1
            let batch = try await api.createBatch(
                NewBatch(
                    accountID: account.id, name: "b", folderStrategy: .all, perRowServer: false, importSince: nil,
                    skipDuplicates: false),
                jobs: [
                    NewBatchJob(
                        line: 2, mailboxID: box.id, provider: "generic_imap", sourceHost: "imap.example.net",
                        sourcePort: 993, sourceSecurity: "ssl", sourceEmail: "x@example.net", sourceUsername: "x",
                        sourcePassword: "pw", targetPassword: nil)
                ])
            #expect(await notices.reach(expected), "batch start: \(notices.value) of \(expected)")
            expected += 1
            _ = try await api.cancelBatch(id: batch.batch.id, accountID: account.id)
            #expect(await notices.reach(expected), "batch cancel: \(notices.value) of \(expected)")
            try await api.close()
            try await worker.close()
        }
    }

    /// The listener's connection is cut (what a database restart does to it): it connects again
    /// on its own and hears the next notice.
    @Test func theListenerComesBackAfterItsConnectionIsCut() async throws {
        try await withTestDatabase(.postgres) { database in
            let api = try await database.open()
            let worker = try await database.open()
            let (notices, listener) = try await listening(worker, to: api)
            defer { listener.cancel() }

            let cut = try database.psql(
                """
                SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                WHERE datname = current_database() AND query LIKE 'LISTEN%'
                """)
            #expect(cut?.trimmingCharacters(in: .whitespacesAndNewlines) == "1", "\(cut ?? "")")
            // Back within the first backoff (1 s): notices are heard again.
            let before = notices.value
            let deadline = ContinuousClock.now + .seconds(20)
            while notices.value == before, ContinuousClock.now < deadline {
                try await Store.announceWork(api.database, api.flavor)
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(notices.value > before, "no notice after the connection was cut")
            try await api.close()
            try await worker.close()
        }
    }

    /// Two nodes purge at the same hour: while one holds the housekeeping lock the other skips,
    /// and the one that ran removed the expired rows.
    @Test func onlyOneNodePurgesAtATime() async throws {
        try await withTestDatabase(.postgres) { database in
            let first = try await database.open()
            let second = try await database.open()
            let now = Date()
            _ = try await first.recordAudit(
                accountID: 1, tokenID: nil, action: "migration_started", resourceType: "migration",
                resourceID: "1", ip: nil, requestID: nil, now: now - Store.auditRetention - 3600)

            let holding = AsyncStream<Void>.makeStream()
            let release = AsyncStream<Void>.makeStream()
            let purging = Task {
                try await first.purgeExpired(now: now) {
                    holding.continuation.yield()
                    for await _ in release.stream { break }
                }
            }
            for await _ in holding.stream { break }
            #expect(try await second.purgeExpired(now: now) == false, "both nodes purged at once")
            release.continuation.yield()
            #expect(try await purging.value == true)
            #expect(try await first.auditEvents(accountID: 1).total == 0)
            // The lock went with the first purge's transaction: the next turn is the second's.
            #expect(try await second.purgeExpired(now: now) == true)
            try await first.close()
            try await second.close()
        }
    }

    /// The pool's `run()` has begun before the schema migration leases its first connection, so
    /// postgres-nio never warns that `run()` was not called (its lines are silenced in service; the
    /// test raises their level to see them). The other threads of the concurrency
    /// pool are kept busy meanwhile: a task started the ordinary way to run the pool would only get
    /// a thread after the lease, which is how the warning came at busy starts.
    @Test func thePoolRunsBeforeItsFirstLease() async throws {
        try await withTestDatabase(.postgres) { database in
            let messages = RecordingLogHandler.Messages()
            let logger = Logger(label: "mailporter.store") { _ in RecordingLogHandler(messages: messages) }
            let latch = Latch()
            let others = max(0, ProcessInfo.processInfo.activeProcessorCount - 1)
            let spinners = (0..<others).map { _ in
                Task.detached {
                    latch.arrived()
                    while !latch.isOpen {}
                }
            }
            let deadline = ContinuousClock.now + .seconds(10)
            while latch.spinning < others, ContinuousClock.now < deadline { await Task.yield() }
            let store: Store
            do {
                store = try await Store.openPostgres(
                    url: try PostgresURL.parse(database.url), secrets: database.secrets, logger: logger,
                    maximumConnections: 4, poolLogLevel: .trace)
            } catch {
                latch.open()
                throw error
            }
            latch.open()
            for spinner in spinners { await spinner.value }
            #expect(try await store.schemaVersions() == Schema.migrations.map(\.version))
            let warned = messages.all.filter { $0.contains("run()") }
            #expect(warned.isEmpty, "\(warned)")
            try await store.close()
        }
    }

    /// SQLite: one host and one writer; every purge runs.
    @Test func onSQLiteEveryPurgeRuns() async throws {
        try await withStore(.sqlite) { store in
            let first = try await store.purgeExpired()
            let second = try await store.purgeExpired()
            #expect(first && second)
            #expect(store.announcesWork == false)
            await store.listenForWork {}  // returns at once: nothing to listen to
        }
    }
}
