import Foundation
import MigrationEngine
import SQLKit

extension Store {
    // MARK: - Migrations: create and read

    static let activeList = MigrationStatus.sqlList(MigrationStatus.active)
    static let runningList = MigrationStatus.sqlList(MigrationStatus.running)

    /// Stores a new `pending` migration with its passwords encrypted. Throws `notFound` when the
    /// mailbox is not the account's, `activeMigrationExists` when a single migration (no batch) is
    /// started while the account has an active one.
    public func createMigration(_ new: NewMigration, now: Date = Date()) async throws -> MigrationRecord {
        let sourceSealed = try secrets.seal(new.sourcePassword)
        let targetSealed = try new.targetPassword.map { try secrets.seal($0) }
        let folders = try new.selectedFolders.map { try Self.json($0) }
        let stamp = now.storeMillis
        let onlyActiveSingle: SQLQueryString =
            new.batchID != nil
            ? ""
            : """
             AND NOT EXISTS (SELECT 1 FROM migrations WHERE account_id = \(bind: new.accountID)
                 AND batch_id IS NULL AND status IN (\(unsafeRaw: Self.activeList)))
            """
        // A transaction so the work notice (`announceWork`) goes out with the row, at its commit.
        let flavor = self.flavor
        let id: Int64? = try await transaction { db in
            let row = try await db.raw(
                """
                INSERT INTO migrations (account_id, mailbox_id, batch_id, provider, source_host, source_port,
                    source_security, source_email, source_username, source_password_enc, target_password_enc,
                    selected_folders, import_since, skip_duplicates, notify, sync_every_hours, status, created_at,
                    updated_at)
                SELECT \(bind: new.accountID), \(bind: new.mailboxID), \(bind: new.batchID), \(bind: new.provider),
                    \(bind: new.sourceHost), \(bind: new.sourcePort), \(bind: new.sourceSecurity),
                    \(bind: new.sourceEmail), \(bind: new.sourceUsername), \(bind: sourceSealed),
                    \(bind: targetSealed), \(bind: folders), \(bind: new.importSince), \(bind: new.skipDuplicates),
                    \(bind: new.notify), \(bind: new.syncEveryHours), 'pending', \(bind: stamp), \(bind: stamp)
                WHERE EXISTS (SELECT 1 FROM mailboxes WHERE id = \(bind: new.mailboxID)
                              AND account_id = \(bind: new.accountID))\(onlyActiveSingle)
                RETURNING id
                """
            ).first()
            guard let row else { return nil }
            try await Self.announceWork(db, flavor)
            return try row.int64("id")
        }
        guard let id else {
            if try await mailbox(id: new.mailboxID, accountID: new.accountID) == nil { throw StoreError.notFound }
            throw StoreError.activeMigrationExists
        }
        return try await required(migration(id: id))
    }

    /// The migration with its folders; with `accountID`, only if it is that account's.
    public func migration(id: Int64, accountID: Int64? = nil) async throws -> MigrationRecord? {
        var query: SQLQueryString = "SELECT \(Self.migrationColumns) WHERE m.id = \(bind: id)"
        if let accountID { query += " AND m.account_id = \(bind: accountID)" }
        guard let row = try await reader.raw(query).first() else { return nil }
        var record = try Self.migration(from: row)
        record.folders = try await folders(migrationIDs: [id])[id] ?? []
        return record
    }

    /// A page of the account's migrations, newest first, optionally filtered.
    public func listMigrations(
        accountID: Int64, status: MigrationStatus? = nil, mailboxID: Int64? = nil,
        batchID: Int64? = nil, page: PageRequest = PageRequest()
    ) async throws
        -> Page<MigrationRecord>
    {
        var filter: SQLQueryString = "m.account_id = \(bind: accountID)"
        if let status { filter += " AND m.status = \(bind: status.rawValue)" }
        if let mailboxID { filter += " AND m.mailbox_id = \(bind: mailboxID)" }
        if let batchID { filter += " AND m.batch_id = \(bind: batchID)" }
        let total =
            try await reader.raw("SELECT COUNT(*) AS n FROM migrations m WHERE \(filter)")
            .first().map { try $0.int("n") } ?? 0
        var records = try await reader.raw(
            """
            SELECT \(Self.migrationColumns) WHERE \(filter) ORDER BY m.id DESC
            LIMIT \(bind: page.perPage) OFFSET \(bind: page.offset)
            """
        ).all().map(Self.migration(from:))
        let folders = try await folders(migrationIDs: records.map(\.id))
        for index in records.indices { records[index].folders = folders[records[index].id] ?? [] }
        return Page(items: records, page: page.page, perPage: page.perPage, total: total)
    }

