import Foundation
import Synchronization
import Store
import Testing
import TestSupport

/// `mailporter serve` as a separate process, driven over HTTP with curl the way the README does,
/// migrating between two real Dovecots; then the same with the server killed mid-migration.
@Suite("mailporter serve end to end", .serialized)
struct ServeEndToEndTests {
    /// One running `serve` with its data directory, and curl calls against it.
    final class Service: Sendable {
        let dataDir: String
        let destination: DovecotServer
        private let running: Mutex<(port: Int, process: BackgroundProcess)>
        /// How to start it again on another port (see `waitUntilReady`).
        private let relaunch: @Sendable (Int) throws -> BackgroundProcess

        var port: Int { running.withLock { $0.port } }
        var process: BackgroundProcess { running.withLock { $0.process } }

        /// `destinationPort`: where serve reaches the destination, when not directly (a proxy).
        /// `extraEnvironment`: more MAILPORTER_* settings (say, the SMTP relay).
        /// `arguments`: the command line (`serve` and its options, or `worker`, whose `/healthz` and
        /// `/metrics` then answer on `port`).
        init(
            dataDir: String, port: Int, destination: DovecotServer, destinationPort: Int? = nil,
            arguments: [String] = ["serve"], extraEnvironment: [String: String] = [:]
        ) throws {
            self.dataDir = dataDir
            self.destination = destination
            let destinationPort = destinationPort ?? destination.imapPort
            let relaunch: @Sendable (Int) throws -> BackgroundProcess = { port in
                try BackgroundProcess.start(
                    mailporterExecutable, arguments,
                    environment: Self.environment(dataDir: dataDir, port: port, destinationPort: destinationPort)
                        .merging(extraEnvironment) { $1 })
            }
            self.relaunch = relaunch
            running = Mutex((port, try relaunch(port)))
        }

        static func environment(dataDir: String, port: Int, destinationPort: Int) -> [String: String] {
            [
                "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
                "MAILPORTER_DATA_DIR": dataDir,
                "MAILPORTER_LISTEN": "127.0.0.1:\(port)",
                "MAILPORTER_WORKER_LISTEN": "127.0.0.1:\(port)",
                "MAILPORTER_DEST_HOST": "127.0.0.1",
                "MAILPORTER_DEST_PORT": "\(destinationPort)",
                "MAILPORTER_DEST_SECURITY": "none",
                "MAILPORTER_DEST_MASTER_USER": DovecotServer.masterUser,
                "MAILPORTER_DEST_MASTER_PASSWORD": DovecotServer.masterPassword,
                "MAILPORTER_ALLOW_PRIVATE_HOSTS": "true",
                "MAILPORTER_NODE_ID": "e2e-node",
                // The tests poll faster than a person would; route tests cover the limits.
                "MAILPORTER_RATE_LIMIT_REQUESTS": "100000",
                "MAILPORTER_LOG_LEVEL": "info",
            ]
        }

        /// Waits until `/healthz` answers.
        func waitUntilReady() async throws {
            let deadline = ContinuousClock.now + .seconds(30)
            var relaunches = 0
            while ContinuousClock.now < deadline {
                if let status = process.poll() {
                    // A port handed out as free can be taken before a slow start binds it: once
                    // more on another (a start that fails for any other reason fails the test).
                    guard process.stderr.contains("Address already in use"), relaunches < 2 else {
                        throw Failure("serve exited with \(status): \(process.stderr)")
                    }
                    relaunches += 1
                    process.cleanUp()
                    let port = try DovecotServer.freePorts(1)[0]
                    let started = try relaunch(port)
                    running.withLock { $0 = (port, started) }
                    continue
                }
                if (try? await curl("GET", "/healthz").status) == 200 { return }
                try await Task.sleep(for: .milliseconds(100))
            }
            throw Failure("serve did not answer /healthz within 30 s: \(process.stderr)")
        }

