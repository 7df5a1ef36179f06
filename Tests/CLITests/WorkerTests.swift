import Foundation
import Testing
import TestSupport

/// `mailporter worker` and `serve --no-runner` as separate processes on one PostgreSQL database:
/// the API node queues, the worker runs, the database's work notices connect the two.
@Suite("mailporter worker and serve --no-runner", .serialized)
struct WorkerTests {
    typealias Service = ServeEndToEndTests.Service
    let key = Data((0..<32).map { UInt8($0 &+ 7) }).base64EncodedString()
    let e2e = ServeEndToEndTests()

    func admin(_ arguments: [String], url: String) async throws -> [String: Any] {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("MAILPORTER_") }
        environment["MAILPORTER_DATABASE_URL"] = url
        environment["MAILPORTER_SECRET_KEY"] = key
        let result = try await spawnProcess(mailporterExecutable, arguments, environment: environment)
        #expect(result.status == 0, "\(result.stderr)")
        return try ServeEndToEndTests.object(result.stdout)
    }

    func stop(_ service: Service) {
        service.process.kill()
        _ = service.process.poll()
        service.process.cleanUp()
    }

    /// Waits until `text` is in the process's log.
    func waitForLog(_ service: Service, _ text: String, timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if service.process.stderr.contains(text) { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ServeEndToEndTests.Failure("no '\(text)' in the log: \(service.process.stderr.suffix(2000))")
    }

    /// The API node has no runner; the worker polls once an hour, so only the database's notice
    /// can start the migration within seconds. It ends completed and exact, message by message;
    /// the worker answers /healthz and /metrics and stops cleanly on SIGTERM.
    @Test func anAPINodeQueuesAndAWorkerWokenByTheDatabaseRunsItToExact() async throws {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let sourceUser = try await source.freshUser("wksrc")
        let corpus = try await Corpus.fill(source, user: sourceUser, options: .init(largeAttachment: false))
        let mailbox = "\(uniqueUser("wkdst"))@example.org"
        try await destination.prepare(user: mailbox)
        try await withTestDatabase(.postgres) { database in
            let ports = try DovecotServer.freePorts(2)
            let shared = ["MAILPORTER_DATABASE_URL": database.url, "MAILPORTER_SECRET_KEY": key]
            let api = try Service(
                dataDir: ServeEndToEndTests.temporaryDirectory(), port: ports[0], destination: destination,
                extraEnvironment: shared.merging(["MAILPORTER_NO_RUNNER": "true", "MAILPORTER_NODE_ID": "api-1"]) {
                    $1
                })
            defer { stop(api) }
            let worker = try Service(
                dataDir: ServeEndToEndTests.temporaryDirectory(), port: ports[1], destination: destination,
                arguments: ["worker"],
                extraEnvironment: shared.merging([
                    "MAILPORTER_POLL_SECONDS": "3600", "MAILPORTER_NODE_ID": "worker-1",
                    "MAILPORTER_DATABASE_POOL_SIZE": "3",
                ]) { $1 })
            defer { stop(worker) }
            try await api.waitUntilReady()
            try await worker.waitUntilReady()

            let health = try await worker.curl("GET", "/healthz")
            #expect(health.status == 200)
            let status = try e2e.object(health.body)
            #expect(status["status"] as? String == "ok" && status["role"] as? String == "worker", "\(health.body)")
            #expect(status["node_id"] as? String == "worker-1", "\(health.body)")
            // A worker serves nothing of the API.
            let me = try await worker.curl("GET", "/api/v1/me")
            #expect(me.status == 404, "\(me.status) \(me.body)")

            let url = database.url
            let account = try await admin(
                ["accounts", "create", "--plan", "pro", "--email", "ops@example.com"], url: url)
            let accountID = try #require(e2e.number(account["id"]))
            let box = try await admin(["mailboxes", "add", "--account", "\(accountID)", mailbox], url: url)
            let mailboxID = try #require(e2e.number(box["id"]))
            let created = try await admin(
                [
                    "tokens", "create", "--account", "\(accountID)", "--name", "wk",
                    "--scopes", "migrations:read,migrations:write",
                ], url: url)
            let token = try #require(created["token"] as? String)

            // The worker's first look at the queue is behind it: from here on it waits an hour.
            try await waitForLog(worker, "job runner started")
            try await Task.sleep(for: .seconds(1))
            let started = try await api.curl(
                "POST", "/api/v1/migrations", token: token,
                json: e2e.startBody(
                    sourcePort: source.imapPort, user: sourceUser, mailboxID: mailboxID, skipDuplicates: true))
            #expect(started.status == 201, "\(started.body)")
            let id = try #require(e2e.number((try e2e.object(started.body)["data"] as? [String: Any])?["id"]))
            let picked = try await e2e.poll(api, id: id, token: token, timeout: .seconds(15)) {
                $0["status"] as? String != "pending"
            }
            #expect(picked["status"] as? String != "pending")

            try await e2e.expectCompletedExactly(
                api, id: id, token: token, corpus: corpus, destination: destination, mailbox: mailbox)

            let metrics = try await worker.curl("GET", "/metrics")
            #expect(metrics.status == 200)
            #expect(metrics.body.contains("mailporter_messages_copied_total"), "\(metrics.body.prefix(2000))")
            #expect(metrics.body.contains(#"mailporter_migrations{status="completed"} 1"#))

            // The API node ran nothing; the worker took the job under its own node id.
            #expect(!api.process.stderr.contains("job runner started"), "\(api.process.stderr.suffix(2000))")
            #expect(worker.process.stderr.contains("worker-1"))
            let server = try await SharedPostgres.shared.server()
            for log in [api.process.stderr, worker.process.stderr] {
                #expect(!log.contains("hasn't been called yet"), "\(log.prefix(3000))")
                #expect(!log.contains(server.password) && !log.contains(DovecotServer.password))
                #expect(!log.contains(token))
            }
            worker.process.kill(SIGTERM)
            #expect(
                await worker.process.wait(timeout: .seconds(20)) == 0,
                "the worker should exit cleanly on SIGTERM: \(worker.process.stderr.suffix(2000))")
        }
    }

    /// A batch started on the API node runs on the worker and ends exact, mailbox by mailbox; the
    /// API node, which runs no storage watch, still shows the account's storage in the batch's
    /// GET once it has measured it in the background.
    @Test func aBatchStartedOnTheAPINodeRunsOnTheWorkerAndShowsMeasuredStorage() async throws {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let accounts = try await ServeBulkTests.accounts(2, source: source, destination: destination, prefix: "wkb")
        let bulk = ServeBulkTests()
        try await withTestDatabase(.postgres) { database in
            let ports = try DovecotServer.freePorts(2)
            let shared = [
                "MAILPORTER_DATABASE_URL": database.url, "MAILPORTER_SECRET_KEY": key,
                "MAILPORTER_STORAGE_CHECK_SECONDS": "1",
            ]
            let api = try Service(
                dataDir: ServeEndToEndTests.temporaryDirectory(), port: ports[0], destination: destination,
                arguments: ["serve", "--no-runner"],
                extraEnvironment: shared.merging(["MAILPORTER_NODE_ID": "api-b"]) { $1 })
            defer { stop(api) }
            let worker = try Service(
                dataDir: ServeEndToEndTests.temporaryDirectory(), port: ports[1], destination: destination,
                arguments: ["worker"],
                extraEnvironment: shared.merging(["MAILPORTER_POLL_SECONDS": "3600", "MAILPORTER_NODE_ID": "worker-b"])
                {
                    $1
                })
            defer { stop(worker) }
            try await api.waitUntilReady()
            try await worker.waitUntilReady()

            let account = try await admin(
                ["accounts", "create", "--plan", "pro", "--email", "ops@example.com"], url: database.url)
            let accountID = try #require(e2e.number(account["id"]))
            let created = try await admin(
                [
                    "tokens", "create", "--account", "\(accountID)", "--name", "wkb",
                    "--scopes", "migrations:read,migrations:write,mailboxes:read,mailboxes:write",
                ], url: database.url)
            let token = try #require(created["token"] as? String)
            let emails = accounts.destinations.map { "\"\($0)\"" }.joined(separator: ",")
            let added = try await api.curl("POST", "/api/v1/mailboxes", token: token, json: #"{"emails":[\#(emails)]}"#)
            #expect(added.status == 201, "\(added.body)")

            try await waitForLog(worker, "job runner started")
            let csv = zip(accounts.sources, accounts.destinations).map { "\($0),\(DovecotServer.password),\($1)" }
                .joined(separator: "\n")
            let started = try await api.curl(
                "POST", "/api/v1/migrations/bulk", token: token,
                json: try bulk.body(csv: csv, sourcePort: source.imapPort))
            #expect(started.status == 201, "\(started.body)")
            let id = try #require(e2e.number((try e2e.object(started.body)["data"] as? [String: Any])?["id"]))
            let batch = try await bulk.pollBatch(api, id: id, token: token) { bulk.hasSettled($0) }
            #expect(batch["status"] as? String == "completed", "\(batch)")
            for index in accounts.destinations.indices {
                let snapshot = try await AccountSnapshot.take(destination, user: accounts.destinations[index])
                let problems = snapshot.differences(
                    from: accounts.corpora[index].expectedDestination(skipDuplicates: true))
                #expect(problems.isEmpty, "\(accounts.destinations[index]): \(problems)")
            }

            // The figure follows what the mailboxes hold: measured again once two check intervals old.
            let measured = try await bulk.pollBatch(api, id: id, token: token, timeout: .seconds(30)) { batch in
                let storage = batch["storage"] as? [String: Any]
                return storage?["measured"] as? Bool == true && (e2e.number(storage?["used_bytes"]) ?? 0) > 0
            }
            let storage = try #require(measured["storage"] as? [String: Any])
            let expectedBytes = accounts.corpora.reduce(0) { $0 + $1.totalBytes }
            #expect((e2e.number(storage["used_bytes"]) ?? 0) >= expectedBytes / 2, "\(storage), \(expectedBytes)")
            #expect(!api.process.stderr.contains("storage watch started"), "\(api.process.stderr.suffix(2000))")
        }
    }

    /// The worker's /healthz says 503 while its database refuses connections, and 200 again once
    /// it takes them.
    @Test func theWorkersHealthzIs503WhileTheDatabaseIsUnreachable() async throws {
        let destination = try await SharedServers.shared.server(.slash)
        try await withTestDatabase(.postgres) { database in
            let worker = try Service(
                dataDir: ServeEndToEndTests.temporaryDirectory(), port: try DovecotServer.freePorts(1)[0],
                destination: destination,
                arguments: ["worker"],
                extraEnvironment: [
                    "MAILPORTER_DATABASE_URL": database.url, "MAILPORTER_SECRET_KEY": key,
                    "MAILPORTER_NODE_ID": "worker-h",
                ])
            defer { stop(worker) }
            try await worker.waitUntilReady()
            let name = try #require(try database.psql("SELECT current_database()"))
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let server = try await SharedPostgres.shared.server()
            try server.psql("ALTER DATABASE \(name) ALLOW_CONNECTIONS false")
            try server.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '\(name)'")

            var last = 0
            let deadline = ContinuousClock.now + .seconds(60)
            while ContinuousClock.now < deadline {
                do {
                    last = try await worker.curl("GET", "/healthz").status
                } catch {
                    Issue.record("\(error); the worker's log: \(worker.process.stderr.suffix(4000))")
                    break
                }
                if last == 503 { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(last == 503, "healthz stayed \(last) with the database gone")

            try server.psql("ALTER DATABASE \(name) ALLOW_CONNECTIONS true")
            try await worker.waitUntilReady()
            // Lost once, logged once; back, logged once.
            try await waitForLog(worker, "listening for queued work again", timeout: .seconds(60))
            let lost = worker.process.stderr.components(separatedBy: "lost the database's work notices").count - 1
            #expect(lost == 1, "\(worker.process.stderr.suffix(3000))")
        }
    }

    @Test func aSettingOutOfRangeStopsTheStartWithOneLine() async throws {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("MAILPORTER_") }
        environment["MAILPORTER_DATA_DIR"] = ServeEndToEndTests.temporaryDirectory()
        environment["MAILPORTER_DATABASE_POOL_SIZE"] = "1"
        let result = try await spawnProcess(mailporterExecutable, ["worker"], environment: environment)
        #expect(result.status == 2)
        #expect(
            result.stderr == "error: invalid_pool_size: MAILPORTER_DATABASE_POOL_SIZE must be between 2 and 500\n",
            "\(result.stderr)")
        environment["MAILPORTER_DATABASE_POOL_SIZE"] = "10"
        environment["MAILPORTER_WORKER_LISTEN"] = "nowhere"
        let listen = try await spawnProcess(mailporterExecutable, ["worker"], environment: environment)
        #expect(listen.status == 2)
        #expect(listen.stderr.hasPrefix("error: MAILPORTER_WORKER_LISTEN must be host:port"), "\(listen.stderr)")
        environment["MAILPORTER_WORKER_LISTEN"] = nil
        environment["MAILPORTER_NODE_MAX_JOBS"] = "0"
        let jobs = try await spawnProcess(mailporterExecutable, ["worker"], environment: environment)
        #expect(jobs.status == 2)
        #expect(
            jobs.stderr == "error: MAILPORTER_NODE_MAX_JOBS must be between 1 and 10000\n", "\(jobs.stderr)")
    }
}