    /// The decrypted passwords of a migration, for the runner. Never put them in a response or a log.
    public func credentials(forMigration id: Int64) async throws -> MigrationCredentials? {
        guard
            let row = try await database.raw(
                """
                SELECT source_password_enc, target_password_enc FROM migrations WHERE id = \(bind: id)
                """
            ).first()
        else { return nil }
        return MigrationCredentials(
            sourcePassword: try secrets.open(try row.string("source_password_enc")),
            targetPassword: try row.optionalString("target_password_enc").map { try secrets.open($0) })
    }

    /// Replaces the source password (bulk job password fix), only while the migration is not running.
    public func updateSourcePassword(
        migrationID: Int64, accountID: Int64, password: String,
        now: Date = Date()
    ) async throws {
        let row = try await database.raw(
            """
            UPDATE migrations SET source_password_enc = \(bind: try secrets.seal(password)),
                updated_at = \(bind: now.storeMillis)
            WHERE id = \(bind: migrationID) AND account_id = \(bind: accountID)
              AND status NOT IN (\(unsafeRaw: Self.runningList))
            RETURNING id
            """
        ).first()
        if row == nil { try await throwWhyNot(migrationID: migrationID, accountID: accountID) }
    }

    /// Active single (non-bulk) migrations of the account: 0 or 1.
    public func activeSingleMigrationCount(accountID: Int64) async throws -> Int {
        try await database.raw(
            """
            SELECT COUNT(*) AS n FROM migrations WHERE account_id = \(bind: accountID) AND batch_id IS NULL
              AND status IN (\(unsafeRaw: Self.activeList))
            """
        ).first().map { try $0.int("n") } ?? 0
    }

    /// How many migrations are in each status (for metrics).
    public func statusCounts() async throws -> [MigrationStatus: Int] {
        var counts: [MigrationStatus: Int] = [:]
        for row in try await database.raw("SELECT status, COUNT(*) AS n FROM migrations GROUP BY status").all() {
            if let status = MigrationStatus(rawValue: try row.string("status")) { counts[status] = try row.int("n") }
        }
        return counts
    }

    // MARK: - Migrations: the runner's writes

    /// Moves a running migration to `status` (a runner walking validating → planning → processing →
    /// completed | failed), only while `lease` still holds it (see `Lease`). Never moves a migration
    /// out of a terminal status, so a cancel wins over the runner, nor out of `pending`, so a
    /// runner's late write cannot revive a migration that was cancelled and retried under it (only a
    /// claim starts a pending one). A terminal status sets `finished_at`; `error` sets the error
    /// fields. Returns false when nothing changed.
    @discardableResult
    public func updateStatus(
        _ lease: Lease, to status: MigrationStatus, error: MigrationError? = nil, now: Date = Date()
    ) async throws -> Bool {
        try await updateStatus(
            migrationID: lease.migrationID, to: status, held: Self.held(lease), error: error, now: now)
    }

    /// `updateStatus(_:to:)` whoever holds the lease (tools and tests; runners write under their lease).
    @discardableResult
    public func updateStatus(
        migrationID: Int64, to status: MigrationStatus, error: MigrationError? = nil, now: Date = Date()
    ) async throws -> Bool {
        try await updateStatus(migrationID: migrationID, to: status, held: nil, error: error, now: now)
    }

