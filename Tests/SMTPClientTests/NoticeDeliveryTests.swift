import Foundation
import Logging
import Notifications
import SMTPClient
import Store
import Testing
import TestSupport

/// The outbox delivered to a real aiosmtpd: what a person gets, retries after a 451, a 5xx
/// given up, and nothing sent twice.
@Suite("Notice delivery", .serialized, .timeLimit(.minutes(3)))
struct NoticeDeliveryTests {
    static let sourcePassword = "src-Secret-77x"

    /// A batch of three jobs: two completed, one failed with a classified error; its notice queued.
    static func finishedBatch(_ store: Store, failing: Int = 1, jobs: Int = 3) async throws -> BatchDetail {
        let account = try await store.createAccount(plan: .starter, notificationEmail: "ops@acme.example")
        var rows: [NewBatchJob] = []
        for index in 0..<jobs {
            let box = try await store.addMailbox(accountID: account.id, email: "m\(index)@acme.example")
            rows.append(
                NewBatchJob(
                    line: index + 2, mailboxID: box.id, provider: "generic_imap", sourceHost: "imap.old.example",
                    sourcePort: 993, sourceSecurity: "ssl", sourceEmail: "u\(index)@old.example",
                    sourcePassword: sourcePassword))
        }
        let detail = try await store.createBatch(NewBatch(accountID: account.id, name: "Acme Q3"), jobs: rows)
        for index in 0..<jobs {
            let claimed = try #require(try await store.claimPendingMigration(owner: "n", leaseSeconds: 30))
            if index < failing {
                try await store.updateStatus(
                    try await store.lease(claimed.id, heldBy: "n"), to: .failed,
                    error: MigrationError(
                        code: "authentication_failed", message: "The source refused the login.",
                        hint: "Check the password; Gmail needs an app password."))
            } else {
                try await store.updateProgress(
                    try await store.lease(claimed.id, heldBy: "n"),
                    totals: MigrationTotals(total: 10, imported: 9, skipped: 1))
                try await store.updateStatus(try await store.lease(claimed.id, heldBy: "n"), to: .completed)
            }
        }
        return detail
    }

    static func delivery(_ store: Store, _ sink: SMTPSink, backoff: Duration = .zero) throws -> NoticeDelivery {
        var smtp = try SMTPDeliveryTests.configuration(sink)
        smtp.replyTimeout = .seconds(10)
        return NoticeDelivery(
            store: store,
            configuration: NoticeDeliveryConfiguration(
                smtp: smtp, from: "Mailporter <mp@example.com>", publicURL: "https://mp.example.com/",
                nodeID: "test-node", backoff: { _ in backoff }),
            logger: Logger(label: "test"))
    }

    @Test func aFinishedBatchArrivesOnceAfterA451WithWhatAPersonNeeds() async throws {
        var options = SMTPSink.Options()
        options.deferFirst = 1
        let sink = try await SMTPSink.start(options)
        defer { sink.stop() }
        let store = try await Store.openInMemorySQLite()
        let detail = try await Self.finishedBatch(store)
        let delivery = try Self.delivery(store, sink)

        #expect(await delivery.deliverNext())
        var notices = try await store.allNotices()
        #expect(notices.map(\.status) == [.pending], "the 451 leaves it due again")
        #expect(notices.first?.lastErrorCode == "smtp_deferred")
        #expect(sink.received().isEmpty)
        #expect(await delivery.deliverNext())
        #expect(await !delivery.deliverNext(), "nothing more is due")
        notices = try await store.allNotices()
        #expect(notices.map(\.status) == [.sent])
        #expect(notices.first?.attempts == 2)

        let mails = sink.received()
        try #require(mails.count == 1, "\(sink.log)")
        #expect(mails[0].recipients == ["ops@acme.example"])
        let mail = ParsedMail(mails[0].raw)
        #expect(mail.decodedSubject == "Mailporter: bulk import \"Acme Q3\" completed with errors (2 of 3 mailboxes)")
        let body = mail.decodedBody
        #expect(body.contains("Bulk import \"Acme Q3\" (batch \(detail.batch.id)) completed with errors."))
        #expect(body.contains("Mailboxes: 3 in all; 2 completed, 1 failed"))
        #expect(body.contains("Messages: 18 imported, 2 skipped as duplicates, 0 failed, of 20 found."))
        #expect(body.contains("- m0@acme.example (CSV line 2): authentication_failed: The source refused the login."))
        #expect(body.contains("Fix: Check the password; Gmail needs an app password."))
        #expect(body.contains("https://mp.example.com/#/bulk/\(detail.batch.id)"))
        #expect(!mails[0].raw.contains(Self.sourcePassword) && !body.contains(Self.sourcePassword))
        try await store.close()
    }

