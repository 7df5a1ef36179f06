import Foundation
import IMAPClient
import Logging
import MigrationEngine
import NIOCore
import Synchronization
import Testing
import TestSupport

/// Counts the IMAP commands every session sends (IMAPSession logs each at trace level as `C: tag NAME`).
private struct CommandCounter: LogHandler {
    static let commands = Atomic<Int>(0)
    static let installed: Bool = {
        LoggingSystem.bootstrap { _ in CommandCounter() }
        return true
    }()

    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        if event.message.description.hasPrefix("C: ") { Self.commands.add(1, ordering: .relaxed) }
    }
}

/// The cost of a rerun with nothing new over one large folder: wall time and IMAP commands (both
/// sides, logins included). A benchmark, not a check: it runs only with
/// `MAILPORTER_BENCH_RERUN=<messages>` set, and prints its numbers.
@Suite(
    "Benchmark: a no-change rerun over a large folder",
    .enabled(if: ProcessInfo.processInfo.environment["MAILPORTER_BENCH_RERUN"] != nil),
    .timeLimit(.minutes(30)))
struct RerunBenchmarkTests {
    @Test func noChangeRerun() async throws {
        #expect(CommandCounter.installed)
        let count = Int(ProcessInfo.processInfo.environment["MAILPORTER_BENCH_RERUN"] ?? "") ?? 20_000
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let sourceUser = try await source.freshUser("bsrc")
        let destinationUser = try await destination.freshUser("bdst")
        let session = try await IMAPSession.open(
            source.configuration(), credentials: .password(username: sourceUser, password: DovecotServer.password))
        let date = InternalDate(year: 2021, month: 3, day: 4, hour: 5, minute: 6, second: 7, zoneMinutes: 0)
        for start in stride(from: 1, through: count, by: 500) {
            let messages = (start...min(count, start + 499)).map { number in
                (
                    flags: number % 3 == 0 ? ["\\Seen"] : [String](), internalDate: Optional(date),
                    message: ByteBuffer(
                        string: "Subject: bench \(number)\r\nMessage-ID: <bench-\(sourceUser)-\(number)@x.test>\r\n\r\n"
                            + String(repeating: "body \(number) ", count: 20) + "\r\n")
                )
            }
            _ = try await session.appendAll(to: MailboxName(encoded: "INBOX"), messages: messages)
        }
        await session.logout()

        let checkpoints = MemoryCheckpointStore()
        let request = MigrationRequest(
            source: MailAccount(
                server: source.configuration(),
                credentials: .password(username: sourceUser, password: DovecotServer.password)),
            destination: MailAccount(
                server: destination.configuration(),
                credentials: .password(username: destinationUser, password: DovecotServer.password)))
        let first = try await Migration(request: request, checkpoints: checkpoints).run(emit: { _ in })
        #expect(first.totals.copied == count)
        var lines: [String] = []
        for round in 1...5 {
            let before = CommandCounter.commands.load(ordering: .relaxed)
            let clock = ContinuousClock()
            let started = clock.now
            let rerun = try await Migration(request: request, checkpoints: checkpoints).run(emit: { _ in })
            let elapsed = clock.now - started
            let commands = CommandCounter.commands.load(ordering: .relaxed) - before
            #expect(rerun.totals.copied == count)
            lines.append("round \(round): \(elapsed) \(commands) IMAP commands")
        }
        print("no-change rerun over \(count) messages:\n" + lines.joined(separator: "\n"))
    }
}
