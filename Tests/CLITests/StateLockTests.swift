import Foundation
import Testing
import TestSupport

/// Two runs of one migration at once would each copy what the other has not checkpointed yet:
/// the second run must stop at once, naming the first.
@Suite("mailporter migrate: one run per state file")
struct StateLockTests {
    @Test func aSecondRunOnTheSameStateFileStopsAndNamesTheFirst() async throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("mp-lock-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let state = scratch + "/state.json"
        // Nothing listens on port 9 of loopback: a run that gets past the lock fails to connect.
        let arguments = [
            "migrate", "--source-host", "127.0.0.1", "--source-port", "9", "--source-security", "none",
            "--source-user", "a", "--dest-host", "127.0.0.1", "--dest-port", "9", "--dest-security", "none",
            "--dest-user", "b", "--state-file", state,
        ]
        let environment = ["MAILPORTER_SOURCE_PASSWORD": "x", "MAILPORTER_DEST_PASSWORD": "x"]

        // Hold the lock as a running mailporter does: flock on STATE.lock, our pid inside.
        // O_CLOEXEC: processes other tests spawn meanwhile must not inherit (and keep) the lock.
        let descriptor = open(state + ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        #expect(descriptor >= 0)
        #expect(flock(descriptor, LOCK_EX | LOCK_NB) == 0)
        let pid = Array("\(getpid())\n".utf8)
        _ = pwrite(descriptor, pid, pid.count, 0)

        let refused = try await spawnProcess(mailporterExecutable, arguments, environment: environment)
        #expect(refused.status == 2)
        #expect(refused.stderr.contains("state_in_use"), "\(refused.stderr)")
        #expect(refused.stderr.contains("(pid \(getpid()))"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: state), "the refused run wrote the state file")

        close(descriptor)
        let free = try await spawnProcess(mailporterExecutable, arguments, environment: environment)
        #expect(free.status == 2)
        #expect(!free.stderr.contains("state_in_use"), "\(free.stderr)")
    }
}
