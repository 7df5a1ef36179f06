import Foundation
import MigrationEngine
import SQLKit

extension Store {
    // MARK: - Batches: create and read

    static let batchColumns: SQLQueryString = """
        id, account_id, name, status, folder_strategy, per_row_server, import_since, skip_duplicates,
        pause_reason, finished_at, created_at, updated_at
        """

    /// Stores a `queued` batch and one `pending` job per row, passwords sealed, in one transaction:
    /// the batch with all its jobs, or nothing. Throws `notFound` when a job's mailbox is not the
    /// account's. Jobs do not count toward the one-active-single-migration rule.
    public func createBatch(_ new: NewBatch, jobs: [NewBatchJob], now: Date = Date()) async throws -> BatchDetail {
        let sealed = try jobs.map { job in
            (job, try secrets.seal(job.sourcePassword), try job.targetPassword.map { try secrets.seal($0) })
        }
        let folders = try new.folderStrategy.jobSelectedFolders.map { try Self.json($0) }
        let stamp = now.storeMillis
        let flavor = self.flavor
        let batchID = try await transaction { db in
            let batchRow = try await db.raw(
                """
                INSERT INTO bulk_batches (account_id, name, status, folder_strategy, per_row_server, import_since,
                    skip_duplicates, created_at, updated_at)
                VALUES (\(bind: new.accountID), \(bind: new.name), 'queued', \(bind: new.folderStrategy.rawValue),
                    \(bind: new.perRowServer), \(bind: new.importSince), \(bind: new.skipDuplicates),
                    \(bind: stamp), \(bind: stamp))
                RETURNING id
                """
            ).first()
            let batchID = try required(batchRow).int64("id")
            for (job, sourceSealed, targetSealed) in sealed {
                let row = try await db.raw(
                    """
                    INSERT INTO migrations (account_id, mailbox_id, batch_id, batch_line, provider, source_host,
                        source_port, source_security, source_email, source_username, source_password_enc,
                        target_password_enc, selected_folders, import_since, skip_duplicates, status, created_at,
                        updated_at)
                    SELECT \(bind: new.accountID), \(bind: job.mailboxID), \(bind: batchID), \(bind: job.line),
                        \(bind: job.provider), \(bind: job.sourceHost), \(bind: job.sourcePort),
                        \(bind: job.sourceSecurity), \(bind: job.sourceEmail), \(bind: job.sourceUsername),
                        \(bind: sourceSealed), \(bind: targetSealed), \(bind: folders), \(bind: new.importSince),
                        \(bind: new.skipDuplicates), 'pending', \(bind: stamp), \(bind: stamp)
                    WHERE EXISTS (SELECT 1 FROM mailboxes WHERE id = \(bind: job.mailboxID)
                                  AND account_id = \(bind: new.accountID))
                    RETURNING id
                    """
                ).first()
                if row == nil { throw StoreError.notFound }
            }
            try await Self.announceWork(db, flavor)
            return batchID
        }
        return try await required(batchDetail(id: batchID))
    }

    /// The batch with its counts; with `accountID`, only if it is that account's.
    public func batch(id: Int64, accountID: Int64? = nil) async throws -> BatchRecord? {
        var query: SQLQueryString = "SELECT \(Self.batchColumns) FROM bulk_batches WHERE id = \(bind: id)"
        if let accountID { query += " AND account_id = \(bind: accountID)" }
        guard let row = try await reader.raw(query).first() else { return nil }
        var batch = try Self.batch(from: row)
        batch.counts = try await batchCounts(batchIDs: [id])[id] ?? BatchCounts()
        return batch
    }

    /// The batch with every job (oldest first, the CSV's order), each with its folders.
    public func batchDetail(id: Int64, accountID: Int64? = nil) async throws -> BatchDetail? {
        guard let batch = try await batch(id: id, accountID: accountID) else { return nil }
        let rows = try await reader.raw(
            """
            SELECT m.batch_line, \(Self.migrationColumns) WHERE m.batch_id = \(bind: id) ORDER BY m.id
            """
        ).all()
        var jobs = try rows.map {
            BatchJob(line: try $0.optionalInt("batch_line"), migration: try Self.migration(from: $0))
        }
        let folders = try await folders(migrationIDs: jobs.map(\.migration.id))
        for index in jobs.indices { jobs[index].migration.folders = folders[jobs[index].migration.id] ?? [] }
        return BatchDetail(batch: batch, jobs: jobs)
    }

