import Foundation
import IMAPClient
import Testing
import TestSupport

/// `mailporter serve` killed with SIGKILL mid-migration and started again at once with the same
/// `MAILPORTER_NODE_ID`, which hands its own leases back to the queue at start-up, so the resumed
/// run may look at the destination while the dead process's last APPEND is still on its way. The
/// destination's connections are slow or fast at random, as in the CLI's race test.
extension ServeEndToEndTests {
    /// Messages the destination mailbox holds, all folders.
    func stored(in server: DovecotServer, user: String) async throws -> Int {
        let session = try await IMAPSession.open(
            server.configuration(), credentials: .password(username: user, password: DovecotServer.password))
        defer { Task { await session.logout() } }
        return try await session.listAll(statusItems: [.messages]).reduce(0) { $0 + ($1.status?.messages ?? 0) }
    }

    static let raceTrials = 4
    static let killsPerRaceTrial = 2

    @Test(.timeLimit(.minutes(8)), arguments: [true, false])
    func killedAndRestartedAtOnceWithTheSameNodeIDEndsExact(skipDuplicates: Bool) async throws {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let sourceUser = try await source.freshUser("srvrace")
        let corpus = try await Corpus.fill(
            source, user: sourceUser, options: .init(scale: 8, largeAttachment: false, bodyBytes: 300...2500))
        let expected = corpus.expectedDestination(skipDuplicates: skipDuplicates)
        var coin = SystemRandomNumberGenerator()
        let slowOrFast = try await FaultInjectingProxy.start(
            upstreamPort: destination.imapPort,
            faults: (0..<2000).map { _ in
                Bool.random(using: &coin) ? .delayUpstream(.milliseconds(2500)) : nil
            })
        defer { Task { await slowOrFast.stop() } }
        var generator = SystemRandomNumberGenerator()

        var midCopyTrials = 0
        for trial in 1...Self.raceTrials {
            let mailbox = "\(uniqueUser("srvrace"))@example.org"
            try await destination.prepare(user: mailbox)
            let dataDir = Self.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dataDir) }
            let port = try DovecotServer.freePorts(1)[0]
            var service = try Service(
                dataDir: dataDir, port: port, destination: destination, destinationPort: slowOrFast.port)
            try await service.waitUntilReady()
            let (mailboxID, token) = try await provision(service, mailbox: mailbox)
            let started = try await service.curl(
                "POST", "/api/v1/migrations", token: token,
                json: startBody(
                    sourcePort: source.imapPort, user: sourceUser, mailboxID: mailboxID,
                    skipDuplicates: skipDuplicates))
            #expect(started.status == 201, "\(started.body)")
            let id = try #require(number((try object(started.body)["data"] as? [String: Any])?["id"]))

            var moments: [Int] = []
            var statusesAtKill: [String] = []
            for _ in 1...Self.killsPerRaceTrial {
                // Anywhere in the next stretch of the copy: the moment is drawn from when the
                // destination is seen receiving more messages, so it lands among APPENDs.
                let before = try await stored(in: destination, user: mailbox)
                let deadline = ContinuousClock.now + .seconds(60)
                while try await stored(in: destination, user: mailbox) <= before, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                }
                let moment = Int.random(in: 0...900, using: &generator)
                moments.append(moment)
                try await Task.sleep(for: .milliseconds(moment))
                let seen =
                    try? object(await service.curl("GET", "/api/v1/migrations/\(id)", token: token).body)["data"]
                    as? [String: Any]
                service.kill()
                let storedAtKill = try await stored(in: destination, user: mailbox)
                statusesAtKill.append("\(seen?["status"] as? String ?? "?") with \(storedAtKill) stored")
                _ = await service.process.wait(timeout: .seconds(10))
                service.process.cleanUp()
                // No pause: the same node comes back at once and takes its migration back.
                service = try Service(
                    dataDir: dataDir, port: port, destination: destination, destinationPort: slowOrFast.port)
                try await service.waitUntilReady()
            }
            let context =
                "trial \(trial) (skip duplicates \(skipDuplicates)), kills \(moments) ms into processing, when \(statusesAtKill)"
            print("serve race: \(context)")
            // A kill after the end proves nothing; a late one now and then is fine, most must land mid-copy.
            if statusesAtKill.first.map({ !$0.hasPrefix("completed") }) ?? false { midCopyTrials += 1 }
            let record = try await poll(service, id: id, token: token) {
                ["completed", "failed", "cancelled"].contains($0["status"] as? String)
            }
            service.kill()
            _ = await service.process.wait(timeout: .seconds(10))
            service.process.cleanUp()
            #expect(record["status"] as? String == "completed", "\(context): \(record)")
            let snapshot = try await AccountSnapshot.take(destination, user: mailbox)
            for problem in snapshot.differences(from: expected) {
                Issue.record("\(context): \(problem)")
            }
        }
        #expect(
            midCopyTrials * 2 >= Self.raceTrials,
            "only \(midCopyTrials) of \(Self.raceTrials) trials were killed mid-copy")
    }
}
