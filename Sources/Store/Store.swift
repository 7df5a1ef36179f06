import Foundation
import Synchronization
import Logging
import SQLKit
import SQLiteKit

/// The service's persistence: accounts, mailboxes, tokens, migrations with their folders and
/// checkpoints, audit events, idempotency records and rate-limit buckets, in one SQL database.
///
/// Everything goes through SQLKit with SQL that SQLite and PostgreSQL both accept (the few
/// differences live in `SQLFlavor`), so PostgreSQL is another way to open a `Store`, not a rewrite.
/// An operation that must be atomic is a single statement (conditional `UPDATE … RETURNING`,
/// `INSERT … ON CONFLICT`) or, where one statement cannot do it all, one transaction
/// (`transaction(_:)`), so the store is safe to share between tasks, runners and processes.
/// Times are stored as milliseconds since 1970.
public final class Store: Sendable {
    /// Internal: other modules go through the store's methods, so its SQL and status rules stay here.
    /// Every write and every transaction runs here, and any read that is part of a write's decision.
    let database: any SQLDatabase
    /// Where the reads that stand alone run: what the API shows (a migration, a batch, their lists,
    /// a token's lookup). It never waits for `database`'s statements or transactions, and it sees
    /// every write committed before its statement began, so a caller reads its own committed
    /// writes. On an SQLite file: `SQLiteReadConnections` (WAL); on PostgreSQL and in-memory SQLite
    /// it is `database` (the pool's connections already read beside the writers; a private
    /// in-memory database has no second connection to it).
    let reader: any SQLDatabase
    public let secrets: SecretBox
    let flavor: SQLFlavor
    let logger: Logger
    /// The schema versions this store's `open` applied (empty when the database was up to date).
    public let schemaVersionsAppliedAtOpen: [Int]
    private let closeDatabase: @Sendable () async throws -> Void
    private let closed = Mutex(false)
    /// Opens a connection of its own for LISTEN (PostgreSQL; see `listenForWork`), nil on SQLite.
    let openListenConnection: WorkListenConnector?
    /// The API's rate-limit windows on SQLite (see `incrementRateLimit`); nil on PostgreSQL.
    let rateLimitWindows: RateLimitWindows?

    /// A store over an open database whose schema is already migrated (see `open(database:…)`).
    init(
        database: any SQLDatabase, reader: (any SQLDatabase)? = nil, secrets: SecretBox, logger: Logger,
        appliedAtOpen: [Int] = [], listenConnector: WorkListenConnector? = nil,
        close: @escaping @Sendable () async throws -> Void
    ) {
        self.database = database
        self.reader = reader ?? database
        self.openListenConnection = listenConnector
        self.schemaVersionsAppliedAtOpen = appliedAtOpen
        self.secrets = secrets
        let flavor = SQLFlavor(dialectName: database.dialect.name)
        self.flavor = flavor
        self.rateLimitWindows = flavor == .sqlite ? RateLimitWindows() : nil
        self.logger = logger
        self.closeDatabase = close
    }

    /// A store over any SQLKit database (`openSQLite` and `openPostgres` end here): applies the
    /// schema migrations, then returns the store. `close` runs on `Store.close()`. The database's
    /// `withSession` must give a session no other task's statements run in (`openPostgres` leases
    /// one pooled connection for it; `openSQLite` wraps its one connection in
    /// `ExclusiveSessionDatabase`): transactions run there. `reader`, when given, runs the reads
    /// that stand alone (see `Store.reader`); without it they run on `database`.
    public static func open(
        database: any SQLDatabase, reader: (any SQLDatabase)? = nil, secrets: SecretBox,
        logger: Logger = Logger(label: "mailporter.store"),
        close: @escaping @Sendable () async throws -> Void = {}
    ) async throws -> Store {
        try await open(
            database: database, reader: reader, secrets: secrets, logger: logger, listenConnector: nil, close: close)
    }

    static func open(
        database: any SQLDatabase, reader: (any SQLDatabase)? = nil, secrets: SecretBox, logger: Logger,
        listenConnector: WorkListenConnector?, close: @escaping @Sendable () async throws -> Void
    ) async throws -> Store {
        let applied = try await Schema.migrate(database)
        if !applied.isEmpty {
            logger.info("applied schema migrations", metadata: ["versions": "\(applied)"])
        }
        return Store(
            database: database, reader: reader, secrets: secrets, logger: logger, appliedAtOpen: applied,
            listenConnector: listenConnector, close: close)
    }

