import Foundation
import IMAPClient
import Testing
import TestSupport

/// `mailporter migrate` killed with SIGKILL at random moments and started again at once, with no
/// pause, as systemd or a shell loop would: the destination must end exact every time. The race this
/// guards: the dead process's last APPEND, sent whole, is still stored by the server after the new
/// run has looked at what arrived. With the destination behind a slow link the dead run's command is
/// still on its way when the restarted run reconciles, so that order is the usual one there.
@Suite("Kill and restart at once", .serialized, .timeLimit(.minutes(10)))
struct RestartRaceTests {
    /// Trials per case; four cases, so 24 trials in all.
    static let trials = 6
    static let killsPerTrial = 3

    @Test(arguments: [(true, false), (false, false), (true, true), (false, true)])
    func killedAndRestartedAtOnceEndsExact(skipDuplicates: Bool, slowDestination: Bool) async throws {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let sourceUser = uniqueUser("race")
        // About 600 small messages in 8 folders: a batch is one MULTIAPPEND of a few hundred KB.
        let corpus = try await Corpus.fill(
            source, user: sourceUser,
            options: .init(scale: 8, largeAttachment: false, bodyBytes: 300...2500))
        let expected = corpus.expectedDestination(skipDuplicates: skipDuplicates)
        // Destination connections are slow or fast at random: a slowed connection of a killed run
        // still delivers its last command after a fast connection of the restarted run has looked.
        // (Slowing every connection alike would keep them in order and hide the race.)
        var coin = SystemRandomNumberGenerator()
        let proxy: FaultInjectingProxy? =
            slowDestination
            ? try await FaultInjectingProxy.start(
                upstreamPort: destination.imapPort,
                faults: (0..<2000).map { _ in
                    Bool.random(using: &coin) ? .delayUpstream(.milliseconds(400)) : nil
                })
            : nil
        defer { if let proxy { Task { await proxy.stop() } } }
        let destinationPort = proxy?.port ?? destination.imapPort
        var generator = SystemRandomNumberGenerator()

        for trial in 1...Self.trials {
            let destinationUser = try await destination.freshUser("race")
            let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("mp-race-\(UUID().uuidString)")
                .path
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: scratch) }
            let arguments =
                [
                    "migrate", "--source-host", "127.0.0.1", "--source-port", "\(source.imapPort)",
                    "--source-security", "none", "--source-user", sourceUser,
                    "--dest-host", "127.0.0.1", "--dest-port", "\(destinationPort)", "--dest-security", "none",
                    "--dest-user", destinationUser, "--state-file", scratch + "/state.json", "--json",
                ]
                + (skipDuplicates ? [] : ["--no-skip-duplicates"])
            let environment = [
                "MAILPORTER_SOURCE_PASSWORD": DovecotServer.password,
                "MAILPORTER_DEST_PASSWORD": DovecotServer.password,
            ]

            // Kill moments are drawn afresh for each trial; the first lands anywhere in a run's first
            // second and a half, the later ones anywhere in the resumed runs.
            var moments: [Int] = []
            var outcomes: [String] = []
            for _ in 1...Self.killsPerTrial {
                let moment = Int.random(in: 40...(slowDestination ? 2500 : 1200), using: &generator)
                moments.append(moment)
                let run = try BackgroundProcess.start(mailporterExecutable, arguments, environment: environment)
                defer { run.cleanUp() }
                try await Task.sleep(for: .milliseconds(moment))
                run.kill()
                let status = await run.wait(timeout: .seconds(10))
                outcomes.append(status == 128 + SIGKILL ? "killed" : "exited \(String(describing: status))")
            }
            let last = try BackgroundProcess.start(mailporterExecutable, arguments, environment: environment)
            defer { last.cleanUp() }
            let status = await last.wait(timeout: .seconds(120))
            let context =
                "trial \(trial) (skip duplicates \(skipDuplicates), slow destination \(slowDestination)), "
                + "kills after \(moments) ms: \(outcomes)"
            #expect(status == 0, "\(context): the final run: \(last.stderr.suffix(800))")
            let snapshot = try await AccountSnapshot.take(destination, user: destinationUser)
            for problem in snapshot.differences(from: expected) {
                Issue.record("\(context): \(problem)")
            }
        }
    }
}
