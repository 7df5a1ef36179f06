import Foundation
import Testing
import TestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The MCP server driven by the official Python MCP client (the pinned `mcp` in .build-venv), as an
/// agent host drives it: `mailporter mcp` over stdio and `/mcp` over Streamable HTTP, both against a
/// running `mailporter serve` migrating between two real Dovecots.
@Suite("MCP end to end", .serialized, .timeLimit(.minutes(6)))
struct MCPEndToEndTests {
    typealias Failure = ServeEndToEndTests.Failure

    /// `serve` with the MCP settings of a test.
    final class Service: Sendable {
        let dataDir: String
        let port: Int
        let process: BackgroundProcess

        init(destination: DovecotServer, extra: [String: String]) async throws {
            dataDir = ServeEndToEndTests.temporaryDirectory()
            port = try DovecotServer.freePorts(1)[0]
            let environment = ServeEndToEndTests.Service.environment(
                dataDir: dataDir, port: port, destinationPort: destination.imapPort
            ).merging(extra) { $1 }
            process = try BackgroundProcess.start(mailporterExecutable, ["serve"], environment: environment)
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                if let status = process.poll() { throw Failure("serve exited with \(status): \(process.stderr)") }
                if (try? await curl("GET", "/healthz").status) == 200 { return }
                try await Task.sleep(for: .milliseconds(100))
            }
            throw Failure("serve did not answer /healthz: \(process.stderr)")
        }

        var url: String { "http://127.0.0.1:\(port)" }

        func stop() async {
            process.kill()
            _ = await process.wait(timeout: .seconds(10))
            process.cleanUp()
            try? FileManager.default.removeItem(atPath: dataDir)
        }

