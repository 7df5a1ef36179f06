import Foundation
import MigrationEngine
import SQLKit

// Turning rows into the store's models, and the column lists those decoders expect.
extension Store {
    static func account(from row: any SQLRow) throws -> Account {
        let planName = try row.string("plan")
        guard let plan = Plan(rawValue: planName) else { throw StoreError.corrupt("plan \(planName)") }
        return Account(
            id: try row.int64("id"), plan: plan,
            notificationEmail: try row.string("notification_email"),
            createdAt: try row.date("created_at"))
    }

    static func mailbox(from row: any SQLRow) throws -> Mailbox {
        Mailbox(
            id: try row.int64("id"), accountID: try row.int64("account_id"),
            email: try row.string("email"), createdAt: try row.date("created_at"))
    }

    static let tokenColumns: SQLQueryString =
        "id, account_id, name, scopes, prefix, expires_at, last_used_at, last_used_ip, created_at"

    static func token(from row: any SQLRow) throws -> APIToken {
        APIToken(
            id: try row.int64("id"), accountID: try row.int64("account_id"), name: try row.string("name"),
            scopes: try decodeJSON([String].self, try row.string("scopes")),
            prefix: try row.string("prefix"), expiresAt: try row.optionalDate("expires_at"),
            lastUsedAt: try row.optionalDate("last_used_at"), lastUsedIP: try row.optionalString("last_used_ip"),
            createdAt: try row.date("created_at"))
    }

    static let migrationColumns: SQLQueryString = """
        m.id, m.account_id, m.mailbox_id, mb.email AS mailbox_email, m.batch_id, m.provider, m.source_host,
        m.source_port, m.source_security, m.source_email, m.source_username,
        (CASE WHEN m.target_password_enc IS NULL THEN 0 ELSE 1 END) AS has_target_password,
        m.selected_folders, m.import_since, m.skip_duplicates, m.status, m.error_code, m.error_message,
        m.error_hint, m.total_messages, m.imported_messages, m.failed_messages, m.skipped_duplicates, m.bytes_copied,
        m.lease_owner, m.lease_expires_at, m.started_at, m.finished_at, m.created_at, m.updated_at,
        m.passes, m.last_pass_at, m.sync_deletions, m.lease_token, m.sync_every_hours
        FROM migrations m LEFT JOIN mailboxes mb ON mb.id = m.mailbox_id
        """

    static func migration(from row: any SQLRow) throws -> MigrationRecord {
        let statusName = try row.string("status")
        guard let status = MigrationStatus(rawValue: statusName) else {
            throw StoreError.corrupt("migration status \(statusName)")
        }
        let error = try row.optionalString("error_code").map { code in
            MigrationError(
                code: code, message: try row.optionalString("error_message") ?? "",
                hint: try row.optionalString("error_hint"))
        }
        var record = MigrationRecord(
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
            bytesCopied: try row.int64("bytes_copied"), folders: [], leaseOwner: try row.optionalString("lease_owner"),
            leaseExpiresAt: try row.optionalDate("lease_expires_at"), startedAt: try row.optionalDate("started_at"),
            finishedAt: try row.optionalDate("finished_at"), createdAt: try row.date("created_at"),
            updatedAt: try row.date("updated_at"))
        record.passes = try row.int("passes")
        record.lastPassAt = try row.optionalDate("last_pass_at")
        record.syncDeletions = try row.decode(column: "sync_deletions", as: Bool.self)
        record.leaseToken = try row.int64("lease_token")
        record.syncEveryHours = try row.optionalInt("sync_every_hours")
        return record
    }

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

func required<T>(_ value: T?) throws -> T {
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
