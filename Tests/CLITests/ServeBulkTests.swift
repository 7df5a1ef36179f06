import Foundation
import Testing
import TestSupport

/// Bulk imports through `mailporter serve`, driven with curl as the README does, between two real
/// Dovecots (the destination logged in to as its master user): preview, start, a failed job's
/// password fixed and the batch retried; `kill -9` mid-batch; a cancel mid-batch.
@Suite("mailporter serve: bulk imports", .serialized, .timeLimit(.minutes(6)))
struct ServeBulkTests {
    typealias Service = ServeEndToEndTests.Service
    typealias Failure = ServeEndToEndTests.Failure

    static let corpusOptions = Corpus.Options(scale: 1, largeAttachment: false, bodyBytes: 300...1500)

    func object(_ text: String) throws -> [String: Any] { try ServeEndToEndTests.object(text) }
    func number(_ value: Any?) -> Int? { (value as? NSNumber)?.intValue }

    /// Source accounts filled with corpora, and empty destination mailboxes for them.
    struct Accounts {
        var sources: [String] = []
        var corpora: [Corpus] = []
        var destinations: [String] = []
    }

    static func accounts(_ count: Int, source: DovecotServer, destination: DovecotServer, prefix: String) async throws
        -> Accounts
    {
        var accounts = Accounts()
        for _ in 0..<count {
            let sourceUser = "\(uniqueUser("\(prefix)s"))@old.example"
            accounts.corpora.append(try await Corpus.fill(source, user: sourceUser, options: corpusOptions))
            accounts.sources.append(sourceUser)
            let mailbox = "\(uniqueUser("\(prefix)d"))@example.org"
            try await destination.prepare(user: mailbox)
            accounts.destinations.append(mailbox)
        }
        return accounts
    }

    /// An account, a token with the migration and mailbox scopes, and `mailboxes` added over the API.
    func provision(_ service: Service, mailboxes: [String]) async throws -> String {
        let account = try await service.admin(["accounts", "create", "--plan", "pro", "--email", "ops@example.com"])
        let accountID = try #require(number(account["id"]))
        let token = try #require(
            try await service.admin([
                "tokens", "create", "--account", "\(accountID)", "--name", "bulk",
                "--scopes", "migrations:read,migrations:write,mailboxes:read,mailboxes:write",
            ])["token"] as? String)
        let emails = mailboxes.map { "\"\($0)\"" }.joined(separator: ",")
        let added = try await service.curl("POST", "/api/v1/mailboxes", token: token, json: #"{"emails":[\#(emails)]}"#)
        #expect(added.status == 201, "\(added.body)")
        let counts = try #require((try object(added.body)["data"] as? [String: Any])?["counts"] as? [String: Any])
        #expect(number(counts["added"]) == mailboxes.count, "\(added.body)")
        return token
    }

