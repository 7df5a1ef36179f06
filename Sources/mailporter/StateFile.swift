import Foundation
import IMAPClient
import MigrationEngine

/// Checkpoints in a JSON file, replaced atomically on every save so a kill at any moment leaves
/// either the old or the new state.
actor StateFileCheckpointStore: CheckpointStore {
    private let url: URL
    private var folders: [String: FolderCheckpoint]
    /// Held for the life of the process: the kernel drops it when the process ends, however it ends.
    private let lock: StateLock

    init(path: String) throws(StateFileFailure) {
        url = URL(fileURLWithPath: path)
        lock = try StateLock(statePath: path)
        guard let data = try? Data(contentsOf: url), !data.isEmpty else {
            folders = [:]
            return
        }
        do {
            folders = try JSONDecoder().decode(StateFile.self, from: data).folders
        } catch {
            throw StateFileFailure(
                code: "state_file_unreadable", message: "\(path) is not a mailporter state file.",
                hint: "Pass another --state-file, or move this one away to start over.")
        }
    }

    func load(folder: String) -> FolderCheckpoint? { folders[folder] }
    func checkpointedFolders() -> [String] { Array(folders.keys) }

    func save(_ checkpoint: FolderCheckpoint, folder: String) throws {
        folders[folder] = checkpoint
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(StateFile(version: 1, folders: folders))
        let temporary = url.deletingLastPathComponent().appendingPathComponent(
            ".\(url.lastPathComponent).\(getpid()).tmp")
        do {
            try data.write(to: temporary)
        } catch {
            throw StateFileFailure.cannotWrite(temporary.path, errno: errno)
        }
        // rename(2) is atomic; the file either has the old or the new checkpoint.
        guard rename(temporary.path, url.path) == 0 else { throw StateFileFailure.cannotWrite(url.path, errno: errno) }
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

    init(statePath: String) throws(StateFileFailure) {
        let path = statePath + ".lock"
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw StateFileFailure.cannotWrite(path, errno: errno) }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            var bytes = [UInt8](repeating: 0, count: 32)
            let count = read(descriptor, &bytes, bytes.count)
            close(descriptor)
            let pid =
                count > 0
                ? String(decoding: bytes[0..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                : nil
            let owner = pid?.isEmpty == false ? pid.map { " (pid \($0))" } ?? "" : ""
            throw StateFileFailure(
                code: "state_in_use", message: "Another mailporter run\(owner) is using the state file \(statePath).",
                hint: "Wait for it to finish or stop it; two runs of one migration at once would copy messages twice.")
        }
        let text = Array("\(getpid())\n".utf8)
        _ = ftruncate(descriptor, 0)
        _ = pwrite(descriptor, text, text.count, 0)
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }
}

/// A state file that cannot be used, printed as one `error:` line with what to do.
struct StateFileFailure: Error, CustomStringConvertible {
    var code: String
    var message: String
    var hint: String

    var description: String { "\(code): \(message) Hint: \(hint)" }

    static func cannotWrite(_ path: String, errno number: Int32) -> StateFileFailure {
        StateFileFailure(
            code: "state_file_unusable", message: "Cannot write \(path): \(String(cString: strerror(number))).",
            hint: "Check the directory's permissions and free space, pass another --state-file, or --no-state.")
    }
}

/// Where `migrate` keeps its checkpoints when not told: one file per source and destination, as
/// mbsync keeps its SyncState, so a plain rerun resumes instead of copying again.
enum StateLocation {
    /// `$XDG_STATE_HOME/mailporter/`, else `~/.local/state/mailporter/`, created (mode 0700).
    static func directory(environment: [String: String]) throws(StateFileFailure) -> String {
        let base: String
        if let state = environment["XDG_STATE_HOME"], state.hasPrefix("/") {
            base = state
        } else if let home = environment["HOME"].flatMap({ $0.isEmpty ? nil : $0 }) ?? passwordDatabaseHome() {
            base = home + "/.local/state"
        } else {
            throw StateFileFailure(
                code: "state_file_unusable", message: "There is no home directory to keep the state in.",
                hint: "Set XDG_STATE_HOME or HOME, pass --state-file, or --no-state.")
        }
        let directory = base + "/mailporter"
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700])
        } catch {
            throw StateFileFailure.cannotWrite(directory, errno: errno)
        }
        return directory
    }

    /// `SOURCE--DESTINATION.json`, each `user@host` (`:port` when not the default), with every
    /// character a file name should not hold replaced.
    static func fileName(
        source: (user: String, server: ServerConfiguration),
        destination: (user: String, server: ServerConfiguration)
    ) -> String {
        func part(_ user: String, _ server: ServerConfiguration) -> String {
            let port = server.port == server.security.defaultPort ? "" : ":\(server.port)"
            let text = "\(user)@\(server.host)\(port)".lowercased()
            return String(
                text.unicodeScalars.map { scalar -> Character in
                    let allowed =
                        CharacterSet.alphanumerics.contains(scalar) || "@.:_+-".unicodeScalars.contains(scalar)
                    return allowed && scalar.isASCII ? Character(scalar) : "_"
                }.prefix(120))
        }
        return "\(part(source.user, source.server))--\(part(destination.user, destination.server)).json"
    }

    private static func passwordDatabaseHome() -> String? {
        guard let entry = getpwuid(getuid()), let directory = entry.pointee.pw_dir else { return nil }
        let home = String(cString: directory)
        return home.isEmpty ? nil : home
    }
}