        /// curl with headers; answers status, response headers (lower-cased names) and body.
        func curl(_ method: String, _ path: String, headers: [String] = [], json: String? = nil) async throws -> (
            status: Int, headers: [String: String], body: String
        ) {
            let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("mp-h-\(UUID().uuidString)")
                .path
            defer { try? FileManager.default.removeItem(atPath: scratch) }
            var arguments = ["-sS", "--max-time", "60", "-X", method, "-D", scratch, "-w", "\n%{http_code}"]
            for header in headers { arguments += ["-H", header] }
            if json != nil { arguments += ["-H", "Content-Type: application/json", "--data-binary", "@-"] }
            arguments.append(url + path)
            let result = try await spawnProcess("/usr/bin/curl", arguments, input: json.map { Data($0.utf8) })
            guard result.status == 0, let newline = result.stdout.lastIndex(of: "\n"),
                let status = Int(result.stdout[result.stdout.index(after: newline)...])
            else { throw Failure("curl \(method) \(path) failed: \(result.stderr)") }
            var fields: [String: String] = [:]
            for line in ((try? String(contentsOfFile: scratch, encoding: .utf8)) ?? "").split(separator: "\r\n") {
                guard let colon = line.firstIndex(of: ":") else { continue }
                fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
                    in: .whitespaces)
            }
            return (status, fields, String(result.stdout[..<newline]))
        }

        func admin(_ arguments: [String]) async throws -> [String: Any] {
            let result = try await spawnProcess(
                mailporterExecutable, arguments + ["--data-dir", dataDir],
                environment: ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"])
            guard result.status == 0 else { throw Failure("mailporter \(arguments) failed: \(result.stderr)") }
            return try ServeEndToEndTests.object(result.stdout)
        }
    }

    /// Runs `body` against a fresh `serve`, stopped afterwards whatever happens.
    func withService(
        _ destination: DovecotServer, extra: [String: String] = [:], _ body: (Service) async throws -> Void
    ) async throws {
        let service = try await Service(destination: destination, extra: extra)
        do {
            try await body(service)
        } catch {
            await service.stop()
            throw error
        }
        await service.stop()
    }

    struct Tokens {
        var accountID: Int
        var readWrite: String
        var readOnly: String
    }

    func number(_ value: Any?) -> Int? { (value as? NSNumber)?.intValue }

    /// An account with the given mailboxes, a read+write token and a read-only one.
    func provision(_ service: Service, mailboxes: [String]) async throws -> (tokens: Tokens, mailboxIDs: [Int]) {
        let account = try await service.admin(["accounts", "create", "--plan", "pro", "--email", "ops@example.com"])
        let accountID = try #require(number(account["id"]))
        var ids: [Int] = []
        for mailbox in mailboxes {
            ids.append(
                try #require(
                    number(try await service.admin(["mailboxes", "add", "--account", "\(accountID)", mailbox])["id"])))
        }
        func token(_ scopes: String) async throws -> String {
            try #require(
                try await service.admin([
                    "tokens", "create", "--account", "\(accountID)", "--name", "mcp", "--scopes", scopes,
                ])["token"] as? String)
        }
        return (
            Tokens(
                accountID: accountID, readWrite: try await token("migrations:read,migrations:write"),
                readOnly: try await token("migrations:read")), ids
        )
    }

    // MARK: The Python client

    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    static var python: String { repositoryRoot.appendingPathComponent(".build-venv/bin/python").path }

    /// Runs the driver on `plan`; answers what the client saw.
    func drive(_ plan: [String: Any]) async throws -> [String: Any] {
        guard FileManager.default.isExecutableFile(atPath: Self.python) else {
            throw Failure("no \(Self.python): run scripts/test-venv once")
        }
        let script = try #require(
            Bundle.module.url(forResource: "mcp_driver", withExtension: "py", subdirectory: "MCP"))
        let input = try JSONSerialization.data(withJSONObject: plan)
        let result = try await spawnProcess(Self.python, [script.path], input: input)
        guard result.status == 0 else { throw Failure("the MCP driver failed: \(result.stderr)") }
        return try ServeEndToEndTests.object(result.stdout)
    }

    func stdio(_ service: Service, token: String, allow: String, stderr: String) -> [String: Any] {
        [
            "kind": "stdio", "command": mailporterExecutable, "args": ["mcp"], "stderr": stderr,
            "env": [
                "MAILPORTER_URL": service.url, "MAILPORTER_API_TOKEN": token, "MAILPORTER_ALLOW_MIGRATION": allow,
            ],
        ]
    }

    func http(_ service: Service, token: String) -> [String: Any] {
        ["kind": "http", "url": service.url + "/mcp", "token": token]
    }

    static func call(_ tool: String, _ arguments: [String: Any] = [:]) -> [String: Any] {
        ["op": "call", "tool": tool, "arguments": arguments]
    }

    static func poll(_ tool: String, _ arguments: [String: Any], until: [String]) -> [String: Any] {
        ["op": "poll", "tool": tool, "arguments": arguments, "until": until, "timeout": 150]
    }

    static var listTools: [String: Any] { ["op": "list_tools"] }

    func results(_ output: [String: Any]) -> [[String: Any]] { output["results"] as? [[String: Any]] ?? [] }

    func toolNames(_ result: [String: Any]) -> [String] {
        (result["tools"] as? [[String: Any]])?.compactMap { $0["name"] as? String } ?? []
    }

    func structured(_ result: [String: Any]) -> [String: Any] { result["structured"] as? [String: Any] ?? [:] }

    func data(_ result: [String: Any]) -> [String: Any] { structured(result)["data"] as? [String: Any] ?? [:] }

    func errorCode(_ result: [String: Any]) -> String? {
        (structured(result)["error"] as? [String: Any])?["code"] as? String
    }

    func shown(_ result: [String: Any]) -> String { (result["text"] as? [String])?.joined(separator: "\n") ?? "" }

    static let allTools: Set<String> = [
        "test_migration_connection", "list_migrations", "get_migration", "start_migration", "cancel_migration",
        "retry_migration", "delete_migration", "preview_bulk_migration", "start_bulk_migration",
        "list_bulk_migrations", "get_bulk_migration", "cancel_bulk_migration", "retry_bulk_migration",
        "resume_bulk_migration", "delete_bulk_migration", "update_bulk_migration_job_password",
    ]
    static let readTools: Set<String> = [
        "list_migrations", "get_migration", "list_bulk_migrations", "get_bulk_migration",
    ]
    static let stopTools: Set<String> = ["cancel_migration", "cancel_bulk_migration", "resume_bulk_migration"]

    func sourceArguments(_ source: DovecotServer, user: String) -> [String: Any] {
        [
            "provider": "generic_imap", "source_host": "127.0.0.1", "source_port": source.imapPort,
            "source_security": "none", "source_email": user, "source_password": DovecotServer.password,
        ]
    }

    func auditActions(_ service: Service, token: String) async throws -> [[String: Any]] {
        let reply = try await service.curl(
            "GET", "/api/v1/audit-events?per_page=100", headers: ["Authorization: Bearer \(token)"])
        #expect(reply.status == 200, "\(reply.body)")
        return try ServeEndToEndTests.object(reply.body)["data"] as? [[String: Any]] ?? []
    }

    // MARK: stdio

    @Test func overStdioAnAgentTestsStartsAndPollsAMigrationToCompletedExactly() async throws {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let sourceUser = "\(uniqueUser("mcps"))@old.example"
        let corpus = try await Corpus.fill(source, user: sourceUser, options: ServeBulkTests.corpusOptions)
        let mailbox = "\(uniqueUser("mcpd"))@example.org"
        try await destination.prepare(user: mailbox)
        try await withService(destination) { service in
            let (tokens, mailboxIDs) = try await provision(service, mailboxes: [mailbox])
            let log = service.dataDir + "-mcp.log"
            defer { try? FileManager.default.removeItem(atPath: log) }

            var start = sourceArguments(source, user: sourceUser)
            start["mailbox_id"] = mailboxIDs[0]
            var confirmed = start
            confirmed["confirm_start"] = true
            let output = try await drive([
                "transport": stdio(service, token: tokens.readWrite, allow: "true", stderr: log),
                "steps": [
                    Self.listTools,
                    Self.call("test_migration_connection", sourceArguments(source, user: sourceUser)),
                    Self.call("start_migration", start),
                    Self.call("list_migrations"),
                    Self.call("start_migration", confirmed),
                ],
            ])
            #expect((output["server"] as? [String: Any])?["name"] as? String == "mailporter")
            let steps = results(output)
            try #require(steps.count == 5, "\(output)")

            // tools/list: all 16, each schema an object with its required fields, the hints set.
            let tools = try #require(steps[0]["tools"] as? [[String: Any]])
            #expect(Set(toolNames(steps[0])) == Self.allTools)
            let byName = Dictionary(uniqueKeysWithValues: tools.map { ($0["name"] as? String ?? "", $0) })
            for tool in tools {
                let schema = tool["inputSchema"] as? [String: Any]
                #expect(schema?["type"] as? String == "object", "\(tool)")
                #expect(tool["outputSchema"] as? [String: Any] != nil, "\(tool)")
                #expect(
                    (tool["title"] as? String)?.isEmpty == false && (tool["description"] as? String)?.isEmpty == false)
            }
            let startSchema = try #require(byName["start_migration"]?["inputSchema"] as? [String: Any])
            #expect(
                Set(startSchema["required"] as? [String] ?? []).isSuperset(of: [
                    "mailbox_id", "source_email", "confirm_start",
                ]))
            let startFields = try #require(startSchema["properties"] as? [String: [String: Any]])
            #expect(startFields["source_port"]?["type"] as? String == "integer")
            #expect(startFields["source_security"]?["enum"] as? [String] == ["ssl", "tls", "none"])
            #expect(startFields["skip_duplicates"]?["type"] as? String == "boolean")
            func hint(_ tool: String, _ name: String) -> Bool? {
                (byName[tool]?["annotations"] as? [String: Any])?[name] as? Bool
            }
            #expect(
                hint("get_migration", "readOnlyHint") == true && hint("list_bulk_migrations", "readOnlyHint") == true)
            #expect(hint("delete_migration", "destructiveHint") == true)
            #expect(
                hint("cancel_migration", "idempotentHint") == true && hint("retry_migration", "idempotentHint") == true)

            // test connection: the source's folders with their counts.
            #expect(steps[1]["is_error"] as? Bool == false, "\(steps[1])")
            let folders = structured(steps[1])["folders"] as? [String: Any]
            #expect(number(folders?["INBOX"]) == corpus.folders["INBOX"]?.count, "\(steps[1])")

            // Without confirm_start: an error naming it, and no migration.
            #expect(steps[2]["is_error"] as? Bool == true)
            #expect(shown(steps[2]).contains("confirm_start"), "\(steps[2])")
            #expect(errorCode(steps[2]) == "confirmation_required")
            #expect(number((structured(steps[3])["meta"] as? [String: Any])?["total"]) == 0, "\(steps[3])")

            // With it: the record, then polled to completed with the hints the API gives.
            #expect(steps[4]["is_error"] as? Bool == false, "\(steps[4])")
            let id = try #require(number(data(steps[4])["id"]))
            let polled = results(
                try await drive([
                    "transport": stdio(service, token: tokens.readWrite, allow: "true", stderr: log),
                    "steps": [
                        Self.poll("get_migration", ["migration_id": id], until: ["completed", "failed", "cancelled"]),
                        Self.call("get_migration", ["migration_id": 999_999]),
                        Self.call("delete_migration", ["migration_id": id]),
                    ],
                ]))
            try #require(polled.count == 3)
            #expect(data(polled[0])["status"] as? String == "completed", "\(polled[0])")
            #expect(number(data(polled[0])["imported_messages"]) == corpus.selectedCount - corpus.duplicateCount)
            #expect(data(polled[0])["poll_hint_seconds"] is NSNull)
            let hints = (polled[0]["hints"] as? [Any])?.compactMap(number) ?? []
            #expect(hints.allSatisfy { [5, 10].contains($0) }, "\(polled[0])")

            // An API error comes through with its code, message and hint.
            #expect(polled[1]["is_error"] as? Bool == true && errorCode(polled[1]) == "not_found", "\(polled[1])")
            #expect(shown(polled[1]).contains("Check the id"), "\(polled[1])")
            #expect(shown(polled[2]).contains("confirm_delete") && errorCode(polled[2]) == "confirmation_required")

            let snapshot = try await AccountSnapshot.take(destination, user: mailbox)
            let problems = snapshot.differences(from: corpus.expectedDestination(skipDuplicates: true))
            #expect(problems.isEmpty, "\(problems)")

            let audit = try await auditActions(service, token: tokens.readWrite)
            #expect(audit.compactMap { $0["action"] as? String } == ["migration_started"], "\(audit)")

            let mcpLog = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            #expect(mcpLog.contains("tool called"), "the mcp command logs to stderr: \(mcpLog.prefix(500))")
            for secret in [DovecotServer.password, tokens.readWrite] {
                #expect(!mcpLog.contains(secret) && !service.process.stderr.contains(secret))
            }
        }
    }

    @Test func overStdioTheGateAndTheScopesDecideWhatIsListedAndRun() async throws {
        let destination = try await SharedServers.shared.server(.slash)
        let mailbox = "\(uniqueUser("mcpg"))@example.org"
        try await destination.prepare(user: mailbox)
        try await withService(destination) { service in
            let (tokens, mailboxIDs) = try await provision(service, mailboxes: [mailbox])
            // A source that accepts the connection and never greets: the migration stays validating.
            let silent = try SilentListener()
            let started = try await service.curl(
                "POST", "/api/v1/migrations", headers: ["Authorization: Bearer \(tokens.readWrite)"],
                json: """
                    {"mailbox_id":\(mailboxIDs[0]),"provider":"generic_imap","source_host":"127.0.0.1",\
                    "source_port":\(silent.port),"source_security":"none","source_email":"x@old.example","source_password":"p"}
                    """)
            #expect(started.status == 201, "\(started.body)")
            let id = try #require(
                number((try ServeEndToEndTests.object(started.body)["data"] as? [String: Any])?["id"]))

            let log = service.dataDir + "-mcp.log"
            defer { try? FileManager.default.removeItem(atPath: log) }
            let gateOff = results(
                try await drive([
                    "transport": stdio(service, token: tokens.readWrite, allow: "false", stderr: log),
                    "steps": [
                        Self.listTools,
                        Self.call("retry_migration", ["migration_id": id, "confirm_retry": true]),
                        Self.call("cancel_migration", ["migration_id": id, "confirm_cancel": true]),
                        Self.call("resume_bulk_migration", ["batch_id": 424_242, "confirm_resume": true]),
                    ],
                ]))
            try #require(gateOff.count == 4)
            #expect(Set(toolNames(gateOff[0])) == Self.readTools.union(Self.stopTools), "\(toolNames(gateOff[0]))")
            #expect(errorCode(gateOff[1]) == "migration_writes_disabled", "\(gateOff[1])")
            #expect(shown(gateOff[1]).contains("MAILPORTER_ALLOW_MIGRATION"))
            #expect(data(gateOff[2])["status"] as? String == "cancelled", "\(gateOff[2])")
            // Resume reached the API (which has no such batch) though the gate is off.
            #expect(errorCode(gateOff[3]) == "not_found", "\(gateOff[3])")
            let audit = try await auditActions(service, token: tokens.readWrite).compactMap { $0["action"] as? String }
            #expect(
                Set(audit) == ["migration_started", "migration_cancelled"], "the refused retry sent nothing: \(audit)")

            let readOnly = results(
                try await drive([
                    "transport": stdio(service, token: tokens.readOnly, allow: "true", stderr: log),
                    "steps": [Self.listTools],
                ]))
            #expect(Set(toolNames(readOnly[0])) == Self.readTools, "\(readOnly)")

            // With no server at MAILPORTER_URL, a tool answers at once that the API is unreachable.
            let nobody = try RefusingPort()
            var unreachable = stdio(service, token: tokens.readWrite, allow: "false", stderr: log)
            unreachable["env"] = [
                "MAILPORTER_URL": "http://127.0.0.1:\(nobody.port)", "MAILPORTER_API_TOKEN": tokens.readWrite,
            ]
            let down = results(
                try await drive([
                    "transport": unreachable, "steps": [Self.call("get_migration", ["migration_id": id])],
                ]))
            #expect(errorCode(down[0]) == "api_unreachable" && shown(down[0]).contains("MAILPORTER_URL"), "\(down)")

            // A wrong MAILPORTER_ALLOW_MIGRATION stops the start with one clear line.
            let wrong = try await spawnProcess(
                mailporterExecutable, ["mcp"],
                environment: [
                    "MAILPORTER_URL": service.url, "MAILPORTER_API_TOKEN": tokens.readWrite,
                    "MAILPORTER_ALLOW_MIGRATION": "yes",
                ])
            #expect(
                wrong.status == 2 && wrong.stderr.contains("MAILPORTER_ALLOW_MIGRATION must be exactly true or false"))
            #expect(wrong.stdout.isEmpty && !wrong.stderr.contains(tokens.readWrite))
        }
    }

    // MARK: Streamable HTTP

    @Test func overHTTPAnAgentMigratesAndPreviewsAndStartsABulkImport() async throws {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let singleUser = "\(uniqueUser("mcphs"))@old.example"
        let bulkUser = "\(uniqueUser("mcphb"))@old.example"
        let corpus = try await Corpus.fill(source, user: singleUser, options: ServeBulkTests.corpusOptions)
        let bulkCorpus = try await Corpus.fill(source, user: bulkUser, options: ServeBulkTests.corpusOptions)
        let mailboxes = ["\(uniqueUser("mcphd"))@example.org", "\(uniqueUser("mcphe"))@example.org"]
        for mailbox in mailboxes { try await destination.prepare(user: mailbox) }
        try await withService(destination, extra: ["MAILPORTER_ALLOW_MIGRATION": "true"]) { service in
            let (tokens, mailboxIDs) = try await provision(service, mailboxes: mailboxes)

            var start = sourceArguments(source, user: singleUser)
            start["mailbox_id"] = mailboxIDs[0]
            start["confirm_start"] = true
            let csv =
                "source_email,source_password,destination_email\n\(bulkUser),\(DovecotServer.password),\(mailboxes[1])\n"
            let bulk: [String: Any] = [
                "data": csv, "source_host": "127.0.0.1", "source_port": source.imapPort, "source_security": "none",
            ]
            var bulkStart = bulk
            bulkStart["confirm_start"] = true
            bulkStart["name"] = "mcp batch"
            let output = try await drive([
                "transport": http(service, token: tokens.readWrite),
                "steps": [
                    Self.listTools, Self.call("start_migration", start), Self.call("preview_bulk_migration", bulk),
                ],
            ])
            let steps = results(output)
            try #require(steps.count == 3, "\(output)")
            #expect(Set(toolNames(steps[0])) == Self.allTools)
            let id = try #require(number(data(steps[1])["id"]), "\(steps[1])")
            let counts = data(steps[2])["counts"] as? [String: Any]
            #expect(number(counts?["valid"]) == 1 && number(counts?["total"]) == 1, "\(steps[2])")

            let later = results(
                try await drive([
                    "transport": http(service, token: tokens.readWrite),
                    "steps": [
                        Self.poll("get_migration", ["migration_id": id], until: ["completed", "failed", "cancelled"]),
                        Self.call("start_bulk_migration", bulkStart),
                    ],
                ]))
            #expect(data(later[0])["status"] as? String == "completed", "\(later[0])")
            let batchID = try #require(number(data(later[1])["id"]), "\(later[1])")
            let batch = results(
                try await drive([
                    "transport": http(service, token: tokens.readWrite),
                    "steps": [
                        Self.poll(
                            "get_bulk_migration", ["batch_id": batchID],
                            until: ["completed", "completed_with_errors", "cancelled"])
                    ],
                ]))
            #expect(data(batch[0])["status"] as? String == "completed", "\(batch[0])")

            for (mailbox, expected) in [(mailboxes[0], corpus), (mailboxes[1], bulkCorpus)] {
                let snapshot = try await AccountSnapshot.take(destination, user: mailbox)
                let problems = snapshot.differences(from: expected.expectedDestination(skipDuplicates: true))
                #expect(problems.isEmpty, "\(mailbox): \(problems)")
            }
            // The tools' REST calls were audited like any other, under the /mcp request's id.
            let audit = try await auditActions(service, token: tokens.readWrite)
            let actions = audit.compactMap { $0["action"] as? String }
            #expect(Set(actions) == ["migration_started", "bulk_migration_started"], "\(audit)")
            #expect(audit.allSatisfy { ($0["ip"] as? String) == "127.0.0.1" }, "\(audit)")
            #expect(!service.process.stderr.contains(DovecotServer.password))
        }
    }

    @Test func overHTTPTokensOriginsSessionsAndCollidingClientsAreKeptApart() async throws {
        let destination = try await SharedServers.shared.server(.slash)
        let extra = [
            "MAILPORTER_ALLOW_MIGRATION": "true", "MAILPORTER_MCP_SESSION_IDLE_SECONDS": "2",
            "MAILPORTER_MCP_ALLOWED_ORIGINS": "https://agent.example",
        ]
        try await withService(destination, extra: extra) { service in
            let (tokens, _) = try await provision(service, mailboxes: ["\(uniqueUser("mcpo"))@example.org"])
            let initialize = #"""
                {"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}
                """#
            let list = #"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}"#
            let mcpHeaders = ["Accept: application/json, text/event-stream"]
            let auth = "Authorization: Bearer \(tokens.readWrite)"

            let anonymous = try await service.curl("POST", "/mcp", headers: mcpHeaders, json: initialize)
            #expect(anonymous.status == 401, "\(anonymous.body)")
            let foreign = try await service.curl(
                "POST", "/mcp", headers: mcpHeaders + [auth, "Origin: https://evil.example"], json: initialize)
            #expect(foreign.status == 403, "\(foreign.body)")
            let allowed = try await service.curl(
                "POST", "/mcp", headers: mcpHeaders + [auth, "Origin: https://agent.example"], json: initialize)
            #expect(allowed.status == 200, "\(allowed.body)")
            let session = try #require(allowed.headers["mcp-session-id"], "\(allowed.headers)")
            let listed = try await service.curl(
                "POST", "/mcp", headers: mcpHeaders + [auth, "Mcp-Session-Id: \(session)"], json: list)
            #expect(listed.status == 200 && listed.body.contains("start_bulk_migration"), "\(listed.body)")
            // tools/list asks /api/v1/me in process: still one request of the token's budget.
            let again = try await service.curl(
                "POST", "/mcp", headers: mcpHeaders + [auth, "Mcp-Session-Id: \(session)"], json: list)
            let before = try #require(Int(listed.headers["x-ratelimit-remaining"] ?? ""), "\(listed.headers)")
            #expect(Int(again.headers["x-ratelimit-remaining"] ?? "") == before - 1, "\(again.headers)")
            let unknown = try await service.curl(
                "POST", "/mcp", headers: mcpHeaders + [auth, "Mcp-Session-Id: 0123456789abcdef"], json: list)
            #expect(unknown.status == 404, "\(unknown.body)")
            let otherToken = try await service.curl(
                "POST", "/mcp",
                headers: mcpHeaders + ["Authorization: Bearer \(tokens.readOnly)", "Mcp-Session-Id: \(session)"],
                json: list)
            #expect(otherToken.status == 404, "a session belongs to its token: \(otherToken.body)")

            // Idle past the timeout, the session is gone.
            try await Task.sleep(for: .seconds(3))
            let expired = try await service.curl(
                "POST", "/mcp", headers: mcpHeaders + [auth, "Mcp-Session-Id: \(session)"], json: list)
            #expect(expired.status == 404, "\(expired.body)")

            // Two clients at once, both numbering their requests from 0: each gets its own answers.
            let repeated = Array(repeating: Self.listTools, count: 8)
            let both = try await drive([
                "concurrent": [
                    ["transport": http(service, token: tokens.readWrite), "steps": repeated],
                    ["transport": http(service, token: tokens.readOnly), "steps": repeated],
                ]
            ])
            let sessions = try #require(both["sessions"] as? [[String: Any]])
            try #require(sessions.count == 2)
            #expect(results(sessions[0]).count == 8 && results(sessions[1]).count == 8)
            #expect(results(sessions[0]).allSatisfy { Set(toolNames($0)) == Self.allTools }, "\(sessions[0])")
            #expect(results(sessions[1]).allSatisfy { Set(toolNames($0)) == Self.readTools }, "\(sessions[1])")
        }
    }
}

/// A TCP port that accepts connections (the kernel's backlog) and never says a word.
final class SilentListener: Sendable {
    let descriptor: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard bound == 0, named == 0, listen(fd, 16) == 0 else {
            close(fd)
            throw ServeEndToEndTests.Failure("cannot listen on 127.0.0.1")
        }
        descriptor = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(descriptor) }
}
