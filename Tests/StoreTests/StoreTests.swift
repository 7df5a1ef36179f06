import Foundation
import MigrationEngine
import SQLKit
@testable import Store
import TestSupport
import Testing

/// A scratch directory removed at the end of the test.
private func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let path = NSTemporaryDirectory() + "mailporter-store-tests-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}

private func newMigration(
    account: Int64, mailbox: Int64, batch: Int64? = nil, email: String = "jane@gmail.com",
    password: String = "s3cret, \"quoted\" pässword",
    target: String? = "target-pw"
) -> NewMigration {
    NewMigration(
        accountID: account, mailboxID: mailbox, batchID: batch, provider: "gmail",
        sourceHost: "imap.gmail.com", sourcePort: 993, sourceSecurity: "ssl", sourceEmail: email,
        sourcePassword: password, targetPassword: target, selectedFolders: ["INBOX", "Sent"],
        importSince: "2024-01-31", skipDuplicates: true)
}

/// An account with one mailbox.
private func makeAccount(_ store: Store, plan: Plan = .pro, mailbox: String = "user@example.com")
    async throws -> (Account, Mailbox)
{
    let account = try await store.createAccount(plan: plan, notificationEmail: "ops@example.com")
    let box = try await store.addMailbox(accountID: account.id, email: mailbox)
    return (account, box)
}

@Suite struct SchemaTests {
    @Test func aNewSQLiteDatabaseIsMadeInItsDirectoryInWALMode() async throws {
        try await withTemporaryDirectory { dir in
            let store = try await Store.openSQLite(path: dir + "/data/mailporter.sqlite", secrets: .random())
            let mode = try await store.database.raw("PRAGMA journal_mode").first()?
                .decode(column: "journal_mode", as: String.self)
            #expect(mode == "wal")
            try await store.close()
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func migrationsApplyOnceAndAgainWithoutError(_ backend: StoreBackend) async throws {
        try await withTestDatabase(backend) { database in
            let first = try await database.open()
            #expect(try await first.schemaVersions() == Schema.migrations.map(\.version))
            #expect(try await first.migrateSchema().isEmpty)
            let account = try await first.createAccount(plan: .starter, notificationEmail: "a@example.com")
            try await first.close()

            let second = try await database.open()
            #expect(try await second.schemaVersions() == Schema.migrations.map(\.version))
            #expect(try await second.account(id: account.id) == account)
            try await second.close()
        }
    }

    /// Nodes start together: each applies the schema under the migrators' advisory lock, none
    /// fails, and every version is applied once. (PostgreSQL: nodes share a database only there.)
    @Test func storesOpeningAFreshPostgreSQLDatabaseAtOnceAllSucceed() async throws {
        try await withTestDatabase(.postgres) { database in
            let stores = try await withThrowingTaskGroup(of: Store.self) { group in
                for _ in 0..<4 { group.addTask { try await database.open() } }
                var stores: [Store] = []
                for try await store in group { stores.append(store) }
                return stores
            }
            for store in stores {
                #expect(try await store.schemaVersions() == Schema.migrations.map(\.version))
            }
            let rows = try await stores[0].database.raw("SELECT COUNT(*) AS n FROM schema_migrations").first()
            #expect(try rows?.decode(column: "n", as: Int.self) == Schema.migrations.count)
            for store in stores { try await store.close() }
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func aNewVersionIsAppliedOnTopOnTheNextStart(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let extra = SchemaMigration(version: 999, name: "test") { _ in
                ["CREATE TABLE schema_test (id INTEGER)"]
            }
            let applied = try await Schema.migrate(store.database, migrations: Schema.migrations + [extra])
            #expect(applied == [999])
            #expect(try await Schema.migrate(store.database, migrations: Schema.migrations + [extra]).isEmpty)
            #expect(try await store.schemaVersions().last == 999)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func aFailingVersionIsRolledBackAndNotRecorded(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let broken = SchemaMigration(version: 998, name: "broken") { _ in
                ["CREATE TABLE half_done (id INTEGER)", "THIS IS NOT SQL"]
            }
            await #expect(throws: (any Error).self) {
                try await Schema.migrate(store.database, migrations: Schema.migrations + [broken])
            }
            let versions = try await store.schemaVersions()
            #expect(versions == Schema.migrations.map(\.version))
            // The table the broken version made first is gone with it.
            await #expect(throws: (any Error).self) {
                try await store.database.raw("SELECT COUNT(*) AS n FROM half_done").run()
            }
        }
    }

    @Test func theOneActiveSingleMigrationIndexCoversExactlyTheActiveStatuses() async throws {
        // v1's index is frozen SQL (the same on both databases; SQLite keeps its text as written);
        // if the active statuses change, a new schema version must rebuild it.
        try await withStore(.sqlite) { store in
            let row = try #require(
                try await store.database.raw(
                    "SELECT sql FROM sqlite_master WHERE name = 'migrations_one_active_single'"
                ).first())
            let sql = try row.decode(column: "sql", as: String.self)
            let list = try #require(sql.range(of: "status IN (").map { sql[$0.upperBound...].prefix { $0 != ")" } })
            let statuses = list.split(separator: ",").map {
                $0.trimmingCharacters(in: CharacterSet(charactersIn: "' "))
            }
            #expect(statuses == MigrationStatus.active.map(\.rawValue))
        }
    }
}

