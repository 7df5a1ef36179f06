import Foundation
import IMAPClient
import JobRunner
import Logging
import MigrationEngine
import NIOCore
import ServiceLifecycle
@testable import Store
import Testing
import TestSupport

// MARK: - Helpers

/// Silent unless MAILPORTER_TEST_LOGS is set (then everything, for debugging a failure).
private let quietLogger: Logger = {
    guard ProcessInfo.processInfo.environment["MAILPORTER_TEST_LOGS"] != nil else {
        return Logger(label: "mailporter.test.jobrunner") { _ in SwiftLogNoOpLogHandler() }
    }
    var logger = Logger(label: "mailporter.test.jobrunner")
    logger.logLevel = .debug
    return logger
}()

private func servers() async throws -> (source: DovecotServer, destination: DovecotServer) {
    (try await SharedServers.shared.server(.dot), try await SharedServers.shared.server(.slash))
}

/// Short intervals so the tests see progress, cancels and stops quickly; small batches so a stop
/// lands mid-folder.
private func configuration(
    destination: DovecotServer, nodeID: String = uniqueUser("node"), master: Bool = true,
    maxConcurrent: Int = 20, allowPrivateHosts: Bool = true
) -> JobRunnerConfiguration {
    JobRunnerConfiguration(
        nodeID: nodeID, maxConcurrentMigrations: maxConcurrent, leaseSeconds: 30,
        pollInterval: .milliseconds(250), progressInterval: .milliseconds(200),
        destination: DestinationServer(
            server: destination.configuration(),
            masterUser: master ? DovecotServer.masterUser : nil,
            masterPassword: master ? DovecotServer.masterPassword : nil),
        allowPrivateHosts: allowPrivateHosts, parallelFolders: 4, backoff: { _, _ in 0.05 }, batchSize: 25)
}

/// A new account with the destination mailbox, and a queued migration into it.
private func queue(
    _ store: Store, sourceUser: String, sourcePort: Int, destinationUser: String,
    sourcePassword: String = DovecotServer.password, targetPassword: String? = nil,
    selectedFolders: [String]? = nil, importSince: String? = nil
) async throws -> MigrationRecord {
    let account = try await store.createAccount(plan: .pro, notificationEmail: "ops@example.com")
    let mailbox = try await store.addMailbox(accountID: account.id, email: destinationUser)
    return try await store.createMigration(
        NewMigration(
            accountID: account.id, mailboxID: mailbox.id, provider: "generic_imap", sourceHost: "127.0.0.1",
            sourcePort: sourcePort, sourceSecurity: "none", sourceEmail: "\(sourceUser)@example.com",
            sourceUsername: sourceUser,
            sourcePassword: sourcePassword, targetPassword: targetPassword, selectedFolders: selectedFolders,
            importSince: importSince))
}

extension MigrationRecord {
    /// Ended and let go of: the status is written just before the lease is released.
    var isSettled: Bool { status.isTerminal && leaseOwner == nil }
}

private func start(_ runner: JobRunner) -> Task<Void, any Error> {
    Task { try await runner.run() }
}

/// Polls the migration until `condition` holds or `timeout` passes; returns the last record read.
private func waitFor(
    _ store: Store, _ id: Int64, timeout: Duration = .seconds(90),
    _ condition: (MigrationRecord) -> Bool
) async throws -> MigrationRecord {
    let deadline = ContinuousClock.now + timeout
    while true {
        let record = try #require(try await store.migration(id: id))
        if condition(record) || ContinuousClock.now >= deadline { return record }
        try await Task.sleep(for: .milliseconds(25))
    }
}

/// A Dovecot of the test's own.
private func startPrivateServer(layout: DovecotServer.Layout) throws -> DovecotServer {
    try withDefaultSignalMask { try DovecotServer.start(layout: layout) }
}

/// A source link slow enough (per connection) that a run of a few hundred messages takes seconds,
/// so a cancel or a stop lands while messages are being copied.
private func slowSource(_ source: DovecotServer, bytesPerSecond: Int = 60_000) async throws -> FaultInjectingProxy {
    try await FaultInjectingProxy.start(
        upstreamPort: source.imapPort,
        faults: Array(repeating: .throttle(bytesPerSecond: bytesPerSecond), count: 200))
}

private let mediumCorpus = Corpus.Options(scale: 3, largeAttachment: false, bodyBytes: 300...2000)

