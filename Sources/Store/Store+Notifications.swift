import Foundation
import SQLKit

extension Store {
    // MARK: - Notices: written with the change that causes them

    /// The notices a migration's end causes, in the transaction that ended it: its batch finished,
    /// more than half of its batch's jobs failed, or (a single migration with `notify`) it ended.
    static func recordNotices(afterEndOf migrationID: Int64, _ db: any SQLDatabase, now: Date) async throws {
        guard
            let row = try await db.raw(
                "SELECT batch_id, notify, status FROM migrations WHERE id = \(bind: migrationID)"
            ).first()
        else { return }
        guard let batchID = try row.optionalInt64("batch_id") else {
            if try row.decode(column: "notify", as: Bool.self) {
                try await recordNotice(.migrationEnded, migrationID: migrationID, db, now: now)
            }
            return
        }
        if try row.string("status") == MigrationStatus.failed.rawValue {
            let counts = try await db.raw(
                """
                SELECT COUNT(*) AS n, SUM(CASE WHEN status = \(bind: MigrationStatus.failed.rawValue) THEN 1 ELSE 0 END)
                    AS failed
                FROM migrations WHERE batch_id = \(bind: batchID)
                """
            ).first()
            if let counts, try counts.int("failed") * 2 > counts.int("n") {
                try await recordNotice(.batchMostJobsFailed, batchID: batchID, db, now: now)
            }
        }
        let finished = try await db.raw(
            """
            SELECT id FROM bulk_batches WHERE id = \(bind: batchID)
              AND status IN (\(unsafeRaw: BatchStatus.sqlList(BatchTransition.finish.to)))
            """
        ).first()
        if finished != nil { try await recordNotice(.batchFinished, batchID: batchID, db, now: now) }
    }

    /// Queues one notice to the account's notification address, once per batch (or migration) and
    /// event: a second call for the same pair changes nothing. An account without an address gets none.
    static func recordNotice(
        _ event: NoticeEvent, batchID: Int64? = nil, migrationID: Int64? = nil, detail: NoticeDetail = NoticeDetail(),
        _ db: any SQLDatabase, now: Date
    ) async throws {
        let stamp = now.storeMillis
        let owner: SQLQueryString =
            batchID != nil
            ? "SELECT account_id FROM bulk_batches WHERE id = \(bind: batchID)"
            : "SELECT account_id FROM migrations WHERE id = \(bind: migrationID)"
        try await db.raw(
            """
            INSERT INTO notifications (account_id, batch_id, migration_id, event, dedupe_key, recipient, detail,
                status, attempts, next_attempt_at, created_at, updated_at)
            SELECT a.id, \(bind: batchID), \(bind: migrationID), \(bind: event.rawValue),
                \(bind: event.dedupeKey(batchID: batchID, migrationID: migrationID)), a.notification_email,
                \(bind: try json(detail)), \(bind: NoticeStatus.pending.rawValue), 0, \(bind: stamp), \(bind: stamp),
                \(bind: stamp)
            FROM accounts a WHERE a.id = (\(owner)) AND a.notification_email <> ''
            ON CONFLICT (dedupe_key) DO NOTHING
            """
        ).run()
    }

    // MARK: - Notices: the delivery service's reads and writes

    static let noticeColumns: SQLQueryString = """
        id, account_id, batch_id, migration_id, event, recipient, detail, status, attempts, next_attempt_at,
        last_error_code, last_error, sent_at, created_at, updated_at
        """

    /// Takes the oldest due notice for `owner` under a lease: a pending one whose time has come, or
    /// one whose sender's lease ran out (that node died mid-delivery). One statement, safe with
    /// any number of nodes.
    public func claimNotice(owner: String, leaseSeconds: Int, now: Date = Date()) async throws -> Notice? {
        let stamp = now.storeMillis
        let leaseEnd = now.addingTimeInterval(TimeInterval(leaseSeconds)).storeMillis
        let due: (String) -> SQLQueryString = { alias in
            """
            ((\(unsafeRaw: alias).status = \(bind: NoticeStatus.pending.rawValue)
                AND \(unsafeRaw: alias).next_attempt_at <= \(bind: stamp))
             OR (\(unsafeRaw: alias).status = \(bind: NoticeStatus.sending.rawValue)
                AND \(unsafeRaw: alias).lease_expires_at < \(bind: stamp)))
            """
        }
        let lock: SQLQueryString = flavor == .postgres ? " FOR UPDATE SKIP LOCKED" : ""
        guard
            let row = try await database.raw(
                """
                UPDATE notifications SET status = \(bind: NoticeStatus.sending.rawValue), lease_owner = \(bind: owner),
                    lease_expires_at = \(bind: leaseEnd), attempts = attempts + 1, updated_at = \(bind: stamp)
                WHERE id = (SELECT n.id FROM notifications n WHERE \(due("n")) ORDER BY n.next_attempt_at, n.id
                            LIMIT 1\(lock))
                  AND \(due("notifications"))
                RETURNING \(Self.noticeColumns)
                """
            ).first()
        else { return nil }
        return try Self.notice(from: row)
    }