@Suite struct AccountAndTokenTests {
    @Test(arguments: StoreBackend.allCases)
    func accountsMailboxesAndTokens(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let now = Date(timeIntervalSince1970: 1_700_000_000)
            let account = try await store.createAccount(plan: .pro, notificationEmail: " ops@example.com ", now: now)
            #expect(account.plan == .pro)
            #expect(account.notificationEmail == "ops@example.com")
            #expect(try await store.account(id: account.id) == account)
            #expect(try await store.account(id: 9999) == nil)

            let box = try await store.addMailbox(accountID: account.id, email: " Alice@Example.COM")
            #expect(box.email == "alice@example.com")
            await #expect(throws: StoreError.duplicate("mailbox alice@example.com")) {
                try await store.addMailbox(accountID: account.id, email: "alice@example.com")
            }
            await #expect(throws: StoreError.notFound) {
                try await store.addMailbox(accountID: 9999, email: "x@example.com")
            }
            let other = try await store.createAccount(plan: .starter, notificationEmail: "b@example.com")
            // The same address in another account is fine, and invisible from the first.
            let otherBox = try await store.addMailbox(accountID: other.id, email: "alice@example.com")
            #expect(try await store.mailboxes(accountID: account.id) == [box])
            #expect(try await store.mailbox(id: otherBox.id, accountID: account.id) == nil)
            #expect(try await store.mailbox(email: "ALICE@example.com", accountID: account.id) == box)

            let (token, record) = try await store.createToken(
                accountID: account.id, name: "ci", scopes: [.migrationsRead, .migrationsWrite], now: now)
            #expect(token.hasPrefix("mp_live_"))
            #expect(token.count == "mp_live_".count + 64)
            #expect(record.prefix == String(token.prefix(12)))
            #expect(record.lastUsedAt == nil)

            // Only the hash is stored.
            let raw = try #require(
                try await store.database.raw(
                    "SELECT token_hash FROM api_tokens WHERE id = \(bind: record.id)"
                ).first())
            let storedHash = try raw.decode(column: "token_hash", as: String.self)
            #expect(storedHash == Tokens.hash(token))
            #expect(!storedHash.contains(token.dropFirst(8)))

            let used = try #require(try await store.verifyToken(token, ip: "203.0.113.9", now: now + 5))
            #expect(used.id == record.id)
            #expect(used.scopes == ["migrations:read", "migrations:write"])
            #expect(used.hasScope(.migrationsWrite))
            #expect(used.lastUsedAt == now + 5)
            #expect(used.lastUsedIP == "203.0.113.9")

            // Wrong tokens: another random one, a tampered one, garbage.
            #expect(try await store.verifyToken(Tokens.generate().token) == nil)
            var tampered = Array(token)
            tampered[tampered.count - 1] = tampered.last == "a" ? "b" : "a"
            #expect(try await store.verifyToken(String(tampered)) == nil)
            #expect(try await store.verifyToken("") == nil)
            #expect(try await store.verifyToken("Bearer " + token) == nil)

            // Expiry.
            let (expiring, _) = try await store.createToken(
                accountID: account.id, name: "short", scopes: [.migrationsRead], expiresAt: now + 60, now: now)
            #expect(try await store.verifyToken(expiring, now: now + 59) != nil)
            #expect(try await store.verifyToken(expiring, now: now + 60) == nil)
            #expect(try await store.verifyToken(expiring, now: now + 3600) == nil)

            #expect(try await store.tokens(accountID: account.id).count == 2)
            #expect(try await store.revokeToken(id: record.id, accountID: other.id) == false)
            #expect(try await store.revokeToken(id: record.id, accountID: account.id))
            #expect(try await store.verifyToken(token) == nil)
        }
    }
}

@Suite struct SecretTests {
    @Test(arguments: StoreBackend.allCases)
    func passwordsAreEncryptedAtRestAndNeverInTheRecord(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let (account, box) = try await makeAccount(store)
            let password = "s3cret, \"quoted\" pässword"
            let record = try await store.createMigration(
                newMigration(
                    account: account.id, mailbox: box.id,
                    password: password, target: "target-pw"))
            #expect(record.status == .pending)
            #expect(record.hasTargetPassword)
            #expect(record.mailboxEmail == "user@example.com")
            #expect(record.selectedFolders == ["INBOX", "Sent"])
            #expect(record.importSince == "2024-01-31")
            #expect(record.sourceUsername == "jane@gmail.com")
            #expect(!String(describing: record).contains(password))

            let row = try #require(
                try await store.database.raw(
                    """
                    SELECT source_password_enc, target_password_enc FROM migrations WHERE id = \(bind: record.id)
                    """
                ).first())
            let sourceColumn = try row.decode(column: "source_password_enc", as: String.self)
            let targetColumn = try row.decode(column: "target_password_enc", as: String.self)
            #expect(sourceColumn != password)
            #expect(!sourceColumn.contains("s3cret"))
            #expect(targetColumn != "target-pw")
            // nonce (12) + ciphertext + tag (16), base64.
            #expect(Data(base64Encoded: sourceColumn)?.count == 12 + password.utf8.count + 16)
            #expect(try store.secrets.open(sourceColumn) == password)
            #expect(try store.secrets.open(targetColumn) == "target-pw")

            let credentials = try #require(try await store.credentials(forMigration: record.id))
            #expect(credentials.sourcePassword == password)
            #expect(credentials.targetPassword == "target-pw")
            #expect(!String(describing: credentials).contains(password))

