import Foundation
import MigrationEngine

/// Checkpoints in a JSON file, replaced atomically on every save so a kill at any moment leaves
/// either the old or the new state.
actor StateFileCheckpointStore: CheckpointStore {
    private let url: URL
    private var folders: [String: FolderCheckpoint]

    init(path: String) throws {
        url = URL(fileURLWithPath: path)
        if let data = try? Data(contentsOf: url), !data.isEmpty {
            folders = try JSONDecoder().decode(StateFile.self, from: data).folders
        } else {
            folders = [:]
        }
    }

    func load(folder: String) -> FolderCheckpoint? { folders[folder] }

    func save(_ checkpoint: FolderCheckpoint, folder: String) throws {
        folders[folder] = checkpoint
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(StateFile(version: 1, folders: folders))
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp")
        try data.write(to: temporary)
        // rename(2) is atomic; the file either has the old or the new checkpoint.
        guard rename(temporary.path, url.path) == 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: url.path])
        }
    }

    private struct StateFile: Codable {
        var version: Int
        var folders: [String: FolderCheckpoint]
    }
}