    /// The notice was accepted by the relay.
    @discardableResult
    public func markNoticeSent(id: Int64, owner: String, now: Date = Date()) async throws -> Bool {
        try await database.raw(
            """
            UPDATE notifications SET status = \(bind: NoticeStatus.sent.rawValue), sent_at = \(bind: now.storeMillis),
                lease_owner = NULL, lease_expires_at = NULL, last_error_code = NULL, last_error = NULL,
                updated_at = \(bind: now.storeMillis)
            WHERE id = \(bind: id) AND lease_owner = \(bind: owner) AND status = \(bind: NoticeStatus.sending.rawValue)
            RETURNING id
            """
        ).first() != nil
    }

    /// The attempt failed: with `retryAt`, the notice waits until then; without, it failed for good.
    @discardableResult
    public func markNoticeFailed(
        id: Int64, owner: String, code: String, message: String, retryAt: Date?, now: Date = Date()
    ) async throws -> Bool {
        let status = retryAt == nil ? NoticeStatus.failed : .pending
        return try await database.raw(
            """
            UPDATE notifications SET status = \(bind: status.rawValue),
                next_attempt_at = \(bind: (retryAt ?? now).storeMillis), lease_owner = NULL, lease_expires_at = NULL,
                last_error_code = \(bind: code), last_error = \(bind: message), updated_at = \(bind: now.storeMillis)
            WHERE id = \(bind: id) AND lease_owner = \(bind: owner) AND status = \(bind: NoticeStatus.sending.rawValue)
            RETURNING id
            """
        ).first() != nil
    }

    /// A page of the account's notices, newest first.
    public func listNotices(accountID: Int64, page: PageRequest = PageRequest()) async throws -> Page<Notice> {
        let total =
            try await reader.raw("SELECT COUNT(*) AS n FROM notifications WHERE account_id = \(bind: accountID)")
            .first().map { try $0.int("n") } ?? 0
        let items = try await reader.raw(
            """
            SELECT \(Self.noticeColumns) FROM notifications WHERE account_id = \(bind: accountID) ORDER BY id DESC
            LIMIT \(bind: page.perPage) OFFSET \(bind: page.offset)
            """
        ).all().map(Self.notice(from:))
        return Page(items: items, page: page.page, perPage: page.perPage, total: total)
    }

    /// Every notice, oldest first (admin and tests).
    public func allNotices() async throws -> [Notice] {
        try await database.raw("SELECT \(Self.noticeColumns) FROM notifications ORDER BY id").all()
            .map(Self.notice(from:))
    }

    static func notice(from row: any SQLRow) throws -> Notice {
        let eventName = try row.string("event")
        guard let event = NoticeEvent(rawValue: eventName) else {
            throw StoreError.corrupt("notice event \(eventName)")
        }
        let statusName = try row.string("status")
        guard let status = NoticeStatus(rawValue: statusName) else {
            throw StoreError.corrupt("notice status \(statusName)")
        }
        let detail = try row.optionalString("detail").map { try decodeJSON(NoticeDetail.self, $0) } ?? NoticeDetail()
        return Notice(
            id: try row.int64("id"), accountID: try row.int64("account_id"), batchID: try row.optionalInt64("batch_id"),
            migrationID: try row.optionalInt64("migration_id"), event: event, recipient: try row.string("recipient"),
            detail: detail, status: status, attempts: try row.int("attempts"),
            nextAttemptAt: try row.date("next_attempt_at"), lastErrorCode: try row.optionalString("last_error_code"),
            lastError: try row.optionalString("last_error"), sentAt: try row.optionalDate("sent_at"),
            createdAt: try row.date("created_at"), updatedAt: try row.date("updated_at"))
    }
}