        func curl(_ method: String, _ path: String, token: String? = nil, json: String? = nil) async throws -> (
            status: Int, body: String
        ) {
            var arguments = ["-sS", "--max-time", "60", "-X", method, "-w", "\n%{http_code}"]
            if let token { arguments += ["-H", "Authorization: Bearer \(token)"] }
            if json != nil { arguments += ["-H", "Content-Type: application/json", "--data-binary", "@-"] }
            arguments.append("http://127.0.0.1:\(port)\(path)")
            let result = try await spawnProcess("/usr/bin/curl", arguments, input: json.map { Data($0.utf8) })
            guard result.status == 0, let newline = result.stdout.lastIndex(of: "\n"),
                let status = Int(result.stdout[result.stdout.index(after: newline)...])
            else {
                throw Failure("curl \(method) \(path) failed: \(result.stderr)")
            }
            return (status, String(result.stdout[..<newline]))
        }

        func admin(_ arguments: [String]) async throws -> [String: Any] {
            let result = try await spawnProcess(
                mailporterExecutable, arguments + ["--data-dir", dataDir],
                environment: ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"])
            guard result.status == 0 else { throw Failure("mailporter \(arguments) failed: \(result.stderr)") }
            return try object(result.stdout)
        }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    static func object(_ text: String) throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw Failure("not a JSON object: \(text)")
        }
        return object
    }

    func object(_ text: String) throws -> [String: Any] { try Self.object(text) }

    func number(_ value: Any?) -> Int? { (value as? NSNumber)?.intValue }

    /// Admin commands: an account, the destination mailbox, a token; returns (mailbox id, token).
    func provision(_ service: Service, mailbox: String) async throws -> (mailboxID: Int, token: String) {
        let account = try await service.admin(["accounts", "create", "--plan", "pro", "--email", "ops@example.com"])
        let accountID = try #require(number(account["id"]))
        let created = try await service.admin(["mailboxes", "add", "--account", "\(accountID)", mailbox])
        let token = try await service.admin([
            "tokens", "create", "--account", "\(accountID)", "--name", "e2e",
            "--scopes", "migrations:read,migrations:write",
        ])
        return (try #require(number(created["id"])), try #require(token["token"] as? String))
    }

    func startBody(sourcePort: Int, user: String, mailboxID: Int, skipDuplicates: Bool) -> String {
        """
        {"mailbox_id":\(mailboxID),"provider":"generic_imap","source_host":"127.0.0.1",\
        "source_port":\(sourcePort),"source_security":"none","source_email":"\(user)@example.org",\
        "source_username":"\(user)","source_password":"\(DovecotServer.password)","skip_duplicates":\(skipDuplicates)}
        """
    }

    /// Polls the migration until `done` says so; returns the last record.
    func poll(
        _ service: Service, id: Int, token: String, timeout: Duration = .seconds(180),
        interval: Duration = .milliseconds(200),
        until done: ([String: Any]) -> Bool
    ) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + timeout
        var last: [String: Any] = [:]
        while ContinuousClock.now < deadline {
            let reply = try await service.curl("GET", "/api/v1/migrations/\(id)", token: token)
            #expect(reply.status == 200, "\(reply.body)")
            last = try #require(try object(reply.body)["data"] as? [String: Any])
            if done(last) { return last }
            try await Task.sleep(for: interval)
        }
        throw Failure("migration \(id) did not get there in time; last: \(last)")
    }

    /// A source account filled with a corpus of 1 MB attachments behind a slow link (150 kB/s), so a
    /// kill or a pause lands mid-copy however fast the machine, and an empty destination mailbox.
    struct SlowCopy {
        var destination: DovecotServer
        var sourceUser: String
        var corpus: Corpus
        /// Where the source is reached; stop it when done.
        var slowLink: FaultInjectingProxy
        var mailbox: String

        var parts: (DovecotServer, String, Corpus, FaultInjectingProxy, String) {
            (destination, sourceUser, corpus, slowLink, mailbox)
        }
    }

    static func slowCopy(_ prefix: String) async throws -> SlowCopy {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let sourceUser = try await source.freshUser(prefix)
        let corpus = try await Corpus.fill(
            source, user: sourceUser, options: .init(scale: 2, largeAttachmentBytes: 1 << 20))
        let slowLink = try await FaultInjectingProxy.start(
            upstreamPort: source.imapPort,
            faults: Array(repeating: .throttle(bytesPerSecond: 150_000), count: 100))
        let mailbox = "\(uniqueUser(prefix + "d"))@example.org"
        try await destination.prepare(user: mailbox)
        return SlowCopy(
            destination: destination, sourceUser: sourceUser, corpus: corpus, slowLink: slowLink, mailbox: mailbox)
    }

