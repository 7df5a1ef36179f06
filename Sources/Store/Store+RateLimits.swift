import Foundation
import SQLKit
import Synchronization

extension Store {
    /// Counts one request in `key`'s fixed window of `windowSeconds` containing `now`, and returns
    /// the window's count including it. On PostgreSQL the count is a row every node shares; on
    /// SQLite, where one process serves the API, it is kept in that process (`RateLimitWindows`), so
    /// that a GET is not a write queued behind the runner's on the database's one writer.
    public func incrementRateLimit(
        key: String, windowSeconds: Int = 60,
        now: Date = Date()
    ) async throws -> RateLimitCount {
        let windowMillis = Int64(max(1, windowSeconds)) * 1000
        let start = now.storeMillis / windowMillis * windowMillis
        let count: Int
        if let rateLimitWindows {
            count = rateLimitWindows.increment(key: key, windowStart: start)
        } else {
            let row = try await database.raw(
                """
                INSERT INTO rate_limit_buckets (bucket_key, window_start, count)
                VALUES (\(bind: key), \(bind: start), 1)
                ON CONFLICT (bucket_key, window_start) DO UPDATE SET count = rate_limit_buckets.count + 1
                RETURNING count
                """
            ).first()
            count = try required(row).int("count")
        }
        return RateLimitCount(
            count: count, windowStart: Date(storeMillis: start), windowEnd: Date(storeMillis: start + windowMillis))
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

/// Fixed-window counts held in the process: each key's current window and its count.
final class RateLimitWindows: Sendable {
    private let windows = Mutex<[String: (start: Int64, count: Int)]>([:])

    func increment(key: String, windowStart start: Int64) -> Int {
        windows.withLock { windows in
            // Keys of tokens idle for a window are dropped now and then, so the map stays small.
            if windows.count >= 4096 { windows = windows.filter { $0.value.start >= start } }
            let count = windows[key].map { $0.start == start ? $0.count + 1 : 1 } ?? 1
            windows[key] = (start, count)
            return count
        }
    }
}