            // The same plaintext seals differently each time (fresh nonce).
            #expect(try store.secrets.seal(password) != store.secrets.seal(password))
            // Another key cannot open it.
            #expect(throws: SecretBox.Failure.cannotOpen) { try SecretBox.random().open(sourceColumn) }
        }
    }

    @Test func keyFromEnvironmentOrFile() throws {
        let hexKey = String(repeating: "0f", count: 32)
        let fromHex = try SecretBox.loadOrCreate(dataDirectory: "/nonexistent/never/created", environmentKey: hexKey)
        let fromBase64 = try SecretBox(encodedKey: Data(repeating: 0x0f, count: 32).base64EncodedString())
        #expect(try fromBase64.open(fromHex.seal("x")) == "x")
        #expect(!FileManager.default.fileExists(atPath: "/nonexistent/never/created"))
        #expect(throws: SecretBox.Failure.self) { try SecretBox(encodedKey: "too-short") }
        #expect(throws: SecretBox.Failure.self) { try SecretBox(encodedKey: String(repeating: "ab", count: 16)) }
        #expect(!String(describing: fromHex).contains("0f0f"))

        let dir = NSTemporaryDirectory() + "mailporter-key-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let created = try SecretBox.loadOrCreate(dataDirectory: dir, environmentKey: nil)
        let keyPath = dir + "/" + SecretBox.keyFileName
        let attributes = try FileManager.default.attributesOfItem(atPath: keyPath)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let sealed = try created.seal("hello")
        let reloaded = try SecretBox.loadOrCreate(dataDirectory: dir, environmentKey: "")
        #expect(try reloaded.open(sealed) == "hello")
        // The environment wins over the file.
        let overridden = try SecretBox.loadOrCreate(dataDirectory: dir, environmentKey: hexKey)
        #expect(throws: SecretBox.Failure.cannotOpen) { try overridden.open(sealed) }
    }
}

@Suite struct MigrationRecordTests {
    @Test(arguments: StoreBackend.allCases)
    func paginationAndFilters(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let (account, box) = try await makeAccount(store, plan: .agency)
            let second = try await store.addMailbox(accountID: account.id, email: "second@example.com")
            for index in 0..<45 {
                _ = try await store.createMigration(
                    newMigration(
                        account: account.id, mailbox: index < 30 ? box.id : second.id, batch: 1,
                        email: "u\(index)@gmail.com"))
            }
            let (other, otherBox) = try await makeAccount(store)
            _ = try await store.createMigration(newMigration(account: other.id, mailbox: otherBox.id))

            let first = try await store.listMigrations(accountID: account.id)
            #expect(first.total == 45)
            #expect(first.perPage == 20)
            #expect(first.page == 1)
            #expect(first.lastPage == 3)
            #expect(first.items.count == 20)
            #expect(first.items.first?.sourceEmail == "u44@gmail.com")  // newest first

            let third = try await store.listMigrations(accountID: account.id, page: PageRequest(page: 3, perPage: 20))
            #expect(third.items.count == 5)
            #expect(third.items.last?.sourceEmail == "u0@gmail.com")
            let beyond = try await store.listMigrations(accountID: account.id, page: PageRequest(page: 9))
            #expect(beyond.items.isEmpty)
            #expect(beyond.total == 45)

            let all = try await store.listMigrations(accountID: account.id, page: PageRequest(page: 1, perPage: 100))
            #expect(Set(all.items.map(\.id)).count == 45)

            let bySecond = try await store.listMigrations(accountID: account.id, mailboxID: second.id)
            #expect(bySecond.total == 15)
            #expect(bySecond.items.allSatisfy { $0.mailboxEmail == "second@example.com" })

            let target = all.items[0].id
            _ = try await store.cancelMigration(id: target, accountID: account.id)
            let cancelled = try await store.listMigrations(accountID: account.id, status: .cancelled)
            #expect(cancelled.total == 1)
            #expect(cancelled.items.map(\.id) == [target])
            #expect(try await store.listMigrations(accountID: account.id, status: .pending).total == 44)
            #expect(try await store.listMigrations(accountID: account.id, status: .completed).total == 0)
            #expect(try await store.listMigrations(accountID: account.id, status: .completed).lastPage == 1)
        }
    }

    @Test func pageRequestClampsAndPageMath() {
        #expect(PageRequest() == PageRequest(page: 1, perPage: 20))
        #expect(PageRequest(page: 0, perPage: 0) == PageRequest(page: 1, perPage: 1))
        #expect(PageRequest(page: -4, perPage: 500).perPage == 100)
        #expect(PageRequest(page: 3, perPage: 20).offset == 40)
        #expect(PageRequest(page: Int.max, perPage: 100).offset > 0)
        #expect(Page<Int>.lastPage(total: 0, perPage: 20) == 1)
        #expect(Page<Int>.lastPage(total: 20, perPage: 20) == 1)
        #expect(Page<Int>.lastPage(total: 21, perPage: 20) == 2)
        #expect(Page<Int>.lastPage(total: 100, perPage: 7) == 15)
    }

    @Test func statusRules() {
        #expect(MigrationStatus.active == [.pending, .validating, .planning, .processing])
        #expect(MigrationStatus.allCases.filter(\.isTerminal) == [.completed, .failed, .cancelled])
        #expect(MigrationStatus.allCases.allSatisfy { $0.isActive != $0.isTerminal })
        #expect(MigrationStatus.pending.pollHintSeconds == 5)
        #expect(MigrationStatus.processing.pollHintSeconds == 10)
        #expect(MigrationStatus.failed.pollHintSeconds == nil)
        #expect(MigrationStatus.pending.label == "Queued")
        #expect(MigrationStatus.planning.label == "Preparing")
    }

    @Test(arguments: StoreBackend.allCases)
    func oneActiveSingleMigrationPerAccountAndTheLifecycle(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let (account, box) = try await makeAccount(store)
            let (other, _) = try await makeAccount(store)
            let first = try await store.createMigration(newMigration(account: account.id, mailbox: box.id))
            #expect(try await store.activeSingleMigrationCount(accountID: account.id) == 1)
            await #expect(throws: StoreError.activeMigrationExists) {
                try await store.createMigration(newMigration(account: account.id, mailbox: box.id))
            }
            // Bulk jobs are not single migrations.
            let job = try await store.createMigration(newMigration(account: account.id, mailbox: box.id, batch: 7))
            #expect(job.batchID == 7)
            // A mailbox of another account is not found.
            await #expect(throws: StoreError.notFound) {
                try await store.createMigration(newMigration(account: other.id, mailbox: box.id))
            }
            // Other accounts see nothing.
            #expect(try await store.migration(id: first.id, accountID: other.id) == nil)
            await #expect(throws: StoreError.notFound) {
                try await store.cancelMigration(id: first.id, accountID: other.id)
            }

            // Active: no delete, no retry.
            await #expect(throws: StoreError.invalidStatus(.pending)) {
                try await store.deleteMigration(id: first.id, accountID: account.id)
            }
            await #expect(throws: StoreError.invalidStatus(.pending)) {
                try await store.retryMigration(id: first.id, accountID: account.id)
            }

            // A runner takes it, walks it, and a cancel wins over the runner.
            let claimed = try #require(try await store.claimPendingMigration(owner: "runner-a", leaseSeconds: 30))
            #expect(claimed.id == first.id)
            #expect(claimed.status == .validating)
            #expect(claimed.startedAt != nil)
            #expect(
                try await store.updateStatus(try await store.lease(first.id, heldBy: "runner-b"), to: .planning)
                    == false)
            #expect(try await store.updateStatus(try await store.lease(first.id, heldBy: "runner-a"), to: .planning))
            #expect(
                try await store.updateProgress(
                    try await store.lease(first.id, heldBy: "runner-a"),
                    totals: MigrationTotals(total: 10, imported: 4, skipped: 1),
                    folders: [
                        FolderProgress(
                            sourceName: "INBOX", destinationName: "INBOX", status: .processing,
                            expected: 8, imported: 4, skipped: 1),
                        FolderProgress(sourceName: "INBOX.Sent", destinationName: "Sent", expected: 2),
                    ]))
            var current = try #require(try await store.migration(id: first.id, accountID: account.id))
            #expect(current.progress == 50)
            #expect(current.folders.map(\.destinationName) == ["INBOX", "Sent"])
            #expect(current.folders[0].imported == 4)

            let cancelled = try await store.cancelMigration(id: first.id, accountID: account.id)
            #expect(cancelled.status == .cancelled)
            #expect(cancelled.finishedAt != nil)
            #expect(
                try await store.renewLease(try await store.lease(first.id, heldBy: "runner-a"), leaseSeconds: 30)
                    == .cancelled)
            #expect(
                try await store.updateStatus(try await store.lease(first.id, heldBy: "runner-a"), to: .completed)
                    == false)
            #expect(try await store.activeSingleMigrationCount(accountID: account.id) == 0)

            // Retry: back to pending, progress reset, but not claimable while runner-a still holds it.
            let retried = try await store.retryMigration(id: first.id, accountID: account.id)
            #expect(retried.status == .pending)
            #expect(retried.totalMessages == 0 && retried.folders.isEmpty && retried.finishedAt == nil)
            // runner-a, not yet aware of the cancel, cannot pull the retried migration out of pending.
            #expect(
                try await store.updateStatus(try await store.lease(first.id, heldBy: "runner-a"), to: .processing)
                    == false)
            #expect(try await store.migration(id: first.id)?.status == .pending)
            #expect(try await store.claimPendingMigration(owner: "runner-b", leaseSeconds: 30)?.id == job.id)
            #expect(try await store.claimPendingMigration(owner: "runner-b", leaseSeconds: 30) == nil)
            #expect(try await store.releaseLease(try await store.lease(first.id, heldBy: "runner-a")))
            #expect(try await store.claimPendingMigration(owner: "runner-b", leaseSeconds: 30)?.id == first.id)

            // Failure with a classified error, then delete wipes it all.
            #expect(
                try await store.updateStatus(
                    try await store.lease(first.id, heldBy: "runner-b"), to: .failed,
                    error: MigrationError(code: "authentication_failed", message: "no", hint: "use an app password")))
            current = try #require(try await store.migration(id: first.id))
            #expect(current.status == .failed)
            #expect(current.error?.code == "authentication_failed")
            #expect(current.error?.hint == "use an app password")
            try await store.saveCheckpoint(
                FolderCheckpoint(sourceUIDValidity: 1), migrationID: first.id,
                folder: "INBOX")
            try await store.deleteMigration(id: first.id, accountID: account.id)
            #expect(try await store.migration(id: first.id) == nil)
            #expect(try await store.credentials(forMigration: first.id) == nil)
            #expect(try await store.checkpoints(migrationID: first.id).isEmpty)
            await #expect(throws: StoreError.notFound) {
                try await store.deleteMigration(id: first.id, accountID: account.id)
            }
        }
    }
}

