import Crypto
import Foundation
import SQLKit

extension Store {
    /// How long an idempotency record replays its response.
    public static let idempotencyRetention: TimeInterval = 24 * 3600

    /// SHA-256 (hex) identifying a request for idempotency: method, path and body.
    public static func requestHash(method: String, path: String, body: some Sequence<UInt8>) -> String {
        var hasher = SHA256()
        hasher.update(data: Array("\(method.uppercased()) \(path)\n".utf8))
        hasher.update(data: Array(body))
        return Tokens.hex(Array(hasher.finalize()))
    }

    /// Claims `key` for a request, or says what to answer instead. Records older than 24 h are
    /// forgotten; a request still in flight after `inFlightTimeout` is taken to have died with its
    /// process, and the key is handed to this one. Atomic: of concurrent requests with the same
    /// key, one proceeds.
    public func beginIdempotency(
        accountID: Int64, key: String, requestHash: String,
        inFlightTimeout: TimeInterval = 300,
        now: Date = Date()
    ) async throws -> IdempotencyDecision {
        let cutoff = now.addingTimeInterval(-Self.idempotencyRetention).storeMillis
        for _ in 0..<3 {
            let inserted = try await database.raw(
                """
                INSERT INTO idempotency_records (account_id, idempotency_key, request_hash, status, created_at)
                VALUES (\(bind: accountID), \(bind: key), \(bind: requestHash), 'in_flight', \(bind: now.storeMillis))
                ON CONFLICT (account_id, idempotency_key) DO NOTHING
                RETURNING account_id
                """
            ).first()
            if inserted != nil { return .proceed }
            guard
                let row = try await database.raw(
                    """
                    SELECT request_hash, status, response_status, response_body, created_at FROM idempotency_records
                    WHERE account_id = \(bind: accountID) AND idempotency_key = \(bind: key)
                    """
                ).first()
            else { continue }
            let createdAt = try row.int64("created_at")
            if createdAt < cutoff {
                try await database.raw(
                    """
                    DELETE FROM idempotency_records WHERE account_id = \(bind: accountID)
                      AND idempotency_key = \(bind: key) AND created_at = \(bind: createdAt)
                    """
                ).run()
                continue
            }
            if try row.string("request_hash") != requestHash { return .keyReused }
            if try row.string("status") != "done" {
                guard createdAt < now.addingTimeInterval(-inFlightTimeout).storeMillis else { return .inFlight }
                // The process handling it died: take the key over.
                let taken = try await database.raw(
                    """
                    UPDATE idempotency_records SET created_at = \(bind: now.storeMillis)
                    WHERE account_id = \(bind: accountID) AND idempotency_key = \(bind: key)
                      AND status = 'in_flight' AND created_at = \(bind: createdAt)
                    RETURNING account_id
                    """
                ).first()
                return taken != nil ? .proceed : .inFlight
            }
            return .replay(
                statusCode: try row.optionalInt("response_status") ?? 200,
                body: try row.optionalString("response_body") ?? "")
        }
        return .inFlight
    }

    /// Stores the response of a request that `beginIdempotency` let proceed.
    public func completeIdempotency(accountID: Int64, key: String, statusCode: Int, body: String) async throws {
        try await database.raw(
            """
            UPDATE idempotency_records SET status = 'done', response_status = \(bind: statusCode),
                response_body = \(bind: body)
            WHERE account_id = \(bind: accountID) AND idempotency_key = \(bind: key)
            """
        ).run()
    }

    /// Forgets an in-flight key (the request failed in a way worth retrying, e.g. a 5xx).
    public func abandonIdempotency(accountID: Int64, key: String) async throws {
        try await database.raw(
            """
            DELETE FROM idempotency_records WHERE account_id = \(bind: accountID)
              AND idempotency_key = \(bind: key) AND status = 'in_flight'
            """
        ).run()
    }

    /// Deletes idempotency records created before `cutoff`.
    static func purgeIdempotencyRecords(olderThan cutoff: Date, _ database: any SQLDatabase) async throws {
        try await database.raw(
            """
            DELETE FROM idempotency_records
            WHERE created_at < \(bind: cutoff.storeMillis)
            """
        ).run()
    }
}
