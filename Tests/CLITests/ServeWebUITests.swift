import Foundation
import Testing
import TestSupport

/// The Import page in real headless Chromium (Debian's chromium and chromium-driver, driven by
/// Selenium from the test venv) against a running `mailporter serve` and two real Dovecots. The
/// browser scenarios are Python scripts in `WebUI/`; they report what a person would see and these
/// tests check it, and then check the destination mailboxes message by message. A missing
/// browser, driver or venv fails the test; nothing is skipped.
@Suite("Import page in Chromium", .serialized, .timeLimit(.minutes(10)))
struct ServeWebUITests {
    typealias Service = ServeEndToEndTests.Service
    typealias Failure = ServeEndToEndTests.Failure

    static let chromium = "/usr/bin/chromium"
    static let chromedriver = "/usr/bin/chromedriver"

    static var repositoryRoot: URL {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
        }
        return URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
    }

    static var python: String { repositoryRoot.appendingPathComponent(".build-venv/bin/python").path }

    func object(_ text: String) throws -> [String: Any] { try ServeEndToEndTests.object(text) }
    func number(_ value: Any?) -> Int? { (value as? NSNumber)?.intValue }

    /// Runs `scenario` of WebUI/import_page.py with `config`; its observations.
    func browse(_ scenario: String, config: [String: Any]) async throws -> [String: Any] {
        for tool in [Self.chromium, Self.chromedriver, Self.python]
        where !FileManager.default.isExecutableFile(atPath: tool) {
            throw Failure("\(tool) is missing: run scripts/setup-test-deps and scripts/test-venv")
        }
        guard let folder = Bundle.module.url(forResource: "WebUI", withExtension: nil) else {
            throw Failure("the WebUI test resources are missing from the test bundle")
        }
        let scratch = ServeEndToEndTests.temporaryDirectory()
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let shots = Self.screenshotDirectory
        try FileManager.default.createDirectory(atPath: shots, withIntermediateDirectories: true)
        var full = config
        full["chromium"] = Self.chromium
        full["chromedriver"] = Self.chromedriver
        full["screenshot_dir"] = shots
        let configPath = scratch + "/config.json"
        try JSONSerialization.data(withJSONObject: full).write(to: URL(fileURLWithPath: configPath))
        let result = try await spawnProcess(
            Self.python, [folder.appendingPathComponent("import_page.py").path, scenario, configPath],
            environment: [
                "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
                "HOME": scratch,
                // Selenium Manager stays out of it: the driver and the browser are given.
                "SE_AVOID_STATS": "true", "SE_OFFLINE": "true",
            ])
        guard result.status == 0, let line = result.stdout.split(separator: "\n").last else {
            throw Failure("browser scenario \(scenario) failed (\(result.status)):\n\(result.stderr.suffix(8000))")
        }
        return try object(String(line))
    }

    /// Where the screenshots go (kept after the run, for a look and for the README).
    static var screenshotDirectory: String {
        ProcessInfo.processInfo.environment["MAILPORTER_SCREENSHOT_DIR"]
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("mailporter-webui-screenshots").path
    }

    /// Browser log lines at error level, less the API refusals the scenario asked for: Chromium logs
    /// every 4xx answer to fetch as a console error, which is the page working, not failing.
    func unexpectedConsoleErrors(_ observed: [String: Any], expectedRefusals: [String]) -> [String] {
        let entries = observed["console"] as? [[String: Any]] ?? []
        return entries.filter { $0["level"] as? String == "SEVERE" }.compactMap { $0["message"] as? String }.filter {
            message in !expectedRefusals.contains { message.contains($0) }
        }
    }

    /// sessionStorage, localStorage, cookies and every URL the page requested, as the page saw them.
    func storage(_ observed: [String: Any], _ key: String) -> (
        session: [String: Any], local: [String: Any], cookie: String, urls: [String]
    ) {
        let value = observed[key] as? [String: Any] ?? [:]
        return (
            value["session"] as? [String: Any] ?? ["missing": key], value["local"] as? [String: Any] ?? [:],
            value["cookie"] as? String ?? "", value["urls"] as? [String] ?? []
        )
    }

    /// The response headers of `path`, lowercased names.
    func headers(_ service: Service, _ path: String) async throws -> (status: Int, headers: [String: String]) {
        let result = try await spawnProcess(
            "/usr/bin/curl",
            ["-sS", "--max-time", "30", "-D", "-", "-o", "/dev/null", "http://127.0.0.1:\(service.port)\(path)"])
        var status = 0
        var fields: [String: String] = [:]
        for line in result.stdout.split(separator: "\r\n") {
            if line.hasPrefix("HTTP/") {
                status = Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
            } else if let colon = line.firstIndex(of: ":") {
                fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
                    in: .whitespaces)
            }
        }
        return (status, fields)
    }

    func provision(_ service: Service, plan: String = "pro", mailboxes: [String]) async throws -> String {
        let account = try await service.admin(["accounts", "create", "--plan", plan, "--email", "ops@example.com"])
        let accountID = try #require(number(account["id"]))
        for mailbox in mailboxes {
            _ = try await service.admin(["mailboxes", "add", "--account", "\(accountID)", mailbox])
        }
        return try #require(
            try await service.admin([
                "tokens", "create", "--account", "\(accountID)", "--name", "browser",
                "--scopes", "migrations:read,migrations:write,mailboxes:read",
            ])["token"] as? String)
    }

    @Test func theWizardImportsOneMailboxToCompletedAndTheDestinationIsExact() async throws {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let sourceUser = try await source.freshUser("websrc")
        let corpus = try await Corpus.fill(
            source, user: sourceUser, options: .init(scale: 1, largeAttachment: false, bodyBytes: 300...3000))
        let mailbox = "\(uniqueUser("webdst"))@example.org"
        try await destination.prepare(user: mailbox)
        let dataDir = ServeEndToEndTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        let service = try await ServeBulkTests.launch(
            destination, dataDir: dataDir, port: try DovecotServer.freePorts(1)[0])
        defer {
            service.process.kill()
            service.process.cleanUp()
        }
        let token = try await provision(service, mailboxes: [mailbox])

        // The page and its files carry the security headers.
        for path in ["/", "/ui/app.js", "/ui/style.css"] {
            let reply = try await headers(service, path)
            #expect(reply.status == 200, "\(path)")
            let policy = reply.headers["content-security-policy"] ?? ""
            #expect(
                policy.contains("default-src 'self'") && policy.contains("connect-src 'self'"), "\(path): \(policy)")
            #expect(
                policy.contains("frame-ancestors 'none'") && !policy.contains("unsafe-inline"), "\(path): \(policy)")
            #expect(reply.headers["x-content-type-options"] == "nosniff", "\(path)")
            #expect(reply.headers["referrer-policy"] == "no-referrer", "\(path)")
        }

        let observed = try await browse(
            "wizard",
            config: [
                "base_url": "http://127.0.0.1:\(service.port)", "token": token, "mailbox_email": mailbox,
                "uncheck_folders": [source.folder("Drafts")],
                "source": [
                    "host": "127.0.0.1", "port": source.imapPort, "security": "none",
                    "email": "\(sourceUser)@example.org", "username": sourceUser, "password": DovecotServer.password,
                ],
            ])

        #expect(storage(observed, "before_sign_in").session.isEmpty)
        let signIn = try #require(observed["sign_in"] as? [String: Any])
        #expect(signIn["plan"] as? String == "pro")
        #expect((signIn["scopes"] as? String)?.contains("migrations:write") == true, "\(signIn)")
        #expect(signIn["notice"] is NSNull, "\(signIn)")
        #expect(signIn["tabs"] as? [String] == ["Import", "Import history", "Bulk import"], "\(signIn)")

        let preset = try #require(observed["gmail_preset"] as? [String: Any])
        #expect(preset["host"] as? String == "imap.gmail.com" && preset["port"] as? String == "993", "\(preset)")
        #expect(preset["security"] as? String == "ssl")
        #expect((preset["hint"] as? String)?.contains("App Password") == true, "\(preset)")

        // The validation error beside the host field, which gets the focus.
        let validation = try #require(observed["validation"] as? [String: Any])
        #expect((validation["field_error"] as? String)?.contains("is required") == true, "\(validation)")
        #expect(validation["invalid"] as? String == "true" && validation["focused"] as? String == "source_host")
        let wrong = try #require(observed["wrong_password"] as? [String: Any])
        #expect((wrong["field_error"] as? String)?.contains("refused the login") == true, "\(wrong)")

        let folders = try #require(observed["folders"] as? [String: String])
        for folder in corpus.folderOrder where !(corpus.folders[folder] ?? []).isEmpty {
            #expect(
                folders[source.folder(folder)] == "\(corpus.folders[folder]?.count ?? 0) messages",
                "\(folder): \(folders)")
        }

        let final = try #require(observed["final"] as? [String: Any])
        #expect(final["status"] as? String == "Completed", "\(final)")
        #expect(final["percent"] as? String == "100%" && final["overall_value"] as? String == "100", "\(final)")
        let folderRows = try #require(final["folders"] as? [[String: Any]])
        #expect(!folderRows.isEmpty)
        #expect(
            folderRows.allSatisfy { $0["status"] as? String == "completed" && $0["value"] as? String == "100" },
            "\(folderRows)")
        #expect(!folderRows.contains { $0["name"] as? String == source.folder("Drafts") }, "\(folderRows)")
        // Completed: only Delete (and Close) of Cancel, Retry and Delete.
        #expect(final["actions"] as? [String] == ["Delete", "Close"], "\(final)")
        #expect(observed["password_in_page_after_start"] as? Bool == false)
        #expect(observed["password_fields_after_start"] as? [String] == ["", ""])

        let history = try #require(observed["history"] as? [[String: Any]])
        #expect(history.count == 1 && history.first?["status"] as? String == "Completed", "\(history)")

        let narrow = try #require(observed["narrow_progress"] as? [String: Any])
        #expect(
            (number(narrow["scroll"]) ?? .max) <= (number(narrow["client"]) ?? 0) && number(narrow["inner"]) == 360,
            "360 px: \(narrow)")

        // The token: in sessionStorage while signed in, never in localStorage, a cookie or a URL; gone after Sign out.
        let signedIn = storage(observed, "after")
        #expect(signedIn.session["mailporter.token"] as? String == token)
        #expect(signedIn.local.isEmpty && signedIn.cookie.isEmpty)
        #expect(!signedIn.urls.isEmpty && !signedIn.urls.contains { $0.contains(token) }, "\(signedIn.urls)")
        let signedOut = storage(observed, "after_sign_out")
        #expect(signedOut.session.isEmpty && signedOut.local.isEmpty && signedOut.cookie.isEmpty, "\(signedOut)")

        let errors = unexpectedConsoleErrors(observed, expectedRefusals: ["/api/v1/migrations/test-connection"])
        #expect(errors.isEmpty, "console errors: \(errors)")

        // Message by message: every selected folder exact, Drafts not copied.
        var selected = Set(corpus.folderOrder)
        selected.remove("Drafts")
        let snapshot = try await AccountSnapshot.take(destination, user: mailbox)
        let problems = snapshot.differences(from: corpus.expectedDestination(skipDuplicates: true, folders: selected))
        #expect(problems.isEmpty, "\(problems)")
        let log = service.process.stderr
        await ServeBulkTests.stop(service)
        #expect(log.contains("request") && !log.contains(token) && !log.contains(DovecotServer.password))
    }

    @Test func aBulkCSVWithBadRowsIsPreviewedStartedFixedAndRetriedToCompleted() async throws {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let accounts = try await ServeBulkTests.accounts(3, source: source, destination: destination, prefix: "web")
        let dataDir = ServeEndToEndTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        let service = try await ServeBulkTests.launch(
            destination, dataDir: dataDir, port: try DovecotServer.freePorts(1)[0])
        defer {
            service.process.kill()
            service.process.cleanUp()
        }
        let token = try await provision(service, mailboxes: accounts.destinations)

        // Lines 2–4 valid (line 4 with a wrong password), 5 an unknown destination, 6 line 2 again.
        let csv = [
            "source_email,source_password,destination_email",
            "\(accounts.sources[0]),\(DovecotServer.password),\(accounts.destinations[0])",
            "\(accounts.sources[1]),\(DovecotServer.password),\(accounts.destinations[1])",
            "\(accounts.sources[2]),not-the-password,\(accounts.destinations[2])",
            "\(accounts.sources[0]),\(DovecotServer.password),nobody@example.org",
            "\(accounts.sources[0]),\(DovecotServer.password),\(accounts.destinations[0])",
        ].joined(separator: "\n")
        let observed = try await browse(
            "bulk",
            config: [
                "base_url": "http://127.0.0.1:\(service.port)", "token": token, "csv": csv,
                "source": [
                    "host": "127.0.0.1", "port": source.imapPort, "security": "none",
                    "password": DovecotServer.password,
                ],
            ])

        let preview = try #require(observed["preview"] as? [String: Any])
        let rows = try #require(preview["rows"] as? [[String: Any]])
        #expect(rows.map { $0["line"] as? String ?? "" } == ["2", "3", "4", "5", "6"], "\(rows)")
        #expect(
            rows.map { $0["category"] as? String ?? "" }
                == ["valid", "valid", "valid", "invalid_destination", "duplicate_row"], "\(rows)")
        #expect(
            rows[3]["label"] as? String == "Unknown destination mailbox"
                && rows[4]["label"] as? String == "Duplicate row")
        let counts = try #require(preview["counts"] as? [String: String])
        #expect(
            counts["valid"] == "3" && counts["invalid_destination"] == "1" && counts["duplicate_row"] == "1",
            "\(counts)")
        let summary = preview["summary"] as? String ?? ""
        #expect(
            summary.contains("Rows per batch") && summary.contains("Storage pool") && summary.contains("Estimated time")
        )
        #expect(observed["csv_left_in_page"] as? String == "", "the CSV holds passwords and leaves the page once sent")

        let first = try #require(observed["first_end"] as? [String: Any])
        #expect(first["status"] as? String == "Completed with errors", "\(first)")
        let jobs = try #require(first["jobs"] as? [[String: Any]])
        #expect(jobs.filter { $0["status"] as? String == "failed" }.map { $0["line"] as? String } == ["4"], "\(jobs)")
        #expect(
            (jobs.first { $0["line"] as? String == "4" }?["error"] as? String)?.contains("authentication_failed")
                == true,
            "\(jobs)")
        #expect((first["actions"] as? [String])?.contains("Retry failed") == true, "\(first)")
        #expect(observed["dialog_password_left"] as? String == "")

        let second = try #require(observed["second_end"] as? [String: Any])
        #expect(second["status"] as? String == "Completed", "\(second)")
        #expect((second["jobs"] as? [[String: Any]])?.allSatisfy { $0["status"] as? String == "completed" } == true)

        for key in ["narrow_preview", "narrow_batch"] {
            let narrow = try #require(observed[key] as? [String: Any])
            #expect(
                (number(narrow["scroll"]) ?? .max) <= (number(narrow["client"]) ?? 0) && number(narrow["inner"]) == 360,
                "\(key): \(narrow)")
        }
        #expect(storage(observed, "after_sign_out").session.isEmpty)
        #expect(!storage(observed, "after").urls.contains { $0.contains(token) })
        let errors = unexpectedConsoleErrors(observed, expectedRefusals: [])
        #expect(errors.isEmpty, "console errors: \(errors)")

        for index in 0..<3 {
            let snapshot = try await AccountSnapshot.take(destination, user: accounts.destinations[index])
            for problem in snapshot.differences(from: accounts.corpora[index].expectedDestination(skipDuplicates: true))
            {
                Issue.record("\(accounts.destinations[index]): \(problem)")
            }
        }
        let log = service.process.stderr
        await ServeBulkTests.stop(service)
        #expect(log.contains("request") && !log.contains("not-the-password") && !log.contains(token))
    }

    @Test func anImportIsCancelledAndRetriedFromTheHistoryAndEndsExact() async throws {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let sourceUser = try await source.freshUser("webhist")
        let corpus = try await Corpus.fill(
            source, user: sourceUser, options: .init(scale: 1, largeAttachment: false, bodyBytes: 300...3000))
        // A slow link (4 KB/s on each of the engine's connections), so the import is still
        // running when the browser's cancel comes, however slowly Chromium starts.
        let slowLink = try await FaultInjectingProxy.start(
            upstreamPort: source.imapPort, faults: Array(repeating: .throttle(bytesPerSecond: 4_000), count: 400))
        defer { Task { await slowLink.stop() } }
        let mailbox = "\(uniqueUser("webhdst"))@example.org"
        try await destination.prepare(user: mailbox)
        let dataDir = ServeEndToEndTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        let service = try await ServeBulkTests.launch(
            destination, dataDir: dataDir, port: try DovecotServer.freePorts(1)[0])
        defer {
            service.process.kill()
            service.process.cleanUp()
        }
        let token = try await provision(service, mailboxes: [mailbox])
        let mailboxID = try #require(
            number(
                (try object(try await service.curl("GET", "/api/v1/mailboxes", token: token).body)["data"]
                    as? [[String: Any]])?
                    .first?["id"]))
        let started = try await service.curl(
            "POST", "/api/v1/migrations", token: token,
            json: """
                {"mailbox_id":\(mailboxID),"provider":"generic_imap","source_host":"127.0.0.1",\
                "source_port":\(slowLink.port),"source_security":"none","source_email":"\(sourceUser)@example.org",\
                "source_username":"\(sourceUser)","source_password":"\(DovecotServer.password)"}
                """)
        #expect(started.status == 201, "\(started.body)")
        let id = try #require(number((try object(started.body)["data"] as? [String: Any])?["id"]))

        let observed = try await browse(
            "history", config: ["base_url": "http://127.0.0.1:\(service.port)", "token": token, "migration_id": id])
        #expect(["Queued", "Preparing", "Running"].contains(observed["listed_as"] as? String ?? ""), "\(observed)")
        let cancelled = try #require(observed["cancelled"] as? [String: Any])
        #expect(cancelled["status"] as? String == "Cancelled")
        // Cancelled: Retry and Delete, no Cancel.
        #expect(cancelled["buttons"] as? [String] == ["View", "Retry", "Delete"], "\(cancelled)")
        // A cancel is the user's own doing, not an error.
        #expect(cancelled["error"] as? String == "—", "\(cancelled)")
        #expect((observed["completed_filter"] as? String)?.contains("No imports with this status") == true)
        #expect(["Queued", "Preparing", "Running", "Completed"].contains(observed["retried_as"] as? String ?? ""))
        let final = try #require(observed["final"] as? [String: Any])
        #expect(final["status"] as? String == "Completed", "\(final)")
        #expect(unexpectedConsoleErrors(observed, expectedRefusals: []).isEmpty, "\(observed["console"] ?? "")")

        // Cancelled mid-copy and retried: every message once.
        let snapshot = try await AccountSnapshot.take(destination, user: mailbox)
        let problems = snapshot.differences(from: corpus.expectedDestination(skipDuplicates: true))
        #expect(problems.isEmpty, "\(problems)")
        await ServeBulkTests.stop(service)
    }

    @Test func aNanoAccountSeesWhyMigrationsAreUnavailable() async throws {
        let destination = try await SharedServers.shared.server(.slash)
        let dataDir = ServeEndToEndTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        let service = try await ServeBulkTests.launch(
            destination, dataDir: dataDir, port: try DovecotServer.freePorts(1)[0])
        defer {
            service.process.kill()
            service.process.cleanUp()
        }
        let token = try await provision(service, plan: "nano", mailboxes: [])
        let observed = try await browse(
            "nano", config: ["base_url": "http://127.0.0.1:\(service.port)", "token": token])
        let signIn = try #require(observed["sign_in"] as? [String: Any])
        #expect(signIn["plan"] as? String == "nano")
        let notice = signIn["notice"] as? String ?? ""
        #expect(notice.contains("not available on the nano plan") && notice.contains("Starter"), "\(signIn)")
        #expect(notice.contains("migrations:write"), "the blocked scopes are named: \(notice)")
        #expect(signIn["tabs"] as? [String] == [], "\(signIn)")
        #expect(signIn["wizard_shown"] as? Bool == false)
        #expect(unexpectedConsoleErrors(observed, expectedRefusals: []).isEmpty, "\(observed["console"] ?? "")")
    }
}
