import Crypto
import Foundation
import Logging
import MigrationEngine
import SQLKit
import SQLiteKit

/// The service's persistence: accounts, mailboxes, tokens, migrations with their folders and
/// checkpoints, audit events, idempotency records and rate-limit buckets, in one SQL database.
///
/// Everything goes through SQLKit with SQL that SQLite and PostgreSQL both accept (the few
/// differences live in `SQLFlavor`), so PostgreSQL is another way to open a `Store`, not a rewrite.
/// Every operation that must be atomic is a single statement (conditional `UPDATE … RETURNING`,
/// `INSERT … ON CONFLICT`), so the store is safe to share between tasks, runners and processes.
/// Times are stored as milliseconds since 1970.
public final class Store: Sendable {
    /// How long audit events are kept.
    public static let auditRetention: TimeInterval = 90 * 24 * 3600
    /// How long an idempotency record replays its response.
    public static let idempotencyRetention: TimeInterval = 24 * 3600

    public let database: any SQLDatabase
    public let secrets: SecretBox
    let flavor: SQLFlavor
    let logger: Logger
    private let closeDatabase: @Sendable () async throws -> Void

    /// A store over an open database whose schema is already migrated (see `open(database:…)`).
    init(database: any SQLDatabase, secrets: SecretBox, logger: Logger,
         close: @escaping @Sendable () async throws -> Void) {
        self.database = database
        self.secrets = secrets
        self.flavor = SQLFlavor(dialectName: database.dialect.name)
        self.logger = logger
        self.closeDatabase = close
    }

    /// A store over any SQLKit database (the PostgreSQL adapter's entry point): applies the schema
    /// migrations, then returns the store. `close` runs on `Store.close()`.
    public static func open(database: any SQLDatabase, secrets: SecretBox,
                            logger: Logger = Logger(label: "mailporter.store"),
                            close: @escaping @Sendable () async throws -> Void = {}) async throws -> Store {
        let applied = try await Schema.migrate(database)
        if !applied.isEmpty {
            logger.info("applied schema migrations", metadata: ["versions": "\(applied)"])
        }
        return Store(database: database, secrets: secrets, logger: logger, close: close)
    }

