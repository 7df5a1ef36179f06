import Foundation
import Testing
import TestSupport

/// The admin commands and `db migrate` on a PostgreSQL database of the test cluster.
@Suite("mailporter on PostgreSQL (DataDirectory, db migrate)")
struct PostgresCLITests {
    let key = Data((0..<32).map { UInt8($0) }).base64EncodedString()

    func run(_ arguments: [String], url: String, key: String?) async throws -> ProcessResult {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("MAILPORTER_") }
        environment["MAILPORTER_DATA_DIR"] =
            FileManager.default.temporaryDirectory
            .appendingPathComponent("mp-pg-cli-\(UUID().uuidString)").path
        environment["MAILPORTER_DATABASE_URL"] = url
        environment["MAILPORTER_SECRET_KEY"] = key
        return try await spawnProcess(mailporterExecutable, arguments, environment: environment)
    }

    @Test func adminCommandsAndDbMigrateShareOneDatabase() async throws {
        try await withTestDatabase(.postgres) { database in
            let migrated = try await run(["db", "migrate"], url: database.url, key: key)
            #expect(migrated.status == 0, "\(migrated.stderr)")
            let line = try #require(
                try JSONSerialization.jsonObject(with: Data(migrated.stdout.utf8)) as? [String: Any])
            let versions = try #require(line["schema_versions"] as? [Int])
            #expect(!versions.isEmpty && line["applied"] as? [Int] == versions)
            let again = try await run(["db", "migrate"], url: database.url, key: key)
            #expect(again.stdout.contains(#""applied":[]"#), "\(again.stdout)")

            let created = try await run(
                ["accounts", "create", "--plan", "pro", "--email", "ops@example.com"], url: database.url, key: key)
            #expect(created.status == 0, "\(created.stderr)")
            // Another process (node) sees it in the same database.
            let listed = try await run(["accounts", "list"], url: database.url, key: key)
            #expect(listed.stdout.contains("ops@example.com"), "\(listed.stderr)")
            #expect(try database.psql("SELECT notification_email FROM accounts")?.contains("ops@example.com") == true)
        }
    }

    @Test func aRefusedLoginIsReportedWithoutThePassword() async throws {
        try await withTestDatabase(.postgres) { database in
            let server = try await SharedPostgres.shared.server()
            let wrong = database.url.replacingOccurrences(of: server.password, with: "wrong-secret-pw")
            let result = try await run(["accounts", "list"], url: wrong, key: key)
            #expect(result.status == 2)
            #expect(
                result.stderr.hasPrefix(
                    "error: database_unavailable: cannot open PostgreSQL database postgres://postgres:***@127.0.0.1:"),
                "\(result.stderr)")
            #expect(result.stderr.contains("password authentication failed"), "\(result.stderr)")
            #expect(!result.stderr.contains("wrong-secret-pw") && !result.stderr.contains("PSQLError"))
            #expect(result.stderr.split(separator: "\n").count == 1)

            let refusing = try RefusingPort()
            defer { withExtendedLifetime(refusing) {} }
            let unreachable = try await run(
                ["accounts", "list"], url: "postgres://u:hidden-pw@127.0.0.1:\(refusing.port)/db?sslmode=disable",
                key: key)
            #expect(unreachable.status == 2)
            #expect(unreachable.stderr.contains("cannot connect"), "\(unreachable.stderr)")
            #expect(!unreachable.stderr.contains("hidden-pw"))
        }
    }

    /// `serve` on PostgreSQL: the API, the runner and the admin commands (other processes) share
    /// the database, and a migration started over HTTP ends completed and exact. The server's log
    /// never holds the database password.
    @Test func serveOnPostgreSQLRunsAMigrationToCompletedAndExact() async throws {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let sourceUser = try await source.freshUser("pgsrc")
        let corpus = try await Corpus.fill(source, user: sourceUser, options: .init(largeAttachment: false))
        let mailbox = "\(uniqueUser("pgdst"))@example.org"
        try await destination.prepare(user: mailbox)
        let e2e = ServeEndToEndTests()
        try await withTestDatabase(.postgres) { database in
            let dataDir = ServeEndToEndTests.temporaryDirectory()
            let service = try ServeEndToEndTests.Service(
                dataDir: dataDir, port: try DovecotServer.freePorts(1)[0], destination: destination,
                extraEnvironment: ["MAILPORTER_DATABASE_URL": database.url, "MAILPORTER_SECRET_KEY": key])
            defer {
                service.process.kill()
                _ = service.process.poll()
                service.process.cleanUp()
            }
            try await service.waitUntilReady()
            func admin(_ arguments: [String]) async throws -> [String: Any] {
                let result = try await run(arguments, url: database.url, key: key)
                #expect(result.status == 0, "\(result.stderr)")
                return try ServeEndToEndTests.object(result.stdout)
            }
            let account = try await admin(["accounts", "create", "--plan", "pro", "--email", "ops@example.com"])
            let accountID = try #require(e2e.number(account["id"]))
            let box = try await admin(["mailboxes", "add", "--account", "\(accountID)", mailbox])
            let mailboxID = try #require(e2e.number(box["id"]))
            let created = try await admin([
                "tokens", "create", "--account", "\(accountID)", "--name", "pg",
                "--scopes", "migrations:read,migrations:write",
            ])
            let token = try #require(created["token"] as? String)

            let started = try await service.curl(
                "POST", "/api/v1/migrations", token: token,
                json: e2e.startBody(
                    sourcePort: source.imapPort, user: sourceUser, mailboxID: mailboxID, skipDuplicates: true))
            #expect(started.status == 201, "\(started.body)")
            let id = try #require(e2e.number((try e2e.object(started.body)["data"] as? [String: Any])?["id"]))
            try await e2e.expectCompletedExactly(
                service, id: id, token: token, corpus: corpus, destination: destination, mailbox: mailbox)
            let server = try await SharedPostgres.shared.server()
            #expect(!service.process.stderr.contains(server.password))
        }
    }

    @Test func aMalformedURLIsRefusedAtStart() async throws {
        let result = try await run(["accounts", "list"], url: "postgres://pw-only@/nodb", key: key)
        #expect(result.status == 2)
        #expect(result.stderr.hasPrefix("error: invalid_database_url: "), "\(result.stderr)")
    }
}