@Suite struct TransitionTests {
    /// SPEC.md §4 written out: the statuses each move may leave from, and where it goes.
    static let spec: [MigrationTransition: (from: Set<MigrationStatus>, to: [MigrationStatus])] = [
        // pending → validating → planning → processing → completed | failed, by the runner.
        .claim: ([.pending], [.validating]),
        .takeOver: ([.validating, .planning, .processing], [.validating]),
        .advance: ([.validating, .planning, .processing], [.planning, .processing, .completed, .failed]),
        .requeue: ([.validating, .planning, .processing], [.pending]),
        // cancel only from an active status; retry only from failed or cancelled; delete not while active.
        .cancel: ([.pending, .validating, .planning, .processing], [.cancelled]),
        .retry: ([.failed, .cancelled], [.pending]),
        // a delta pass only of a completed migration.
        .sync: ([.completed], [.pending]),
        .delete: ([.completed, .failed, .cancelled], []),
    ]

    @Test(arguments: MigrationTransition.allCases)
    func everyStatusAsTheSpecSays(_ transition: MigrationTransition) throws {
        let expected = try #require(Self.spec[transition])
        for status in MigrationStatus.allCases {
            #expect(transition.allows(from: status) == expected.from.contains(status), "\(transition) from \(status)")
        }
        #expect(transition.to == expected.to)
    }

