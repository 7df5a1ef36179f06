import Foundation
import Testing
import TestSupport

/// A batch pauses when the account's mailboxes reach 90% of its storage pool (SPEC.md §5), measured
/// on a real Dovecot with its quota plugin: the jobs stop at a safe point, a resume is refused while
/// storage is still that full, and once space is freed the resume continues every job where it
/// stopped, ending exact message by message.
@Suite("mailporter serve: storage pause and resume", .serialized, .timeLimit(.minutes(6)))
struct ServeStoragePauseTests {
    typealias Service = ServeEndToEndTests.Service
    let bulk = ServeBulkTests()

    func object(_ text: String) throws -> [String: Any] { try ServeEndToEndTests.object(text) }
    func number(_ value: Any?) -> Int? { (value as? NSNumber)?.intValue }

    /// One message of about `bytes` bytes, for filling a mailbox's storage.
    static func filler(bytes: Int) -> Data {
        let line = String(repeating: "x", count: 76) + "\r\n"
        let body = String(repeating: line, count: max(1, bytes / line.utf8.count))
        return Data(
            ("From: filler@example.org\r\nTo: owner@example.org\r\nSubject: old mail\r\n"
                + "Date: Mon, 2 Nov 2026 10:00:00 +0000\r\nMessage-ID: <filler-\(UUID().uuidString)@example.org>\r\n\r\n"
                + body).utf8)
    }

    @Test func aBatchPausesAtNinetyPercentIsRefusedAResumeUntilSpaceIsFreedThenEndsExact() async throws {
        let source = try await SharedServers.shared.server(.dot)
        // Per-user quota far above anything here: the plugin only has to count.
        let destination = try DovecotServer.start(layout: .slash, quotaKB: 1_000_000)
        defer { destination.stop() }
        // A slow link in front of the source, so the pause lands mid-copy.
        let slowLink = try await FaultInjectingProxy.start(
            upstreamPort: source.imapPort,
            faults: Array(repeating: .throttle(bytesPerSecond: 20_000), count: 400))
        defer { Task { await slowLink.stop() } }
        let accounts = try await ServeBulkTests.accounts(3, source: source, destination: destination, prefix: "sto")

        // Old mail already fills most of the pool: the pool is set so that 90% is reached once about
        // a third of the import has arrived.
        let fillerBytes = 150_000
        for mailbox in accounts.destinations {
            _ = try destination.doveadm(["mailbox", "create", "-u", mailbox, "Filler"])
            _ = try destination.doveadm(
                ["save", "-u", mailbox, "-m", "Filler"], input: Self.filler(bytes: fillerBytes))
        }
        let importBytes = accounts.corpora.reduce(0) { $0 + $1.totalBytes }
        let threshold = 3 * fillerBytes + importBytes / 3
        let pool = threshold * 10 / 9
        print("storage test: filler \(3 * fillerBytes) B, import \(importBytes) B, pool \(pool) B")

        let dataDir = ServeEndToEndTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        let port = try DovecotServer.freePorts(1)[0]
        let service = try Service(
            dataDir: dataDir, port: port, destination: destination,
            extraEnvironment: [
                "MAILPORTER_STORAGE_POOLS": "pro=\(pool)", "MAILPORTER_STORAGE_CHECK_SECONDS": "1",
                "MAILPORTER_BATCH_SIZE": "10",
            ])
        try await service.waitUntilReady()
        defer { Task { await ServeBulkTests.stop(service) } }
        let token = try await bulk.provision(service, mailboxes: accounts.destinations)
        let csv = zip(accounts.sources, accounts.destinations).map { "\($0),\(DovecotServer.password),\($1)" }
            .joined(separator: "\n")
        let body = try bulk.body(csv: csv, sourcePort: slowLink.port, extra: ["skip_duplicates": false])

        // The preview already measures what the mailboxes hold.
        let preview = try await service.curl("POST", "/api/v1/migrations/bulk/preview", token: token, json: body)
        #expect(preview.status == 200, "\(preview.body)")
        let previewStorage = try #require(
            (try object(preview.body)["data"] as? [String: Any])?["storage"] as? [String: Any])
        #expect(previewStorage["measured"] as? Bool == true, "\(previewStorage)")
        #expect((number(previewStorage["used_bytes"]) ?? 0) >= 3 * fillerBytes, "\(previewStorage)")
        #expect(number(previewStorage["pool_bytes"]) == pool, "\(previewStorage)")

        let started = try await service.curl("POST", "/api/v1/migrations/bulk", token: token, json: body)
        #expect(started.status == 201, "\(started.body)")
        let id = try #require(number((try object(started.body)["data"] as? [String: Any])?["id"]))
        let paused = try await bulk.pollBatch(service, id: id, token: token) { batch in
            batch["status"] as? String == "paused" || ServeBulkTests.ended.contains(batch["status"] as? String ?? "")
        }
        #expect(paused["status"] as? String == "paused", "the batch should pause for storage: \(paused)")
        #expect(paused["pause_reason"] as? String == "storage", "\(paused)")
        let storage = try #require(paused["storage"] as? [String: Any])
        #expect((number(storage["used_bytes"]) ?? 0) >= threshold, "\(storage)")
        // The pause is in the outbox once, for the account's notification address.
        let outbox = try await service.curl("GET", "/api/v1/notifications", token: token)
        let notices = try #require(try object(outbox.body)["data"] as? [[String: Any]])
        #expect(notices.map { $0["event"] as? String } == ["batch_paused_storage"], "\(outbox.body)")

        // The jobs let go at a safe point (the end of a batch of 10 messages): the mailboxes stop changing.
        func counts() async throws -> [Int] {
            var counts: [Int] = []
            for mailbox in accounts.destinations {
                counts.append(try await AccountSnapshot.take(destination, user: mailbox).messageCount)
            }
            return counts
        }
        let (still, previous) = try await ServeBulkTests.untilStill(within: .seconds(20), counts)
        #expect(still, "paused mailboxes were still receiving messages 20 s after the pause: \(previous)")
        let total = accounts.corpora.reduce(0) { $0 + $1.selectedCount } + 3  // each holds one filler
        let held = previous.reduce(0, +)
        #expect(held > 3 && held < total, "the pause should land mid-batch: \(held) of \(total) messages")

        // Still too full: refused, and it stays paused.
        let refused = try await service.curl("POST", "/api/v1/migrations/bulk/\(id):resume", token: token)
        #expect(refused.status == 409, "\(refused.body)")
        #expect(refused.body.contains("Storage is at"), "\(refused.body)")

        // The owner deletes the old mail; the resume then goes through and every job continues.
        for mailbox in accounts.destinations {
            _ = try destination.doveadm(["mailbox", "delete", "-u", mailbox, "Filler"])
        }
        let resumed = try await service.curl("POST", "/api/v1/migrations/bulk/\(id):resume", token: token)
        #expect(resumed.status == 200, "\(resumed.body)")
        let finished = try await bulk.pollBatch(service, id: id, token: token, until: bulk.hasSettled)
        #expect(finished["status"] as? String == "completed", "\(finished)")
        for index in 0..<3 {
            let snapshot = try await AccountSnapshot.take(destination, user: accounts.destinations[index])
            for problem in snapshot.differences(
                from: accounts.corpora[index].expectedDestination(skipDuplicates: false))
            {
                Issue.record("\(accounts.destinations[index]): \(problem)")
            }
        }
    }
}