    private func updateStatus(
        migrationID: Int64, to status: MigrationStatus, held: SQLQueryString?, error: MigrationError?, now: Date
    ) async throws -> Bool {
        var sets: SQLQueryString = "status = \(bind: status.rawValue), updated_at = \(bind: now.storeMillis)"
        if status.isTerminal { sets += ", finished_at = \(bind: now.storeMillis)" }
        // Every completed run is a pass: the first copy and each delta pass after it.
        if status == .completed { sets += ", passes = passes + 1, last_pass_at = \(bind: now.storeMillis)" }
        if let error {
            sets += """
                , error_code = \(bind: error.code), error_message = \(bind: error.message),
                error_hint = \(bind: error.hint)
                """
        }
        var query: SQLQueryString = """
            UPDATE migrations SET \(sets)
            WHERE id = \(bind: migrationID) AND \(MigrationTransition.advance.sqlFrom())
            """
        if let held { query += " AND \(held)" }
        query += " RETURNING id"
        guard status.isTerminal else { return try await database.raw(query).first() != nil }
        // A job's end and its batch's end go together: a batch is never left running with every job over.
        return try await transaction { [flavor, query] db in
            guard try await db.raw(query).first() != nil else { return false }
            try await Self.settleBatch(ofMigration: migrationID, db, now: now)
            try await Self.recordNotices(afterEndOf: migrationID, db, now: now)
            // A slot under the global (or the plan's) limit is free: idle nodes claim at once.
            try await Self.announceWork(db, flavor)
            return true
        }
    }

    /// Writes the running totals and per-folder progress (upserted by source folder name, in the
    /// given order), only while `lease` holds the migration; with `whileStatus`, only while the
    /// migration has that status. One transaction: the folders are written under the same row lock
    /// as the totals, so none of it lands after a take-over. Returns false when nothing changed.
    @discardableResult
    public func updateProgress(
        _ lease: Lease, whileStatus status: MigrationStatus? = nil, totals: MigrationTotals,
        folders: [FolderProgress] = [], now: Date = Date()
    ) async throws -> Bool {
        try await updateProgress(
            migrationID: lease.migrationID, held: Self.held(lease), whileStatus: status, totals: totals,
            folders: folders, now: now)
    }

    /// `updateProgress(_:…)` whoever holds the lease (tools and tests).
    @discardableResult
    public func updateProgress(
        migrationID: Int64, whileStatus status: MigrationStatus? = nil, totals: MigrationTotals,
        folders: [FolderProgress] = [], now: Date = Date()
    ) async throws -> Bool {
        try await updateProgress(
            migrationID: migrationID, held: nil, whileStatus: status, totals: totals, folders: folders, now: now)
    }

    private func updateProgress(
        migrationID: Int64, held: SQLQueryString?, whileStatus status: MigrationStatus?, totals: MigrationTotals,
        folders: [FolderProgress], now: Date
    ) async throws -> Bool {
        var query: SQLQueryString = """
            UPDATE migrations SET total_messages = \(bind: totals.total),
                imported_messages = \(bind: totals.imported), failed_messages = \(bind: totals.failed),
                skipped_duplicates = \(bind: totals.skipped), bytes_copied = \(bind: totals.bytes),
                updated_at = \(bind: now.storeMillis)
            WHERE id = \(bind: migrationID)
            """
        if let held { query += " AND \(held)" }
        if let status { query += " AND status = \(bind: status.rawValue)" }
        query += " RETURNING id"
        guard !folders.isEmpty else { return try await database.raw(query).first() != nil }
        return try await transaction { [query] db in
            guard try await db.raw(query).first() != nil else { return false }
            try await Self.upsertFolders(migrationID: migrationID, folders: folders, db)
            return true
        }
    }

    /// Inserts or updates the per-folder rows of a migration (keyed by source name).
    static func upsertFolders(migrationID: Int64, folders: [FolderProgress], _ db: any SQLDatabase) async throws {
        guard !folders.isEmpty else { return }
        let values = folders.enumerated().map { position, folder -> SQLQueryString in
            """
            (\(bind: migrationID), \(bind: position), \(bind: folder.sourceName), \(bind: folder.destinationName),
             \(bind: folder.status.rawValue), \(bind: folder.expected), \(bind: folder.imported),
             \(bind: folder.failed), \(bind: folder.skipped), \(bind: folder.flagsUpdated), \(bind: folder.deleted))
            """
        }
        try await db.raw(
            """
            INSERT INTO migration_folders (migration_id, position, source_name, destination_name, status,
                expected, imported, failed, skipped, flags_updated, deleted)
            VALUES \(values.joined(separator: ", "))
            ON CONFLICT (migration_id, source_name) DO UPDATE SET
                position = excluded.position, destination_name = excluded.destination_name,
                status = excluded.status, expected = excluded.expected, imported = excluded.imported,
                failed = excluded.failed, skipped = excluded.skipped, flags_updated = excluded.flags_updated,
                deleted = excluded.deleted
            """
        ).run()
    }