    /// A page of the account's batches, newest first, optionally filtered by status.
    public func listBatches(
        accountID: Int64, status: BatchStatus? = nil,
        page: PageRequest = PageRequest()
    ) async throws -> Page<BatchRecord> {
        var filter: SQLQueryString = "account_id = \(bind: accountID)"
        if let status { filter += " AND status = \(bind: status.rawValue)" }
        let total =
            try await reader.raw("SELECT COUNT(*) AS n FROM bulk_batches WHERE \(filter)")
            .first().map { try $0.int("n") } ?? 0
        var batches = try await reader.raw(
            """
            SELECT \(Self.batchColumns) FROM bulk_batches WHERE \(filter) ORDER BY id DESC
            LIMIT \(bind: page.perPage) OFFSET \(bind: page.offset)
            """
        ).all().map(Self.batch(from:))
        let counts = try await batchCounts(batchIDs: batches.map(\.id))
        for index in batches.indices { batches[index].counts = counts[batches[index].id] ?? BatchCounts() }
        return Page(items: batches, page: page.page, perPage: page.perPage, total: total)
    }

    func batchCounts(batchIDs: [Int64]) async throws -> [Int64: BatchCounts] {
        guard !batchIDs.isEmpty else { return [:] }
        let ids = batchIDs.map { SQLQueryString("\(bind: $0)") }.joined(separator: ", ")
        var result: [Int64: BatchCounts] = [:]
        for row in try await reader.raw(
            """
            SELECT batch_id, status, COUNT(*) AS n, \(unsafeRaw: flavor.sum("total_messages")) AS total,
                \(unsafeRaw: flavor.sum("imported_messages")) AS imported,
                \(unsafeRaw: flavor.sum("failed_messages")) AS failed,
                \(unsafeRaw: flavor.sum("skipped_duplicates")) AS skipped
            FROM migrations WHERE batch_id IN (\(ids)) GROUP BY batch_id, status
            """
        ).all() {
            let statusName = try row.string("status")
            guard let status = MigrationStatus(rawValue: statusName) else {
                throw StoreError.corrupt("migration status \(statusName)")
            }
            let n = try row.int("n")
            var counts = result[try row.int64("batch_id")] ?? BatchCounts()
            counts.jobs += n
            switch status {
            case .pending: counts.pending += n
            case .validating, .planning, .processing: counts.running += n
            case .completed: counts.completed += n
            case .failed: counts.failed += n
            case .cancelled: counts.cancelled += n
            }
            counts.totalMessages += try row.int("total")
            counts.importedMessages += try row.int("imported")
            counts.failedMessages += try row.int("failed")
            counts.skippedDuplicates += try row.int("skipped")
            result[try row.int64("batch_id")] = counts
        }
        return result
    }

    static func batch(from row: any SQLRow) throws -> BatchRecord {
        let statusName = try row.string("status")
        guard let status = BatchStatus(rawValue: statusName) else {
            throw StoreError.corrupt("batch status \(statusName)")
        }
        let strategyName = try row.string("folder_strategy")
        guard let strategy = FolderStrategy(rawValue: strategyName) else {
            throw StoreError.corrupt("folder strategy \(strategyName)")
        }
        return BatchRecord(
            id: try row.int64("id"), accountID: try row.int64("account_id"), name: try row.string("name"),
            status: status, folderStrategy: strategy,
            perRowServer: try row.decode(column: "per_row_server", as: Bool.self),
            importSince: try row.optionalString("import_since"),
            skipDuplicates: try row.decode(column: "skip_duplicates", as: Bool.self),
            pauseReason: try row.optionalString("pause_reason"), counts: BatchCounts(),
            finishedAt: try row.optionalDate("finished_at"), createdAt: try row.date("created_at"),
            updatedAt: try row.date("updated_at"))
    }

    // MARK: - Batches: a user's changes

    /// Cancels the batch and every job of it still queued or running (a runner holding one sees
    /// the status at its next lease renewal and stops). One transaction.
    /// Throws `notFound` or `invalidBatchStatus`.
    public func cancelBatch(id: Int64, accountID: Int64, now: Date = Date()) async throws -> BatchDetail {
        let stamp = now.storeMillis
        let flavor = self.flavor
        let cancelled = try await transaction { db in
            guard
                try await db.raw(
                    """
                    UPDATE bulk_batches SET status = \(BatchTransition.cancel.sqlTo), pause_reason = NULL,
                        finished_at = \(bind: stamp), updated_at = \(bind: stamp)
                    WHERE id = \(bind: id) AND account_id = \(bind: accountID) AND \(BatchTransition.cancel.sqlFrom())
                    RETURNING id
                    """
                ).first() != nil
            else { return false }
            try await db.raw(
                """
                UPDATE migrations SET status = \(MigrationTransition.cancel.sqlTo), finished_at = \(bind: stamp),
                    updated_at = \(bind: stamp)
                WHERE batch_id = \(bind: id) AND \(MigrationTransition.cancel.sqlFrom())
                """
            ).run()
            try await Self.announceWork(db, flavor)
            return true
        }
        if !cancelled { try await throwWhyNot(batchID: id, accountID: accountID) }
        return try await required(batchDetail(id: id))
    }

