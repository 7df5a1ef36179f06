import Foundation
import SQLKit

extension Store {
    /// Gives up every lease `owner` holds, sending migrations that were still running back to
    /// `pending`. A runner calls it when it starts: leases under its node id belong to an earlier
    /// process with that id that was killed, and waiting for them to expire would only delay the
    /// resume. Returns the ids released.
    @discardableResult
    public func releaseLeases(owner: String, now: Date = Date()) async throws -> [Int64] {
        let running = MigrationStatus.sqlList(MigrationStatus.running)
        return try await database.raw("""
            UPDATE migrations SET lease_owner = NULL, lease_expires_at = NULL,
                status = CASE WHEN status IN (\(unsafeRaw: running)) THEN 'pending' ELSE status END,
                updated_at = \(bind: now.storeMillis)
            WHERE lease_owner = \(bind: owner)
            RETURNING id
            """).all().map { try $0.int64("id") }
    }
}