    @Test func retryableIsTheRetryRule() {
        #expect(MigrationStatus.allCases.filter(\.isRetryable) == [.failed, .cancelled])
    }

    /// The store's SQL, generated from the table, for a migration in `status`: each move happens
    /// exactly when the table allows it, and a refused one leaves the migration as it was.
    @Test(arguments: StoreBackend.allCases, MigrationStatus.allCases)
    func theStoreMovesAMigrationOnlyAsTheTableSays(_ backend: StoreBackend, _ status: MigrationStatus) async throws {
        try await withStore(backend) { store in
            func migration(leasedTo owner: String? = nil) async throws -> MigrationRecord {
                let (account, box) = try await makeAccount(store)
                let record = try await store.createMigration(newMigration(account: account.id, mailbox: box.id))
                let leaseEnd: Int64? = owner == nil ? nil : Date().addingTimeInterval(3600).storeMillis
                try await store.database.raw(
                    """
                    UPDATE migrations SET status = \(bind: status.rawValue), lease_owner = \(bind: owner),
                        lease_expires_at = \(bind: leaseEnd)
                    WHERE id = \(bind: record.id)
                    """
                ).run()
                return record
            }
            func current(_ record: MigrationRecord) async throws -> MigrationStatus? {
                try await store.migration(id: record.id)?.status
            }

            // Claim first, while this is the only migration in the store.
            let unheld = try await migration()
            let claimed = try await store.claimPendingMigration(owner: "runner-c", leaseSeconds: 30)
            let claimable =
                MigrationTransition.claim.allows(from: status)
                || MigrationTransition.takeOver.allows(from: status)
            #expect(claimed?.id == (claimable ? unheld.id : nil))
            #expect(try await current(unheld) == (claimable ? .validating : status))

            let cancelled = try await migration()
            if MigrationTransition.cancel.allows(from: status) {
                let record = try await store.cancelMigration(id: cancelled.id, accountID: cancelled.accountID)
                #expect(record.status == .cancelled)
            } else {
                await #expect(throws: StoreError.invalidStatus(status)) {
                    try await store.cancelMigration(id: cancelled.id, accountID: cancelled.accountID)
                }
                #expect(try await current(cancelled) == status)
            }

            let retried = try await migration()
            if MigrationTransition.retry.allows(from: status) {
                #expect(try await store.retryMigration(id: retried.id, accountID: retried.accountID).status == .pending)
            } else {
                await #expect(throws: StoreError.invalidStatus(status)) {
                    try await store.retryMigration(id: retried.id, accountID: retried.accountID)
                }
                #expect(try await current(retried) == status)
            }

            let synced = try await migration()
            if MigrationTransition.sync.allows(from: status) {
                let record = try await store.syncMigration(
                    id: synced.id, accountID: synced.accountID, syncDeletions: true)
                #expect(record.status == .pending)
                #expect(record.syncDeletions)
            } else {
                await #expect(throws: StoreError.invalidStatus(status)) {
                    try await store.syncMigration(id: synced.id, accountID: synced.accountID, syncDeletions: true)
                }
                #expect(try await current(synced) == status)
            }

            let deleted = try await migration()
            if MigrationTransition.delete.allows(from: status) {
                try await store.deleteMigration(id: deleted.id, accountID: deleted.accountID)
                #expect(try await current(deleted) == nil)
            } else {
                await #expect(throws: StoreError.invalidStatus(status)) {
                    try await store.deleteMigration(id: deleted.id, accountID: deleted.accountID)
                }
                #expect(try await current(deleted) == status)
            }

            let advanced = try await migration(leasedTo: "runner-a")
            let advances = MigrationTransition.advance.allows(from: status)
            #expect(
                try await store.updateStatus(try await store.lease(advanced.id, heldBy: "runner-a"), to: .processing)
                    == advances)
            #expect(try await current(advanced) == (advances ? .processing : status))

            let requeued = try await migration(leasedTo: "runner-a")
            #expect(try await store.releaseLease(try await store.lease(requeued.id, heldBy: "runner-a"), requeue: true))
            #expect(
                try await current(requeued) == (MigrationTransition.requeue.allows(from: status) ? .pending : status))
        }
    }
}

@Suite struct TransactionTests {
    private struct Abandon: Error {}

    /// Begins `body` as a transaction in a task of its own; returns once the transaction is open.
    private func begun(
        _ store: Store, _ body: @escaping @Sendable (any SQLDatabase) async throws -> Void
    ) async -> Task<Void, any Error> {
        let (opened, signal) = AsyncStream.makeStream(of: Void.self)
        let task = Task {
            try await store.transaction { db in
                signal.yield()
                try await body(db)
            }
        }
        for await _ in opened { break }
        return task
    }

    private static func setInsideAddress(_ account: Int64, _ db: any SQLDatabase) async throws {
        try await db.raw("UPDATE accounts SET notification_email = 'inside@example.com' WHERE id = \(bind: account)")
            .run()
    }