    /// Opens (creating it and its directory if needed) the SQLite database at `path` in WAL mode and
    /// brings its schema up to date.
    public static func openSQLite(
        path: String, secrets: SecretBox,
        logger: Logger = Logger(label: "mailporter.store")
    ) async throws -> Store {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700])
        }
        return try await openSQLite(storage: .file(path: path), secrets: secrets, logger: logger, wal: true)
    }

    /// A private in-memory SQLite database (tests, dry runs): gone when the store is closed.
    public static func openInMemorySQLite(
        secrets: SecretBox = .random(),
        logger: Logger = Logger(label: "mailporter.store")
    ) async throws -> Store {
        try await openSQLite(storage: .memory, secrets: secrets, logger: logger, wal: false)
    }

    private static func openSQLite(
        storage: SQLiteConnection.Storage, secrets: SecretBox, logger: Logger,
        wal: Bool
    ) async throws -> Store {
        // A file's writer gets a thread of its own: waiting out another connection's write lock
        // (busy_timeout) blocks its thread, and on the shared pool it would stall every other
        // store of the process. A database in memory has no other connection to wait for.
        var ownPool: NIOThreadPool?
        if case .file = storage {
            let pool = NIOThreadPool(numberOfThreads: 1)
            pool.start()
            ownPool = pool
        }
        let connection: SQLiteConnection
        do {
            connection = try await SQLiteConnection.open(
                storage: storage,
                threadPool: ownPool ?? NIOThreadPool.singleton,
                logger: logger,
                on: MultiThreadedEventLoopGroup.singleton.any()
            )
        } catch {
            try? await ownPool?.shutdownGracefully()
            throw error
        }
        // No query logging: binds hold ciphertexts, token hashes and addresses.
        let database = ExclusiveSessionDatabase(connection.sql(queryLogLevel: nil))
        do {
            // Wait (sleeping) for another connection's write lock instead of spinning.
            try await database.raw("PRAGMA busy_timeout = 15000").run()
            if wal {
                try await database.raw("PRAGMA journal_mode = WAL").run()
                try await database.raw("PRAGMA synchronous = NORMAL").run()
            }
            try await database.raw("PRAGMA foreign_keys = ON").run()
            // Deleted rows (credentials of a deleted migration) are overwritten, not just unlinked.
            try await database.raw("PRAGMA secure_delete = ON").run()
        } catch {
            try? await connection.close()
            try? await ownPool?.shutdownGracefully()
            throw error
        }
        // Opened after the writer made the file WAL, so they read beside it from the start.
        var readers: SQLiteReadConnections?
        do {
            if wal, case .file(let path) = storage {
                readers = try await SQLiteReadConnections.open(path: path, logger: logger)
            }
            return try await open(database: database, reader: readers, secrets: secrets, logger: logger) {
                [readers, ownPool] in
                try await readers?.close()
                try await connection.close()
                try await ownPool?.shutdownGracefully()
            }
        } catch {
            try? await readers?.close()
            try? await connection.close()
            try? await ownPool?.shutdownGracefully()
            throw error
        }
    }

    public func close() async throws {
        closed.withLock { $0 = true }
        try await closeDatabase()
    }

    /// A store dropped without `close()` (a test that failed half-way, say) keeps its connections
    /// open until the process ends rather than letting them deinitialize open, which SQLiteNIO
    /// and postgres-nio treat as a programming error and, in debug builds, crash the process on.
    deinit {
        guard !closed.withLock({ $0 }) else { return }
        UnclosedStores.keep(closeDatabase)
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

    /// Runs `body` as one transaction: all its statements or none. `body` runs every statement on
    /// the session it is given; the store's own methods, on `database`, would wait for it to end.
    ///
    /// It runs in a task of its own, out of reach of the caller's cancellation: a cancelled task's
    /// COMMIT or ROLLBACK is refused (SQLite's thread pool drops work submitted from one), which
    /// left the transaction open on the connection and every later one failing ("cannot start a
    /// transaction within a transaction") — a runner's progress write is cancelled whenever its job ends.
    func transaction<Result: Sendable>(
        _ body: @escaping @Sendable (any SQLDatabase) async throws -> Result
    ) async throws -> Result {
        try await Task { try await self.runTransaction(body) }.value
    }

    private func runTransaction<Result: Sendable>(
        _ body: @escaping @Sendable (any SQLDatabase) async throws -> Result
    ) async throws -> Result {
        try await database.withSession { session in
            try await session.raw(SQLQueryString(self.flavor.beginWrite)).run()
            do {
                let result = try await body(session)
                try await session.raw("COMMIT").run()
                return result
            } catch {
                try? await session.raw("ROLLBACK").run()
                throw error
            }
        }
    }

    // MARK: - Housekeeping

    /// Removes what has outlived its use: audit events after 90 days, idempotency records after
    /// 24 hours, rate-limit windows that ended over an hour ago. Run it now and then. On
    /// PostgreSQL one node at a time purges (`SQLFlavor.purgeLock`): a node that finds another
    /// purging skips its turn and returns false, the other's purge covers the same rows.
    @discardableResult
    public func purgeExpired(now: Date = Date()) async throws -> Bool {
        try await purgeExpired(now: now, whileLocked: {})
    }

    /// `purgeExpired`; `whileLocked` runs once the lock is won, before the deletes (tests hold
    /// the lock there to see another store skip).
    func purgeExpired(now: Date, whileLocked: @escaping @Sendable () async -> Void) async throws -> Bool {
        let flavor = self.flavor
        return try await transaction { db in
            if let lock = flavor.purgeLock {
                let won = try await db.raw(SQLQueryString(lock)).first()?.decode(column: "won", as: Bool.self)
                guard won == true else { return false }
            }
            await whileLocked()
            try await Self.purgeAuditEvents(olderThan: now.addingTimeInterval(-Self.auditRetention), db)
            try await Self.purgeIdempotencyRecords(olderThan: now.addingTimeInterval(-Self.idempotencyRetention), db)
            try await Self.purgeRateLimitWindows(startedBefore: now.addingTimeInterval(-3600), db)
            return true
        }
    }
}

/// The connections of stores dropped without `close()`, kept for the life of the process.
private enum UnclosedStores {
    private static let kept = Mutex<[@Sendable () async throws -> Void]>([])

    static func keep(_ close: @escaping @Sendable () async throws -> Void) {
        kept.withLock { $0.append(close) }
    }
}
