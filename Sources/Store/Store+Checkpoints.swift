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

    public func saveCheckpoint(
        _ checkpoint: FolderCheckpoint, migrationID: Int64, folder: String,
        now: Date = Date()
    ) async throws {
        try await database.raw(
            """
            INSERT INTO checkpoints (migration_id, folder, data, updated_at)
            VALUES (\(bind: migrationID), \(bind: folder), \(bind: try Self.json(checkpoint)), \(bind: now.storeMillis))
            ON CONFLICT (migration_id, folder) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at
            """
        ).run()
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

    /// The engine's `CheckpointStore` for one migration.
    public func checkpointStore(migrationID: Int64) -> StoreCheckpointStore {
        StoreCheckpointStore(store: self, migrationID: migrationID)
    }
}