    /// Queues the batch's failed jobs again, each reset as `retryMigration` resets one (its
    /// checkpoints kept, so nothing is copied twice), and the batch with them. One transaction.
    /// Throws `notFound`, `invalidBatchStatus`, or `noFailedJobs`.
    public func retryBatch(id: Int64, accountID: Int64, now: Date = Date()) async throws -> BatchDetail {
        let stamp = now.storeMillis
        enum Outcome: Sendable { case retried, refused, nothingFailed }
        let flavor = self.flavor
        let outcome: Outcome = try await transaction { db in
            let retried = try await Self.requeueBatch(
                .retry, id: id, accountID: accountID, jobs: .retry, extraSet: "",
                where: "status = \(bind: MigrationStatus.failed.rawValue)", db, stamp: stamp)
            guard let retried else { return .refused }
            // Nothing to queue: the batch stays as it was (the transaction is rolled back).
            guard !retried.isEmpty else { throw StoreError.noFailedJobs }
            try await Self.announceWork(db, flavor)
            return .retried
        }
        if outcome == .refused { try await throwWhyNot(batchID: id, accountID: accountID) }
        return try await required(batchDetail(id: id))
    }

    /// A delta pass over an ended batch: every completed job goes back to the queue as its own
    /// `:sync` would (checkpoints kept; `syncDeletions` for each), and the batch is queued again.
    /// Throws `notFound`, or `invalidBatchStatus` when the batch has not ended or has no completed job.
    public func syncBatch(id: Int64, accountID: Int64, syncDeletions: Bool, now: Date = Date()) async throws
        -> BatchDetail
    {
        let stamp = now.storeMillis
        struct NothingCompleted: Error {}
        let flavor = self.flavor
        do {
            let synced: Bool = try await transaction { db in
                let jobs = try await Self.requeueBatch(
                    .sync, id: id, accountID: accountID, jobs: .sync,
                    extraSet: ", sync_deletions = \(bind: syncDeletions)", where: MigrationTransition.sync.sqlFrom(),
                    db,
                    stamp: stamp)
                guard let jobs else { return false }
                // Nothing to pass over: the batch stays as it was (the transaction is rolled back).
                guard !jobs.isEmpty else { throw NothingCompleted() }
                try await Self.announceWork(db, flavor)
                return true
            }
            if !synced { try await throwWhyNot(batchID: id, accountID: accountID) }
        } catch is NothingCompleted {
            throw StoreError.invalidBatchStatus(.completedWithErrors)
        }
        return try await required(batchDetail(id: id))
    }

    /// A retry's or a sync's step inside its transaction: the batch back to the queue under
    /// `transition`, and the jobs `condition` selects reset under `jobs` as a single migration's
    /// retry resets one (error and counts cleared, folder rows and the failed-message list removed,
    /// checkpoints kept, so nothing is copied twice). Nil when the batch may not move; else the ids of the jobs reset.
    private static func requeueBatch(
        _ transition: BatchTransition, id: Int64, accountID: Int64, jobs: MigrationTransition,
        extraSet: SQLQueryString, where condition: SQLQueryString, _ db: any SQLDatabase, stamp: Int64
    ) async throws -> [Int64]? {
        guard
            try await db.raw(
                """
                UPDATE bulk_batches SET status = \(transition.sqlTo), finished_at = NULL, updated_at = \(bind: stamp)
                WHERE id = \(bind: id) AND account_id = \(bind: accountID) AND \(transition.sqlFrom())
                RETURNING id
                """
            ).first() != nil
        else { return nil }
        let reset = try await db.raw(
            """
            UPDATE migrations SET status = \(jobs.sqlTo), error_code = NULL,
                error_message = NULL, error_hint = NULL, total_messages = 0, imported_messages = 0,
                failed_messages = 0, skipped_duplicates = 0, started_at = NULL, finished_at = NULL,
                updated_at = \(bind: stamp)\(extraSet)
            WHERE batch_id = \(bind: id) AND \(condition)
            RETURNING id
            """
        ).all().map { try $0.int64("id") }
        guard !reset.isEmpty else { return reset }
        let ids = reset.map { SQLQueryString("\(bind: $0)") }.joined(separator: ", ")
        try await db.raw("DELETE FROM migration_folders WHERE migration_id IN (\(ids))").run()
        try await clearFailedMessages(migrationIDs: ids, db)
        return reset
    }