    func folders(migrationIDs: [Int64]) async throws -> [Int64: [FolderProgress]] {
        guard !migrationIDs.isEmpty else { return [:] }
        let ids = migrationIDs.map { SQLQueryString("\(bind: $0)") }.joined(separator: ", ")
        var result: [Int64: [FolderProgress]] = [:]
        for row in try await reader.raw(
            """
            SELECT migration_id, source_name, destination_name, status, expected, imported, failed, skipped,
                flags_updated, deleted
            FROM migration_folders WHERE migration_id IN (\(ids)) ORDER BY migration_id, position
            """
        ).all() {
            let statusName = try row.string("status")
            guard let status = FolderProgress.Status(rawValue: statusName) else {
                throw StoreError.corrupt("folder status \(statusName)")
            }
            result[try row.int64("migration_id"), default: []].append(
                FolderProgress(
                    sourceName: try row.string("source_name"), destinationName: try row.string("destination_name"),
                    status: status, expected: try row.int("expected"), imported: try row.int("imported"),
                    failed: try row.int("failed"), skipped: try row.int("skipped"),
                    flagsUpdated: try row.int("flags_updated"), deleted: try row.int("deleted")))
        }
        return result
    }

    // MARK: - Migrations: cancel, retry, delete

    /// Cancels an active migration (a runner holding it sees the status on its next lease renewal).
    /// Throws `notFound` or `invalidStatus`.
    /// A job of a batch that was the batch's last active one ends the batch with it.
    public func cancelMigration(id: Int64, accountID: Int64, now: Date = Date()) async throws -> MigrationRecord {
        let flavor = self.flavor
        let cancelled = try await transaction { db in
            guard
                try await db.raw(
                    """
                    UPDATE migrations SET status = \(MigrationTransition.cancel.sqlTo),
                        finished_at = \(bind: now.storeMillis), updated_at = \(bind: now.storeMillis)
                    WHERE id = \(bind: id) AND account_id = \(bind: accountID)
                      AND \(MigrationTransition.cancel.sqlFrom())
                    RETURNING id
                    """
                ).first() != nil
            else { return false }
            try await Self.settleBatch(ofMigration: id, db, now: now)
            try await Self.recordNotices(afterEndOf: id, db, now: now)
            try await Self.announceWork(db, flavor)
            return true
        }
        if !cancelled { try await throwWhyNot(migrationID: id, accountID: accountID) }
        return try await required(migration(id: id))
    }

    /// Puts a failed or cancelled migration back to `pending` with its progress and error reset.
    /// Its checkpoints stay, so the next run copies only what is missing. A runner still holding it
    /// keeps its lease until it lets go, so two runners never work on it at once. Throws `notFound`,
    /// `invalidStatus`, or `activeMigrationExists` (another single migration of the account is active).
    /// A job of a batch is claimed again only while its batch is queued or running.
    public func retryMigration(id: Int64, accountID: Int64, now: Date = Date()) async throws -> MigrationRecord {
        try await requeue(id: id, accountID: accountID, .retry, now: now)
    }

    /// Runs a delta pass of a completed migration: back to the queue like a retry, its checkpoints
    /// kept, so the pass copies what is new and carries flag changes (and, with `syncDeletions`,
    /// deletions) to the copies it made. Throws `notFound`, `invalidStatus` or `activeMigrationExists`.
    public func syncMigration(id: Int64, accountID: Int64, syncDeletions: Bool, now: Date = Date()) async throws
        -> MigrationRecord
    {
        try await requeue(id: id, accountID: accountID, .sync, syncDeletions: syncDeletions, now: now)
    }

    /// Queues the delta pass of every migration whose scheduled pass is due (`MigrationRecord.nextPassAt`,
    /// asked here in SQL), as its `:sync` would, keeping its `sync_deletions`, and audits it as
    /// `migration_synced` without a token. A single migration whose account has another one active
    /// waits, due, for a later call: a scheduled pass counts against the same limits as any job.
    /// Returns the migrations queued.
    public func queueScheduledPasses(now: Date = Date()) async throws -> [MigrationRecord] {
        let due = try await database.raw(
            """
            SELECT id, account_id FROM migrations
            WHERE \(MigrationTransition.sync.sqlFrom()) AND sync_every_hours IS NOT NULL
              AND COALESCE(last_pass_at, finished_at) + sync_every_hours * 3600000 <= \(bind: now.storeMillis)
            ORDER BY id
            """
        ).all().map { (id: try $0.int64("id"), accountID: try $0.int64("account_id")) }
        var queued: [MigrationRecord] = []
        for migration in due {
            let record: MigrationRecord
            do {
                record = try await requeue(id: migration.id, accountID: migration.accountID, .sync, now: now)
            } catch StoreError.activeMigrationExists, StoreError.invalidStatus {
                // Another migration of the account is active, or another node queued this one.
                continue
            }
            try await recordAudit(
                accountID: record.accountID, tokenID: nil, action: "migration_synced", resourceType: "migration",
                resourceID: String(record.id), ip: nil, requestID: nil, now: now)
            queued.append(record)
        }
        return queued
    }

