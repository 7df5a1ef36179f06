import MigrationEngine
import Store
import Synchronization

/// A job's checkpoints, noting the store's own failures on the way: a run whose checkpoints could
/// not be read or written failed on the store's account (the database unreachable, or the lease
/// taken over by another node), not the mail servers', and must not be recorded as a failed import.
struct JobCheckpoints: CheckpointStore {
    let base: StoreCheckpointStore
    private let firstFailure = Trouble()

    init(_ base: StoreCheckpointStore) {
        self.base = base
    }

    /// The first error the store gave, if any.
    var storeFailure: (any Error)? { firstFailure.value }

    func load(folder: String) async throws -> FolderCheckpoint? {
        try await noting { try await base.load(folder: folder) }
    }

    func save(_ checkpoint: FolderCheckpoint, folder: String) async throws {
        try await noting { try await base.save(checkpoint, folder: folder) }
    }

    func checkpointedFolders() async throws -> [String] {
        try await noting { try await base.checkpointedFolders() }
    }

    private func noting<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch {
            // Cancellation (a cancel or shutdown) is the job's to handle, not a store failure.
            if !(error is CancellationError) && !Task.isCancelled { firstFailure.record(error) }
            throw error
        }
    }
}

private final class Trouble: Sendable {
    private let first = Mutex<(any Error)?>(nil)
    var value: (any Error)? { first.withLock { $0 } }
    func record(_ error: any Error) { first.withLock { if $0 == nil { $0 = error } } }
}
