import Foundation
import JobRunner
import Logging
import MigrationEngine
import Store
import Testing
import TestSupport

/// The runner as it is, given a batch through the store: bulk jobs are migration records it claims
/// like any other, and their ends settle the batch.
@Suite("Job runner: bulk batches", .timeLimit(.minutes(3)))
struct BatchRunTests {
    static let logger = Logger(label: "mailporter.test.batch") { _ in SwiftLogNoOpLogHandler() }

    /// Short intervals so a pause is seen quickly; the destination logged in to as its master user.
    static func configuration(_ destination: DovecotServer) -> JobRunnerConfiguration {
        JobRunnerConfiguration(
            nodeID: uniqueUser("node"), maxConcurrentMigrations: 20, leaseSeconds: 30,
            pollInterval: .milliseconds(250), progressInterval: .milliseconds(200),
            destination: DestinationServer(
                server: destination.configuration(), masterUser: DovecotServer.masterUser,
                masterPassword: DovecotServer.masterPassword),
            allowPrivateHosts: true, parallelFolders: 4, backoff: { _, _ in 0.05 }, batchSize: 25)
    }

    /// Polls `condition` over the batch until it holds or `timeout` passes; returns the last read.
    static func waitFor(
        _ store: Store, _ id: Int64, timeout: Duration = .seconds(60),
        _ condition: (BatchDetail) -> Bool
    ) async throws -> BatchDetail {
        let deadline = ContinuousClock.now + timeout
        while true {
            let detail = try #require(try await store.batchDetail(id: id))
            if condition(detail) || ContinuousClock.now >= deadline { return detail }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func aBatchRunsToCompletedWithErrorsThenAFixedPasswordAndARetryCompleteIt(_ backend: StoreBackend) async throws {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let options = Corpus.Options(scale: 1, largeAttachment: false, bodyBytes: 300...1500)
        let sourceUsers = [uniqueUser("bsrc"), uniqueUser("bsrc")]
        var corpora: [Corpus] = []
        for user in sourceUsers { corpora.append(try await Corpus.fill(source, user: user, options: options)) }
        let destinationUsers = [try await destination.freshUser("bdst"), try await destination.freshUser("bdst")]

        let store = try await emptyStore(backend)
        let account = try await store.createAccount(plan: .starter, notificationEmail: "ops@example.com")
        var jobs: [NewBatchJob] = []
        for index in 0..<2 {
            let mailbox = try await store.addMailbox(accountID: account.id, email: destinationUsers[index])
            jobs.append(
                NewBatchJob(
                    line: index + 2, mailboxID: mailbox.id, provider: "generic_imap", sourceHost: "127.0.0.1",
                    sourcePort: source.imapPort, sourceSecurity: "none",
                    sourceEmail: "\(sourceUsers[index])@example.com", sourceUsername: sourceUsers[index],
                    sourcePassword: index == 1 ? "wrong-password" : DovecotServer.password))
        }
        let batch = try await store.createBatch(NewBatch(accountID: account.id, name: "e2e"), jobs: jobs).batch
        let configuration = Self.configuration(destination)

        func runUntilEnded() async throws -> BatchDetail {
            let runner = JobRunner(store: store, configuration: configuration, logger: Self.logger)
            let task = Task { try await runner.run() }
            runner.wake()
            let detail = try await Self.waitFor(store, batch.id) { detail in
                (detail.batch.status == .completed || detail.batch.status == .completedWithErrors)
                    && detail.jobs.allSatisfy { $0.migration.leaseOwner == nil }
            }
            task.cancel()
            try await task.value
            return detail
        }

        let first = try await runUntilEnded()
        #expect(first.batch.status == .completedWithErrors)
        #expect(first.jobs.map(\.migration.status) == [.completed, .failed])
        #expect(first.jobs[1].migration.error?.code == "authentication_failed")

        let failedJob = first.jobs[1].migration.id
        _ = try await store.updateBatchJobPassword(
            batchID: batch.id, jobID: failedJob, accountID: account.id,
            password: DovecotServer.password)
        let retried = try await store.retryBatch(id: batch.id, accountID: account.id)
        #expect(retried.batch.status == .queued)
        let second = try await runUntilEnded()
        #expect(second.batch.status == .completed)
        #expect(second.jobs.map(\.migration.status) == [.completed, .completed])

        for index in 0..<2 {
            let snapshot = try await AccountSnapshot.take(destination, user: destinationUsers[index])
            for problem in snapshot.differences(from: corpora[index].expectedDestination(skipDuplicates: true)) {
                Issue.record("job \(index): \(problem)")
            }
        }
        try await store.close()
    }

    /// A batch started with `folder_strategy: standard` copies INBOX and the special-use folders
    /// only, each message once; `Work` and the other plain folders stay behind.
    @Test(arguments: StoreBackend.allCases)
    func aStandardBatchCopiesInboxAndSpecialUseFoldersOnly(_ backend: StoreBackend) async throws {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let sourceUser = uniqueUser("ssrc")
        let corpus = try await Corpus.fill(
            source, user: sourceUser,
            options: Corpus.Options(scale: 1, largeAttachment: false, bodyBytes: 300...1500))
        let destinationUser = try await destination.freshUser("sdst")
        let store = try await emptyStore(backend)
        let account = try await store.createAccount(plan: .starter, notificationEmail: "ops@example.com")
        let mailbox = try await store.addMailbox(accountID: account.id, email: destinationUser)
        let batch = try await store.createBatch(
            NewBatch(accountID: account.id, name: "standard", folderStrategy: .standard),
            jobs: [
                NewBatchJob(
                    line: 2, mailboxID: mailbox.id, provider: "generic_imap", sourceHost: "127.0.0.1",
                    sourcePort: source.imapPort, sourceSecurity: "none", sourceEmail: "\(sourceUser)@example.com",
                    sourceUsername: sourceUser, sourcePassword: DovecotServer.password)
            ]
        ).batch
        let runner = JobRunner(store: store, configuration: Self.configuration(destination), logger: Self.logger)
        let task = Task { try await runner.run() }
        runner.wake()
        let ended = try await Self.waitFor(store, batch.id) {
            !$0.batch.status.isActive && $0.jobs[0].migration.leaseOwner == nil
        }
        task.cancel()
        try await task.value
        #expect(
            ended.batch.status == .completed,
            "\(ended.batch.status) \(String(describing: ended.jobs[0].migration.error))")

        let standardFolders: Set<String> = ["INBOX", "Sent", "Sent Items", "Drafts"]
        let expected = corpus.expectedDestination(skipDuplicates: true, folders: standardFolders)
        let snapshot = try await AccountSnapshot.take(destination, user: destinationUser)
        for problem in snapshot.differences(from: expected) { Issue.record("standard: \(problem)") }
        #expect(
            snapshot.folders["Work"] == nil && snapshot.folders["Work/Projects"] == nil,
            "a standard batch created plain folders: \(snapshot.folders.keys.sorted())")
        #expect(ended.jobs[0].migration.importedMessages == expected.values.reduce(0) { $0 + $1.count })
        try await store.close()
    }