/// Where the engine puts a corpus folder of the dot source on the slash destination.
/// Every expected message (duplicates skipped) is in its folder exactly once (bytes, flags, date);
/// no other folder holds mail.
private func expectExact(
    _ actual: AccountSnapshot, _ corpus: Corpus, folders: Set<String>? = nil, since: Int64 = .min,
    _ context: String, sourceLocation: SourceLocation = #_sourceLocation
) {
    let expected = corpus.expectedDestination(skipDuplicates: true, since: since, folders: folders)
    for problem in actual.differences(from: expected) {
        Issue.record("\(context): \(problem)", sourceLocation: sourceLocation)
    }
}

/// An empty store on `backend`: SQLite in memory, or a fresh database of the test cluster (left
/// to the cluster's removal when the tests end).
func emptyStore(_ backend: StoreBackend) async throws -> Store {
    switch backend {
    case .sqlite: try await Store.openInMemorySQLite()
    case .postgres: try await TestDatabase.make(.postgres).open()
    }
}

/// Two servers, a source account filled with a corpus, a fresh destination account, an empty store.
private func scenario(_ options: Corpus.Options, backend: StoreBackend = .sqlite) async throws
    -> (
        source: DovecotServer, destination: DovecotServer, sourceUser: String, destinationUser: String,
        corpus: Corpus, store: Store
    )
{
    let (source, destination) = try await servers()
    let sourceUser = uniqueUser("src")
    let destinationUser = try await destination.freshUser("dst")
    let corpus = try await Corpus.fill(source, user: sourceUser, options: options)
    return (source, destination, sourceUser, destinationUser, corpus, try await emptyStore(backend))
}

/// Runs a runner until migration `id` is settled, then stops it; returns the record.
private func runUntilSettled(_ store: Store, _ id: Int64, _ configuration: JobRunnerConfiguration) async throws
    -> MigrationRecord
{
    let task = start(JobRunner(store: store, configuration: configuration, logger: quietLogger))
    let record = try await waitFor(store, id) { $0.isSettled }
    task.cancel()
    try await task.value
    return record
}

/// The stored totals and folder rows of a completed migration of `corpus`.
private func expectFinishedRecord(
    _ record: MigrationRecord, _ corpus: Corpus, source: DovecotServer, _ context: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(
        record.status == .completed, "\(context): \(record.status) \(String(describing: record.error))",
        sourceLocation: sourceLocation)
    #expect(record.error == nil, "\(context)", sourceLocation: sourceLocation)
    #expect(record.leaseOwner == nil, "\(context): the lease is released", sourceLocation: sourceLocation)
    #expect(record.totalMessages == corpus.selectedCount, "\(context): total", sourceLocation: sourceLocation)
    #expect(
        record.importedMessages == corpus.selectedCount - corpus.duplicateCount, "\(context): imported",
        sourceLocation: sourceLocation)
    #expect(record.skippedDuplicates == corpus.duplicateCount, "\(context): skipped", sourceLocation: sourceLocation)
    #expect(record.failedMessages == 0, "\(context): failed", sourceLocation: sourceLocation)
    #expect(record.progress == 100, sourceLocation: sourceLocation)
    #expect(record.startedAt != nil && record.finishedAt != nil, "\(context): times", sourceLocation: sourceLocation)

    let rows = Dictionary(record.folders.map { ($0.sourceName, $0) }, uniquingKeysWith: { first, _ in first })
    #expect(rows.count == record.folders.count, "\(context): one row per source folder", sourceLocation: sourceLocation)
    for folder in corpus.folderOrder {
        let name = source.folder(folder)
        guard let row = rows[name] else {
            Issue.record(
                "\(context): no folder row for \(name): \(record.folders.map(\.sourceName))",
                sourceLocation: sourceLocation)
            continue
        }
        let messages = (corpus.folders[folder] ?? []).filter { !$0.isDeleted }
        #expect(
            row.destinationName == Corpus.destinationPath(folder), "\(context): \(name)", sourceLocation: sourceLocation
        )
        #expect(row.status == .completed, "\(context): \(name)", sourceLocation: sourceLocation)
        #expect(row.expected == messages.count, "\(context): \(name) expected", sourceLocation: sourceLocation)
        #expect(
            row.imported == messages.filter { !$0.isDuplicate }.count, "\(context): \(name) imported",
            sourceLocation: sourceLocation)
        #expect(
            row.skipped == messages.filter(\.isDuplicate).count, "\(context): \(name) skipped",
            sourceLocation: sourceLocation)
        #expect(row.failed == 0, "\(context): \(name) failed", sourceLocation: sourceLocation)
    }
}

