import Foundation
import MigrationEngine
import Testing
import TestSupport

/// `mailporter migrate` keeps its checkpoints by default, as mbsync keeps its SyncState: a plain
/// rerun of the same command, even with `--no-skip-duplicates`, copies nothing twice.
@Suite("mailporter migrate: state kept by default", .serialized, .timeLimit(.minutes(3)))
struct MigrateStateTests {
    private struct Run {
        var source: DovecotServer
        var destination: DovecotServer
        var sourceUser: String
        var destinationUser: String

        func arguments(_ extra: [String] = []) -> [String] {
            [
                "migrate", "--source-host", "127.0.0.1", "--source-port", "\(source.imapPort)", "--source-security",
                "none",
                "--source-user", sourceUser, "--dest-host", "127.0.0.1", "--dest-port", "\(destination.imapPort)",
                "--dest-security", "none", "--dest-user", destinationUser, "--no-skip-duplicates",
            ] + extra
        }

        func migrate(_ extra: [String] = [], environment: [String: String]) async throws -> ProcessResult {
            try await spawnProcess(
                mailporterExecutable, arguments(extra),
                environment: environment.merging(
                    [
                        "MAILPORTER_SOURCE_PASSWORD": DovecotServer.password,
                        "MAILPORTER_DEST_PASSWORD": DovecotServer.password,
                    ]) { $1 })
        }
    }

    private func scratch() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mp-state-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    private func prepared() async throws -> (Run, Corpus) {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let sourceUser = uniqueUser("src")
        let corpus = try await Corpus.fill(
            source, user: sourceUser, options: .init(scale: 1, largeAttachment: false, bodyBytes: 300...1500))
        return (
            Run(
                source: source, destination: destination, sourceUser: sourceUser,
                destinationUser: try await destination.freshUser("dst")), corpus
        )
    }

    @Test func aPlainRerunResumesFromTheDefaultStateAndSaysWhereItIs() async throws {
        let (run, corpus) = try await prepared()
        let home = try scratch()
        defer { try? FileManager.default.removeItem(atPath: home) }
        let expected = corpus.expectedDestination(skipDuplicates: false)

        // XDG_STATE_HOME first; HOME's ~/.local/state when it is not set.
        for environment in [["XDG_STATE_HOME": home + "/xdg", "HOME": home + "/unused"], ["HOME": home]] {
            let destinationUser = try await run.destination.freshUser("dst")
            var again = run
            again.destinationUser = destinationUser
            let directory =
                environment["XDG_STATE_HOME"].map { $0 + "/mailporter" } ?? home + "/.local/state/mailporter"
            let statePath =
                "\(directory)/\(run.sourceUser)@127.0.0.1:\(run.source.imapPort)--\(destinationUser)@127.0.0.1:\(run.destination.imapPort).json"

            let first = try await again.migrate(environment: environment)
            #expect(first.status == 0, "\(first.stderr)")
            #expect(first.stdout.contains("state: \(statePath)"), "\(first.stdout)")
            #expect(FileManager.default.fileExists(atPath: statePath), "no state at \(statePath)")
            // The summary's totals are the migration's, across runs; the events say what this run did.
            let second = try await again.migrate(["--json"], environment: environment)
            #expect(second.status == 0, "\(second.stderr)")
            #expect(!second.stdout.contains("\"event\":\"message_copied\""), "the rerun copied again: \(second.stdout)")
            #expect(second.stdout.contains("\"state_file\":\"\(statePath)\""), "\(second.stdout)")
            let problems = try await AccountSnapshot.take(run.destination, user: destinationUser).differences(
                from: expected)
            #expect(problems.isEmpty, "\(problems)")
        }
    }