    @Test func aPermanentRefusalIsGivenUpAndNeverBlocksTheBatch() async throws {
        let sink = try await SMTPSink.start()
        defer { sink.stop() }
        let store = try await Store.openInMemorySQLite()
        let detail = try await Self.finishedBatch(store, failing: 2)
        // The recipient's domain is refused for good by a relay that only knows other users.
        var smtp = try SMTPDeliveryTests.configuration(sink)
        smtp.credentials = SMTPCredentials(username: sink.options.user, password: "not-it")
        let delivery = NoticeDelivery(
            store: store,
            configuration: NoticeDeliveryConfiguration(
                smtp: smtp, from: "mp@example.com", nodeID: "test-node", backoff: { _ in .zero }),
            logger: Logger(label: "test"))
        // Two notices: most jobs failed, and finished.
        #expect(await delivery.deliverNext())
        #expect(await delivery.deliverNext())
        #expect(await !delivery.deliverNext())
        let notices = try await store.allNotices()
        #expect(notices.map(\.event) == [.batchMostJobsFailed, .batchFinished])
        #expect(notices.allSatisfy { $0.status == .failed && $0.attempts == 1 })
        #expect(notices.first?.lastError?.contains("not-it") == false)
        #expect(try await store.batch(id: detail.batch.id)?.status == .completedWithErrors)
        try await store.close()
    }

    @Test func aPauseForStorageAndMostJobsFailingEachArriveWithTheirFigures() async throws {
        let sink = try await SMTPSink.start()
        defer { sink.stop() }
        let store = try await Store.openInMemorySQLite()
        // Two of three jobs fail: most failed, then finished.
        let failing = try await Self.finishedBatch(store, failing: 2)
        // Another batch of the (starter, 15 GB) account pauses for storage at 13.8 GB.
        let box = try #require(failing.jobs.first?.migration.mailboxID)
        let paused = try await store.createBatch(
            NewBatch(accountID: failing.batch.accountID, name: "Big one"),
            jobs: [
                NewBatchJob(
                    line: 2, mailboxID: box, provider: "generic_imap", sourceHost: "h", sourcePort: 993,
                    sourceSecurity: "ssl", sourceEmail: "x@old.example", sourcePassword: Self.sourcePassword)
            ])
        #expect(
            try await store.pauseBatch(id: paused.batch.id, reason: BatchPauseReason.storage, usedBytes: 13_800_000_000)
        )
        let delivery = try Self.delivery(store, sink)
        while await delivery.deliverNext() {}
        let mails = sink.received().map { ParsedMail($0.raw) }
        try #require(mails.count == 3, "\(sink.log)")
        let bySubject = Dictionary(uniqueKeysWithValues: mails.map { ($0.decodedSubject ?? "", $0.decodedBody) })
        let most = try #require(bySubject["Mailporter: most mailboxes of bulk import \"Acme Q3\" failed (2 of 3)"])
        #expect(
            most.contains(
                "More than half of the mailboxes of bulk import \"Acme Q3\" (batch \(failing.batch.id)) failed: 2 of 3."
            ))
        #expect(most.contains("- m0@acme.example (CSV line 2): authentication_failed"))
        #expect(most.contains("- m1@acme.example (CSV line 3): authentication_failed"))
        #expect(bySubject["Mailporter: bulk import \"Acme Q3\" completed with errors (1 of 3 mailboxes)"] != nil)
        let pause = try #require(
            bySubject["Mailporter: bulk import \"Big one\" paused, storage at 92%"], "\(bySubject.keys)")
        #expect(pause.contains("Storage: 13.8 GB used of 15.0 GB (92%); batches pause at 90%."))
        #expect(pause.contains("then resume the batch"))
        #expect(pause.contains("https://mp.example.com/#/bulk/\(paused.batch.id)"))
        #expect(try await store.allNotices().allSatisfy { $0.status == .sent })
        #expect(!sink.received().contains { $0.raw.contains(Self.sourcePassword) })
        try await store.close()
    }
}
