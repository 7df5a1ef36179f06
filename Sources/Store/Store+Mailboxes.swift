import Foundation
import MigrationEngine
import SQLKit

/// What happened to one address of `Store.addMailboxes`.
public enum MailboxAddition: Sendable, Equatable {
    case added(Mailbox)
    /// The account already had the address (or it came earlier in the same call).
    case duplicate(email: String)
    /// Not stored: `reason` says why, for a person to fix the address.
    case invalid(email: String, reason: String)
}

extension Store {
    /// At most this many addresses in one `addMailboxes` call: the largest plan's rows per batch.
    public static let maxMailboxesPerAdd = 1000

    /// Why `email` (trimmed) cannot be a mailbox address, or nil when it can. The source-address
    /// syntax of a single start and a CSV row, so every address a batch can name can be added.
    public static func mailboxAddressProblem(_ email: String) -> String? {
        let trimmed = email.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.isEmpty { return "is empty" }
        if trimmed.count > 254 { return "is longer than 254 characters" }
        if !SourceFieldSyntax.isEmailAddress(trimmed) { return "is not an email address (local@domain.tld)" }
        return nil
    }

    /// Adds each address that is valid and new to the account, in one transaction, and says per
    /// address (in order) whether it was added, a duplicate or invalid. Throws `notFound` for an
    /// unknown account.
    public func addMailboxes(accountID: Int64, emails: [String], now: Date = Date()) async throws -> [MailboxAddition] {
        let millis = now.storeMillis
        return try await transaction { db in
            guard try await db.raw("SELECT id FROM accounts WHERE id = \(bind: accountID)").first() != nil else {
                throw StoreError.notFound
            }
            var results: [MailboxAddition] = []
            for email in emails {
                let normalized = Self.normalizeEmail(email)
                if let reason = Self.mailboxAddressProblem(normalized) {
                    results.append(.invalid(email: normalized, reason: reason))
                    continue
                }
                let row = try await db.raw(
                    """
                    INSERT INTO mailboxes (account_id, email, created_at)
                    VALUES (\(bind: accountID), \(bind: normalized), \(bind: millis))
                    ON CONFLICT (account_id, email) DO NOTHING
                    RETURNING id, account_id, email, created_at
                    """
                ).first()
                if let row {
                    results.append(.added(try Self.mailbox(from: row)))
                } else {
                    results.append(.duplicate(email: normalized))
                }
            }
            return results
        }
    }

    /// A page of the account's mailboxes, oldest first.
    public func listMailboxes(accountID: Int64, page: PageRequest = PageRequest()) async throws -> Page<Mailbox> {
        let total =
            try await reader.raw("SELECT COUNT(*) AS n FROM mailboxes WHERE account_id = \(bind: accountID)")
            .first().map { try $0.int("n") } ?? 0
        let items = try await reader.raw(
            """
            SELECT id, account_id, email, created_at FROM mailboxes WHERE account_id = \(bind: accountID)
            ORDER BY id LIMIT \(bind: page.perPage) OFFSET \(bind: page.offset)
            """
        ).all().map(Self.mailbox(from:))
        return Page(items: items, page: page.page, perPage: page.perPage, total: total)
    }

    /// Every mailbox address of the account, for measuring what its mailboxes hold.
    public func mailboxEmails(accountID: Int64) async throws -> [String] {
        try await database.raw("SELECT email FROM mailboxes WHERE account_id = \(bind: accountID) ORDER BY id")
            .all().map { try $0.decode(column: "email", as: String.self) }
    }

    /// Deletes a mailbox of the account, and with it the finished migrations that targeted it, in
    /// one statement. Throws `notFound`, or `mailboxInUse` while a migration that is not final
    /// (pending or running, single or bulk) targets it.
    public func deleteMailbox(id: Int64, accountID: Int64) async throws {
        let row = try await database.raw(
            """
            DELETE FROM mailboxes WHERE id = \(bind: id) AND account_id = \(bind: accountID)
              AND NOT EXISTS (SELECT 1 FROM migrations WHERE mailbox_id = \(bind: id)
                              AND status IN (\(unsafeRaw: Self.activeList)))
            RETURNING id
            """
        ).first()
        guard row == nil else { return }
        guard try await mailbox(id: id, accountID: accountID) != nil else { throw StoreError.notFound }
        throw StoreError.mailboxInUse
    }
}
