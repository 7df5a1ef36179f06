import Foundation
import MigrationEngine

/// Checkpoints in a JSON file, replaced atomically on every save so a kill at any moment leaves
/// either the old or the new state.
actor StateFileCheckpointStore: CheckpointStore {
    private let url: URL
    private var folders: [String: FolderCheckpoint]
    /// Held for the life of the process: the kernel drops it when the process ends, however it ends.
    private let lock: StateLock

    init(path: String) throws {
        url = URL(fileURLWithPath: path)
        lock = try StateLock(statePath: path)
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
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp")
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

/// An exclusive `flock` on `STATE.lock` beside the state file (the state file itself is replaced on
/// every save, and a lock on a replaced file guards nothing). Two runs of one migration at once would
/// each see the other's messages as missing and copy them again, as mbsync's lock on its state prevents.
final class StateLock: Sendable {
    let descriptor: Int32

    struct InUse: Error, CustomStringConvertible {
        var statePath: String
        var pid: String?
        var description: String {
            "state_in_use: Another mailporter run\(pid.map { " (pid \($0))" } ?? "") is using the state file \(statePath). "
                + "Hint: Wait for it to finish or stop it; two runs of one migration at once would copy messages twice."
        }
    }

    init(statePath: String) throws {
        let path = statePath + ".lock"
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path])
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            var bytes = [UInt8](repeating: 0, count: 32)
            let count = read(descriptor, &bytes, bytes.count)
            close(descriptor)
            let pid = count > 0 ? String(decoding: bytes[0..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : nil
            throw InUse(statePath: statePath, pid: pid?.isEmpty == false ? pid : nil)
        }
        let text = Array("\(getpid())\n".utf8)
        _ = ftruncate(descriptor, 0)
        _ = pwrite(descriptor, text, text.count, 0)
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }
}
