import MigrationEngine

/// The engine's checkpoints for one migration, kept in the store's `checkpoints` table per source
/// folder, so a migration resumes after a crash, a restart or on another node. A runner's saves
/// are fenced by its lease.
public struct StoreCheckpointStore: CheckpointStore {
    public let store: Store
    public let migrationID: Int64
    public let lease: Lease?

    public init(store: Store, migrationID: Int64, lease: Lease? = nil) {
        self.store = store
        self.migrationID = migrationID
        self.lease = lease
    }

    public func load(folder: String) async throws -> FolderCheckpoint? {
        try await store.loadCheckpoint(migrationID: migrationID, folder: folder)
    }

    public func checkpointedFolders() async throws -> [String] {
        Array(try await store.checkpoints(migrationID: migrationID).keys)
    }

    public func save(_ checkpoint: FolderCheckpoint, folder: String) async throws {
        try await store.saveCheckpoint(checkpoint, migrationID: migrationID, folder: folder, lease: lease)
    }
}