    /// Takes a paused batch back to the queue: its jobs are claimed again and resume from their
    /// checkpoints. Whether storage allows it is the caller's to check first.
    /// Throws `notFound` or `invalidBatchStatus`.
    public func resumeBatch(id: Int64, accountID: Int64, now: Date = Date()) async throws -> BatchDetail {
        // A transaction so the work notice goes out with the change, at its commit.
        let flavor = self.flavor
        let resumed = try await transaction { db in
            guard
                try await db.raw(
                    """
                    UPDATE bulk_batches SET status = \(BatchTransition.resume.sqlTo), pause_reason = NULL,
                        updated_at = \(bind: now.storeMillis)
                    WHERE id = \(bind: id) AND account_id = \(bind: accountID) AND \(BatchTransition.resume.sqlFrom())
                    RETURNING id
                    """
                ).first() != nil
            else { return false }
            try await Self.announceWork(db, flavor)
            return true
        }
        if !resumed { try await throwWhyNot(batchID: id, accountID: accountID) }
        return try await required(batchDetail(id: id))
    }

    /// Deletes an ended batch with its jobs (their folders, checkpoints and sealed credentials go
    /// with them). One transaction. Throws `notFound` or `invalidBatchStatus`.
    public func deleteBatch(id: Int64, accountID: Int64) async throws {
        let deleted = try await transaction { db in
            guard
                try await db.raw(
                    """
                    DELETE FROM bulk_batches
                    WHERE id = \(bind: id) AND account_id = \(bind: accountID) AND \(BatchTransition.delete.sqlFrom())
                    RETURNING id
                    """
                ).first() != nil
            else { return false }
            try await db.raw("DELETE FROM migrations WHERE batch_id = \(bind: id) AND account_id = \(bind: accountID)")
                .run()
            return true
        }
        if !deleted { try await throwWhyNot(batchID: id, accountID: accountID) }
    }

    /// Replaces a failed job's source password (sealed like every stored password); the batch's
    /// retry then picks the job up. Throws `notFound` (no such job in this batch of the account) or
    /// `invalidStatus` with the job's status.
    public func updateBatchJobPassword(
        batchID: Int64, jobID: Int64, accountID: Int64, password: String,
        now: Date = Date()
    ) async throws -> BatchJob {
        let row = try await database.raw(
            """
            UPDATE migrations SET source_password_enc = \(bind: try secrets.seal(password)),
                updated_at = \(bind: now.storeMillis)
            WHERE id = \(bind: jobID) AND batch_id = \(bind: batchID) AND account_id = \(bind: accountID)
              AND \(BatchJobChange.updatePassword.sqlFrom())
            RETURNING id
            """
        ).first()
        let current = try await batchJob(batchID: batchID, jobID: jobID, accountID: accountID)
        guard let current else { throw StoreError.notFound }
        if row == nil { throw StoreError.invalidStatus(current.migration.status) }
        return current
    }

    /// One job of a batch of the account.
    public func batchJob(batchID: Int64, jobID: Int64, accountID: Int64) async throws -> BatchJob? {
        guard
            let row = try await reader.raw(
                """
                SELECT m.batch_line, \(Self.migrationColumns)
                WHERE m.id = \(bind: jobID) AND m.batch_id = \(bind: batchID) AND m.account_id = \(bind: accountID)
                """
            ).first()
        else { return nil }
        var job = BatchJob(line: try row.optionalInt("batch_line"), migration: try Self.migration(from: row))
        job.migration.folders = try await folders(migrationIDs: [jobID])[jobID] ?? []
        return job
    }

    // MARK: - Batches: what the runner and the storage watch write