    /// The body of a preview or a start: the CSV, the batch's source server and `extra` fields.
    func body(csv: String, sourcePort: Int, extra: [String: Any] = [:]) throws -> String {
        let fields: [String: Any] = [
            "data": csv, "source_host": "127.0.0.1", "source_port": sourcePort,
            "source_security": "none",
        ].merging(extra) { $1 }
        return String(
            decoding: try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]), as: UTF8.self)
    }

    /// Polls the batch until `done` says so; returns the last batch read.
    func pollBatch(
        _ service: Service, id: Int, token: String, timeout: Duration = .seconds(150),
        until done: ([String: Any]) -> Bool
    ) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + timeout
        var last: [String: Any] = [:]
        while ContinuousClock.now < deadline {
            let reply = try await service.curl("GET", "/api/v1/migrations/bulk/\(id)", token: token)
            #expect(reply.status == 200, "\(reply.body)")
            last = try #require(try object(reply.body)["data"] as? [String: Any])
            if done(last) { return last }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw Failure("batch \(id) did not get there in time; last: \(last)")
    }

    static let ended: Set<String> = ["completed", "completed_with_errors", "cancelled"]

    func jobs(_ batch: [String: Any]) -> [[String: Any]] { batch["jobs"] as? [[String: Any]] ?? [] }

    /// The jobs of a batch that has ended are all final too (none still held by a runner).
    func hasSettled(_ batch: [String: Any]) -> Bool {
        Self.ended.contains(batch["status"] as? String ?? "")
            && jobs(batch).allSatisfy { ["completed", "failed", "cancelled"].contains($0["status"] as? String) }
    }

    /// Reads `counts` every 3 s until two readings agree (mailboxes no longer receiving) or `within`
    /// passes; returns whether they became still, and the last reading.
    static func untilStill<Counts: Equatable>(
        within limit: Duration, _ counts: () async throws -> Counts
    ) async throws -> (still: Bool, last: Counts) {
        let deadline = ContinuousClock.now + limit
        var previous = try await counts()
        while ContinuousClock.now < deadline {
            try await Task.sleep(for: .seconds(3))
            let now = try await counts()
            if now == previous { return (true, now) }
            previous = now
        }
        return (false, previous)
    }

    static func launch(_ destination: DovecotServer, dataDir: String, port: Int) async throws -> Service {
        let service = try Service(dataDir: dataDir, port: port, destination: destination)
        try await service.waitUntilReady()
        return service
    }

    /// Stops serve and returns its whole log, read before the log file is removed.
    @discardableResult
    static func stop(_ service: Service) async -> String {
        service.process.kill()
        _ = await service.process.wait(timeout: .seconds(10))
        let log = service.process.stderr
        service.process.cleanUp()
        return log
    }

    @Test func aBatchOfTenRowsEndsWithErrorsThenAFixedPasswordAndARetryCompleteItExactly() async throws {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let accounts = try await Self.accounts(8, source: source, destination: destination, prefix: "blk")
        let dataDir = ServeEndToEndTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        let service = try await Self.launch(destination, dataDir: dataDir, port: try DovecotServer.freePorts(1)[0])
        let token = try await provision(service, mailboxes: accounts.destinations)

        // Ten rows: seven good ones, a wrong password (line 9), a destination the account does not
        // have (line 10) and line 2 again (line 11).
        var lines = ["source_email,source_password,destination_email"]
        for index in 0..<8 {
            let password = index == 7 ? "not-the-password" : DovecotServer.password
            lines.append("\(accounts.sources[index]),\(password),\(accounts.destinations[index])")
        }
        lines.append("\(accounts.sources[0]),\(DovecotServer.password),nobody@example.org")
        lines.append("\(accounts.sources[0]),\(DovecotServer.password),\(accounts.destinations[0])")
        let csv = lines.joined(separator: "\n") + "\n"

        let preview = try await service.curl(
            "POST", "/api/v1/migrations/bulk/preview", token: token,
            json: try body(csv: csv, sourcePort: source.imapPort, extra: ["check_logins": true]))
        #expect(preview.status == 200, "\(preview.body)")
        let previewData = try #require(try object(preview.body)["data"] as? [String: Any])
        let counts = try #require(previewData["counts"] as? [String: Any])
        #expect(number(counts["total"]) == 10 && number(counts["valid"]) == 8, "\(counts)")
        #expect(number(counts["invalid_destination"]) == 1 && number(counts["duplicate_row"]) == 1, "\(counts)")
        let rows = try #require(previewData["rows"] as? [[String: Any]])
        #expect(rows.compactMap { number($0["line"]) } == Array(2...11))
        let wrong = rows[7]["login_check"] as? [String: Any]
        #expect(wrong?["error_code"] as? String == "authentication_failed", "\(rows[7])")
        #expect(
            rows.prefix(7).allSatisfy { ($0["login_check"] as? [String: Any])?["status"] as? String == "ok" }, "\(rows)"
        )
        #expect(!preview.body.contains(DovecotServer.password))

        let started = try await service.curl(
            "POST", "/api/v1/migrations/bulk", token: token,
            json: try body(csv: csv, sourcePort: source.imapPort, extra: ["name": "acme move"]))
        #expect(started.status == 201, "\(started.body)")
        let startedData = try #require(try object(started.body)["data"] as? [String: Any])
        let id = try #require(number(startedData["id"]))
        #expect(jobs(startedData).count == 8)
        #expect((startedData["skipped_rows"] as? [[String: Any]])?.count == 2)

        let first = try await pollBatch(service, id: id, token: token, until: hasSettled)
        #expect(first["status"] as? String == "completed_with_errors", "\(first)")
        let failed = jobs(first).filter { $0["status"] as? String == "failed" }
        #expect(failed.count == 1 && number(failed.first?["line"]) == 9, "\(jobs(first))")
        #expect(failed.first?["error_code"] as? String == "authentication_failed")
        let failedID = try #require(number(failed.first?["id"]))

        let fixed = try await service.curl(
            "PATCH", "/api/v1/migrations/bulk/\(id)/jobs/\(failedID)/password", token: token,
            json: #"{"source_password":"\#(DovecotServer.password)"}"#)
        #expect(fixed.status == 200, "\(fixed.body)")
        let retried = try await service.curl("POST", "/api/v1/migrations/bulk/\(id):retry", token: token)
        #expect(retried.status == 200, "\(retried.body)")
        let second = try await pollBatch(service, id: id, token: token, until: hasSettled)
        #expect(second["status"] as? String == "completed", "\(second)")
        #expect(jobs(second).allSatisfy { $0["status"] as? String == "completed" })

        for index in 0..<8 {
            let snapshot = try await AccountSnapshot.take(destination, user: accounts.destinations[index])
            for problem in snapshot.differences(from: accounts.corpora[index].expectedDestination(skipDuplicates: true))
            {
                Issue.record("\(accounts.destinations[index]): \(problem)")
            }
        }
        let log = await Self.stop(service)
        // The log is there to be read (before, it was read after its file was removed: always empty).
        #expect(log.contains("mailporter listening"), "serve's log was not read: \(log.prefix(300))")
        #expect(!log.contains(DovecotServer.password))
        #expect(!log.contains("not-the-password"))
        #expect(!log.contains(token))
    }

    /// What `snapshot` holds beyond `expected`: a message doubled or one that should not be there.
    func extras(_ snapshot: AccountSnapshot, _ expected: [String: [StoredMessage]]) -> [String] {
        var problems: [String] = []
        for (folder, stored) in snapshot.folders {
            var balance: [StoredMessage: Int] = [:]
            for message in expected[folder] ?? [] { balance[message, default: 0] += 1 }
            for message in stored { balance[message, default: 0] -= 1 }
            let extra = balance.filter { $0.value < 0 }
            if !extra.isEmpty { problems.append("\(folder): \(extra.count) messages doubled or unexpected") }
        }
        return problems
    }

    @Test func killedMidBatchAndRestartedItEndsExactAndACancelledBatchKeepsWhatItCopiedOnce() async throws {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        // A slow link in front of the source, so the kill and the cancel land mid-copy.
        let slowLink = try await FaultInjectingProxy.start(
            upstreamPort: source.imapPort,
            faults: Array(repeating: .throttle(bytesPerSecond: 15_000), count: 400))
        defer { Task { await slowLink.stop() } }
        let killed = try await Self.accounts(3, source: source, destination: destination, prefix: "bkl")
        let cancelled = try await Self.accounts(3, source: source, destination: destination, prefix: "bcn")
        let dataDir = ServeEndToEndTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        let port = try DovecotServer.freePorts(1)[0]
        var service = try await Self.launch(destination, dataDir: dataDir, port: port)
        let token = try await provision(service, mailboxes: killed.destinations + cancelled.destinations)
        func csv(_ accounts: Accounts) -> String {
            zip(accounts.sources, accounts.destinations).map { "\($0),\(DovecotServer.password),\($1)" }.joined(
                separator: "\n")
        }

        // Without duplicate skipping, only the checkpoints keep the copy exact across the kill.
        let started = try await service.curl(
            "POST", "/api/v1/migrations/bulk", token: token,
            json: try body(csv: csv(killed), sourcePort: slowLink.port, extra: ["skip_duplicates": false]))
        #expect(started.status == 201, "\(started.body)")
        let id = try #require(number((try object(started.body)["data"] as? [String: Any])?["id"]))
        let midway = try await pollBatch(service, id: id, token: token) {
            (self.number($0["imported_messages"]) ?? 0) > 0
        }
        #expect(midway["status"] as? String == "processing", "\(midway)")
        service.process.kill()
        #expect(await service.process.wait(timeout: .seconds(10)) == 137)
        service.process.cleanUp()
        let total = killed.corpora.reduce(0) { $0 + $1.selectedCount }
        var partial = 0
        for mailbox in killed.destinations {
            partial += try await AccountSnapshot.take(destination, user: mailbox).messageCount
        }
        #expect(partial > 0 && partial < total, "the kill should land mid-batch: \(partial) of \(total)")

        service = try await Self.launch(destination, dataDir: dataDir, port: port)
        let afterKill = try await pollBatch(service, id: id, token: token, until: hasSettled)
        #expect(afterKill["status"] as? String == "completed", "\(afterKill)")
        for index in 0..<3 {
            let snapshot = try await AccountSnapshot.take(destination, user: killed.destinations[index])
            for problem in snapshot.differences(from: killed.corpora[index].expectedDestination(skipDuplicates: false))
            {
                Issue.record("after the kill, \(killed.destinations[index]): \(problem)")
            }
        }

        // A second batch, cancelled while it copies.
        let second = try await service.curl(
            "POST", "/api/v1/migrations/bulk", token: token,
            json: try body(csv: csv(cancelled), sourcePort: slowLink.port))
        #expect(second.status == 201, "\(second.body)")
        let secondID = try #require(number((try object(second.body)["data"] as? [String: Any])?["id"]))
        _ = try await pollBatch(service, id: secondID, token: token) { (self.number($0["imported_messages"]) ?? 0) > 0 }
        let cancel = try await service.curl("POST", "/api/v1/migrations/bulk/\(secondID):cancel", token: token)
        #expect(cancel.status == 200, "\(cancel.body)")
        let stopped = try await pollBatch(service, id: secondID, token: token) { batch in
            self.hasSettled(batch) && self.jobs(batch).allSatisfy { $0["status"] as? String != "pending" }
        }
        #expect(stopped["status"] as? String == "cancelled", "\(stopped)")
        // A cancel is seen at the job's next lease renewal and the copy stops at a safe point
        // within seconds: the mailboxes must then stop changing.
        func counts() async throws -> [String: Int] {
            var counts: [String: Int] = [:]
            for mailbox in cancelled.destinations {
                counts[mailbox] = try await AccountSnapshot.take(destination, user: mailbox).messageCount
            }
            return counts
        }
        let (still, previous) = try await Self.untilStill(within: .seconds(15), counts)
        #expect(
            still, "the cancelled batch's mailboxes were still receiving messages 15 s after the cancel: \(previous)")
        // Read again once the mailboxes are still: the runner writes what it copied up to the cancel
        // after it has seen it.
        let settled = try #require(
            try object(await service.curl("GET", "/api/v1/migrations/bulk/\(secondID)", token: token).body)["data"]
                as? [String: Any])
        var kept = 0
        for (index, job) in jobs(settled).enumerated() {
            let mailbox = try #require(job["mailbox_email"] as? String)
            let corpusIndex = try #require(cancelled.destinations.firstIndex(of: mailbox), "job \(index): \(mailbox)")
            let snapshot = try await AccountSnapshot.take(destination, user: mailbox)
            for problem in extras(snapshot, cancelled.corpora[corpusIndex].expectedDestination(skipDuplicates: true)) {
                Issue.record("after the cancel, \(mailbox): \(problem)")
            }
            // The job's count is the last progress written before the cancel was seen, so the
            // mailbox may hold more than it says, never less.
            #expect(
                snapshot.messageCount >= number(job["imported_messages"]) ?? 0,
                "\(mailbox) holds \(snapshot.messageCount), the job says \(String(describing: job["imported_messages"]))"
            )
            print(
                "cancelled job \(index): the mailbox holds \(snapshot.messageCount), the record says \(number(job["imported_messages"]) ?? -1)"
            )
            kept += snapshot.messageCount
        }
        let cancelledTotal = cancelled.corpora.reduce(0) { $0 + $1.selectedCount - $1.duplicateCount }
        #expect(kept > 0 && kept < cancelledTotal, "the cancel should land mid-batch: \(kept) of \(cancelledTotal)")
        await Self.stop(service)
    }
}
