import Foundation
import MigrationEngine
import SQLKit

extension Store {
    public func loadCheckpoint(migrationID: Int64, folder: String) async throws -> FolderCheckpoint? {
        guard
            let row = try await database.raw(
                """
                SELECT data FROM checkpoints WHERE migration_id = \(bind: migrationID) AND folder = \(bind: folder)
                """
            ).first()
        else { return nil }
        return try Self.decodeJSON(FolderCheckpoint.self, try row.string("data"))
    }

    /// Saves a folder's checkpoint; with `lease`, only while that lease holds the migration (the
    /// same statement checks it, under `fence`), else throws `LeaseLost`. The engine saves before
    /// every write that completes an APPEND, so a runner that lost its lease can append nothing more.
    public func saveCheckpoint(
        _ checkpoint: FolderCheckpoint, migrationID: Int64, folder: String, lease: Lease? = nil,
        now: Date = Date()
    ) async throws {
        let values: SQLQueryString =
            "\(bind: migrationID), \(bind: folder), \(bind: try Self.json(checkpoint)), \(bind: now.storeMillis)"
        // `WHERE true`: SQLite reads `ON CONFLICT` after a bare SELECT as a join constraint.
        let source: SQLQueryString =
            if let lease { "SELECT \(values) WHERE EXISTS (\(fence(lease)))" } else { "SELECT \(values) WHERE true" }
        let written = try await database.raw(
            """
            INSERT INTO checkpoints (migration_id, folder, data, updated_at)
            \(source)
            ON CONFLICT (migration_id, folder) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at
            RETURNING migration_id
            """
        ).first()
        if written == nil, let lease { throw LeaseLost(lease: lease) }
    }

    /// Every checkpoint of a migration, by source folder.
    public func checkpoints(migrationID: Int64) async throws -> [String: FolderCheckpoint] {
        var result: [String: FolderCheckpoint] = [:]
        for row in try await database.raw(
            """
            SELECT folder, data FROM checkpoints WHERE migration_id = \(bind: migrationID)
            """
        ).all() {
            result[try row.string("folder")] = try Self.decodeJSON(FolderCheckpoint.self, try row.string("data"))
        }
        return result
    }

    /// The engine's `CheckpointStore` for one migration; with `lease`, its saves are fenced by it.
    public func checkpointStore(migrationID: Int64, lease: Lease? = nil) -> StoreCheckpointStore {
        StoreCheckpointStore(store: self, migrationID: migrationID, lease: lease)
    }
}
