import Foundation
import SQLKit

extension Store {
    /// Counts one request in `key`'s fixed window of `windowSeconds` containing `now`, and returns
    /// the window's count including it.
    public func incrementRateLimit(
        key: String, windowSeconds: Int = 60,
        now: Date = Date()
    ) async throws -> RateLimitCount {
        let windowMillis = Int64(max(1, windowSeconds)) * 1000
        let start = now.storeMillis / windowMillis * windowMillis
        let row = try await database.raw(
            """
            INSERT INTO rate_limit_buckets (bucket_key, window_start, count)
            VALUES (\(bind: key), \(bind: start), 1)
            ON CONFLICT (bucket_key, window_start) DO UPDATE SET count = rate_limit_buckets.count + 1
            RETURNING count
            """
        ).first()
        return RateLimitCount(
            count: try required(row).int("count"), windowStart: Date(storeMillis: start),
            windowEnd: Date(storeMillis: start + windowMillis))
    }

    /// Deletes rate-limit windows that started before `cutoff`.
    static func purgeRateLimitWindows(startedBefore cutoff: Date, _ database: any SQLDatabase) async throws {
        try await database.raw(
            """
            DELETE FROM rate_limit_buckets WHERE window_start < \(bind: cutoff.storeMillis)
            """
        ).run()
    }
}