/// What a user checks after a migration: the record says completed with the right totals, and the
/// destination holds the corpus exactly.
private func expectCompletedExactly(
    _ record: MigrationRecord, _ corpus: Corpus, source: DovecotServer,
    destination: DovecotServer, user: String, _ context: String,
    sourceLocation: SourceLocation = #_sourceLocation
) async throws {
    expectFinishedRecord(record, corpus, source: source, context, sourceLocation: sourceLocation)
    expectExact(
        try await AccountSnapshot.take(destination, user: user), corpus, context, sourceLocation: sourceLocation)
}

private func destinationCount(_ destination: DovecotServer, _ user: String) async throws -> Int {
    try await AccountSnapshot.take(destination, user: user).messageCount
}

// MARK: - Tests

/// The runner against real Dovecot servers (dot-layout source, slash-layout destination logged in
/// to through its master user or a target password), with an in-memory store. Tests run in
/// parallel, each with its own store, users and (where it must be slow) a throttling proxy.
@Suite("Job runner", .timeLimit(.minutes(4)))
struct JobRunnerTests {
    @Test(arguments: StoreBackend.allCases)
    func queuedMigrationRunsToCompletedAndIsExact(_ backend: StoreBackend) async throws {
        let (source, destination, sourceUser, destinationUser, corpus, store) = try await scenario(
            .init(largeAttachment: false), backend: backend)
        let queued = try await queue(
            store, sourceUser: sourceUser, sourcePort: source.imapPort, destinationUser: destinationUser)

        let runner = JobRunner(
            store: store, configuration: configuration(destination: destination), logger: quietLogger)
        let task = start(runner)
        runner.wake()
        // The status walks forward; the first look may already be past validating.
        var seen: [MigrationStatus] = []
        let record = try await waitFor(store, queued.id) { record in
            if seen.last != record.status { seen.append(record.status) }
            return record.isSettled
        }
        task.cancel()
        try await task.value

        expectFinishedRecord(record, corpus, source: source, "completed run")
        let order: [MigrationStatus] = [.pending, .validating, .planning, .processing, .completed]
        let positions = seen.compactMap { order.firstIndex(of: $0) }
        #expect(positions.count == seen.count && positions == positions.sorted(), "status went \(seen)")
        expectExact(try await AccountSnapshot.take(destination, user: destinationUser), corpus, "completed run")
        try await store.close()
    }

    /// Cancelled through the store (as the API does) while copying: the job stops within seconds,
    /// leaves `cancelled` alone; retried, it finishes with nothing doubled. The destination is
    /// logged in to with the import's target password (no master user configured).
    @Test func cancelStopsTheJobAndRetryFinishesWithoutDoubles() async throws {
        let (source, destination, sourceUser, destinationUser, corpus, store) = try await scenario(mediumCorpus)
        let proxy = try await slowSource(source)
        let queued = try await queue(
            store, sourceUser: sourceUser, sourcePort: proxy.port, destinationUser: destinationUser,
            targetPassword: DovecotServer.password)
        let runner = JobRunner(
            store: store, configuration: configuration(destination: destination, master: false),
            logger: quietLogger)
        let task = start(runner)

        let copying = try await waitFor(store, queued.id) { $0.status == .processing && $0.importedMessages >= 20 }
        #expect(copying.status == .processing && copying.importedMessages >= 20, "never saw copying: \(copying.status)")
        #expect(copying.folders.count >= corpus.folderOrder.count, "folder rows are written once planned")
        _ = try await store.cancelMigration(id: queued.id, accountID: queued.accountID)
        let cancelledAt = ContinuousClock.now
        let released = try await waitFor(store, queued.id, timeout: .seconds(10)) { $0.leaseOwner == nil }
        let stopTime = ContinuousClock.now - cancelledAt
        #expect(released.leaseOwner == nil, "the job did not let go after a cancel")
        #expect(stopTime < .seconds(5), "stopping took \(stopTime)")
        let stoppedCount = try await destinationCount(destination, destinationUser)
        try await Task.sleep(for: .seconds(1))
        #expect(
            try await destinationCount(destination, destinationUser) == stoppedCount, "copying went on after the stop")
        #expect(stoppedCount < corpus.selectedCount - corpus.duplicateCount, "the run ended before the cancel")
        let cancelled = try #require(try await store.migration(id: queued.id))
        #expect(cancelled.status == .cancelled)
        #expect(cancelled.error == nil)