    /// Opens (creating it and its directory if needed) the SQLite database at `path` in WAL mode and
    /// brings its schema up to date.
    public static func openSQLite(path: String, secrets: SecretBox,
                                  logger: Logger = Logger(label: "mailporter.store")) async throws -> Store {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        }
        return try await openSQLite(storage: .file(path: path), secrets: secrets, logger: logger, wal: true)
    }

    /// A private in-memory SQLite database (tests, dry runs): gone when the store is closed.
    public static func openInMemorySQLite(secrets: SecretBox = .random(),
                                          logger: Logger = Logger(label: "mailporter.store")) async throws -> Store {
        try await openSQLite(storage: .memory, secrets: secrets, logger: logger, wal: false)
    }

    private static func openSQLite(storage: SQLiteConnection.Storage, secrets: SecretBox, logger: Logger,
                                   wal: Bool) async throws -> Store {
        let connection = try await SQLiteConnection.open(
            storage: storage,
            threadPool: NIOThreadPool.singleton,
            logger: logger,
            on: MultiThreadedEventLoopGroup.singleton.any()
        )
        do {
            // No query logging: binds hold ciphertexts, token hashes and addresses.
            let database = connection.sql(queryLogLevel: nil)
            // Wait (sleeping) for another connection's write lock instead of spinning.
            try await database.raw("PRAGMA busy_timeout = 15000").run()
            if wal {
                try await database.raw("PRAGMA journal_mode = WAL").run()
                try await database.raw("PRAGMA synchronous = NORMAL").run()
            }
            try await database.raw("PRAGMA foreign_keys = ON").run()
            // Deleted rows (credentials of a deleted migration) are overwritten, not just unlinked.
            try await database.raw("PRAGMA secure_delete = ON").run()
            return try await open(database: database, secrets: secrets, logger: logger) {
                try await connection.close()
            }
        } catch {
            try? await connection.close()
            throw error
        }
    }

    public func close() async throws {
        try await closeDatabase()
    }

    /// Schema versions applied to this database, ascending.
    public func schemaVersions() async throws -> [Int] {
        try await Schema.appliedVersions(database)
    }

    /// Applies any schema versions not yet applied (done by every `open`; harmless to repeat).
    @discardableResult
    public func migrateSchema() async throws -> [Int] {
        try await Schema.migrate(database)
    }

    // MARK: - Accounts

    public func createAccount(plan: Plan, notificationEmail: String, now: Date = Date()) async throws -> Account {
        let email = notificationEmail.trimmingCharacters(in: .whitespacesAndNewlines)
        let row = try await database.raw("""
            INSERT INTO accounts (plan, notification_email, created_at)
            VALUES (\(bind: plan.rawValue), \(bind: email), \(bind: now.storeMillis))
            RETURNING id, plan, notification_email, created_at
            """).first()
        return try Self.account(from: try required(row))
    }

    public func account(id: Int64) async throws -> Account? {
        try await database.raw("""
            SELECT id, plan, notification_email, created_at FROM accounts WHERE id = \(bind: id)
            """).first().map(Self.account(from:))
    }

    public func accounts() async throws -> [Account] {
        try await database.raw("SELECT id, plan, notification_email, created_at FROM accounts ORDER BY id")
            .all().map(Self.account(from:))
    }

    public func setPlan(accountID: Int64, plan: Plan) async throws {
        let row = try await database.raw("""
            UPDATE accounts SET plan = \(bind: plan.rawValue) WHERE id = \(bind: accountID) RETURNING id
            """).first()
        if row == nil { throw StoreError.notFound }
    }

    private static func account(from row: any SQLRow) throws -> Account {
        let planName = try row.string("plan")
        guard let plan = Plan(rawValue: planName) else { throw StoreError.corrupt("plan \(planName)") }
        return Account(id: try row.int64("id"), plan: plan,
                       notificationEmail: try row.string("notification_email"),
                       createdAt: try row.date("created_at"))
    }

    // MARK: - Mailboxes

    /// Mailbox addresses are stored trimmed and lower-cased. Throws `notFound` for an unknown
    /// account and `duplicate` when the account already has the address.
    public func addMailbox(accountID: Int64, email: String, now: Date = Date()) async throws -> Mailbox {
        guard try await account(id: accountID) != nil else { throw StoreError.notFound }
        let normalized = Self.normalizeEmail(email)
        let row = try await database.raw("""
            INSERT INTO mailboxes (account_id, email, created_at)
            VALUES (\(bind: accountID), \(bind: normalized), \(bind: now.storeMillis))
            ON CONFLICT (account_id, email) DO NOTHING
            RETURNING id, account_id, email, created_at
            """).first()
        guard let row else { throw StoreError.duplicate("mailbox \(normalized)") }
        return try Self.mailbox(from: row)
    }

    public func mailboxes(accountID: Int64) async throws -> [Mailbox] {
        try await database.raw("""
            SELECT id, account_id, email, created_at FROM mailboxes
            WHERE account_id = \(bind: accountID) ORDER BY id
            """).all().map(Self.mailbox(from:))
    }

    public func mailbox(id: Int64, accountID: Int64) async throws -> Mailbox? {
        try await database.raw("""
            SELECT id, account_id, email, created_at FROM mailboxes
            WHERE id = \(bind: id) AND account_id = \(bind: accountID)
            """).first().map(Self.mailbox(from:))
    }

    public func mailbox(email: String, accountID: Int64) async throws -> Mailbox? {
        try await database.raw("""
            SELECT id, account_id, email, created_at FROM mailboxes
            WHERE email = \(bind: Self.normalizeEmail(email)) AND account_id = \(bind: accountID)
            """).first().map(Self.mailbox(from:))
    }

    static func normalizeEmail(_ email: String) -> String {
        email.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
    }

    private static func mailbox(from row: any SQLRow) throws -> Mailbox {
        Mailbox(id: try row.int64("id"), accountID: try row.int64("account_id"),
                email: try row.string("email"), createdAt: try row.date("created_at"))
    }

    // MARK: - Tokens

    private static let tokenColumns: SQLQueryString =
        "id, account_id, name, scopes, prefix, expires_at, last_used_at, last_used_ip, created_at"

    /// Makes a token for the account. The token is returned this once; only its hash is stored.
    public func createToken(accountID: Int64, name: String, scopes: [String], expiresAt: Date? = nil,
                            now: Date = Date()) async throws -> (token: String, record: APIToken) {
        guard try await account(id: accountID) != nil else { throw StoreError.notFound }
        let generated = Tokens.generate()
        let row = try await database.raw("""
            INSERT INTO api_tokens (account_id, name, scopes, token_hash, prefix, expires_at, created_at)
            VALUES (\(bind: accountID), \(bind: name), \(bind: try Self.json(scopes)), \(bind: generated.hash),
                    \(bind: generated.displayPrefix), \(bind: expiresAt?.storeMillis), \(bind: now.storeMillis))
            RETURNING \(Self.tokenColumns)
            """).first()
        return (generated.token, try Self.token(from: try required(row)))
    }

    /// The token's row when the token is known and not expired, after recording this use
    /// (time and IP); nil otherwise.
    public func verifyToken(_ token: String, ip: String? = nil, now: Date = Date()) async throws -> APIToken? {
        guard Tokens.isWellFormed(token) else { return nil }
        return try await database.raw("""
            UPDATE api_tokens SET last_used_at = \(bind: now.storeMillis), last_used_ip = \(bind: ip)
            WHERE token_hash = \(bind: Tokens.hash(token))
              AND (expires_at IS NULL OR expires_at > \(bind: now.storeMillis))
            RETURNING \(Self.tokenColumns)
            """).first().map(Self.token(from:))
    }

    public func tokens(accountID: Int64) async throws -> [APIToken] {
        try await database.raw("""
            SELECT \(Self.tokenColumns) FROM api_tokens WHERE account_id = \(bind: accountID) ORDER BY id
            """).all().map(Self.token(from:))
    }

    /// Deletes a token; false if the account has no such token.
    @discardableResult
    public func revokeToken(id: Int64, accountID: Int64) async throws -> Bool {
        try await database.raw("""
            DELETE FROM api_tokens WHERE id = \(bind: id) AND account_id = \(bind: accountID) RETURNING id
            """).first() != nil
    }

    private static func token(from row: any SQLRow) throws -> APIToken {
        APIToken(id: try row.int64("id"), accountID: try row.int64("account_id"), name: try row.string("name"),
                 scopes: try decodeJSON([String].self, try row.string("scopes")),
                 prefix: try row.string("prefix"), expiresAt: try row.optionalDate("expires_at"),
                 lastUsedAt: try row.optionalDate("last_used_at"), lastUsedIP: try row.optionalString("last_used_ip"),
                 createdAt: try row.date("created_at"))
    }

    // MARK: - Migrations: create and read

    private static let activeList = MigrationStatus.sqlList(MigrationStatus.active)
    private static let runningList = MigrationStatus.sqlList(MigrationStatus.running)

    private static let migrationColumns: SQLQueryString = """
        m.id, m.account_id, m.mailbox_id, mb.email AS mailbox_email, m.batch_id, m.provider, m.source_host,
        m.source_port, m.source_security, m.source_email, m.source_username,
        (CASE WHEN m.target_password_enc IS NULL THEN 0 ELSE 1 END) AS has_target_password,
        m.selected_folders, m.import_since, m.skip_duplicates, m.status, m.error_code, m.error_message,
        m.error_hint, m.total_messages, m.imported_messages, m.failed_messages, m.skipped_duplicates,
        m.lease_owner, m.lease_expires_at, m.started_at, m.finished_at, m.created_at, m.updated_at
        FROM migrations m LEFT JOIN mailboxes mb ON mb.id = m.mailbox_id
        """

    /// Stores a new `pending` migration with its passwords encrypted. Throws `notFound` when the
    /// mailbox is not the account's, `activeMigrationExists` when a single migration (no batch) is
    /// started while the account has an active one.
    public func createMigration(_ new: NewMigration, now: Date = Date()) async throws -> MigrationRecord {
        let sourceSealed = try secrets.seal(new.sourcePassword)
        let targetSealed = try new.targetPassword.map { try secrets.seal($0) }
        let folders = try new.selectedFolders.map { try Self.json($0) }
        let stamp = now.storeMillis
        let onlyActiveSingle: SQLQueryString = new.batchID != nil ? "" : """
             AND NOT EXISTS (SELECT 1 FROM migrations WHERE account_id = \(bind: new.accountID)
                 AND batch_id IS NULL AND status IN (\(unsafeRaw: Self.activeList)))
            """
        let row = try await database.raw("""
            INSERT INTO migrations (account_id, mailbox_id, batch_id, provider, source_host, source_port,
                source_security, source_email, source_username, source_password_enc, target_password_enc,
                selected_folders, import_since, skip_duplicates, status, created_at, updated_at)
            SELECT \(bind: new.accountID), \(bind: new.mailboxID), \(bind: new.batchID), \(bind: new.provider),
                \(bind: new.sourceHost), \(bind: new.sourcePort), \(bind: new.sourceSecurity),
                \(bind: new.sourceEmail), \(bind: new.sourceUsername), \(bind: sourceSealed),
                \(bind: targetSealed), \(bind: folders), \(bind: new.importSince), \(bind: new.skipDuplicates),
                'pending', \(bind: stamp), \(bind: stamp)
            WHERE EXISTS (SELECT 1 FROM mailboxes WHERE id = \(bind: new.mailboxID)
                          AND account_id = \(bind: new.accountID))\(onlyActiveSingle)
            RETURNING id
            """).first()
        guard let row else {
            if try await mailbox(id: new.mailboxID, accountID: new.accountID) == nil { throw StoreError.notFound }
            throw StoreError.activeMigrationExists
        }
        return try await required(migration(id: try row.int64("id")))
    }

    /// The migration with its folders; with `accountID`, only if it is that account's.
    public func migration(id: Int64, accountID: Int64? = nil) async throws -> MigrationRecord? {
        var query: SQLQueryString = "SELECT \(Self.migrationColumns) WHERE m.id = \(bind: id)"
        if let accountID { query += " AND m.account_id = \(bind: accountID)" }
        guard let row = try await database.raw(query).first() else { return nil }
        var record = try Self.migration(from: row)
        record.folders = try await folders(migrationIDs: [id])[id] ?? []
        return record
    }

    /// A page of the account's migrations, newest first, optionally filtered.
    public func listMigrations(accountID: Int64, status: MigrationStatus? = nil, mailboxID: Int64? = nil,
                               batchID: Int64? = nil, page: PageRequest = PageRequest()) async throws
        -> Page<MigrationRecord> {
        var filter: SQLQueryString = "m.account_id = \(bind: accountID)"
        if let status { filter += " AND m.status = \(bind: status.rawValue)" }
        if let mailboxID { filter += " AND m.mailbox_id = \(bind: mailboxID)" }
        if let batchID { filter += " AND m.batch_id = \(bind: batchID)" }
        let total = try await database.raw("SELECT COUNT(*) AS n FROM migrations m WHERE \(filter)")
            .first().map { try $0.int("n") } ?? 0
        var records = try await database.raw("""
            SELECT \(Self.migrationColumns) WHERE \(filter) ORDER BY m.id DESC
            LIMIT \(bind: page.perPage) OFFSET \(bind: page.offset)
            """).all().map(Self.migration(from:))
        let folders = try await folders(migrationIDs: records.map(\.id))
        for index in records.indices { records[index].folders = folders[records[index].id] ?? [] }
        return Page(items: records, page: page.page, perPage: page.perPage, total: total)
    }

    /// The decrypted passwords of a migration, for the runner. Never put them in a response or a log.
    public func credentials(forMigration id: Int64) async throws -> MigrationCredentials? {
        guard let row = try await database.raw("""
            SELECT source_password_enc, target_password_enc FROM migrations WHERE id = \(bind: id)
            """).first() else { return nil }
        return MigrationCredentials(
            sourcePassword: try secrets.open(try row.string("source_password_enc")),
            targetPassword: try row.optionalString("target_password_enc").map { try secrets.open($0) })
    }

    /// Replaces the source password (bulk job password fix), only while the migration is not running.
    public func updateSourcePassword(migrationID: Int64, accountID: Int64, password: String,
                                     now: Date = Date()) async throws {
        let row = try await database.raw("""
            UPDATE migrations SET source_password_enc = \(bind: try secrets.seal(password)),
                updated_at = \(bind: now.storeMillis)
            WHERE id = \(bind: migrationID) AND account_id = \(bind: accountID)
              AND status NOT IN (\(unsafeRaw: Self.runningList))
            RETURNING id
            """).first()
        if row == nil { try await throwWhyNot(migrationID: migrationID, accountID: accountID) }
    }

    /// Active single (non-bulk) migrations of the account: 0 or 1.
    public func activeSingleMigrationCount(accountID: Int64) async throws -> Int {
        try await database.raw("""
            SELECT COUNT(*) AS n FROM migrations WHERE account_id = \(bind: accountID) AND batch_id IS NULL
              AND status IN (\(unsafeRaw: Self.activeList))
            """).first().map { try $0.int("n") } ?? 0
    }

    /// Migrations a runner holds right now (running status with a live lease): what the global
    /// concurrency limit counts.
    public func runningCount(now: Date = Date()) async throws -> Int {
        try await database.raw("""
            SELECT COUNT(*) AS n FROM migrations WHERE status IN (\(unsafeRaw: Self.runningList))
              AND lease_expires_at >= \(bind: now.storeMillis)
            """).first().map { try $0.int("n") } ?? 0
    }

    /// How many migrations are in each status (for metrics).
    public func statusCounts() async throws -> [MigrationStatus: Int] {
        var counts: [MigrationStatus: Int] = [:]
        for row in try await database.raw("SELECT status, COUNT(*) AS n FROM migrations GROUP BY status").all() {
            if let status = MigrationStatus(rawValue: try row.string("status")) { counts[status] = try row.int("n") }
        }
        return counts
    }

    // MARK: - Migrations: the runner's side

    /// Atomically takes the oldest claimable migration for `owner`, moving it to `validating` with a
    /// lease of `leaseSeconds`: a `pending` one nobody holds, or a running one whose lease expired
    /// (its runner died; the new one resumes it from its checkpoints). With `maxRunning`, claims only
    /// while fewer migrations than that are held. Bulk jobs also respect their account's plan limit
    /// of jobs running at once. Safe with any number of concurrent claimers: one statement,
    /// re-checking its condition on the row it updates.
    public func claimPendingMigration(owner: String, leaseSeconds: Int, maxRunning: Int? = nil,
                                      now: Date = Date()) async throws -> MigrationRecord? {
        let stamp = now.storeMillis
        let leaseEnd = now.addingTimeInterval(TimeInterval(leaseSeconds)).storeMillis
        let claimable: (String) -> SQLQueryString = { alias in
            """
            ((\(unsafeRaw: alias).status = 'pending' AND (\(unsafeRaw: alias).lease_owner IS NULL
                  OR \(unsafeRaw: alias).lease_expires_at < \(bind: stamp)))
             OR (\(unsafeRaw: alias).status IN (\(unsafeRaw: Self.runningList))
                  AND (\(unsafeRaw: alias).lease_expires_at IS NULL OR \(unsafeRaw: alias).lease_expires_at < \(bind: stamp))))
            """
        }
        var globalLimit: SQLQueryString = ""
        if let maxRunning {
            globalLimit = """
                 AND (SELECT COUNT(*) FROM migrations r WHERE r.status IN (\(unsafeRaw: Self.runningList))
                      AND r.lease_expires_at >= \(bind: stamp)) < \(bind: maxRunning)
                """
        }
        let planLimit = Plan.allCases.map { "WHEN '\($0.rawValue)' THEN \($0.maxConcurrentBulkJobs)" }
            .joined(separator: " ")
        let lock: SQLQueryString = flavor == .postgres ? " FOR UPDATE OF m SKIP LOCKED" : ""
        let row = try await database.raw("""
            UPDATE migrations SET status = 'validating', lease_owner = \(bind: owner),
                lease_expires_at = \(bind: leaseEnd), started_at = COALESCE(started_at, \(bind: stamp)),
                updated_at = \(bind: stamp)
            WHERE id = (
                SELECT m.id FROM migrations m JOIN accounts a ON a.id = m.account_id
                WHERE \(claimable("m"))\(globalLimit)
                  AND (m.batch_id IS NULL OR (SELECT COUNT(*) FROM migrations b
                        WHERE b.account_id = m.account_id AND b.batch_id IS NOT NULL
                          AND b.status IN (\(unsafeRaw: Self.runningList))
                          AND b.lease_expires_at >= \(bind: stamp))
                      < (CASE a.plan \(unsafeRaw: planLimit) ELSE 0 END))
                ORDER BY m.id
                LIMIT 1\(lock)
            )
            AND \(claimable("migrations"))
            RETURNING id
            """).first()
        guard let row else { return nil }
        let id = try row.int64("id")
        logger.debug("claimed migration", metadata: ["migration_id": "\(id)", "owner": "\(owner)"])
        return try await migration(id: id)
    }

    /// Extends the lease `owner` holds. Returns the migration's current status (the runner stops
    /// unless it is one of `MigrationStatus.running`, e.g. after a cancel), or nil when `owner`
    /// no longer holds it.
    public func renewLease(migrationID: Int64, owner: String, leaseSeconds: Int,
                           now: Date = Date()) async throws -> MigrationStatus? {
        let leaseEnd = now.addingTimeInterval(TimeInterval(leaseSeconds)).storeMillis
        guard let row = try await database.raw("""
            UPDATE migrations SET lease_expires_at = \(bind: leaseEnd)
            WHERE id = \(bind: migrationID) AND lease_owner = \(bind: owner)
            RETURNING status
            """).first() else { return nil }
        return MigrationStatus(rawValue: try row.string("status"))
    }

    /// Gives up `owner`'s lease. With `requeue` (stopping at a safe point on shutdown), a migration
    /// that was still running goes back to `pending`, so the next runner resumes it at once.
    @discardableResult
    public func releaseLease(migrationID: Int64, owner: String, requeue: Bool = false,
                             now: Date = Date()) async throws -> Bool {
        let requeueSet: SQLQueryString = requeue
            ? ", status = CASE WHEN status IN (\(unsafeRaw: Self.runningList)) THEN 'pending' ELSE status END"
            : ""
        return try await database.raw("""
            UPDATE migrations SET lease_owner = NULL, lease_expires_at = NULL,
                updated_at = \(bind: now.storeMillis)\(requeueSet)
            WHERE id = \(bind: migrationID) AND lease_owner = \(bind: owner)
            RETURNING id
            """).first() != nil
    }

    /// Moves a running migration to `status` (a runner walking validating → planning → processing →
    /// completed | failed). Never moves a migration out of a terminal status, so a cancel wins over
    /// the runner, nor out of `pending`, so a runner's late write cannot revive a migration that was
    /// cancelled and retried under it (only a claim starts a pending one). With `owner`, only while that runner holds the lease. A terminal status sets
    /// `finished_at`; `error` sets the error fields. Returns false when nothing changed.
    @discardableResult
    public func updateStatus(migrationID: Int64, to status: MigrationStatus, owner: String? = nil,
                             error: MigrationError? = nil, now: Date = Date()) async throws -> Bool {
        var sets: SQLQueryString = "status = \(bind: status.rawValue), updated_at = \(bind: now.storeMillis)"
        if status.isTerminal { sets += ", finished_at = \(bind: now.storeMillis)" }
        if let error {
            sets += """
                , error_code = \(bind: error.code), error_message = \(bind: error.message),
                error_hint = \(bind: error.hint)
                """
        }
        var query: SQLQueryString = """
            UPDATE migrations SET \(sets)
            WHERE id = \(bind: migrationID) AND status IN (\(unsafeRaw: Self.runningList))
            """
        if let owner { query += " AND lease_owner = \(bind: owner)" }
        query += " RETURNING id"
        return try await database.raw(query).first() != nil
    }

    /// Writes the running totals and per-folder progress (upserted by source folder name, in the
    /// given order). With `owner`, only while that runner holds the lease. Returns false when
    /// nothing changed.
    @discardableResult
    public func updateProgress(migrationID: Int64, owner: String? = nil, totals: MigrationTotals,
                               folders: [FolderProgress] = [], now: Date = Date()) async throws -> Bool {
        var query: SQLQueryString = """
            UPDATE migrations SET total_messages = \(bind: totals.total),
                imported_messages = \(bind: totals.imported), failed_messages = \(bind: totals.failed),
                skipped_duplicates = \(bind: totals.skipped), updated_at = \(bind: now.storeMillis)
            WHERE id = \(bind: migrationID)
            """
        if let owner { query += " AND lease_owner = \(bind: owner)" }
        query += " RETURNING id"
        guard try await database.raw(query).first() != nil else { return false }
        try await upsertFolders(migrationID: migrationID, folders: folders)
        return true
    }

    /// Inserts or updates the per-folder rows of a migration (keyed by source name).
    public func upsertFolders(migrationID: Int64, folders: [FolderProgress]) async throws {
        guard !folders.isEmpty else { return }
        let values = folders.enumerated().map { position, folder -> SQLQueryString in
            """
            (\(bind: migrationID), \(bind: position), \(bind: folder.sourceName), \(bind: folder.destinationName),
             \(bind: folder.status.rawValue), \(bind: folder.expected), \(bind: folder.imported),
             \(bind: folder.failed), \(bind: folder.skipped))
            """
        }
        try await database.raw("""
            INSERT INTO migration_folders (migration_id, position, source_name, destination_name, status,
                expected, imported, failed, skipped)
            VALUES \(values.joined(separator: ", "))
            ON CONFLICT (migration_id, source_name) DO UPDATE SET
                position = excluded.position, destination_name = excluded.destination_name,
                status = excluded.status, expected = excluded.expected, imported = excluded.imported,
                failed = excluded.failed, skipped = excluded.skipped
            """).run()
    }

    func folders(migrationIDs: [Int64]) async throws -> [Int64: [FolderProgress]] {
        guard !migrationIDs.isEmpty else { return [:] }
        let ids = migrationIDs.map { SQLQueryString("\(bind: $0)") }.joined(separator: ", ")
        var result: [Int64: [FolderProgress]] = [:]
        for row in try await database.raw("""
            SELECT migration_id, source_name, destination_name, status, expected, imported, failed, skipped
            FROM migration_folders WHERE migration_id IN (\(ids)) ORDER BY migration_id, position
            """).all() {
            let statusName = try row.string("status")
            guard let status = FolderProgress.Status(rawValue: statusName) else {
                throw StoreError.corrupt("folder status \(statusName)")
            }
            result[try row.int64("migration_id"), default: []].append(FolderProgress(
                sourceName: try row.string("source_name"), destinationName: try row.string("destination_name"),
                status: status, expected: try row.int("expected"), imported: try row.int("imported"),
                failed: try row.int("failed"), skipped: try row.int("skipped")))
        }
        return result
    }

    // MARK: - Migrations: cancel, retry, delete

    /// Cancels an active migration (a runner holding it sees the status on its next lease renewal).
    /// Throws `notFound` or `invalidStatus`.
    public func cancelMigration(id: Int64, accountID: Int64, now: Date = Date()) async throws -> MigrationRecord {
        let row = try await database.raw("""
            UPDATE migrations SET status = 'cancelled', finished_at = \(bind: now.storeMillis),
                updated_at = \(bind: now.storeMillis)
            WHERE id = \(bind: id) AND account_id = \(bind: accountID)
              AND status IN (\(unsafeRaw: Self.activeList))
            RETURNING id
            """).first()
        if row == nil { try await throwWhyNot(migrationID: id, accountID: accountID) }
        return try await required(migration(id: id))
    }

    /// Puts a failed or cancelled migration back to `pending` with its progress and error reset.
    /// Its checkpoints stay, so the next run copies only what is missing. A runner still holding it
    /// keeps its lease until it lets go, so two runners never work on it at once. Throws `notFound`,
    /// `invalidStatus`, or `activeMigrationExists` (another single migration of the account is active).
    public func retryMigration(id: Int64, accountID: Int64, now: Date = Date()) async throws -> MigrationRecord {
        let row = try await database.raw("""
            UPDATE migrations SET status = 'pending', error_code = NULL, error_message = NULL,
                error_hint = NULL, total_messages = 0, imported_messages = 0, failed_messages = 0,
                skipped_duplicates = 0, started_at = NULL, finished_at = NULL,
                updated_at = \(bind: now.storeMillis)
            WHERE id = \(bind: id) AND account_id = \(bind: accountID) AND status IN ('failed', 'cancelled')
              AND (batch_id IS NOT NULL OR NOT EXISTS (
                    SELECT 1 FROM migrations o WHERE o.account_id = \(bind: accountID) AND o.batch_id IS NULL
                      AND o.id <> \(bind: id) AND o.status IN (\(unsafeRaw: Self.activeList))))
            RETURNING id
            """).first()
        if row == nil {
            guard let current = try await migration(id: id, accountID: accountID) else { throw StoreError.notFound }
            guard current.status.isRetryable else { throw StoreError.invalidStatus(current.status) }
            throw StoreError.activeMigrationExists
        }
        try await database.raw("DELETE FROM migration_folders WHERE migration_id = \(bind: id)").run()
        return try await required(migration(id: id))
    }

    /// Deletes a migration that is not active, with its folders and checkpoints; its encrypted
    /// credentials go with the row (SQLite overwrites deleted content: `secure_delete`).
    /// Throws `notFound` or `invalidStatus`.
    public func deleteMigration(id: Int64, accountID: Int64) async throws {
        let row = try await database.raw("""
            DELETE FROM migrations WHERE id = \(bind: id) AND account_id = \(bind: accountID)
              AND status NOT IN (\(unsafeRaw: Self.activeList))
            RETURNING id
            """).first()
        if row == nil { try await throwWhyNot(migrationID: id, accountID: accountID) }
    }

    private func throwWhyNot(migrationID: Int64, accountID: Int64) async throws -> Never {
        guard let current = try await migration(id: migrationID, accountID: accountID) else {
            throw StoreError.notFound
        }
        throw StoreError.invalidStatus(current.status)
    }

    private static func migration(from row: any SQLRow) throws -> MigrationRecord {
        let statusName = try row.string("status")
        guard let status = MigrationStatus(rawValue: statusName) else {
            throw StoreError.corrupt("migration status \(statusName)")
        }
        let error = try row.optionalString("error_code").map { code in
            MigrationError(code: code, message: try row.optionalString("error_message") ?? "",
                           hint: try row.optionalString("error_hint"))
        }
        return MigrationRecord(
            id: try row.int64("id"), accountID: try row.int64("account_id"), mailboxID: try row.int64("mailbox_id"),
            mailboxEmail: try row.optionalString("mailbox_email"), batchID: try row.optionalInt64("batch_id"),
            provider: try row.string("provider"), sourceHost: try row.string("source_host"),
            sourcePort: try row.int("source_port"), sourceSecurity: try row.string("source_security"),
            sourceEmail: try row.string("source_email"), sourceUsername: try row.string("source_username"),
            hasTargetPassword: try row.int("has_target_password") != 0,
            selectedFolders: try row.optionalString("selected_folders").map { try decodeJSON([String].self, $0) },
            importSince: try row.optionalString("import_since"),
            skipDuplicates: try row.decode(column: "skip_duplicates", as: Bool.self),
            status: status, error: error,
            totalMessages: try row.int("total_messages"), importedMessages: try row.int("imported_messages"),
            failedMessages: try row.int("failed_messages"), skippedDuplicates: try row.int("skipped_duplicates"),
            folders: [], leaseOwner: try row.optionalString("lease_owner"),
            leaseExpiresAt: try row.optionalDate("lease_expires_at"), startedAt: try row.optionalDate("started_at"),
            finishedAt: try row.optionalDate("finished_at"), createdAt: try row.date("created_at"),
            updatedAt: try row.date("updated_at"))
    }

    // MARK: - Checkpoints

    public func loadCheckpoint(migrationID: Int64, folder: String) async throws -> FolderCheckpoint? {
        guard let row = try await database.raw("""
            SELECT data FROM checkpoints WHERE migration_id = \(bind: migrationID) AND folder = \(bind: folder)
            """).first() else { return nil }
        return try Self.decodeJSON(FolderCheckpoint.self, try row.string("data"))
    }

    public func saveCheckpoint(_ checkpoint: FolderCheckpoint, migrationID: Int64, folder: String,
                               now: Date = Date()) async throws {
        try await database.raw("""
            INSERT INTO checkpoints (migration_id, folder, data, updated_at)
            VALUES (\(bind: migrationID), \(bind: folder), \(bind: try Self.json(checkpoint)), \(bind: now.storeMillis))
            ON CONFLICT (migration_id, folder) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at
            """).run()
    }

    /// Every checkpoint of a migration, by source folder.
    public func checkpoints(migrationID: Int64) async throws -> [String: FolderCheckpoint] {
        var result: [String: FolderCheckpoint] = [:]
        for row in try await database.raw("""
            SELECT folder, data FROM checkpoints WHERE migration_id = \(bind: migrationID)
            """).all() {
            result[try row.string("folder")] = try Self.decodeJSON(FolderCheckpoint.self, try row.string("data"))
        }
        return result
    }

    /// The engine's `CheckpointStore` for one migration.
    public func checkpointStore(migrationID: Int64) -> StoreCheckpointStore {
        StoreCheckpointStore(store: self, migrationID: migrationID)
    }

    // MARK: - Audit events

    @discardableResult
    public func recordAudit(accountID: Int64, tokenID: Int64?, action: String, resourceType: String,
                            resourceID: String?, ip: String?, requestID: String?,
                            now: Date = Date()) async throws -> AuditEvent {
        let row = try await database.raw("""
            INSERT INTO audit_events (account_id, token_id, action, resource_type, resource_id, ip, request_id,
                created_at)
            VALUES (\(bind: accountID), \(bind: tokenID), \(bind: action), \(bind: resourceType),
                \(bind: resourceID), \(bind: ip), \(bind: requestID), \(bind: now.storeMillis))
            RETURNING id
            """).first()
        return AuditEvent(id: try required(row).int64("id"), accountID: accountID, tokenID: tokenID, action: action,
                          resourceType: resourceType, resourceID: resourceID, ip: ip, requestID: requestID,
                          createdAt: Date(storeMillis: now.storeMillis))
    }

    /// A page of the account's audit events, newest first.
    public func auditEvents(accountID: Int64, page: PageRequest = PageRequest()) async throws -> Page<AuditEvent> {
        let total = try await database.raw("""
            SELECT COUNT(*) AS n FROM audit_events WHERE account_id = \(bind: accountID)
            """).first().map { try $0.int("n") } ?? 0
        let items = try await database.raw("""
            SELECT id, account_id, token_id, action, resource_type, resource_id, ip, request_id, created_at
            FROM audit_events WHERE account_id = \(bind: accountID) ORDER BY id DESC
            LIMIT \(bind: page.perPage) OFFSET \(bind: page.offset)
            """).all().map { row in
                AuditEvent(id: try row.int64("id"), accountID: try row.int64("account_id"),
                           tokenID: try row.optionalInt64("token_id"), action: try row.string("action"),
                           resourceType: try row.string("resource_type"),
                           resourceID: try row.optionalString("resource_id"), ip: try row.optionalString("ip"),
                           requestID: try row.optionalString("request_id"), createdAt: try row.date("created_at"))
            }
        return Page(items: items, page: page.page, perPage: page.perPage, total: total)
    }

    /// Deletes audit events created before `cutoff`; returns how many.
    @discardableResult
    public func purgeAuditEvents(olderThan cutoff: Date) async throws -> Int {
        try await database.raw("""
            DELETE FROM audit_events WHERE created_at < \(bind: cutoff.storeMillis) RETURNING id
            """).all().count
    }

    // MARK: - Idempotency

    /// SHA-256 (hex) identifying a request for idempotency: method, path and body.
    public static func requestHash(method: String, path: String, body: some Sequence<UInt8>) -> String {
        var hasher = SHA256()
        hasher.update(data: Array("\(method.uppercased()) \(path)\n".utf8))
        hasher.update(data: Array(body))
        return Tokens.hex(Array(hasher.finalize()))
    }

    /// Claims `key` for a request, or says what to answer instead. Records older than 24 h are
    /// forgotten; a request still in flight after `inFlightTimeout` is taken to have died with its
    /// process, and the key is handed to this one. Atomic: of concurrent requests with the same
    /// key, one proceeds.
    public func beginIdempotency(accountID: Int64, key: String, requestHash: String,
                                 inFlightTimeout: TimeInterval = 300,
                                 now: Date = Date()) async throws -> IdempotencyDecision {
        let cutoff = now.addingTimeInterval(-Self.idempotencyRetention).storeMillis
        for _ in 0..<3 {
            let inserted = try await database.raw("""
                INSERT INTO idempotency_records (account_id, idempotency_key, request_hash, status, created_at)
                VALUES (\(bind: accountID), \(bind: key), \(bind: requestHash), 'in_flight', \(bind: now.storeMillis))
                ON CONFLICT (account_id, idempotency_key) DO NOTHING
                RETURNING account_id
                """).first()
            if inserted != nil { return .proceed }
            guard let row = try await database.raw("""
                SELECT request_hash, status, response_status, response_body, created_at FROM idempotency_records
                WHERE account_id = \(bind: accountID) AND idempotency_key = \(bind: key)
                """).first() else { continue }
            let createdAt = try row.int64("created_at")
            if createdAt < cutoff {
                try await database.raw("""
                    DELETE FROM idempotency_records WHERE account_id = \(bind: accountID)
                      AND idempotency_key = \(bind: key) AND created_at = \(bind: createdAt)
                    """).run()
                continue
            }
            if try row.string("request_hash") != requestHash { return .keyReused }
            if try row.string("status") != "done" {
                guard createdAt < now.addingTimeInterval(-inFlightTimeout).storeMillis else { return .inFlight }
                // The process handling it died: take the key over.
                let taken = try await database.raw("""
                    UPDATE idempotency_records SET created_at = \(bind: now.storeMillis)
                    WHERE account_id = \(bind: accountID) AND idempotency_key = \(bind: key)
                      AND status = 'in_flight' AND created_at = \(bind: createdAt)
                    RETURNING account_id
                    """).first()
                return taken != nil ? .proceed : .inFlight
            }
            return .replay(statusCode: try row.optionalInt("response_status") ?? 200,
                           body: try row.optionalString("response_body") ?? "")
        }
        return .inFlight
    }

    /// Stores the response of a request that `beginIdempotency` let proceed.
    public func completeIdempotency(accountID: Int64, key: String, statusCode: Int, body: String) async throws {
        try await database.raw("""
            UPDATE idempotency_records SET status = 'done', response_status = \(bind: statusCode),
                response_body = \(bind: body)
            WHERE account_id = \(bind: accountID) AND idempotency_key = \(bind: key)
            """).run()
    }

    /// Forgets an in-flight key (the request failed in a way worth retrying, e.g. a 5xx).
    public func abandonIdempotency(accountID: Int64, key: String) async throws {
        try await database.raw("""
            DELETE FROM idempotency_records WHERE account_id = \(bind: accountID)
              AND idempotency_key = \(bind: key) AND status = 'in_flight'
            """).run()
    }

    // MARK: - Rate limits

    /// Counts one request in `key`'s fixed window of `windowSeconds` containing `now`, and returns
    /// the window's count including it.
    public func incrementRateLimit(key: String, windowSeconds: Int = 60,
                                   now: Date = Date()) async throws -> RateLimitCount {
        let windowMillis = Int64(max(1, windowSeconds)) * 1000
        let start = now.storeMillis / windowMillis * windowMillis
        let row = try await database.raw("""
            INSERT INTO rate_limit_buckets (bucket_key, window_start, count)
            VALUES (\(bind: key), \(bind: start), 1)
            ON CONFLICT (bucket_key, window_start) DO UPDATE SET count = rate_limit_buckets.count + 1
            RETURNING count
            """).first()
        return RateLimitCount(count: try required(row).int("count"), windowStart: Date(storeMillis: start),
                              windowEnd: Date(storeMillis: start + windowMillis))
    }

    // MARK: - Housekeeping

    /// Removes what has outlived its use: audit events after 90 days, idempotency records after
    /// 24 hours, rate-limit windows that ended over an hour ago. Run it now and then.
    public func purgeExpired(now: Date = Date()) async throws {
        try await purgeAuditEvents(olderThan: now.addingTimeInterval(-Self.auditRetention))
        try await database.raw("""
            DELETE FROM idempotency_records
            WHERE created_at < \(bind: now.addingTimeInterval(-Self.idempotencyRetention).storeMillis)
            """).run()
        try await database.raw("""
            DELETE FROM rate_limit_buckets WHERE window_start < \(bind: now.addingTimeInterval(-3600).storeMillis)
            """).run()
    }

    // MARK: - Helpers

    static func json(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func decodeJSON<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(text.utf8))
        } catch {
            throw StoreError.corrupt("\(T.self) JSON")
        }
    }
}

private func required<T>(_ value: T?) throws -> T {
    guard let value else { throw StoreError.corrupt("expected a row") }
    return value
}

extension SQLRow {
    func int64(_ column: String) throws -> Int64 { try decode(column: column, as: Int64.self) }
    func int(_ column: String) throws -> Int { Int(try int64(column)) }
    func string(_ column: String) throws -> String { try decode(column: column, as: String.self) }
    func date(_ column: String) throws -> Date { Date(storeMillis: try int64(column)) }

    func optionalInt64(_ column: String) throws -> Int64? {
        try decodeNil(column: column) ? nil : try int64(column)
    }
    func optionalInt(_ column: String) throws -> Int? { try optionalInt64(column).map { Int($0) } }
    func optionalString(_ column: String) throws -> String? {
        try decodeNil(column: column) ? nil : try string(column)
    }
    func optionalDate(_ column: String) throws -> Date? { try optionalInt64(column).map(Date.init(storeMillis:)) }
}
