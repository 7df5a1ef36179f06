import Foundation
import SQLKit

/// A message a migration's latest run could not copy: where it was at the source and why, as the
/// report lists it. Never any of its content.
public struct FailedMessage: Sendable, Equatable {
    public var folder: String
    public var uid: UInt32
    /// The source's RFC822.SIZE, when its metadata arrived before the failure.
    public var size: Int64?
    /// The source's INTERNALDATE, when known.
    public var internalDate: Date?
    /// The server's words, as `FailedMessage.storedReason` keeps them.
    public var reason: String

    public init(folder: String, uid: UInt32, size: Int64? = nil, internalDate: Date? = nil, reason: String) {
        self.folder = folder
        self.uid = uid
        self.size = size
        self.internalDate = internalDate
        self.reason = reason
    }

    /// The longest reason kept, in characters: a server's text is unbounded and a report row should stay one.
    public static let reasonLimit = 300

    /// A server's reason as stored: control and format characters (CR, LF, ESC, bidi overrides, …)
    /// become spaces, runs of
    /// whitespace one space, and the result is cut to `reasonLimit` characters, so no server can
    /// put terminal escapes or fake lines into a log or a spreadsheet.
    public static func storedReason(_ text: String) -> String {
        var cleaned = ""
        var pendingSpace = false
        for scalar in text.unicodeScalars {
            let category = scalar.properties.generalCategory
            // Format characters too: a bidi override would make a row read other than it is.
            if category == .control || category == .format || scalar.properties.isWhitespace {
                pendingSpace = !cleaned.isEmpty
                continue
            }
            if pendingSpace { cleaned.unicodeScalars.append(" ") }
            pendingSpace = false
            cleaned.unicodeScalars.append(scalar)
        }
        return String(cleaned.prefix(reasonLimit))
    }
}

extension Store {
    /// The most failed messages kept per migration. A run where a whole folder fails message by
    /// message would otherwise grow the table by the folder's size; the folder rows still count
    /// every failure, so the report says how many are not listed.
    public static let failedMessageLimit = 1_000

    /// Records a message the run holding the migration could not copy (upserted by folder and
    /// UID: the latest reason wins). Only while the migration is running and `lease` holds it, so
    /// a cancelled, retried or taken-over migration's list gets nothing from a runner that has not
    /// yet stopped. Past `failedMessageLimit` rows, new messages are not kept. Returns whether the
    /// row was written. One runner holds a migration and records one message at a time, so the
    /// limit's count is not raced.
    @discardableResult
    public func recordFailedMessage(_ lease: Lease, _ message: FailedMessage, now: Date = Date()) async throws -> Bool {
        let migrationID = lease.migrationID
        return try await database.raw(
            """
            INSERT INTO migration_failed_messages (migration_id, folder, uid, size, internal_date, reason, created_at)
            SELECT \(bind: migrationID), \(bind: message.folder), \(bind: Int64(message.uid)), \(bind: message.size),
                \(bind: message.internalDate?.storeMillis), \(bind: FailedMessage.storedReason(message.reason)),
                \(bind: now.storeMillis)
            WHERE EXISTS (\(fence(lease, and: MigrationTransition.advance.sqlFrom("f.status"))))
              AND ((SELECT COUNT(*) FROM migration_failed_messages f WHERE f.migration_id = \(bind: migrationID))
                    < \(bind: Self.failedMessageLimit)
                   OR EXISTS (SELECT 1 FROM migration_failed_messages f WHERE f.migration_id = \(bind: migrationID)
                                AND f.folder = \(bind: message.folder) AND f.uid = \(bind: Int64(message.uid))))
            ON CONFLICT (migration_id, folder, uid) DO UPDATE SET
                size = excluded.size, internal_date = excluded.internal_date, reason = excluded.reason,
                created_at = excluded.created_at
            RETURNING uid
            """
        ).first() != nil
    }

    /// The failed messages of a migration's latest run, by folder name and UID.
    public func failedMessages(migrationID: Int64) async throws -> [FailedMessage] {
        try await database.raw(
            """
            SELECT folder, uid, size, internal_date, reason FROM migration_failed_messages
            WHERE migration_id = \(bind: migrationID) ORDER BY folder, uid
            """
        ).all().map { row in
            guard let uid = UInt32(exactly: try row.int64("uid")) else {
                throw StoreError.corrupt("failed message UID")
            }
            return FailedMessage(
                folder: try row.string("folder"), uid: uid, size: try row.optionalInt64("size"),
                internalDate: try row.optionalDate("internal_date"), reason: try row.string("reason"))
        }
    }

    /// A new run starts with an empty list (retry, delta pass): the report shows that run's failures.
    static func clearFailedMessages(migrationIDs ids: SQLQueryString, _ db: any SQLDatabase) async throws {
        try await db.raw("DELETE FROM migration_failed_messages WHERE migration_id IN (\(ids))").run()
    }
}