        _ = try await store.retryMigration(id: queued.id, accountID: queued.accountID)
        runner.wake()
        let record = try await waitFor(store, queued.id) { $0.isSettled }
        task.cancel()
        try await task.value
        await proxy.stop()

        try await expectCompletedExactly(
            record, corpus, source: source, destination: destination, user: destinationUser,
            "retried after cancel")
        try await store.close()
    }

    enum StopKind: String, CaseIterable, Sendable {
        /// The task running `run()` is cancelled.
        case cancelTask
        /// ServiceLifecycle's graceful shutdown of the group the runner runs in.
        case gracefulShutdown
    }

    /// Stopped mid-copy, the runner requeues the migration before `run()` returns; a new runner
    /// (another node) resumes it from its checkpoints and ends exact.
    @Test(arguments: StopKind.allCases)
    func stoppedRunnerRequeuesAndANewRunnerFinishesExact(stop: StopKind) async throws {
        let (source, destination, sourceUser, destinationUser, corpus, store) = try await scenario(mediumCorpus)
        let proxy = try await slowSource(source)
        let queued = try await queue(
            store, sourceUser: sourceUser, sourcePort: proxy.port, destinationUser: destinationUser)

        let first = JobRunner(
            store: store, configuration: configuration(destination: destination, nodeID: "node-a"),
            logger: quietLogger)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [first], logger: quietLogger))
        let task: Task<Void, any Error> = stop == .cancelTask ? start(first) : Task { try await group.run() }
        let copying = try await waitFor(store, queued.id) { $0.status == .processing && $0.importedMessages >= 20 }
        #expect(copying.status == .processing, "never saw copying: \(copying.status)")

        let stoppingAt = ContinuousClock.now
        switch stop {
        case .cancelTask: task.cancel()
        case .gracefulShutdown: await group.triggerGracefulShutdown()
        }
        try await task.value
        let stopTime = ContinuousClock.now - stoppingAt
        #expect(stopTime < .seconds(5), "stopping took \(stopTime)")
        let requeued = try #require(try await store.migration(id: queued.id))
        #expect(requeued.status == .pending, "\(requeued.status)")
        #expect(requeued.leaseOwner == nil)
        #expect(requeued.error == nil)
        let partial = try await destinationCount(destination, destinationUser)
        #expect(partial > 0 && partial < corpus.selectedCount - corpus.duplicateCount, "stopped with \(partial) copied")

        let second = JobRunner(
            store: store, configuration: configuration(destination: destination, nodeID: "node-b"),
            logger: quietLogger)
        let secondTask = start(second)
        let record = try await waitFor(store, queued.id) { $0.isSettled }
        secondTask.cancel()
        try await secondTask.value
        await proxy.stop()

        try await expectCompletedExactly(
            record, corpus, source: source, destination: destination, user: destinationUser,
            "resumed by another runner")
        try await store.close()
    }

    /// A refused source login runs against a Dovecot of its own: Dovecot slows down later logins
    /// from the same address after a failure, which would slow the other tests.
    /// A completed migration synced (the API's `:sync`, with deletions): the pass goes through the
    /// queue like a retry, carries the flag changes to its copies, deletes the copy of the message
    /// expunged at the source, and the record counts the pass and what it did per folder.
    @Test func aSyncedMigrationRunsADeltaPassAndTheRecordSaysWhatItDid() async throws {
        let (source, destination, sourceUser, destinationUser, corpus, store) = try await scenario(
            .init(largeAttachment: false))
        let queued = try await queue(
            store, sourceUser: sourceUser, sourcePort: source.imapPort, destinationUser: destinationUser)
        let config = configuration(destination: destination)
        let first = try await runUntilSettled(store, queued.id, config)
        #expect(first.status == .completed && first.passes == 1)
        let copied = try #require(first.folders.first { $0.sourceName == "INBOX" }).imported
        let gone = try #require((corpus.folders["INBOX"] ?? []).firstIndex { !$0.isDeleted && !$0.isDuplicate }) + 1

        _ = try source.doveadm(["flags", "add", "-u", sourceUser, "$Synced", "mailbox", "INBOX", "ALL"])
        _ = try source.doveadm(["expunge", "-u", sourceUser, "mailbox", "INBOX", "uid", "\(gone)"])
        let synced = try await store.syncMigration(id: queued.id, accountID: queued.accountID, syncDeletions: true)
        #expect(synced.status == .pending)
        let second = try await runUntilSettled(store, queued.id, config)
        #expect(second.status == .completed)
        #expect(second.passes == 2)
        #expect(second.lastPassAt != nil && second.lastPassAt != first.lastPassAt)
        let inbox = try #require(second.folders.first { $0.sourceName == "INBOX" })
        #expect(inbox.flagsUpdated == copied - 1)
        #expect(inbox.deleted == 1)
        let destinationInbox = try await AccountSnapshot.take(destination, user: destinationUser).folders["INBOX"] ?? []
        #expect(destinationInbox.count == copied - 1)
        #expect(destinationInbox.allSatisfy { $0.flags.contains("$Synced") })
        try await store.close()
    }

    /// A migration started with `sync_every_hours` runs its next pass by itself once due (its last
    /// pass is moved two hours back here, as if the time had passed): the runner queues it as
    /// `:sync` would, audits it, and the pass carries the source's change.
    @Test func aScheduledPassRunsByItselfOnceDue() async throws {
        let (source, destination, sourceUser, destinationUser, _, store) = try await scenario(
            .init(largeAttachment: false))
        let queued = try await queue(
            store, sourceUser: sourceUser, sourcePort: source.imapPort, destinationUser: destinationUser)
        try await store.database.raw("UPDATE migrations SET sync_every_hours = 1 WHERE id = \(bind: queued.id)").run()
        let config = configuration(destination: destination)
        let first = try await runUntilSettled(store, queued.id, config)
        #expect(first.status == .completed && first.passes == 1)
        #expect(first.nextPassAt != nil)

        _ = try source.doveadm(["flags", "add", "-u", sourceUser, "$Scheduled", "mailbox", "INBOX", "ALL"])
        try await store.database.raw(
            "UPDATE migrations SET last_pass_at = last_pass_at - 7200000 WHERE id = \(bind: queued.id)"
        ).run()
        let task = start(JobRunner(store: store, configuration: config, logger: quietLogger))
        let second = try await waitFor(store, queued.id) { $0.passes == 2 && $0.isSettled }
        task.cancel()
        try await task.value
        #expect(second.status == .completed && second.passes == 2)
        let audit = try await store.auditEvents(accountID: queued.accountID)
        #expect(audit.items.contains { $0.action == "migration_synced" && $0.tokenID == nil })
        let destinationInbox = try await AccountSnapshot.take(destination, user: destinationUser).folders["INBOX"] ?? []
        #expect(!destinationInbox.isEmpty && destinationInbox.allSatisfy { $0.flags.contains("$Scheduled") })
        try await store.close()
    }

    @Test func wrongSourcePasswordFailsWithAuthenticationFailed() async throws {
        let destination = try await SharedServers.shared.server(.slash)
        let source = try startPrivateServer(layout: .dot)
        defer { source.stop() }
        let store = try await Store.openInMemorySQLite()
        let queued = try await queue(
            store, sourceUser: uniqueUser("src"), sourcePort: source.imapPort,
            destinationUser: uniqueUser("dst"), sourcePassword: "wrong")
        let runner = JobRunner(
            store: store, configuration: configuration(destination: destination), logger: quietLogger)
        let task = start(runner)
        let record = try await waitFor(store, queued.id) { $0.isSettled }
        task.cancel()
        try await task.value

        #expect(record.status == .failed)
        #expect(record.error?.code == "authentication_failed", "\(String(describing: record.error))")
        #expect(record.error?.hint?.contains("username") == true, "\(String(describing: record.error?.hint))")
        #expect(record.leaseOwner == nil)
        #expect(record.folders.isEmpty, "nothing was planned")
        try await store.close()
    }

    /// Two nodes, each allowed one migration, share the global limit of one: while one migration
    /// runs, the other stays pending; both end exact. On PostgreSQL each node has its own store
    /// (its own pool) on the shared database, as two processes would.
    @Test(arguments: StoreBackend.allCases)
    func globalLimitKeepsTheSecondMigrationPendingUntilTheFirstEnds(_ backend: StoreBackend) async throws {
        let (source, destination) = try await servers()
        let sourceUser = uniqueUser("src")
        let destinationUsers = [try await destination.freshUser("dst"), try await destination.freshUser("dst")]
        let corpus = try await Corpus.fill(
            source, user: sourceUser, options: .init(largeAttachment: false, bodyBytes: 300...2000))
        let proxy = try await slowSource(source, bytesPerSecond: 80_000)
        let database = backend == .postgres ? try await TestDatabase.make(.postgres) : nil
        let store: Store
        let secondNodeStore: Store
        if let database {
            store = try await database.open()
            secondNodeStore = try await database.open()
        } else {
            store = try await Store.openInMemorySQLite()
            secondNodeStore = store
        }
        var ids: [Int64] = []
        for user in destinationUsers {
            ids.append(try await queue(store, sourceUser: sourceUser, sourcePort: proxy.port, destinationUser: user).id)
        }
        let runners = [("node-a", store), ("node-b", secondNodeStore)].map { nodeID, nodeStore in
            JobRunner(
                store: nodeStore,
                configuration: configuration(destination: destination, nodeID: nodeID, maxConcurrent: 1),
                logger: quietLogger)
        }
        let tasks = runners.map { start($0) }

        var sawOneWaiting = false
        var mostRunning = 0
        // Two migrations one after the other, each given most of the 90 s a single one gets under a full run's load.
        let deadline = ContinuousClock.now + .seconds(150)
        var records: [MigrationRecord] = []
        while ContinuousClock.now < deadline {
            records = []
            for id in ids { records.append(try #require(try await store.migration(id: id))) }
            var running = records.filter(\.status.isRunning).count
            if running > 1 {
                // Read one by one, the first may have ended just after it was read and the second been
                // claimed just before: two "at once" that never were. A migration still running when
                // read again was running all along (nothing goes back to running but a retry).
                let first = try #require(try await store.migration(id: ids[0]))
                if !first.status.isRunning { running -= 1 }
            }
            mostRunning = max(mostRunning, running)
            if running == 1, records.contains(where: { $0.status == .pending }) { sawOneWaiting = true }
            if records.allSatisfy(\.isSettled) { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        for task in tasks { task.cancel() }
        for task in tasks { try await task.value }
        await proxy.stop()

        #expect(mostRunning == 1, "\(mostRunning) migrations ran at once under a global limit of 1")
        #expect(sawOneWaiting, "never saw one migration running while the other waited")
        let first = try #require(records.first)
        let second = try #require(records.last)
        let firstFinished = try #require(first.finishedAt)
        let secondStarted = try #require(second.startedAt)
        #expect(secondStarted >= firstFinished.addingTimeInterval(-0.001), "the second started before the first ended")
        for (record, user) in zip(records, destinationUsers) {
            try await expectCompletedExactly(
                record, corpus, source: source, destination: destination, user: user,
                "migration \(record.id)")
        }
        if secondNodeStore !== store { try await secondNodeStore.close() }
        await database?.remove()
        try await store.close()
    }

    /// `selected_folders` and `import_since` reach the engine: only those folders, only mail from
    /// that day on (by INTERNALDATE, UTC). A day that does not exist fails the migration.
    @Test func selectedFoldersAndImportSinceAreApplied() async throws {
        let (source, destination, sourceUser, destinationUser, corpus, store) = try await scenario(
            .init(largeAttachment: false, bodyBytes: 300...1500))
        let day = Corpus.boundaryDay
        let dayText = "\(day.year)-\(day.month < 10 ? "0" : "")\(day.month)-\(day.day < 10 ? "0" : "")\(day.day)"
        let queued = try await queue(
            store, sourceUser: sourceUser, sourcePort: source.imapPort, destinationUser: destinationUser,
            selectedFolders: ["INBOX", "INBOX.Work"], importSince: dayText)
        let impossible = try await queue(
            store, sourceUser: sourceUser, sourcePort: source.imapPort,
            destinationUser: uniqueUser("dst"), importSince: "2021-02-29")
        let runner = JobRunner(
            store: store, configuration: configuration(destination: destination), logger: quietLogger)
        let task = start(runner)
        let record = try await waitFor(store, queued.id) { $0.isSettled }
        let invalid = try await waitFor(store, impossible.id) { $0.isSettled }
        task.cancel()
        try await task.value

        let cutoff = day.secondsSince1970
        let selected = corpus.all.filter {
            ["INBOX", "Work"].contains($0.folder) && !$0.message.isDeleted && $0.message.seconds >= cutoff
        }
        #expect(selected.count > 10 && selected.count < corpus.selectedCount - 10, "the corpus straddles the day")
        #expect(record.status == .completed, "\(String(describing: record.error))")
        #expect(record.totalMessages == selected.count)
        #expect(record.importedMessages == selected.filter { !$0.message.isDuplicate }.count)
        #expect(record.skippedDuplicates == selected.filter(\.message.isDuplicate).count)
        #expect(Set(record.folders.map(\.sourceName)) == ["INBOX", "INBOX.Work"])
        expectExact(
            try await AccountSnapshot.take(destination, user: destinationUser), corpus, folders: ["INBOX", "Work"],
            since: cutoff, "selected folders since \(dayText)")

        #expect(invalid.status == .failed)
        #expect(invalid.error?.code == "validation_error", "\(String(describing: invalid.error))")
        try await store.close()
    }

    @Test func privateSourceHostIsBlocked() async throws {
        let (source, destination) = try await servers()
        let store = try await Store.openInMemorySQLite()
        let queued = try await queue(
            store, sourceUser: uniqueUser("src"), sourcePort: source.imapPort,
            destinationUser: uniqueUser("dst"))
        let record = try await runUntilSettled(
            store, queued.id,
            configuration(destination: destination, allowPrivateHosts: false))

        #expect(record.status == .failed)
        #expect(record.error?.code == "private_host_blocked", "\(String(describing: record.error))")
        #expect(record.error?.hint?.contains("MAILPORTER_ALLOW_PRIVATE_HOSTS") == true)
        try await store.close()
    }

    @Test func withoutDestinationCredentialsTheMigrationFails() async throws {
        let (source, destination) = try await servers()
        let store = try await Store.openInMemorySQLite()
        let queued = try await queue(
            store, sourceUser: uniqueUser("src"), sourcePort: source.imapPort,
            destinationUser: uniqueUser("dst"))
        let record = try await runUntilSettled(store, queued.id, configuration(destination: destination, master: false))

        #expect(record.status == .failed)
        #expect(record.error?.code == "destination_unavailable", "\(String(describing: record.error))")
        #expect(record.error?.hint?.contains("MAILPORTER_DEST_MASTER_USER") == true)
        #expect(record.error?.hint?.contains("target_password") == true)
        try await store.close()
    }

    /// A migration still leased under this node id (its process was killed) is requeued when a
    /// runner with that id starts, rather than waiting out the lease, and then finished.
    @Test(arguments: StoreBackend.allCases)
    func leasesLeftUnderTheNodeIDAreTakenBackAtStart(_ backend: StoreBackend) async throws {
        let (source, destination, sourceUser, destinationUser, corpus, store) = try await scenario(
            .init(largeAttachment: false, bodyBytes: 300...1500), backend: backend)
        let queued = try await queue(
            store, sourceUser: sourceUser, sourcePort: source.imapPort, destinationUser: destinationUser)
        let nodeID = uniqueUser("node")
        let claimed = try await store.claimPendingMigration(owner: nodeID, leaseSeconds: 3600)
        #expect(claimed?.id == queued.id)
        #expect(try await store.migration(id: queued.id)?.status == .validating)

        let runner = JobRunner(
            store: store, configuration: configuration(destination: destination, nodeID: nodeID),
            logger: quietLogger)
        let task = start(runner)
        let record = try await waitFor(store, queued.id, timeout: .seconds(90)) { $0.isSettled }
        task.cancel()
        try await task.value

        try await expectCompletedExactly(
            record, corpus, source: source, destination: destination, user: destinationUser,
            "taken back at start")
        try await store.close()
    }
}

/// The fence on its own: a runner whose lease another node took over (here by a claim "an hour
/// later", with the runner's own renewals too far apart to notice) can append nothing more, because
/// the checkpoint it saves before completing each APPEND is refused; the other node then finishes exactly.
@Suite("Job runner: fencing", .timeLimit(.minutes(3)))
struct JobFencingTests {
    @Test(arguments: StoreBackend.allCases)
    func aRunnerWhoseLeaseWasTakenOverAppendsNothingMore(_ backend: StoreBackend) async throws {
        let (source, destination, sourceUser, destinationUser, corpus, store) = try await scenario(
            mediumCorpus, backend: backend)
        let proxy = try await slowSource(source)
        let queued = try await queue(
            store, sourceUser: sourceUser, sourcePort: proxy.port, destinationUser: destinationUser)
        var slowToRenew = configuration(destination: destination, nodeID: "node-a")
        slowToRenew.progressInterval = .seconds(120)
        let first = start(JobRunner(store: store, configuration: slowToRenew, logger: quietLogger))
        let deadline = ContinuousClock.now + .seconds(60)
        while try await destinationCount(destination, destinationUser) < 10, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }

        let takenOver = try #require(
            try await store.claimPendingMigration(owner: "node-b", leaseSeconds: 30, now: Date() + 3600))
        #expect(takenOver.id == queued.id)
        // What node-a had sent whole before the take-over may still land; then nothing more.
        try await Task.sleep(for: .seconds(2))
        let settled = try await destinationCount(destination, destinationUser)
        try await Task.sleep(for: .seconds(4))
        let later = try await destinationCount(destination, destinationUser)
        #expect(later == settled, "node-a kept appending after the take-over: \(settled) then \(later)")
        #expect(later < corpus.selectedCount - corpus.duplicateCount, "the take-over should land mid-copy")
        let held = try #require(try await store.migration(id: queued.id))
        #expect(held.leaseOwner == "node-b" && held.leaseToken == takenOver.leaseToken)
        first.cancel()
        try await first.value

        // node-b hands it back to the queue; a runner under its id finishes from the checkpoints.
        #expect(try await store.releaseLease(try #require(takenOver.lease), requeue: true))
        let record = try await runUntilSettled(
            store, queued.id, configuration(destination: destination, nodeID: "node-b"))
        await proxy.stop()
        try await expectCompletedExactly(
            record, corpus, source: source, destination: destination, user: destinationUser, "after the take-over")
        try await store.close()
    }
}

@Suite("Destination credentials")
struct DestinationServerTests {
    private let server = ServerConfiguration(host: "imap.example.net", port: 993, security: .ssl)

    @Test func masterCredentialsWinOverATargetPassword() {
        let destination = DestinationServer(server: server, masterUser: "admin", masterPassword: "secret")
        #expect(destination.hasMasterCredentials)
        guard
            case .master(let user, let masterUser, let masterPassword)? = destination.credentials(
                mailbox: "a@example.com",
                targetPassword: "t")
        else {
            Issue.record("expected master credentials")
            return
        }
        #expect(user == "a@example.com" && masterUser == "admin" && masterPassword == "secret")
    }

    @Test func targetPasswordWithoutMasterAndNeitherGivesNil() {
        let destination = DestinationServer(server: server, masterUser: "", masterPassword: "secret")
        #expect(!destination.hasMasterCredentials, "an empty master user is unset")
        guard
            case .password(let user, let password)? = destination.credentials(
                mailbox: "a@example.com", targetPassword: "t")
        else {
            Issue.record("expected password credentials")
            return
        }
        #expect(user == "a@example.com" && password == "t")
        #expect(destination.credentials(mailbox: "a@example.com", targetPassword: nil) == nil)
    }
}

/// The runner keeps the report's list: a message the destination refuses (Dovecot stores no empty
/// message; the source is the scripted server, since no real server holds one) is in the store
/// with its source UID, size and date and the server's reason, and the migration still completes.
@Suite("Job runner: failed messages", .timeLimit(.minutes(2)))
struct JobRunnerFailedMessageTests {
    @Test func aRefusedMessageIsListedWithItsUIDSizeDateAndReason() async throws {
        let date = InternalDate(year: 2023, month: 5, day: 2, hour: 9, minute: 30, second: 0, zoneMinutes: 60)
        let messages = ["Subject: one\r\n\r\nBody one.\r\n", "", "Subject: three\r\n\r\nBody three.\r\n"].map {
            ScriptedGmailServer.Message(
                bytes: ByteBuffer(string: $0), flags: [], internalDate: date, labels: ["\\Inbox"])
        }
        let source = try await ScriptedGmailServer.start(messages: messages, gmailExtension: false)
        defer { Task { await source.stop() } }
        let destination = try await SharedServers.shared.server(.slash)
        let destinationUser = try await destination.freshUser("failed")
        let store = try await Store.openInMemorySQLite()
        let queued = try await queue(
            store, sourceUser: "jane@example.org", sourcePort: source.port, destinationUser: destinationUser,
            sourcePassword: ScriptedGmailServer.password, selectedFolders: ["INBOX"])
        let record = try await runUntilSettled(store, queued.id, configuration(destination: destination))
        #expect(record.status == .completed, "\(String(describing: record.error))")
        #expect(record.importedMessages == 2 && record.failedMessages == 1)
        let listed = try await store.failedMessages(migrationID: queued.id)
        #expect(listed.map(\.folder) == ["INBOX"] && listed.map(\.uid) == [2], "\(listed)")
        #expect(listed.first?.size == 0)
        #expect(listed.first?.internalDate == Date(timeIntervalSince1970: TimeInterval(date.secondsSince1970)))
        #expect(listed.first?.reason.contains("zero byte") == true, "\(listed)")
        try await store.close()
    }
}
