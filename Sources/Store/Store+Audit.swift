import Foundation
import SQLKit

extension Store {
    /// How long audit events are kept.
    public static let auditRetention: TimeInterval = 90 * 24 * 3600

    @discardableResult
    public func recordAudit(
        accountID: Int64, tokenID: Int64?, action: String, resourceType: String,
        resourceID: String?, ip: String?, requestID: String?,
        now: Date = Date()
    ) async throws -> AuditEvent {
        let row = try await database.raw(
            """
            INSERT INTO audit_events (account_id, token_id, action, resource_type, resource_id, ip, request_id,
                created_at)
            VALUES (\(bind: accountID), \(bind: tokenID), \(bind: action), \(bind: resourceType),
                \(bind: resourceID), \(bind: ip), \(bind: requestID), \(bind: now.storeMillis))
            RETURNING id
            """
        ).first()
        return AuditEvent(
            id: try required(row).int64("id"), accountID: accountID, tokenID: tokenID, action: action,
            resourceType: resourceType, resourceID: resourceID, ip: ip, requestID: requestID,
            createdAt: Date(storeMillis: now.storeMillis))
    }

    /// A page of the account's audit events, newest first.
    public func auditEvents(accountID: Int64, page: PageRequest = PageRequest()) async throws -> Page<AuditEvent> {
        let total =
            try await database.raw(
                """
                SELECT COUNT(*) AS n FROM audit_events WHERE account_id = \(bind: accountID)
                """
            ).first().map { try $0.int("n") } ?? 0
        let items = try await database.raw(
            """
            SELECT id, account_id, token_id, action, resource_type, resource_id, ip, request_id, created_at
            FROM audit_events WHERE account_id = \(bind: accountID) ORDER BY id DESC
            LIMIT \(bind: page.perPage) OFFSET \(bind: page.offset)
            """
        ).all().map { row in
            AuditEvent(
                id: try row.int64("id"), accountID: try row.int64("account_id"),
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
        try await Self.purgeAuditEvents(olderThan: cutoff, database)
    }

    @discardableResult
    static func purgeAuditEvents(olderThan cutoff: Date, _ database: any SQLDatabase) async throws -> Int {
        try await database.raw(
            """
            DELETE FROM audit_events WHERE created_at < \(bind: cutoff.storeMillis) RETURNING id
            """
        ).all().count
    }
}