    @Test(arguments: StoreBackend.allCases)
    func anotherTasksStatementIsNotRolledBackWithATransaction(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let (account, _) = try await makeAccount(store)
            let transaction = await begun(store) { db in
                try await Self.setInsideAddress(account.id, db)
                try await Task.sleep(for: .milliseconds(300))
                throw Abandon()
            }
            // Sent while the transaction is open, on the same connection.
            try await store.setPlan(accountID: account.id, plan: .agency)
            #expect(await transaction.result.isFailure)
            let after = try #require(try await store.account(id: account.id))
            #expect(after.notificationEmail == "ops@example.com")
            #expect(after.plan == .agency)
        }
    }

    /// A runner's job ends and its progress tick is cancelled between BEGIN and COMMIT: the
    /// transaction still ends (here it commits), and the store's next transactions work. Run in the
    /// caller's task, the cancelled COMMIT and ROLLBACK were refused on SQLite, the transaction stayed
    /// open on the connection, and every later one failed ("cannot start a transaction within a
    /// transaction"): the runner stalled.
    @Test(arguments: StoreBackend.allCases)
    func aTransactionWhoseCallerIsCancelledStillEndsAndTheNextOnesWork(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let (account, _) = try await makeAccount(store)
            let caller = await begun(store) { db in
                try await Task.sleep(for: .milliseconds(200))
                try await Self.setInsideAddress(account.id, db)
            }
            caller.cancel()
            _ = await caller.result
            try await store.setPlan(accountID: account.id, plan: .agency)
            for plan in [Plan.starter, .pro] {
                _ = try await store.transaction { db in
                    try await db.raw("UPDATE accounts SET plan = \(bind: plan.rawValue) WHERE id = \(bind: account.id)")
                        .run()
                }
            }
            let after = try #require(try await store.account(id: account.id))
            #expect(after.notificationEmail == "inside@example.com")
            #expect(after.plan == .pro)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func aRetryThatCannotFinishChangesNothing(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let (account, box) = try await makeAccount(store)
            let record = try await store.createMigration(newMigration(account: account.id, mailbox: box.id))
            _ = try #require(try await store.claimPendingMigration(owner: "runner-a", leaseSeconds: 30))
            #expect(
                try await store.updateProgress(
                    try await store.lease(record.id, heldBy: "runner-a"),
                    totals: MigrationTotals(total: 5, imported: 2),
                    folders: [FolderProgress(sourceName: "INBOX", destinationName: "INBOX", expected: 5, imported: 2)]))
            #expect(
                try await store.updateStatus(
                    try await store.lease(record.id, heldBy: "runner-a"), to: .failed,
                    error: MigrationError(code: "authentication_failed", message: "no", hint: nil)))
            // The second half of the retry (clearing the folder rows) fails.
            switch backend {
            case .sqlite:
                try await store.database.raw(
                    """
                    CREATE TRIGGER keep_folders BEFORE DELETE ON migration_folders
                    BEGIN SELECT RAISE(ABORT, 'folder rows are kept'); END
                    """
                ).run()
            case .postgres:
                try await store.database.raw(
                    """
                    CREATE FUNCTION keep_folders() RETURNS trigger LANGUAGE plpgsql
                    AS 'BEGIN RAISE EXCEPTION ''folder rows are kept''; END'
                    """
                ).run()
                try await store.database.raw(
                    """
                    CREATE TRIGGER keep_folders BEFORE DELETE ON migration_folders
                    FOR EACH ROW EXECUTE FUNCTION keep_folders()
                    """
                ).run()
            }
            await #expect(throws: (any Error).self) {
                try await store.retryMigration(id: record.id, accountID: account.id)
            }
            let after = try #require(try await store.migration(id: record.id))
            #expect(after.status == .failed)
            #expect(after.error?.code == "authentication_failed")
            #expect(after.importedMessages == 2)
            #expect(after.folders.map(\.sourceName) == ["INBOX"])
        }
    }
}

extension Result {
    fileprivate var isFailure: Bool {
        if case .failure = self { return true }
        return false
    }
}

@Suite struct ClaimTests {
    @Test(arguments: StoreBackend.allCases)
    func concurrentClaimersNeverTakeTheSameMigration(_ backend: StoreBackend) async throws {
        try await withTestDatabase(backend) { database in
            let storeA = try await database.open()
            let storeB = try await database.open()
            var expected: Set<Int64> = []
            for index in 0..<24 {
                let (account, box) = try await makeAccount(storeA, mailbox: "u\(index)@example.com")
                expected.insert(try await storeA.createMigration(newMigration(account: account.id, mailbox: box.id)).id)
            }
            let claims = try await withThrowingTaskGroup(of: [Int64].self) { group in
                for claimer in 0..<6 {
                    let store = claimer.isMultiple(of: 2) ? storeA : storeB
                    group.addTask {
                        var mine: [Int64] = []
                        while let claimed = try await store.claimPendingMigration(
                            owner: "runner-\(claimer)", leaseSeconds: 60)
                        {
                            #expect(claimed.leaseOwner == "runner-\(claimer)")
                            mine.append(claimed.id)
                        }
                        return mine
                    }
                }
                var all: [Int64] = []
                for try await ids in group { all += ids }
                return all
            }
            #expect(claims.count == 24)
            #expect(Set(claims) == expected)
            #expect(try await storeB.runningCount() == 24)
            try await storeA.close()
            try await storeB.close()
        }
    }

