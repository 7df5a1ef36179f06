import Foundation
import SQLKit

extension Store {
    /// Migrations a runner holds right now (running status with a live lease): what the global
    /// concurrency limit counts.
    public func runningCount(now: Date? = nil) async throws -> Int {
        try await database.raw(
            """
            SELECT COUNT(*) AS n FROM migrations WHERE status IN (\(unsafeRaw: Self.runningList))
              AND lease_expires_at >= \(leaseClock(now))
            """
        ).first().map { try $0.int("n") } ?? 0
    }

    /// Atomically takes the oldest claimable migration for `owner`, moving it to `validating` with a
    /// lease of `leaseSeconds`: a `pending` one nobody holds, or a running one whose lease expired
    /// (its runner died; the new one resumes it from its checkpoints). With `maxRunning`, claims only
    /// while fewer migrations than that are held. Bulk jobs also respect their account's plan limit
    /// of jobs running at once, and are claimed only while their batch is queued or running (a
    /// paused or cancelled batch's pending jobs wait). Safe with any number of concurrent claimers: one statement,
    /// re-checking its condition on the row it updates. The limits count other rows, which a
    /// concurrent claim may be changing: SQLite runs one writer at a time anyway; on PostgreSQL the
    /// claim runs in a transaction behind `SQLFlavor.claimLock`, so two nodes cannot both see 19 < 20.
    ///
    /// Leases are timed by the database's clock (`now` replaces it in tests), and every claim
    /// increments the migration's fencing token: the returned record's `lease` is what the runner
    /// writes under.
    public func claimPendingMigration(
        owner: String, leaseSeconds: Int, maxRunning: Int? = nil,
        now: Date? = nil
    ) async throws -> MigrationRecord? {
        let stamp = leaseClock(now)
        let leaseEnd: SQLQueryString = "(\(stamp) + \(bind: Int64(leaseSeconds) * 1000))"
        let wallClock = (now ?? Date()).storeMillis
        let claimable: (String) -> SQLQueryString = { alias in
            """
            ((\(MigrationTransition.claim.sqlFrom("\(alias).status"))
                  AND (\(unsafeRaw: alias).lease_owner IS NULL
                  OR \(unsafeRaw: alias).lease_expires_at < \(stamp)))
             OR (\(MigrationTransition.takeOver.sqlFrom("\(alias).status"))
                  AND (\(unsafeRaw: alias).lease_expires_at IS NULL OR \(unsafeRaw: alias).lease_expires_at < \(stamp))))
            """
        }
        var globalLimit: SQLQueryString = ""
        if let maxRunning {
            globalLimit = """
                 AND (SELECT COUNT(*) FROM migrations r WHERE r.status IN (\(unsafeRaw: Self.runningList))
                      AND r.lease_expires_at >= \(stamp)) < \(bind: maxRunning)
                """
        }
        let planLimit = Plan.allCases.map { "WHEN '\($0.rawValue)' THEN \($0.maxConcurrentBulkJobs)" }
            .joined(separator: " ")
        // Fair across accounts: the account with the fewest migrations held goes first, so one
        // account's big batch takes turns with everyone else's work (round-robin by account as
        // slots free up); within an account, oldest first.
        let fairOrder: SQLQueryString = """
            (SELECT COUNT(*) FROM migrations h WHERE h.account_id = m.account_id
                AND h.status IN (\(unsafeRaw: Self.runningList)) AND h.lease_expires_at >= \(stamp)), m.id
            """
        let lock = SQLQueryString(flavor.claimRowLock)
        // A claim and a take-over both go to `validating`: one SET serves both.
        let update: SQLQueryString =
            """
            UPDATE migrations SET status = \(MigrationTransition.claim.sqlTo), lease_owner = \(bind: owner),
                lease_expires_at = \(leaseEnd), lease_token = lease_token + 1,
                started_at = COALESCE(started_at, \(bind: wallClock)), updated_at = \(bind: wallClock)
            WHERE id = (
                SELECT m.id FROM migrations m JOIN accounts a ON a.id = m.account_id
                WHERE \(claimable("m"))\(globalLimit)
                  AND (m.batch_id IS NULL OR (SELECT COUNT(*) FROM migrations b
                        WHERE b.account_id = m.account_id AND b.batch_id IS NOT NULL
                          AND b.status IN (\(unsafeRaw: Self.runningList))
                          AND b.lease_expires_at >= \(stamp))
                      < (CASE a.plan \(unsafeRaw: planLimit) ELSE 0 END))
                  AND NOT EXISTS (SELECT 1 FROM bulk_batches bb WHERE bb.id = m.batch_id
                        AND bb.status NOT IN (\(unsafeRaw: BatchStatus.sqlList(BatchStatus.claimable))))
                ORDER BY \(fairOrder)
                LIMIT 1\(lock)
            )
            AND \(claimable("migrations"))
            RETURNING id
            """
        let claim: @Sendable (any SQLDatabase) async throws -> Int64? = { db in
            guard let row = try await db.raw(update).first() else { return nil }
            let id = try row.int64("id")
            try await Self.startBatch(ofMigration: id, db, now: Date(storeMillis: wallClock))
            return id
        }
        let claimed: Int64?
        if let claimLock = flavor.claimLock {
            claimed = try await transaction { db in
                try await db.raw(SQLQueryString(claimLock)).run()
                return try await claim(db)
            }
        } else {
            claimed = try await claim(database)
        }
        guard let id = claimed else { return nil }
        logger.debug("claimed migration", metadata: ["migration_id": "\(id)", "owner": "\(owner)"])
        return try await migration(id: id)
    }