    /// Pauses a queued or running batch for storage: the batch stops being claimed from, and its
    /// running jobs go back to `pending` (their runners see it at the next lease renewal and let
    /// go at a safe point; checkpoints stay, so a resume continues where each stopped).
    /// Returns false when the batch was not queued or running.
    /// A pause for storage (`BatchPauseReason.isStorage`) records its notice in the same
    /// transaction; `usedBytes` and `poolBytes`, when the caller measured them, go into that notice.
    @discardableResult
    public func pauseBatch(
        id: Int64, reason: String, usedBytes: Int64? = nil, poolBytes: Int64? = nil, now: Date = Date()
    ) async throws -> Bool {
        let stamp = now.storeMillis
        return try await transaction { db in
            guard
                try await db.raw(
                    """
                    UPDATE bulk_batches SET status = \(BatchTransition.pause.sqlTo), pause_reason = \(bind: reason),
                        updated_at = \(bind: stamp)
                    WHERE id = \(bind: id) AND \(BatchTransition.pause.sqlFrom())
                    RETURNING id
                    """
                ).first() != nil
            else { return false }
            try await db.raw(
                """
                UPDATE migrations SET status = \(MigrationTransition.requeue.sqlTo), updated_at = \(bind: stamp)
                WHERE batch_id = \(bind: id) AND \(MigrationTransition.requeue.sqlFrom())
                """
            ).run()
            if BatchPauseReason.isStorage(reason) {
                try await Self.recordNotice(
                    .batchPausedForStorage, batchID: id,
                    detail: NoticeDetail(reason: reason, usedBytes: usedBytes, poolBytes: poolBytes),
                    db, now: now)
            }
            return true
        }
    }

    /// Active batches of an account (for a storage watch deciding what to pause).
    public func activeBatchIDs(accountID: Int64) async throws -> [Int64] {
        try await database.raw(
            """
            SELECT id FROM bulk_batches WHERE account_id = \(bind: accountID)
              AND status IN (\(unsafeRaw: BatchStatus.sqlList(BatchStatus.active))) ORDER BY id
            """
        ).all().map { try $0.int64("id") }
    }

    /// The accounts with a queued or processing batch: those whose storage the watch measures.
    public func accountIDsWithClaimableBatches() async throws -> [Int64] {
        try await database.raw(
            """
            SELECT DISTINCT account_id FROM bulk_batches
            WHERE status IN (\(unsafeRaw: BatchStatus.sqlList(BatchStatus.claimable))) ORDER BY account_id
            """
        ).all().map { try $0.int64("account_id") }
    }

    /// Moves a queued batch to `processing` once one of its jobs is claimed.
    static func startBatch(ofMigration migrationID: Int64, _ db: any SQLDatabase, now: Date) async throws {
        try await db.raw(
            """
            UPDATE bulk_batches SET status = \(BatchTransition.start.sqlTo), updated_at = \(bind: now.storeMillis)
            WHERE id = (SELECT batch_id FROM migrations WHERE id = \(bind: migrationID))
              AND \(BatchTransition.start.sqlFrom())
            """
        ).run()
    }

    /// Ends the batch of a migration that just ended, once none of its jobs is active: `completed`
    /// when every job completed, else `completed_with_errors`. One statement, so two jobs ending
    /// at once settle it once.
    static func settleBatch(ofMigration migrationID: Int64, _ db: any SQLDatabase, now: Date) async throws {
        let stamp = now.storeMillis
        try await db.raw(
            """
            UPDATE bulk_batches SET
                status = CASE WHEN EXISTS (SELECT 1 FROM migrations j WHERE j.batch_id = bulk_batches.id
                                             AND j.status <> \(bind: MigrationStatus.completed.rawValue))
                         THEN \(bind: BatchStatus.completedWithErrors.rawValue)
                         ELSE \(bind: BatchStatus.completed.rawValue) END,
                finished_at = \(bind: stamp), updated_at = \(bind: stamp)
            WHERE id = (SELECT batch_id FROM migrations WHERE id = \(bind: migrationID))
              AND \(BatchTransition.finish.sqlFrom())
              AND NOT EXISTS (SELECT 1 FROM migrations j WHERE j.batch_id = bulk_batches.id
                                AND j.status IN (\(unsafeRaw: Self.activeList)))
            """
        ).run()
    }

    /// Takes an ended batch back to the queue when one of its jobs is retried on its own.
    static func reopenBatch(ofMigration migrationID: Int64, _ db: any SQLDatabase, now: Date) async throws {
        try await db.raw(
            """
            UPDATE bulk_batches SET status = \(BatchTransition.retry.sqlTo), finished_at = NULL,
                updated_at = \(bind: now.storeMillis)
            WHERE id = (SELECT batch_id FROM migrations WHERE id = \(bind: migrationID))
              AND \(BatchTransition.retry.sqlFrom())
            """
        ).run()
    }

    private func throwWhyNot(batchID: Int64, accountID: Int64) async throws -> Never {
        guard let current = try await batch(id: batchID, accountID: accountID) else { throw StoreError.notFound }
        throw StoreError.invalidBatchStatus(current.status)
    }
}