    /// Nodes claiming at once, several claimers each: the global limit and a plan's limit of bulk
    /// jobs hold exactly, counted over rows the other claimers are changing at that moment.
    @Test(arguments: StoreBackend.allCases)
    func limitsHoldExactlyWithManyClaimersAtOnce(_ backend: StoreBackend) async throws {
        try await withTestDatabase(backend) { database in
            var stores: [Store] = []
            for _ in 0..<3 { stores.append(try await database.open()) }
            for index in 0..<30 {
                let (account, box) = try await makeAccount(stores[0], mailbox: "l\(index)@example.com")
                _ = try await stores[0].createMigration(newMigration(account: account.id, mailbox: box.id))
            }
            let (starter, box) = try await makeAccount(stores[0], plan: .starter, mailbox: "bulk@example.com")
            for _ in 0..<8 {
                _ = try await stores[0].createMigration(newMigration(account: starter.id, mailbox: box.id, batch: 5))
            }
            let limit = 7
            func claimAll(maxRunning: Int?) async throws -> [MigrationRecord] {
                try await withThrowingTaskGroup(of: [MigrationRecord].self) { group in
                    for claimer in 0..<12 {
                        let store = stores[claimer % stores.count]
                        group.addTask {
                            var mine: [MigrationRecord] = []
                            while let claimed = try await store.claimPendingMigration(
                                owner: "node-\(claimer)", leaseSeconds: 600, maxRunning: maxRunning)
                            {
                                mine.append(claimed)
                            }
                            return mine
                        }
                    }
                    return try await group.reduce(into: []) { $0 += $1 }
                }
            }
            let underGlobalLimit = try await claimAll(maxRunning: limit)
            #expect(underGlobalLimit.count == limit)
            #expect(try await stores[1].runningCount() == limit)
            // No global limit now: everything else is claimed, the starter's batch two at a time.
            let rest = try await claimAll(maxRunning: nil)
            #expect(rest.filter { $0.batchID != nil }.count == Plan.starter.maxConcurrentBulkJobs)
            #expect(Set((underGlobalLimit + rest).map(\.id)).count == underGlobalLimit.count + rest.count)
            for store in stores { try await store.close() }
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func limitsAndExpiredLeases(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let now = Date(timeIntervalSince1970: 1_800_000_000)
            // The global limit.
            var ids: [Int64] = []
            for index in 0..<3 {
                let (account, box) = try await makeAccount(store, mailbox: "g\(index)@example.com")
                ids.append(try await store.createMigration(newMigration(account: account.id, mailbox: box.id)).id)
            }
            #expect(
                try await store.claimPendingMigration(owner: "a", leaseSeconds: 30, maxRunning: 2, now: now)?.id
                    == ids[0])
            #expect(
                try await store.claimPendingMigration(owner: "a", leaseSeconds: 30, maxRunning: 2, now: now)?.id
                    == ids[1])
            #expect(try await store.claimPendingMigration(owner: "a", leaseSeconds: 30, maxRunning: 2, now: now) == nil)
            #expect(try await store.runningCount(now: now) == 2)

            // Runner "a" dies: once its leases expire, "b" takes its work over (and is within the limit).
            let later = now + 31
            #expect(try await store.runningCount(now: later) == 0)
            let takenOver = try #require(
                try await store.claimPendingMigration(
                    owner: "b", leaseSeconds: 30, maxRunning: 2, now: later))
            #expect(takenOver.id == ids[0])
            #expect(takenOver.leaseOwner == "b")
            #expect(
                try await store.renewLease(try await store.lease(ids[0], heldBy: "a"), leaseSeconds: 30, now: later)
                    == nil)
            #expect(
                try await store.renewLease(try await store.lease(ids[0], heldBy: "b"), leaseSeconds: 30, now: later)
                    == .validating
            )
            #expect(try await store.releaseLease(try await store.lease(ids[0], heldBy: "a"), now: later) == false)
            // Graceful stop: requeued as pending and claimable again at once.
            #expect(try await store.releaseLease(try await store.lease(ids[0], heldBy: "b"), requeue: true, now: later))
            #expect(try await store.migration(id: ids[0])?.status == .pending)

            // Bulk jobs of a starter account: two at a time.
            let (starter, box) = try await makeAccount(store, plan: .starter, mailbox: "bulk@example.com")
            for _ in 0..<4 {
                _ = try await store.createMigration(newMigration(account: starter.id, mailbox: box.id, batch: 3))
            }
            let (nano, nanoBox) = try await makeAccount(store, plan: .nano, mailbox: "nano@example.com")
            _ = try await store.createMigration(newMigration(account: nano.id, mailbox: nanoBox.id, batch: 4))
            var claimedJobs = 0
            while let claimed = try await store.claimPendingMigration(owner: "c", leaseSeconds: 30, now: later) {
                if claimed.batchID != nil { claimedJobs += 1 }
            }
            #expect(claimedJobs == 2)
        }
    }
}

@Suite struct CheckpointTests {
    @Test(arguments: StoreBackend.allCases)
    func checkpointStoreRoundTrip(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let (account, box) = try await makeAccount(store)
            let migration = try await store.createMigration(newMigration(account: account.id, mailbox: box.id))
            let checkpoints: any CheckpointStore = store.checkpointStore(migrationID: migration.id)
            #expect(try await checkpoints.load(folder: "INBOX") == nil)

            var checkpoint = FolderCheckpoint(
                sourceUIDValidity: 42, lastSourceUID: 100, copied: 90, skipped: 5,
                failed: 1, bytes: 5_000_000_000)
            try await checkpoints.save(checkpoint, folder: "INBOX")
            try await checkpoints.save(FolderCheckpoint(sourceUIDValidity: 7), folder: "Sent &AOk-t&AOk-")
            #expect(try await checkpoints.load(folder: "INBOX") == checkpoint)

            checkpoint.lastSourceUID = 150
            // (InFlightBatch has no public initializer: make one the way a state file would.)
            checkpoint.inFlight = try JSONDecoder().decode(
                InFlightBatch.self,
                from: Data(
                    #"{"lastSourceUID":200,"destinationUIDValidity":9,"destinationUIDNext":77}"#.utf8))
            try await checkpoints.save(checkpoint, folder: "INBOX")
            #expect(try await checkpoints.load(folder: "INBOX") == checkpoint)
            #expect(try await checkpoints.load(folder: "Sent &AOk-t&AOk-") == FolderCheckpoint(sourceUIDValidity: 7))

            // Per migration.
            let other = try await store.createMigration(newMigration(account: account.id, mailbox: box.id, batch: 1))
            #expect(try await store.checkpointStore(migrationID: other.id).load(folder: "INBOX") == nil)
            #expect(try await store.checkpoints(migrationID: migration.id).count == 2)
        }
    }
}

@Suite struct RequestControlTests {
    @Test(arguments: StoreBackend.allCases)
    func idempotency(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let now = Date(timeIntervalSince1970: 1_800_000_000)
            let hash = Store.requestHash(method: "POST", path: "/api/v1/migrations", body: Array("{}".utf8))
            let otherHash = Store.requestHash(method: "POST", path: "/api/v1/migrations", body: Array("{ }".utf8))
            #expect(hash != otherHash)

            #expect(try await store.beginIdempotency(accountID: 1, key: "k1", requestHash: hash, now: now) == .proceed)
            #expect(try await store.beginIdempotency(accountID: 1, key: "k1", requestHash: hash, now: now) == .inFlight)
            #expect(
                try await store.beginIdempotency(accountID: 1, key: "k1", requestHash: otherHash, now: now)
                    == .keyReused)
            // Keys are per account.
            #expect(
                try await store.beginIdempotency(accountID: 2, key: "k1", requestHash: otherHash, now: now) == .proceed)

