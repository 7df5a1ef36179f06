import Foundation
import SQLKit

extension Store {
    // MARK: - Accounts

    public func createAccount(plan: Plan, notificationEmail: String, now: Date = Date()) async throws -> Account {
        let email = notificationEmail.trimmingCharacters(in: .whitespacesAndNewlines)
        let row = try await database.raw(
            """
            INSERT INTO accounts (plan, notification_email, created_at)
            VALUES (\(bind: plan.rawValue), \(bind: email), \(bind: now.storeMillis))
            RETURNING id, plan, notification_email, created_at
            """
        ).first()
        return try Self.account(from: try required(row))
    }

    public func account(id: Int64) async throws -> Account? {
        try await reader.raw(
            """
            SELECT id, plan, notification_email, created_at FROM accounts WHERE id = \(bind: id)
            """
        ).first().map(Self.account(from:))
    }

    public func accounts() async throws -> [Account] {
        try await database.raw("SELECT id, plan, notification_email, created_at FROM accounts ORDER BY id")
            .all().map(Self.account(from:))
    }

    /// Where the account's notices go from now on (a notice already queued keeps its recipient).
    public func setNotificationEmail(accountID: Int64, email: String) async throws -> Account {
        let row = try await database.raw(
            """
            UPDATE accounts SET notification_email = \(bind: email) WHERE id = \(bind: accountID)
            RETURNING id, plan, notification_email, created_at
            """
        ).first()
        guard let row else { throw StoreError.notFound }
        return try Self.account(from: row)
    }

    public func setPlan(accountID: Int64, plan: Plan) async throws {
        let row = try await database.raw(
            """
            UPDATE accounts SET plan = \(bind: plan.rawValue) WHERE id = \(bind: accountID) RETURNING id
            """
        ).first()
        if row == nil { throw StoreError.notFound }
    }

    // MARK: - Mailboxes

    /// Mailbox addresses are stored trimmed and lower-cased. Throws `notFound` for an unknown
    /// account and `duplicate` when the account already has the address.
    public func addMailbox(accountID: Int64, email: String, now: Date = Date()) async throws -> Mailbox {
        guard try await account(id: accountID) != nil else { throw StoreError.notFound }
        let normalized = Self.normalizeEmail(email)
        let row = try await database.raw(
            """
            INSERT INTO mailboxes (account_id, email, created_at)
            VALUES (\(bind: accountID), \(bind: normalized), \(bind: now.storeMillis))
            ON CONFLICT (account_id, email) DO NOTHING
            RETURNING id, account_id, email, created_at
            """
        ).first()
        guard let row else { throw StoreError.duplicate("mailbox \(normalized)") }
        return try Self.mailbox(from: row)
    }

    public func mailboxes(accountID: Int64) async throws -> [Mailbox] {
        try await database.raw(
            """
            SELECT id, account_id, email, created_at FROM mailboxes
            WHERE account_id = \(bind: accountID) ORDER BY id
            """
        ).all().map(Self.mailbox(from:))
    }

    public func mailbox(id: Int64, accountID: Int64) async throws -> Mailbox? {
        try await database.raw(
            """
            SELECT id, account_id, email, created_at FROM mailboxes
            WHERE id = \(bind: id) AND account_id = \(bind: accountID)
            """
        ).first().map(Self.mailbox(from:))
    }

    public func mailbox(email: String, accountID: Int64) async throws -> Mailbox? {
        try await database.raw(
            """
            SELECT id, account_id, email, created_at FROM mailboxes
            WHERE email = \(bind: Self.normalizeEmail(email)) AND account_id = \(bind: accountID)
            """
        ).first().map(Self.mailbox(from:))
    }

    static func normalizeEmail(_ email: String) -> String {
        email.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
    }
}