    /// Polls migration `id` through `service` to its end and checks what a user would: completed,
    /// every selected message imported once (duplicates skipped), the mailbox exact message by message.
    func expectCompletedExactly(
        _ service: Service, id: Int, token: String, corpus: Corpus, destination: DovecotServer, mailbox: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let record = try await poll(service, id: id, token: token) {
            ["completed", "failed", "cancelled"].contains($0["status"] as? String)
        }
        #expect(record["status"] as? String == "completed", "\(record)", sourceLocation: sourceLocation)
        #expect(
            number(record["imported_messages"]) == corpus.selectedCount - corpus.duplicateCount,
            sourceLocation: sourceLocation)
        let snapshot = try await AccountSnapshot.take(destination, user: mailbox)
        let problems = snapshot.differences(from: corpus.expectedDestination(skipDuplicates: true))
        #expect(problems.isEmpty, "\(problems)", sourceLocation: sourceLocation)
    }

    static func temporaryDirectory() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("mp-e2e-\(UUID().uuidString)").path
    }

    @Test func aMigrationStartedOverHTTPEndsCompletedAndExact() async throws {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let sourceUser = try await source.freshUser("e2esrc")
        let corpus = try await Corpus.fill(
            source, user: sourceUser, options: .init(scale: 1, largeAttachmentBytes: 2 << 20))
        let mailbox = "\(uniqueUser("e2edst"))@example.org"
        try await destination.prepare(user: mailbox)

        let dataDir = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        let service = try Service(dataDir: dataDir, port: try DovecotServer.freePorts(1)[0], destination: destination)
        defer {
            service.process.kill()
            _ = service.process.poll()
            service.process.cleanUp()
        }
        try await service.waitUntilReady()
        let (mailboxID, token) = try await provision(service, mailbox: mailbox)

        let check = try await service.curl(
            "POST", "/api/v1/migrations/test-connection", token: token,
            json: """
                {"source_host":"127.0.0.1","source_port":\(source.imapPort),"source_security":"none",\
                "source_email":"\(sourceUser)@example.org","source_username":"\(sourceUser)","source_password":"\(DovecotServer.password)"}
                """)
        #expect(check.status == 200, "\(check.body)")
        let folders = try #require(try object(check.body)["folders"] as? [String: Any])
        #expect(number(folders["INBOX"]) == corpus.folders["INBOX"]?.count)

        let started = try await service.curl(
            "POST", "/api/v1/migrations", token: token,
            json: startBody(sourcePort: source.imapPort, user: sourceUser, mailboxID: mailboxID, skipDuplicates: true))
        #expect(started.status == 201, "\(started.body)")
        let id = try #require(number((try object(started.body)["data"] as? [String: Any])?["id"]))

        let record = try await poll(service, id: id, token: token) {
            ["completed", "failed", "cancelled"].contains($0["status"] as? String)
        }
        #expect(record["status"] as? String == "completed", "\(record)")
        #expect(number(record["progress"]) == 100)
        #expect(number(record["total_messages"]) == corpus.selectedCount)
        #expect(number(record["imported_messages"]) == corpus.selectedCount - corpus.duplicateCount)
        #expect(number(record["skipped_duplicates"]) == corpus.duplicateCount)
        #expect(number(record["failed_messages"]) == 0)
        #expect(record["poll_hint_seconds"] is NSNull)
        let folderRows = try #require(record["folders"] as? [[String: Any]])
        #expect(!folderRows.isEmpty)
        #expect(folderRows.allSatisfy { $0["status"] as? String == "completed" }, "\(folderRows)")

        let snapshot = try await AccountSnapshot.take(destination, user: mailbox)
        let problems = snapshot.differences(from: corpus.expectedDestination(skipDuplicates: true))
        #expect(problems.isEmpty, "\(problems)")

        let metrics = try await service.curl("GET", "/metrics")
        #expect(metrics.body.contains("mailporter_messages_copied_total"), "\(metrics.body.prefix(2000))")
        // The server's log never holds a password or the token.
        #expect(!service.process.stderr.contains(DovecotServer.password))
        #expect(!service.process.stderr.contains(DovecotServer.masterPassword))
        #expect(!service.process.stderr.contains(token))
    }

    @Test func killedOrStoppedMidMigrationTheServerResumesOnRestartAndEndsExact() async throws {
        let (destination, sourceUser, corpus, slowLink, mailbox) = try await Self.slowCopy("e2ekill").parts
        defer { Task { await slowLink.stop() } }

        let dataDir = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        let port = try DovecotServer.freePorts(1)[0]
        let first = try Service(dataDir: dataDir, port: port, destination: destination)
        try await first.waitUntilReady()
        let (mailboxID, token) = try await provision(first, mailbox: mailbox)
        // Without duplicate skipping, only the checkpoint and the in-flight reconciliation keep the copy exact.
        let started = try await first.curl(
            "POST", "/api/v1/migrations", token: token,
            json: startBody(sourcePort: slowLink.port, user: sourceUser, mailboxID: mailboxID, skipDuplicates: false))
        #expect(started.status == 201, "\(started.body)")
        let id = try #require(number((try object(started.body)["data"] as? [String: Any])?["id"]))

        let midway = try await poll(first, id: id, token: token) { record in
            record["status"] as? String != "pending" && (self.number(record["imported_messages"]) ?? 0) > 0
        }
        #expect(midway["status"] as? String == "processing", "\(midway)")
        first.kill()
        let partial = try await AccountSnapshot.take(destination, user: mailbox).messageCount
        #expect(
            partial > 0 && partial < corpus.selectedCount,
            "the kill should land mid-copy: \(partial) of \(corpus.selectedCount)")
        #expect(await first.process.wait(timeout: .seconds(10)) == 137)
        first.process.cleanUp()

        // The restarted server resumes the copy; SIGTERM stops it at a safe point and hands the
        // migration back to the queue.
        let second = try Service(dataDir: dataDir, port: port, destination: destination)
        try await second.waitUntilReady()
        let killedAt = number(midway["imported_messages"]) ?? 0
        _ = try await poll(second, id: id, token: token) { record in
            record["status"] as? String == "processing" && (self.number(record["imported_messages"]) ?? 0) > killedAt
        }
        second.process.kill(SIGTERM)
        #expect(
            await second.process.wait(timeout: .seconds(20)) == 0,
            "serve should exit cleanly on SIGTERM: \(second.process.stderr.suffix(2000))")
        second.process.cleanUp()
        let store = try await Store.openSQLite(
            path: dataDir + "/mailporter.sqlite",
            secrets: SecretBox.loadOrCreate(dataDirectory: dataDir, environmentKey: nil))
        let requeued = try await store.migration(id: Int64(id))
        try await store.close()
        #expect(requeued?.status == .pending, "after SIGTERM: \(String(describing: requeued?.status))")
        #expect(requeued?.leaseOwner == nil)

        let third = try Service(dataDir: dataDir, port: port, destination: destination)
        defer {
            third.process.kill()
            _ = third.process.poll()
            third.process.cleanUp()
        }
        try await third.waitUntilReady()
        let record = try await poll(third, id: id, token: token) {
            ["completed", "failed", "cancelled"].contains($0["status"] as? String)
        }
        #expect(record["status"] as? String == "completed", "\(record)")
        #expect(
            (number(record["imported_messages"]) ?? 0) + (number(record["skipped_duplicates"]) ?? 0)
                == corpus.selectedCount)
        #expect(number(record["failed_messages"]) == 0)

        let snapshot = try await AccountSnapshot.take(destination, user: mailbox)
        let problems = snapshot.differences(from: corpus.expectedDestination(skipDuplicates: false))
        #expect(problems.isEmpty, "\(problems)")
    }
}

extension ServeEndToEndTests.Service {
    func kill() { process.kill() }
}
