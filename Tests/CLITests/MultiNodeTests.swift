import Foundation
import Testing
import TestSupport

/// Several Mailporter processes sharing one PostgreSQL queue between real Dovecots: a node paused
/// past its lease is fenced off, a node killed mid-batch is taken over, the database restarted
/// mid-run is survived; every destination verified message by message.
@Suite("many nodes on one PostgreSQL", .serialized, .timeLimit(.minutes(8)))
struct MultiNodeTests {
    typealias Service = ServeEndToEndTests.Service
    typealias Failure = ServeEndToEndTests.Failure

    static let key = Data((0..<32).map { UInt8(100 + $0) }).base64EncodedString()
    static let leaseSeconds = 3

    let e2e = ServeEndToEndTests()
    let bulk = ServeBulkTests()

    /// One process on the shared database: `arguments` is `serve` (API, and the runner unless
    /// `MAILPORTER_NO_RUNNER`) or `worker`; every node runs under its own node id with short leases.
    static func node(
        _ nodeID: String, arguments: [String] = ["serve"], databaseURL: String, destination: DovecotServer,
        extra: [String: String] = [:]
    ) async throws -> Service {
        let service = try Service(
            dataDir: ServeEndToEndTests.temporaryDirectory(), port: try DovecotServer.freePorts(1)[0],
            destination: destination, arguments: arguments,
            extraEnvironment: [
                "MAILPORTER_DATABASE_URL": databaseURL, "MAILPORTER_SECRET_KEY": key, "MAILPORTER_NODE_ID": nodeID,
                "MAILPORTER_LEASE_SECONDS": "\(leaseSeconds)",
            ].merging(extra) { $1 })
        try await service.waitUntilReady()
        return service
    }

    static func stop(_ nodes: [Service]) async -> [String] {
        var logs: [String] = []
        for node in nodes {
            node.process.kill(SIGCONT)
            logs.append(await ServeBulkTests.stop(node))
            try? FileManager.default.removeItem(atPath: node.dataDir)
        }
        return logs
    }

    /// An admin command against the shared database.
    static func admin(_ arguments: [String], databaseURL: String) async throws -> [String: Any] {
        let result = try await spawnProcess(
            mailporterExecutable, arguments,
            environment: [
                "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin",
                "MAILPORTER_DATABASE_URL": databaseURL, "MAILPORTER_SECRET_KEY": key,
            ])
        guard result.status == 0 else { throw Failure("mailporter \(arguments) failed: \(result.stderr)") }
        return try ServeEndToEndTests.object(result.stdout)
    }

