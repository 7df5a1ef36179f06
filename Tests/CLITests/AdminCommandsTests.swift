import Foundation
import Store
import Testing
import TestSupport

@Suite("mailporter admin commands (AdminCommands)")
struct AdminCommandsTests {
    /// A fresh, not yet existing data directory under the temporary directory.
    func temporaryDataDirectory() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("mp-admin-\(UUID().uuidString)/data").path
    }

    /// Runs `mailporter` with only the data directory configured (no inherited MAILPORTER_* settings).
    func run(_ arguments: [String], dataDir: String, environment extra: [String: String] = [:]) async throws
        -> ProcessResult
    {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("MAILPORTER_") }
        environment["MAILPORTER_DATA_DIR"] = dataDir
        environment.merge(extra) { $1 }
        return try await spawnProcess(mailporterExecutable, arguments, environment: environment)
    }

    /// The single JSON object printed on standard output.
    func object(_ result: ProcessResult) throws -> [String: Any] {
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.count == 1, "\(result.stdout)")
        let parsed = try JSONSerialization.jsonObject(with: Data((lines.first ?? "").utf8)) as? [String: Any]
        return try #require(parsed, "\(result.stdout)")
    }

    func number(_ value: Any?) -> Int64? { (value as? NSNumber)?.int64Value }

    func cleanUp(_ dataDir: String) {
        try? FileManager.default.removeItem(atPath: (dataDir as NSString).deletingLastPathComponent)
    }

    func posixMode(_ path: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return (attributes[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    @Test func accountMailboxTokenRoundTrip() async throws {
        let dataDir = temporaryDataDirectory()
        defer { cleanUp(dataDir) }

        let account = try object(
            try await run(["accounts", "create", "--plan", "pro", "--email", "ops@example.com"], dataDir: dataDir))
        let accountID = try #require(number(account["id"]))
        #expect(account["plan"] as? String == "pro")
        #expect(account["notification_email"] as? String == "ops@example.com")
        let createdAt = try #require(account["created_at"] as? String)
        let created = try #require(try? Date(createdAt, strategy: .iso8601))
        #expect(abs(created.timeIntervalSinceNow) < 120)

        #expect(try posixMode(dataDir) == 0o700)
        let keyPath = (dataDir as NSString).appendingPathComponent(SecretBox.keyFileName)
        #expect(FileManager.default.fileExists(atPath: keyPath))
        #expect(try posixMode(keyPath) == 0o600)
        let databasePath = (dataDir as NSString).appendingPathComponent("mailporter.sqlite")
        #expect(try posixMode(databasePath) == 0o600)

        let mailbox = try object(
            try await run(["mailboxes", "add", "--account", "\(accountID)", "Alice@Example.com"], dataDir: dataDir))
        #expect(number(mailbox["id"]) != nil)
        #expect(number(mailbox["account_id"]) == accountID)
        #expect(mailbox["email"] as? String == "alice@example.com")

        let tokenResult = try await run(
            [
                "tokens", "create", "--account", "\(accountID)", "--name", "ci",
                "--scopes", "migrations:read,migrations:write",
            ], dataDir: dataDir)
        let token = try object(tokenResult)
        let secret = try #require(token["token"] as? String)
        #expect(secret.hasPrefix("mp_live_"))
        #expect(token["name"] as? String == "ci")
        #expect(token["scopes"] as? [String] == ["migrations:read", "migrations:write"])
        #expect(token["expires_at"] is NSNull)
        let tokenID = try #require(number(token["id"]))

        // The listing never shows the secret.
        let listed = try await run(["tokens", "list", "--account", "\(accountID)"], dataDir: dataDir)
        #expect(listed.status == 0, "\(listed.stderr)")
        #expect(listed.stdout.contains("\"name\":\"ci\""))
        #expect(!listed.stdout.contains(secret))
        let accounts = try await run(["accounts", "list"], dataDir: dataDir)
        #expect(accounts.stdout.split(separator: "\n").count == 1)

        // The token text is nowhere in the database files, only its hash.
        for suffix in ["", "-wal", "-shm"] {
            guard let bytes = FileManager.default.contents(atPath: databasePath + suffix) else { continue }
            #expect(bytes.range(of: Data(secret.utf8)) == nil, "token found in mailporter.sqlite\(suffix)")
            #expect(
                bytes.range(of: Data(secret.dropFirst(8).utf8)) == nil, "token body found in mailporter.sqlite\(suffix)"
            )
        }

        // The same database, opened through the store with the generated key, accepts the printed token.
        let secrets = try SecretBox.loadOrCreate(dataDirectory: dataDir, environmentKey: nil)
        let store = try await Store.openSQLite(path: databasePath, secrets: secrets)
        do {
            let verified = try await store.verifyToken(secret)
            #expect(verified?.id == tokenID)
            #expect(verified?.accountID == accountID)
            #expect(verified?.scopes == ["migrations:read", "migrations:write"])
            #expect(try await store.verifyToken(String(secret.dropLast()) + (secret.hasSuffix("0") ? "1" : "0")) == nil)
            #expect(try await store.mailboxes(accountID: accountID).map(\.email) == ["alice@example.com"])
        } catch {
            try? await store.close()
            throw error
        }
        try await store.close()
    }

    @Test func anAccountsNotificationAddressCanBeChanged() async throws {
        let dataDir = temporaryDataDirectory()
        defer { cleanUp(dataDir) }
        let account = try object(
            try await run(["accounts", "create", "--plan", "pro", "--email", "ops@example.com"], dataDir: dataDir))
        let id = try #require(number(account["id"]))
        let changed = try object(
            try await run(
                ["accounts", "set-email", "--account", "\(id)", "--email", "it@example.com"], dataDir: dataDir))
        #expect(changed["notification_email"] as? String == "it@example.com")
        let listed = try await run(["accounts", "list"], dataDir: dataDir)
        #expect(listed.stdout.contains("it@example.com") && !listed.stdout.contains("ops@example.com"))
        let unknown = try await run(
            ["accounts", "set-email", "--account", "999", "--email", "x@example.com"], dataDir: dataDir)
        #expect(unknown.status == 2 && unknown.stderr.hasPrefix("error: "), "\(unknown.stderr)")
        let invalid = try await run(
            ["accounts", "set-email", "--account", "\(id)", "--email", "nope"], dataDir: dataDir)
        #expect(invalid.status == 2, "\(invalid.stderr)")
    }

    @Test func failuresAreOneErrorLine() async throws {
        let dataDir = temporaryDataDirectory()
        defer { cleanUp(dataDir) }
        let account = try object(
            try await run(["accounts", "create", "--plan", "starter", "--email", "ops@example.com"], dataDir: dataDir))
        let accountID = try #require(number(account["id"]))

        let failures: [[String]] = [
            ["mailboxes", "add", "--account", "9999", "bob@example.com"],
            ["tokens", "create", "--account", "9999", "--name", "x", "--scopes", "migrations:read"],
            [
                "tokens", "create", "--account", "\(accountID)", "--name", "x", "--scopes",
                "migrations:read,migrations:admin",
            ],
            ["tokens", "create", "--account", "\(accountID)", "--name", "x", "--scopes", ","],
            [
                "tokens", "create", "--account", "\(accountID)", "--name", "x", "--scopes", "audit:read", "--expires",
                "soon",
            ],
            ["mailboxes", "add", "--account", "\(accountID)", "not-an-address"],
            ["accounts", "create", "--plan", "mega", "--email", "ops@example.com"],
            ["accounts", "create", "--plan", "pro", "--email", "ops@"],
        ]
        for arguments in failures {
            let result = try await run(arguments, dataDir: dataDir)
            #expect(result.status == 2, "\(arguments): \(result.stdout) \(result.stderr)")
            #expect(result.stdout.isEmpty, "\(arguments)")
            #expect(result.stderr.hasPrefix("error: "), "\(arguments): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(arguments): \(result.stderr)")
        }
        let unknown = try await run(failures[0], dataDir: dataDir)
        #expect(unknown.stderr.contains("account 9999"))
        let badScope = try await run(failures[2], dataDir: dataDir)
        #expect(badScope.stderr.contains("migrations:admin"))

        // Nothing was created by the failed commands.
        let tokens = try await run(["tokens", "list", "--account", "\(accountID)"], dataDir: dataDir)
        #expect(tokens.status == 0 && tokens.stdout.isEmpty, "\(tokens.stdout) \(tokens.stderr)")
    }

    @Test func mailboxesFromAFileAreReportedLineByLine() async throws {
        let dataDir = temporaryDataDirectory()
        defer { cleanUp(dataDir) }
        let account = try object(
            try await run(["accounts", "create", "--plan", "pro", "--email", "ops@example.com"], dataDir: dataDir))
        let accountID = try #require(number(account["id"]))
        _ = try object(
            try await run(["mailboxes", "add", "--account", "\(accountID)", "kept@acme.example"], dataDir: dataDir))

        let file = (dataDir as NSString).deletingLastPathComponent + "/addresses.txt"
        try FileManager.default.createDirectory(
            atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let text =
            "# the acme team\nAnna@Acme.example\n\n  ben@acme.example  \r\nkept@acme.example\nnot an address\nanna@acme.example\n"
        try text.write(toFile: file, atomically: true, encoding: .utf8)

        let result = try await run(
            ["mailboxes", "add", "--account", "\(accountID)", "--from-file", file], dataDir: dataDir)
        #expect(result.status == 1, "\(result.stderr)")
        let lines = try result.stdout.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        #expect(lines.compactMap { number($0["line"]) } == [2, 4, 5, 6, 7])
        #expect(
            lines.compactMap { $0["status"] as? String } == ["added", "added", "duplicate", "invalid", "duplicate"])
        #expect(
            lines.compactMap { $0["email"] as? String }
                == [
                    "anna@acme.example", "ben@acme.example", "kept@acme.example", "not an address", "anna@acme.example",
                ])
        #expect((lines[3]["message"] as? String)?.contains("local@domain.tld") == true)
        #expect(number(lines[0]["id"]) != nil && lines[2]["id"] == nil)

        let listed = try await run(["mailboxes", "list", "--account", "\(accountID)"], dataDir: dataDir)
        #expect(listed.stdout.split(separator: "\n").count == 3, "\(listed.stdout)")

        // Everything new: exit status 0. An unreadable file or an unknown account: one error line, status 2.
        try "# nothing but\ncleo@acme.example\n".write(toFile: file, atomically: true, encoding: .utf8)
        let clean = try await run(
            ["mailboxes", "add", "--account", "\(accountID)", "--from-file", file], dataDir: dataDir)
        #expect(clean.status == 0 && clean.stdout.contains("\"line\":2"), "\(clean.stdout) \(clean.stderr)")
        let missing = try await run(
            ["mailboxes", "add", "--account", "\(accountID)", "--from-file", file + ".none"], dataDir: dataDir)
        #expect(missing.status == 2 && missing.stderr.hasPrefix("error: ") && missing.stdout.isEmpty)
        let unknown = try await run(["mailboxes", "add", "--account", "9999", "--from-file", file], dataDir: dataDir)
        #expect(unknown.status == 2 && unknown.stderr.contains("account 9999"))
    }

    @Test func expiryIsAboutADayAhead() async throws {
        let dataDir = temporaryDataDirectory()
        defer { cleanUp(dataDir) }
        let account = try object(
            try await run(["accounts", "create", "--plan", "agency", "--email", "ops@example.com"], dataDir: dataDir))
        let accountID = try #require(number(account["id"]))
        let token = try object(
            try await run(
                [
                    "tokens", "create", "--account", "\(accountID)", "--name", "short",
                    "--scopes", "migrations:read, audit:read,migrations:read", "--expires", "1d",
                ], dataDir: dataDir))
        #expect(token["scopes"] as? [String] == ["migrations:read", "audit:read"])
        let expires = try #require(token["expires_at"] as? String)
        let date = try Date(expires, strategy: .iso8601)
        #expect(abs(date.timeIntervalSinceNow - 86_400) < 120, "\(expires)")
    }

    @Test func databaseURLAndSecretKeyFromEnvironment() async throws {
        let dataDir = temporaryDataDirectory()
        defer { cleanUp(dataDir) }
        let postgres = try await run(
            ["accounts", "list"], dataDir: dataDir,
            environment: ["MAILPORTER_DATABASE_URL": "postgres://user:pw@localhost/mailporter"])
        // Nodes sharing a PostgreSQL database must share a key: none is generated for one.
        #expect(postgres.status == 2)
        #expect(postgres.stderr.hasPrefix("error: secret_key_required: "), "\(postgres.stderr)")
        #expect(postgres.stderr.contains("same secret key") && postgres.stderr.contains("MAILPORTER_SECRET_KEY"))
        #expect(!postgres.stderr.contains("pw"))
        #expect(postgres.stderr.split(separator: "\n").count == 1)
        #expect(!FileManager.default.fileExists(atPath: dataDir))

        let parent = (dataDir as NSString).deletingLastPathComponent
        let custom = (parent as NSString).appendingPathComponent("elsewhere/custom.sqlite")
        let key = Data((0..<32).map { UInt8($0) }).base64EncodedString()
        let created = try await run(
            ["accounts", "create", "--plan", "nano", "--email", "n@example.com"], dataDir: dataDir,
            environment: ["MAILPORTER_DATABASE_URL": "sqlite://\(custom)", "MAILPORTER_SECRET_KEY": key])
        #expect(created.status == 0, "\(created.stderr)")
        #expect(FileManager.default.fileExists(atPath: custom))
        #expect(
            !FileManager.default.fileExists(atPath: (dataDir as NSString).appendingPathComponent("mailporter.sqlite")))
        #expect(
            !FileManager.default.fileExists(atPath: (dataDir as NSString).appendingPathComponent(SecretBox.keyFileName))
        )

        // --secret-key-file gives the key from a file; a wrong key cannot read what the first one sealed.
        let keyFile = (parent as NSString).appendingPathComponent("key.b64")
        try (key + "\n").write(toFile: keyFile, atomically: true, encoding: .utf8)
        let keyDir = (parent as NSString).appendingPathComponent("key-dir")
        let withKeyFile = try await run(
            ["accounts", "list", "--data-dir", keyDir, "--secret-key-file", keyFile], dataDir: dataDir)
        #expect(withKeyFile.status == 0, "\(withKeyFile.stderr)")
        #expect(
            !FileManager.default.fileExists(atPath: (keyDir as NSString).appendingPathComponent(SecretBox.keyFileName)))
        let missingKeyFile = try await run(
            ["accounts", "list", "--data-dir", keyDir, "--secret-key-file", keyFile + ".nope"], dataDir: dataDir)
        #expect(missingKeyFile.status == 2)
        #expect(missingKeyFile.stderr.contains("secret_key_unusable"))

        // --data-dir wins over the environment.
        let flagDir = (parent as NSString).appendingPathComponent("flag-dir")
        let viaFlag = try await run(["accounts", "list", "--data-dir", flagDir], dataDir: dataDir)
        #expect(viaFlag.status == 0, "\(viaFlag.stderr)")
        #expect(
            FileManager.default.fileExists(atPath: (flagDir as NSString).appendingPathComponent("mailporter.sqlite")))
    }
}