    /// Extends `lease` by `leaseSeconds` from the database's now. Returns the migration's current
    /// status (the runner stops unless it is one of `MigrationStatus.running`, e.g. after a cancel),
    /// or nil when the lease no longer holds it (taken over, or released).
    public func renewLease(_ lease: Lease, leaseSeconds: Int, now: Date? = nil) async throws -> MigrationStatus? {
        guard
            let row = try await database.raw(
                """
                UPDATE migrations SET lease_expires_at = \(leaseClock(now)) + \(bind: Int64(leaseSeconds) * 1000)
                WHERE \(Self.held(lease))
                RETURNING status
                """
            ).first()
        else { return nil }
        return MigrationStatus(rawValue: try row.string("status"))
    }

    /// Gives up `lease`. With `requeue` (stopping at a safe point on shutdown), a migration that was
    /// still running goes back to `pending`, so the next runner resumes it at once. Returns false
    /// when the lease no longer held it.
    @discardableResult
    public func releaseLease(_ lease: Lease, requeue: Bool = false, now: Date = Date()) async throws -> Bool {
        let requeueSet: SQLQueryString =
            requeue
            ? ", status = \(Self.requeueStatus)"
            : ""
        let released =
            try await database.raw(
                """
                UPDATE migrations SET lease_owner = NULL, lease_expires_at = NULL,
                    updated_at = \(bind: now.storeMillis)\(requeueSet)
                WHERE \(Self.held(lease))
                RETURNING id
                """
            ).first() != nil
        // Back in the queue (a node stopping): another node may take it at once.
        if released, requeue { try await Self.announceWork(database, flavor) }
        return released
    }

    /// Gives up every lease `owner` holds, sending migrations that were still running back to
    /// `pending`. A runner calls it when it starts, holding its node lock (`NodeLock`): leases under
    /// its node id then belong to an earlier process with that id that was killed, and waiting for
    /// them to expire would only delay the resume. Without the lock a live process may hold them:
    /// do not call it. Returns the ids released.
    @discardableResult
    public func releaseLeases(owner: String, now: Date = Date()) async throws -> [Int64] {
        try await database.raw(
            """
            UPDATE migrations SET lease_owner = NULL, lease_expires_at = NULL,
                status = \(Self.requeueStatus),
                updated_at = \(bind: now.storeMillis)
            WHERE lease_owner = \(bind: owner)
            RETURNING id
            """
        ).all().map { try $0.int64("id") }
    }

    /// The status after letting go of a migration: a running one goes back to the queue.
    static var requeueStatus: SQLQueryString {
        "CASE WHEN \(MigrationTransition.requeue.sqlFrom()) THEN \(MigrationTransition.requeue.sqlTo) ELSE status END"
    }
}