    /// An account with `mailboxes` and a token for migrations; returns the mailbox ids and the token.
    func provision(mailboxes: [String], databaseURL: String) async throws -> (mailboxIDs: [Int], token: String) {
        let account = try await Self.admin(
            ["accounts", "create", "--plan", "agency", "--email", "ops@example.com"], databaseURL: databaseURL)
        let accountID = try #require(e2e.number(account["id"]))
        var ids: [Int] = []
        for mailbox in mailboxes {
            let added = try await Self.admin(
                ["mailboxes", "add", "--account", "\(accountID)", mailbox], databaseURL: databaseURL)
            ids.append(try #require(e2e.number(added["id"])))
        }
        let created = try await Self.admin(
            [
                "tokens", "create", "--account", "\(accountID)", "--name", "nodes",
                "--scopes", "migrations:read,migrations:write,mailboxes:read",
            ], databaseURL: databaseURL)
        return (ids, try #require(created["token"] as? String))
    }

    /// Who holds migration `id` now, and under which claim, as the database says.
    static func holder(_ database: TestDatabase, migration id: Int) throws -> (owner: String, token: Int)? {
        let line = try database.psql("SELECT lease_owner || ' ' || lease_token FROM migrations WHERE id = \(id)") ?? ""
        let parts = line.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ")
        guard parts.count == 2, let token = Int(parts[1]) else { return nil }
        return (String(parts[0]), token)
    }

    @Test func aNodePausedPastItsLeaseIsFencedOffAndTheCopyStaysExact() async throws {
        let (destination, sourceUser, corpus, slowLink, mailbox) = try await ServeEndToEndTests.slowCopy("fence").parts
        defer { Task { await slowLink.stop() } }

        try await withTestDatabase(.postgres) { database in
            let api = try await Self.node(
                "api", databaseURL: database.url, destination: destination, extra: ["MAILPORTER_NO_RUNNER": "true"])
            let nodes = [
                try await Self.node(
                    "node-a", arguments: ["worker"], databaseURL: database.url, destination: destination),
                try await Self.node(
                    "node-b", arguments: ["worker"], databaseURL: database.url, destination: destination),
            ]
            do {
                let (ids, token) = try await provision(mailboxes: [mailbox], databaseURL: database.url)
                // Without duplicate skipping, only the checkpoints and the fence keep the copy exact.
                let started = try await api.curl(
                    "POST", "/api/v1/migrations", token: token,
                    json: e2e.startBody(
                        sourcePort: slowLink.port, user: sourceUser, mailboxID: ids[0], skipDuplicates: false))
                #expect(started.status == 201, "\(started.body)")
                let id = try #require(e2e.number((try e2e.object(started.body)["data"] as? [String: Any])?["id"]))
                _ = try await e2e.poll(api, id: id, token: token) {
                    $0["status"] as? String == "processing" && (self.e2e.number($0["imported_messages"]) ?? 0) > 0
                }
                let first = try #require(try Self.holder(database, migration: id))
                let byID = ["node-a": nodes[0], "node-b": nodes[1]]
                let paused = try #require(byID[first.owner], "held by \(first.owner)")
                paused.process.kill(SIGSTOP)

                // Past the lease, the other node takes the migration over under a new token.
                let deadline = ContinuousClock.now + .seconds(60)
                var taken = first
                while ContinuousClock.now < deadline {
                    if let now = try Self.holder(database, migration: id), now.token > first.token {
                        taken = now
                        break
                    }
                    try await Task.sleep(for: .milliseconds(200))
                }
                #expect(taken.token > first.token && taken.owner != first.owner, "not taken over: \(taken)")
                // Let the new holder copy on, then wake the paused node: its late writes are refused.
                let before = try await e2e.poll(api, id: id, token: token) { _ in true }
                _ = try await e2e.poll(api, id: id, token: token) {
                    (self.e2e.number($0["imported_messages"]) ?? 0)
                        > (self.e2e.number(before["imported_messages"]) ?? 0)
                        || $0["status"] as? String == "completed"
                }
                paused.process.kill(SIGCONT)

                let record = try await e2e.poll(api, id: id, token: token) {
                    ["completed", "failed", "cancelled"].contains($0["status"] as? String)
                }
                #expect(record["status"] as? String == "completed", "\(record)")
                #expect(e2e.number(record["failed_messages"]) == 0)
                let snapshot = try await AccountSnapshot.take(destination, user: mailbox)
                let problems = snapshot.differences(from: corpus.expectedDestination(skipDuplicates: false))
                #expect(problems.isEmpty, "\(problems)")

                // The paused node noticed, stopped the job and lives on.
                let stopDeadline = ContinuousClock.now + .seconds(30)
                while ContinuousClock.now < stopDeadline, !paused.process.stderr.contains("lost its lease") {
                    try await Task.sleep(for: .milliseconds(200))
                }
                #expect(paused.process.stderr.contains("lost its lease"), "\(paused.process.stderr.suffix(3000))")
                #expect(paused.process.poll() == nil, "the paused node should live on")
            } catch {
                _ = await Self.stop([api] + nodes)
                throw error
            }
            let logs = await Self.stop([api] + nodes)
            for log in logs {
                #expect(!log.contains(DovecotServer.password) && !log.contains(DovecotServer.masterPassword))
            }
        }
    }

    /// Polls migration `id` through `node` until `done`, riding out refused or failed requests (the
    /// database may be down); returns the last record.
    func pollThroughOutages(
        _ node: Service, id: Int, token: String, timeout: Duration = .seconds(240),
        until done: ([String: Any]) -> Bool
    ) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + timeout
        var last: [String: Any] = [:]
        while ContinuousClock.now < deadline {
            if let reply = try? await node.curl("GET", "/api/v1/migrations/\(id)", token: token), reply.status == 200,
                let record = try? e2e.object(reply.body)["data"] as? [String: Any]
            {
                last = record
                if done(record) { return record }
            }
            try await Task.sleep(for: .milliseconds(300))
        }
        throw Failure("migration \(id) did not get there in time; last: \(last)")
    }

    /// The ids of the migrations `condition` selects.
    static func ids(_ database: TestDatabase, _ condition: String) throws -> Set<Int> {
        Set(
            (try database.psql("SELECT id FROM migrations WHERE \(condition)") ?? "")
                .split(separator: "\n").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) })
    }

    /// Live leases of running migrations, all nodes together, as the database counts them.
    static func held(_ database: TestDatabase, by owner: String? = nil) throws -> Int {
        let ownerCondition = owner.map { " AND lease_owner = '\($0)'" } ?? ""
        let sql = """
            SELECT COUNT(*) FROM migrations WHERE status IN ('validating', 'planning', 'processing')
              AND lease_expires_at >= CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)\(ownerCondition)
            """
        return Int((try database.psql(sql) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }

    @Test func aNodeKilledMidBatchIsTakenOverAndTheOthersFinishExactlyWithinTheLimits() async throws {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let slowLink = try await FaultInjectingProxy.start(
            upstreamPort: source.imapPort,
            faults: Array(repeating: .throttle(bytesPerSecond: 40_000), count: 400))
        defer { Task { await slowLink.stop() } }
        let accounts = try await ServeBulkTests.accounts(10, source: source, destination: destination, prefix: "mn")
        let limit = 4
        try await withTestDatabase(.postgres) { database in
            let extra = ["MAILPORTER_MAX_CONCURRENT_MIGRATIONS": "\(limit)"]
            let nodes = [
                try await Self.node(
                    "api", databaseURL: database.url, destination: destination,
                    extra: extra.merging(["MAILPORTER_NO_RUNNER": "true"]) { $1 }),
                try await Self.node(
                    "worker-1", arguments: ["worker"], databaseURL: database.url, destination: destination, extra: extra
                ),
                try await Self.node(
                    "worker-2", arguments: ["worker"], databaseURL: database.url, destination: destination, extra: extra
                ),
            ]
            // The limit, sampled all along from the database itself.
            let sampling = Task {
                var highest = 0
                while !Task.isCancelled {
                    highest = max(highest, (try? Self.held(database)) ?? 0)
                    try? await Task.sleep(for: .milliseconds(100))
                }
                return highest
            }
            do {
                let (_, token) = try await provision(mailboxes: accounts.destinations, databaseURL: database.url)
                let csv = zip(accounts.sources, accounts.destinations)
                    .map { "\($0),\(DovecotServer.password),\($1)" }.joined(separator: "\n")
                let started = try await nodes[0].curl(
                    "POST", "/api/v1/migrations/bulk", token: token,
                    json: try bulk.body(csv: csv, sourcePort: slowLink.port, extra: ["skip_duplicates": false]))
                #expect(started.status == 201, "\(started.body)")
                let id = try #require(e2e.number((try e2e.object(started.body)["data"] as? [String: Any])?["id"]))

                // A worker is mid-copy on at least one job: kill it. (Which one gets work first is
                // the claim race's: a node whose job ends claims the next at once.)
                let workers = ["worker-1": nodes[1], "worker-2": nodes[2]]
                var victim: String?
                let deadline = ContinuousClock.now + .seconds(90)
                while victim == nil, ContinuousClock.now < deadline {
                    let batch = try await bulk.pollBatch(nodes[0], id: id, token: token) { _ in true }
                    if (e2e.number(batch["imported_messages"]) ?? 0) > 0 {
                        victim = try workers.keys.sorted().first { try Self.held(database, by: $0) > 0 }
                    }
                    try await Task.sleep(for: .milliseconds(200))
                }
                let killed = try #require(victim, "no worker ever held a job")
                let dead = try #require(workers[killed])
                dead.process.kill()
                #expect(await dead.process.wait(timeout: .seconds(10)) == 137)
                let killedAt = ContinuousClock.now
                let orphans = try Self.ids(database, "lease_owner = '\(killed)'")

                // Its jobs are taken over once their leases run out (plus a claim poll and a margin).
                var orphaned = true
                while ContinuousClock.now - killedAt < .seconds(Self.leaseSeconds + 20) {
                    if try Self.ids(database, "lease_owner = '\(killed)'").isEmpty {
                        orphaned = false
                        break
                    }
                    try await Task.sleep(for: .milliseconds(200))
                }
                #expect(!orphaned, "\(killed)'s jobs were not taken over within the lease and a margin")

                let settled = try await bulk.pollBatch(
                    nodes[0], id: id, token: token, timeout: .seconds(300), until: bulk.hasSettled)
                #expect(settled["status"] as? String == "completed", "\(settled)")
                // No job was claimed twice, except those the dead node held (taken over once each).
                #expect(!orphans.isEmpty)
                #expect(try Self.ids(database, "lease_token > 1") == orphans)
                #expect(try Self.ids(database, "lease_token <> 1 AND lease_token <> 2").isEmpty)
                for index in accounts.destinations.indices {
                    let snapshot = try await AccountSnapshot.take(destination, user: accounts.destinations[index])
                    let expected = accounts.corpora[index].expectedDestination(skipDuplicates: false)
                    for problem in snapshot.differences(from: expected) {
                        Issue.record("\(accounts.destinations[index]): \(problem)")
                    }
                }
            } catch {
                sampling.cancel()
                _ = await Self.stop(nodes)
                throw error
            }
            sampling.cancel()
            let highest = await sampling.value
            #expect(highest > 0 && highest <= limit, "at most \(limit) jobs at once over all nodes, saw \(highest)")
            _ = await Self.stop(nodes)
        }
    }

    @Test func theDatabaseRestartedMidRunTheNodesReconnectAndFinishExactly() async throws {
        let (destination, sourceUser, corpus, slowLink, mailbox) = try await ServeEndToEndTests.slowCopy("pgrestart")
            .parts
        defer { Task { await slowLink.stop() } }
        // A cluster of its own: restarting the shared one would cut every other test's connections.
        let server = try await PostgresServer.start()
        defer { server.stop() }
        let url = server.url(database: try await server.createDatabase(prefix: "restart"))

        let nodes = [
            try await Self.node("node-a", databaseURL: url, destination: destination),
            try await Self.node("node-b", databaseURL: url, destination: destination),
        ]
        do {
            let (ids, token) = try await provision(mailboxes: [mailbox], databaseURL: url)
            let started = try await nodes[0].curl(
                "POST", "/api/v1/migrations", token: token,
                json: e2e.startBody(
                    sourcePort: slowLink.port, user: sourceUser, mailboxID: ids[0], skipDuplicates: false))
            #expect(started.status == 201, "\(started.body)")
            let id = try #require(e2e.number((try e2e.object(started.body)["data"] as? [String: Any])?["id"]))
            _ = try await e2e.poll(nodes[0], id: id, token: token) {
                $0["status"] as? String == "processing" && (self.e2e.number($0["imported_messages"]) ?? 0) > 0
            }
            try await server.restart(downFor: .seconds(Self.leaseSeconds + 2))

            let record = try await pollThroughOutages(nodes[1], id: id, token: token) {
                ["completed", "failed", "cancelled"].contains($0["status"] as? String)
            }
            #expect(record["status"] as? String == "completed", "\(record)")
            let snapshot = try await AccountSnapshot.take(destination, user: mailbox)
            let problems = snapshot.differences(from: corpus.expectedDestination(skipDuplicates: false))
            #expect(problems.isEmpty, "\(problems)")
            // Both nodes are still up and answering.
            for node in nodes { #expect((try? await node.curl("GET", "/healthz").status) == 200) }
        } catch {
            _ = await Self.stop(nodes)
            throw error
        }
        let logs = await Self.stop(nodes)
        // Statements wait for the pool to reconnect, so the nodes mostly just pause; whatever they
        // log of it is in words, without the driver's type names or the password.
        for log in logs {
            #expect(!log.contains(server.password))
            #expect(!log.contains("PSQLError") && !log.contains("NIOCore"), "\(log.suffix(3000))")
        }
    }
}