    /// A rerun is a delta pass: it says what it carried (flags, and deletions only when asked, listed
    /// first by a dry run).
    @Test func aRerunCarriesFlagChangesAndDeletesOnlyWhenAsked() async throws {
        let (run, corpus) = try await prepared()
        let home = try scratch()
        defer { try? FileManager.default.removeItem(atPath: home) }
        let state = ["--state-file", home + "/state.json"]
        let first = try await run.migrate(state, environment: [:])
        #expect(first.status == 0, "\(first.stderr)")

        let inbox = corpus.folders["INBOX"] ?? []
        let copied = inbox.filter { !$0.isDeleted }.count
        let gone = try #require(inbox.firstIndex { !$0.isDeleted }).advanced(by: 1)
        _ = try run.source.doveadm(["flags", "add", "-u", run.sourceUser, "$Cutover", "mailbox", "INBOX", "ALL"])
        _ = try run.source.doveadm(["expunge", "-u", run.sourceUser, "mailbox", "INBOX", "uid", "\(gone)"])

        let second = try await run.migrate(state, environment: [:])
        #expect(second.status == 0, "\(second.stderr)")
        #expect(
            second.stdout.contains("pass: 0 new, \(copied - 1) flags updated, 0 deleted (deletions not propagated)"),
            "\(second.stdout)")

        let dry = try await run.migrate(state + ["--propagate-deletions", "--dry-run"], environment: [:])
        #expect(dry.status == 0, "\(dry.stderr)")
        #expect(dry.stdout.contains("would delete 1 in INBOX"), "\(dry.stdout)")
        let third = try await run.migrate(state + ["--propagate-deletions"], environment: [:])
        #expect(third.status == 0, "\(third.stderr)")
        #expect(third.stdout.contains("pass: 0 new, 0 flags updated, 1 deleted"), "\(third.stdout)")
        let destinationInbox =
            try await AccountSnapshot.take(run.destination, user: run.destinationUser)
            .folders["INBOX"] ?? []
        #expect(destinationInbox.count == copied - 1)
        #expect(destinationInbox.allSatisfy { $0.flags.contains("$Cutover") })
    }

    @Test func noStateKeepsNothingAndCannotBeCombinedWithAStateFile() async throws {
        let (run, _) = try await prepared()
        let home = try scratch()
        defer { try? FileManager.default.removeItem(atPath: home) }
        let environment = ["XDG_STATE_HOME": home]

        let dry = try await run.migrate(["--no-state", "--dry-run"], environment: environment)
        #expect(dry.status == 0, "\(dry.stderr)")
        let result = try await run.migrate(["--no-state"], environment: environment)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("state: none kept"), "\(result.stdout)")
        #expect((try? FileManager.default.contentsOfDirectory(atPath: home + "/mailporter"))?.isEmpty ?? true)

        let both = try await run.migrate(["--no-state", "--state-file", home + "/s.json"], environment: environment)
        #expect(both.status == 64, "\(both.stderr)")
        #expect(both.stderr.contains("--state-file and --no-state exclude each other"), "\(both.stderr)")
    }

    @Test func aStateFileThatIsNotOursIsAClassifiedError() async throws {
        let (run, _) = try await prepared()
        let home = try scratch()
        defer { try? FileManager.default.removeItem(atPath: home) }
        let state = home + "/state.json"
        try Data("{ not json".utf8).write(to: URL(fileURLWithPath: state))
        let result = try await run.migrate(["--state-file", state], environment: [:])
        #expect(result.status == 2)
        #expect(
            result.stderr.contains("error: state_file_unreadable: \(state) is not a mailporter state file."),
            "\(result.stderr)")
        #expect(
            !result.stderr.contains("DecodingError") && !result.stderr.contains("NSCocoaErrorDomain"),
            "\(result.stderr)")
    }

    /// The CLI refuses an impossible day with the engine's one message, the same the API gives
    /// (HTTPAPITests check that side).
    @Test(arguments: ["2025-02-30", "2024-04-31", "2024-4-31", "1969-12-31"])
    func anImpossibleDayIsRefusedWithTheEnginesMessage(day: String) async throws {
        let result = try await spawnProcess(
            mailporterExecutable,
            [
                "migrate", "--source-host", "127.0.0.1", "--source-port", "9", "--source-user", "a", "--dest-host",
                "127.0.0.1",
                "--dest-port", "9", "--dest-user", "b", "--no-state", "--since", day,
            ], environment: ["MAILPORTER_SOURCE_PASSWORD": "x", "MAILPORTER_DEST_PASSWORD": "x"])
        #expect(result.status == 64, "\(result.stderr)")
        #expect(result.stderr.contains("--since \(CalendarDay.rule)"), "\(result.stderr)")
    }
}