    /// Ends a migration's scheduled passes (`:finalize`, at cutover): no pass is queued after this
    /// one; a pass already queued or running goes on. Throws `notFound` or `notScheduled`.
    public func finalizeMigration(id: Int64, accountID: Int64, now: Date = Date()) async throws -> MigrationRecord {
        let ended =
            try await database.raw(
                """
                UPDATE migrations SET sync_every_hours = NULL, updated_at = \(bind: now.storeMillis)
                WHERE id = \(bind: id) AND account_id = \(bind: accountID) AND sync_every_hours IS NOT NULL
                RETURNING id
                """
            ).first() != nil
        guard ended else {
            guard try await migration(id: id, accountID: accountID) != nil else { throw StoreError.notFound }
            throw StoreError.notScheduled
        }
        return try await required(migration(id: id))
    }

    private func requeue(
        id: Int64, accountID: Int64, _ transition: MigrationTransition, syncDeletions: Bool? = nil, now: Date
    ) async throws -> MigrationRecord {
        let deletions: SQLQueryString = syncDeletions.map { ", sync_deletions = \(bind: $0)" } ?? ""
        let flavor = self.flavor
        // One transaction: the reset and the removal of the old folder rows, or neither.
        let retried = try await transaction { db in
            guard
                try await db.raw(
                    """
                    UPDATE migrations SET status = \(transition.sqlTo), error_code = NULL,
                        error_message = NULL, error_hint = NULL, total_messages = 0, imported_messages = 0,
                        failed_messages = 0, skipped_duplicates = 0, started_at = NULL, finished_at = NULL,
                        updated_at = \(bind: now.storeMillis)\(deletions)
                    WHERE id = \(bind: id) AND account_id = \(bind: accountID) AND \(transition.sqlFrom())
                      AND (batch_id IS NOT NULL OR NOT EXISTS (
                            SELECT 1 FROM migrations o WHERE o.account_id = \(bind: accountID) AND o.batch_id IS NULL
                              AND o.id <> \(bind: id) AND o.status IN (\(unsafeRaw: Self.activeList))))
                    RETURNING id
                    """
                ).first() != nil
            else { return false }
            try await db.raw("DELETE FROM migration_folders WHERE migration_id = \(bind: id)").run()
            try await Self.clearFailedMessages(migrationIDs: "\(bind: id)", db)
            // A job of an ended batch retried on its own takes its batch back to the queue.
            try await Self.reopenBatch(ofMigration: id, db, now: now)
            try await Self.announceWork(db, flavor)
            return true
        }
        if !retried {
            guard let current = try await migration(id: id, accountID: accountID) else { throw StoreError.notFound }
            guard transition.allows(from: current.status) else {
                throw StoreError.invalidStatus(current.status)
            }
            throw StoreError.activeMigrationExists
        }
        return try await required(migration(id: id))
    }

    /// Deletes a migration that is not active, with its folders and checkpoints; its encrypted
    /// credentials go with the row (SQLite overwrites deleted content: `secure_delete`).
    /// Throws `notFound` or `invalidStatus`.
    public func deleteMigration(id: Int64, accountID: Int64) async throws {
        let row = try await database.raw(
            """
            DELETE FROM migrations WHERE id = \(bind: id) AND account_id = \(bind: accountID)
              AND \(MigrationTransition.delete.sqlFrom())
            RETURNING id
            """
        ).first()
        if row == nil { try await throwWhyNot(migrationID: id, accountID: accountID) }
    }

    private func throwWhyNot(migrationID: Int64, accountID: Int64) async throws -> Never {
        guard let current = try await migration(id: migrationID, accountID: accountID) else {
            throw StoreError.notFound
        }
        throw StoreError.invalidStatus(current.status)
    }
}