    /// Paused for storage while copying (as a storage watch would), the running job lets go at a
    /// safe point and nothing of the batch is claimed; resumed, it continues and ends exact.
    @Test(arguments: StoreBackend.allCases)
    func aPausedBatchStopsAtASafePointAndResumesExactly(_ backend: StoreBackend) async throws {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let sourceUser = uniqueUser("psrc")
        let corpus = try await Corpus.fill(
            source, user: sourceUser,
            options: Corpus.Options(scale: 3, largeAttachment: false, bodyBytes: 300...2000))
        let destinationUser = try await destination.freshUser("pdst")
        // A slow link, so the pause lands mid-copy.
        let proxy = try await FaultInjectingProxy.start(
            upstreamPort: source.imapPort,
            faults: Array(repeating: .throttle(bytesPerSecond: 60_000), count: 200))
        let store = try await emptyStore(backend)
        let account = try await store.createAccount(plan: .pro, notificationEmail: "ops@example.com")
        let mailbox = try await store.addMailbox(accountID: account.id, email: destinationUser)
        let batch = try await store.createBatch(
            NewBatch(accountID: account.id, name: "pause"),
            jobs: [
                NewBatchJob(
                    line: 2, mailboxID: mailbox.id, provider: "generic_imap", sourceHost: "127.0.0.1",
                    sourcePort: proxy.port, sourceSecurity: "none", sourceEmail: "\(sourceUser)@example.com",
                    sourceUsername: sourceUser, sourcePassword: DovecotServer.password)
            ]
        ).batch
        let runner = JobRunner(store: store, configuration: Self.configuration(destination), logger: Self.logger)
        let task = Task { try await runner.run() }
        runner.wake()

        let copying = try await Self.waitFor(store, batch.id) { $0.jobs[0].migration.importedMessages >= 20 }
        #expect(copying.batch.status == .processing, "never saw copying")
        #expect(try await store.pauseBatch(id: batch.id, reason: "storage at 90% of the pool"))
        let released = try await Self.waitFor(store, batch.id, timeout: .seconds(10)) {
            $0.jobs[0].migration.leaseOwner == nil
        }
        #expect(
            released.jobs[0].migration.status == .pending && released.jobs[0].migration.leaseOwner == nil,
            "the job did not let go after the pause")
        let stopped = try await AccountSnapshot.take(destination, user: destinationUser).messageCount
        runner.wake()
        try await Task.sleep(for: .seconds(1))
        let still = try #require(try await store.batchDetail(id: batch.id))
        #expect(
            still.batch.status == .paused && still.jobs[0].migration.status == .pending,
            "a paused batch's job was claimed")
        #expect(try await AccountSnapshot.take(destination, user: destinationUser).messageCount == stopped)
        #expect(stopped < corpus.selectedCount - corpus.duplicateCount, "the run ended before the pause")

        _ = try await store.resumeBatch(id: batch.id, accountID: account.id)
        runner.wake()
        let ended = try await Self.waitFor(store, batch.id) {
            $0.batch.status == .completed && $0.jobs[0].migration.leaseOwner == nil
        }
        task.cancel()
        try await task.value
        await proxy.stop()
        #expect(
            ended.batch.status == .completed,
            "\(ended.batch.status) \(String(describing: ended.jobs[0].migration.error))")
        let snapshot = try await AccountSnapshot.take(destination, user: destinationUser)
        for problem in snapshot.differences(from: corpus.expectedDestination(skipDuplicates: true)) {
            Issue.record("after resume: \(problem)")
        }
        try await store.close()
    }
}
