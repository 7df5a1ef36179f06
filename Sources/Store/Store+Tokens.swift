import Foundation
import SQLKit

extension Store {
    /// Makes a token for the account. The token is returned this once; only its hash is stored.
    public func createToken(
        accountID: Int64, name: String, scopes: [Scope], expiresAt: Date? = nil,
        now: Date = Date()
    ) async throws -> (token: String, record: APIToken) {
        guard try await account(id: accountID) != nil else { throw StoreError.notFound }
        let generated = Tokens.generate()
        let row = try await database.raw(
            """
            INSERT INTO api_tokens (account_id, name, scopes, token_hash, prefix, expires_at, created_at)
            VALUES (\(bind: accountID), \(bind: name), \(bind: try Self.json(scopes.map(\.rawValue))), \(bind: generated.hash),
                    \(bind: generated.displayPrefix), \(bind: expiresAt?.storeMillis), \(bind: now.storeMillis))
            RETURNING \(Self.tokenColumns)
            """
        ).first()
        return (generated.token, try Self.token(from: try required(row)))
    }

    /// How stale a token's recorded last use may get: recording every use was a write per API
    /// request, which waited behind the runner's writes on SQLite's one writer.
    static let lastUseResolution: TimeInterval = 60

    /// The token's row when the token is known and not expired; nil otherwise. The use is recorded
    /// (time and IP) when the recorded one is `lastUseResolution` old or from another address.
    public func verifyToken(_ token: String, ip: String? = nil, now: Date = Date()) async throws -> APIToken? {
        guard Tokens.isWellFormed(token) else { return nil }
        guard
            let found = try await reader.raw(
                """
                SELECT \(Self.tokenColumns) FROM api_tokens
                WHERE token_hash = \(bind: Tokens.hash(token))
                  AND (expires_at IS NULL OR expires_at > \(bind: now.storeMillis))
                """
            ).first().map(Self.token(from:))
        else { return nil }
        let recent = found.lastUsedAt.map { now.timeIntervalSince($0) < Self.lastUseResolution } ?? false
        guard !recent || found.lastUsedIP != ip else { return found }
        // Nil when the token was revoked since the lookup: it is refused like an unknown one.
        return try await database.raw(
            """
            UPDATE api_tokens SET last_used_at = \(bind: now.storeMillis), last_used_ip = \(bind: ip)
            WHERE id = \(bind: found.id)
            RETURNING \(Self.tokenColumns)
            """
        ).first().map(Self.token(from:))
    }

    public func tokens(accountID: Int64) async throws -> [APIToken] {
        try await database.raw(
            """
            SELECT \(Self.tokenColumns) FROM api_tokens WHERE account_id = \(bind: accountID) ORDER BY id
            """
        ).all().map(Self.token(from:))
    }

    /// Deletes a token; false if the account has no such token.
    @discardableResult
    public func revokeToken(id: Int64, accountID: Int64) async throws -> Bool {
        try await database.raw(
            """
            DELETE FROM api_tokens WHERE id = \(bind: id) AND account_id = \(bind: accountID) RETURNING id
            """
        ).first() != nil
    }
}