            try await store.completeIdempotency(accountID: 1, key: "k1", statusCode: 201, body: #"{"id":1}"#)
            #expect(
                try await store.beginIdempotency(accountID: 1, key: "k1", requestHash: hash, now: now + 60)
                    == .replay(statusCode: 201, body: #"{"id":1}"#))
            #expect(
                try await store.beginIdempotency(accountID: 1, key: "k1", requestHash: otherHash, now: now + 60)
                    == .keyReused)
            // After 24 hours the key is free again.
            #expect(
                try await store.beginIdempotency(
                    accountID: 1, key: "k1", requestHash: otherHash,
                    now: now + 24 * 3600 + 1) == .proceed)

            // An abandoned request frees its key.
            #expect(try await store.beginIdempotency(accountID: 1, key: "k2", requestHash: hash, now: now) == .proceed)
            try await store.abandonIdempotency(accountID: 1, key: "k2")
            #expect(try await store.beginIdempotency(accountID: 1, key: "k2", requestHash: hash, now: now) == .proceed)

            // A request whose process died long ago no longer blocks its key (same body only).
            #expect(try await store.beginIdempotency(accountID: 1, key: "k3", requestHash: hash, now: now) == .proceed)
            #expect(
                try await store.beginIdempotency(accountID: 1, key: "k3", requestHash: hash, now: now + 299)
                    == .inFlight)
            #expect(
                try await store.beginIdempotency(accountID: 1, key: "k3", requestHash: otherHash, now: now + 301)
                    == .keyReused)
            #expect(
                try await store.beginIdempotency(accountID: 1, key: "k3", requestHash: hash, now: now + 301) == .proceed
            )
            #expect(
                try await store.beginIdempotency(accountID: 1, key: "k3", requestHash: hash, now: now + 302)
                    == .inFlight)

            // Concurrent first requests: exactly one proceeds.
            let decisions = try await withThrowingTaskGroup(of: IdempotencyDecision.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        try await store.beginIdempotency(accountID: 3, key: "race", requestHash: hash, now: now)
                    }
                }
                var all: [IdempotencyDecision] = []
                for try await decision in group { all.append(decision) }
                return all
            }
            #expect(decisions.filter { $0 == .proceed }.count == 1)
            #expect(decisions.filter { $0 == .inFlight }.count == 7)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func rateLimitCountsPerWindowAndKey(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let start = Date(timeIntervalSince1970: 1_800_000_020)  // 20 s into a minute
            var last: RateLimitCount?
            for expected in 1...3 {
                last = try await store.incrementRateLimit(key: "token:1:writes", windowSeconds: 60, now: start)
                #expect(last?.count == expected)
            }
            #expect(last?.windowStart == Date(timeIntervalSince1970: 1_800_000_000))
            #expect(last?.retryAfterSeconds(now: start) == 40)
            #expect(try await store.incrementRateLimit(key: "token:2:writes", now: start).count == 1)
            #expect(try await store.incrementRateLimit(key: "token:1:writes", now: start + 39).count == 4)
            // The next minute starts again at 1.
            #expect(try await store.incrementRateLimit(key: "token:1:writes", now: start + 40).count == 1)

            let counts = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<20 {
                    group.addTask { try await store.incrementRateLimit(key: "burst", now: start).count }
                }
                var all: [Int] = []
                for try await count in group { all.append(count) }
                return all
            }
            #expect(counts.sorted() == Array(1...20))
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func auditEventsAndPurge(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let now = Date(timeIntervalSince1970: 1_800_000_000)
            let day: TimeInterval = 24 * 3600
            let old = try await store.recordAudit(
                accountID: 1, tokenID: 5, action: "migration_started",
                resourceType: "migration", resourceID: "12", ip: "198.51.100.1",
                requestID: "req-1", now: now - 100 * day)
            let recent = try await store.recordAudit(
                accountID: 1, tokenID: nil, action: "migration_deleted",
                resourceType: "migration", resourceID: "12", ip: nil,
                requestID: "req-2", now: now - day)
            _ = try await store.recordAudit(
                accountID: 2, tokenID: 6, action: "migration_cancelled",
                resourceType: "migration", resourceID: "13", ip: "::1",
                requestID: "req-3", now: now)
            let page = try await store.auditEvents(accountID: 1)
            #expect(page.total == 2)
            #expect(page.items == [recent, old])

            #expect(try await store.purgeAuditEvents(olderThan: now - Store.auditRetention) == 1)
            #expect(try await store.auditEvents(accountID: 1).items == [recent])
            try await store.purgeExpired(now: now + 89.5 * day)
            #expect(try await store.auditEvents(accountID: 1).total == 0)
            #expect(try await store.auditEvents(accountID: 2).total == 1)
        }
    }
}
