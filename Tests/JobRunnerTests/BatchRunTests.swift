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

    @Test func aBatchRunsToCompletedWithErrorsThenAFixedPasswordAndARetryCompleteIt() async throws {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let options = Corpus.Options(scale: 1, largeAttachment: false, bodyBytes: 300...1500)
        let sourceUsers = [uniqueUser("bsrc"), uniqueUser("bsrc")]
        var corpora: [Corpus] = []
        for user in sourceUsers { corpora.append(try await Corpus.fill(source, user: user, options: options)) }
        let destinationUsers = [try await destination.freshUser("bdst"), try await destination.freshUser("bdst")]

        let store = try await Store.openInMemorySQLite()
        let account = try await store.createAccount(plan: .starter, notificationEmail: "ops@example.com")
        var jobs: [NewBatchJob] = []
        for index in 0..<2 {
            let mailbox = try await store.addMailbox(accountID: account.id, email: destinationUsers[index])
            jobs.append(NewBatchJob(line: index + 2, mailboxID: mailbox.id, provider: "generic_imap", sourceHost: "127.0.0.1",
                                    sourcePort: source.imapPort, sourceSecurity: "none",
                                    sourceEmail: "\(sourceUsers[index])@example.com", sourceUsername: sourceUsers[index],
                                    sourcePassword: index == 1 ? "wrong-password" : DovecotServer.password))
        }
        let batch = try await store.createBatch(NewBatch(accountID: account.id, name: "e2e"), jobs: jobs).batch
        let configuration = JobRunnerConfiguration(
            nodeID: uniqueUser("node"), maxConcurrentMigrations: 20, leaseSeconds: 30,
            pollInterval: .milliseconds(250), progressInterval: .milliseconds(200),
            destination: DestinationServer(server: destination.configuration(), masterUser: DovecotServer.masterUser,
                                           masterPassword: DovecotServer.masterPassword),
            allowPrivateHosts: true, parallelFolders: 4, backoff: { _, _ in 0.05 }, batchSize: 25)

        func runUntilEnded() async throws -> BatchDetail {
            let runner = JobRunner(store: store, configuration: configuration, logger: Self.logger)
            let task = Task { try await runner.run() }
            runner.wake()
            let deadline = ContinuousClock.now + .seconds(60)
            var detail = try #require(try await store.batchDetail(id: batch.id))
            while !(detail.batch.status == .completed || detail.batch.status == .completedWithErrors)
                    || detail.jobs.contains(where: { $0.migration.leaseOwner != nil }),
                  ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
                detail = try #require(try await store.batchDetail(id: batch.id))
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
        _ = try await store.updateBatchJobPassword(batchID: batch.id, jobID: failedJob, accountID: account.id,
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
}
