import HTTPAPI
import ArgumentParser
import Foundation
import IMAPClient
import MigrationEngine

extension FolderStrategy: ExpressibleByArgument {}

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Copy a mailbox from one IMAP server to another: every message once, with flags, date and folder.",
        discussion: """
            Passwords come from MAILPORTER_SOURCE_PASSWORD and MAILPORTER_DEST_PASSWORD, or prompts; never from the
            command line. Checkpoints are kept in a state file (by default one per source and destination under
            $XDG_STATE_HOME/mailporter, else ~/.local/state/mailporter): a rerun, after an interruption or later, copies
            only what is new and makes the flags and keywords of every message it copied equal to the source's again
            (a delta pass, as often as needed until cutover); with --propagate-deletions it also removes the copies of
            messages expunged at the source since (never by default; --dry-run lists them). Exit status: 0 when every
            selected message was copied or skipped as a duplicate, 1 when some messages failed, 2 on a classified error.
            """
    )

    @Option(help: "Source IMAP host (default: the provider's).") var sourceHost: String?
    @Option(help: "Source port (default 993 for ssl, 143 otherwise).") var sourcePort: Int?
    @Option(help: "ssl, tls (STARTTLS) or none.") var sourceSecurity: ConnectionSecurity?
    @Option(help: "Source login name.") var sourceUser: String
    @Option(help: "Destination IMAP host.") var destHost: String
    @Option(help: "Destination port.") var destPort: Int?
    @Option(help: "ssl, tls (STARTTLS) or none.") var destSecurity: ConnectionSecurity = .ssl
    @Option(help: "Destination mailbox (login name, or the user a master user logs in as).") var destUser: String
    @Option(
        help: "Log in to the destination as --dest-user through this master user (password: MAILPORTER_DEST_PASSWORD).")
    var destMasterUser: String?
    @Option(help: "gmail, outlook, yahoo, icloud or generic_imap.") var provider: String = "generic_imap"
    @Option(help: "Comma-separated source folders to copy (default: by --folder-strategy).") var folders: String?
    @Option(help: "all, standard (INBOX and special-use folders) or inbox_only.") var folderStrategy: FolderStrategy =
        .all
    @Option(help: "Only messages received on or after this day (YYYY-MM-DD).") var since: String?
    @Flag(help: "Copy messages even when the destination folder already has them.") var noSkipDuplicates = false
    @Option(
        help:
            "Checkpoint file: a rerun resumes from it (default: one per source and destination under $XDG_STATE_HOME/mailporter or ~/.local/state/mailporter)."
    )
    var stateFile: String?
    @Flag(help: "Keep no checkpoints: a rerun looks at every message again.") var noState = false
    @Option(help: "Folders copied at once (capped by the provider's connection limit).") var parallel: Int = 4
    @Flag(help: "Print the folder plan with mapping and counts; copy nothing.") var dryRun = false
    @Flag(
        help:
            "Also delete at the destination the copies whose source message was expunged since (needs UIDPLUS there; with --dry-run: list them)."
    )
    var propagateDeletions = false
    @Flag(help: "Print one JSON event per line instead of a progress bar.") var json = false
    @Option(help: "Extra PEM certificates to trust for the source.") var sourceCaFile: String?
    @Option(help: "Extra PEM certificates to trust for the destination.") var destCaFile: String?
    @Flag(help: "Do not verify certificates (unsafe).") var insecureSkipVerify = false

    func validate() throws {
        if noState, stateFile != nil { throw ValidationError("--state-file and --no-state exclude each other") }
    }

    func run() async throws {
        guard let provider = Provider(rawValue: provider) else {
            throw ValidationError(
                "--provider must be one of \(Provider.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        var sourceServer: ServerConfiguration
        do {
            sourceServer = try provider.server(host: sourceHost, port: sourcePort, security: sourceSecurity)
        } catch {
            throw ValidationError("--source-host is required for \(provider.rawValue), which has no preset server")
        }
        var sinceDate: InternalDate?
        if let since {
            guard let day = CalendarDay(since) else { throw ValidationError("--since \(CalendarDay.rule)") }
            sinceDate = day.start
        }
        let sourcePassword = try Terminal.secret(
            fromEnvironment: "MAILPORTER_SOURCE_PASSWORD", prompt: "Source password for \(sourceUser): ")
        let destPassword = try Terminal.secret(
            fromEnvironment: "MAILPORTER_DEST_PASSWORD",
            prompt: "Destination password for \(destMasterUser ?? destUser): ")

        sourceServer.verifyCertificates = !insecureSkipVerify
        if let sourceCaFile { sourceServer.additionalTrustRootsPEM = [try readTextFile(sourceCaFile)] }
        var destServer = ServerConfiguration(
            host: destHost, port: destPort ?? destSecurity.defaultPort,
            security: destSecurity, verifyCertificates: !insecureSkipVerify)
        if let destCaFile { destServer.additionalTrustRootsPEM = [try readTextFile(destCaFile)] }
        let destCredentials: Credentials =
            destMasterUser.map { .master(user: destUser, masterUsername: $0, masterPassword: destPassword) }
            ?? .password(username: destUser, password: destPassword)

        var request = MigrationRequest(
            source: MailAccount(
                server: sourceServer, credentials: .password(username: sourceUser, password: sourcePassword)),
            destination: MailAccount(server: destServer, credentials: destCredentials),
            provider: provider,
            selectedFolders: folders.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } },
            strategy: folderStrategy, since: sinceDate, skipDuplicates: !noSkipDuplicates, parallelFolders: parallel)
        request.propagateDeletions = propagateDeletions
        let statePath: String?
        let checkpoints: any CheckpointStore
        do {
            statePath = try resolvedStatePath(source: sourceServer, destination: destServer)
            checkpoints = try statePath.map { try StateFileCheckpointStore(path: $0) } ?? MemoryCheckpointStore()
        } catch {
            Terminal.printError("error: \(error)")
            throw ExitCode(2)
        }
        let migration = Migration(request: request, checkpoints: checkpoints)
        let tracker = ProgressTracker()
        let json = self.json
        let emit: @Sendable (MigrationEvent) -> Void = { event in
            tracker.handle(event)
            if json { EventPrinter.print(event) }
        }

        do {
            if dryRun {
                let plans = try await migration.plan(emit: emit)
                let deletions = propagateDeletions ? try await migration.pendingDeletions(plans) : []
                if json {
                    for (folder, pairs) in deletions {
                        EventPrinter.line([
                            "event": .string("would_delete"), "folder": .string(folder),
                            "source_uids": .string(UIDSet.compact(pairs.map { $0.source }).description),
                            "destination_uids": .string(UIDSet.compact(pairs.map { $0.destination }).description),
                            "count": .int(pairs.count),
                        ])
                    }
                } else {
                    Self.printPlan(plans, notices: tracker.snapshot.notices)
                    Self.printDeletions(deletions, asked: propagateDeletions)
                }
                return
            }
            let renderer =
                json || !Terminal.isErrorInteractive
                ? nil
                : Task {
                    while !Task.isCancelled {
                        Terminal.writeError("\r\u{1B}[K" + tracker.line())
                        try? await Task.sleep(for: .milliseconds(250))
                    }
                }
            let summary: MigrationSummary
            do {
                summary = try await migration.run(emit: emit)
                renderer?.cancel()
            } catch {
                renderer?.cancel()
                if renderer != nil { Terminal.writeError("\r\u{1B}[K" + tracker.line() + "\n") }
                throw error
            }
            if renderer != nil { Terminal.writeError("\r\u{1B}[K" + tracker.line() + "\n") }
            let totals = summary.totals
            let baseline = tracker.baseline
            if json {
                EventPrinter.line([
                    "event": .string("finished"), "expected": .int(totals.expected), "copied": .int(totals.copied),
                    "skipped": .int(totals.skipped), "failed": .int(totals.failed), "bytes": .int(totals.bytes),
                    "new": .int(totals.copied - baseline.copied), "flags_updated": .int(totals.flagsUpdated),
                    "deleted": .int(totals.deleted),
                    "state_file": statePath.map(JSONValue.string) ?? .null,
                ])
            } else {
                Self.printSummary(summary, failures: tracker.snapshot.failures, notices: tracker.snapshot.notices)
                print(
                    "pass: \(totals.copied - baseline.copied) new, \(totals.flagsUpdated) flags updated, "
                        + "\(totals.deleted) deleted" + (propagateDeletions ? "" : " (deletions not propagated)"))
                print(
                    statePath.map { "state: \($0) (a rerun copies only what is new)" }
                        ?? "state: none kept (--no-state)")
            }
            if totals.failed > 0 { throw ExitCode(1) }
        } catch let failure as ImportFailure {
            if json {
                EventPrinter.line([
                    "event": .string("error"), "code": .string(failure.code.rawValue),
                    "message": .string(failure.message), "hint": .string(failure.hint),
                ])
            }
            Terminal.printError("error: \(failure.code.rawValue): \(failure.message) Hint: \(failure.hint)")
            if let statePath { Terminal.printError("state: \(statePath) (a rerun resumes from it)") }
            throw ExitCode(2)
        }
    }

    /// The state file to use: `--state-file`, none with `--no-state`, else the default location.
    private func resolvedStatePath(source: ServerConfiguration, destination: ServerConfiguration) throws -> String? {
        if noState { return nil }
        if let stateFile { return stateFile }
        let directory = try StateLocation.directory(environment: ProcessInfo.processInfo.environment)
        return directory + "/"
            + StateLocation.fileName(source: (sourceUser, source), destination: (destUser, destination))
    }

    static func printPlan(_ plans: [FolderPlan], notices: [String]) {
        let width = min(50, plans.map(\.sourceName.count).max() ?? 0)
        for plan in plans {
            let padding = String(repeating: " ", count: max(1, width - plan.sourceName.count + 1))
            print("\(plan.sourceName)\(padding)-> \(plan.destinationName)  (\(plan.expected) messages)")
        }
        print("\(plans.count) folders, \(plans.reduce(0) { $0 + $1.expected }) messages would be considered")
        for notice in notices { print("note: \(notice)") }
    }

    static func printDeletions(
        _ deletions: [(folder: String, pairs: [(source: UInt32, destination: UInt32)])], asked: Bool
    ) {
        guard asked else { return }
        if deletions.isEmpty { print("deletions: none (no copied message was expunged at the source)") }
        for (folder, pairs) in deletions {
            print(
                "would delete \(pairs.count) in \(folder): destination UIDs "
                    + "\(UIDSet.compact(pairs.map { $0.destination })) "
                    + "(source UIDs \(UIDSet.compact(pairs.map { $0.source })), expunged there)"
            )
        }
    }

    static func printSummary(_ summary: MigrationSummary, failures: [String], notices: [String]) {
        print("folder -> destination: copied / skipped / failed of expected")
        for (plan, counts) in summary.folders {
            let pass =
                counts.flagsUpdated + counts.deleted > 0
                ? " (this pass: \(counts.flagsUpdated) flags updated, \(counts.deleted) deleted)" : ""
            print(
                "  \(plan.sourceName) -> \(plan.destinationName): \(counts.copied) / \(counts.skipped) / \(counts.failed) of \(counts.expected)"
                    + pass)
        }
        let totals = summary.totals
        print(
            "total: \(totals.copied) copied, \(totals.skipped) duplicates skipped, \(totals.failed) failed, "
                + "\(ProgressTracker.format(Double(totals.bytes) / 1_000_000)) MB")
        for failure in failures { print("failed: \(failure)") }
        for notice in notices { print("note: \(notice)") }
    }
}

/// Prints events as JSON lines.
enum EventPrinter {
    typealias Value = JSONValue

    static func line(_ fields: [String: Value]) {
        JSONLine.print(fields.sorted { $0.key < $1.key })
    }

    static func print(_ event: MigrationEvent) {
        switch event {
        case .validated:
            line(["event": .string("validated")])
        case .planned(let plans):
            for plan in plans {
                line([
                    "event": .string("folder_planned"), "folder": .string(plan.sourceName),
                    "destination": .string(plan.destinationName), "expected": .int(plan.expected),
                ])
            }
        case .folderStarted(let source, let destination):
            line(["event": .string("folder_started"), "folder": .string(source), "destination": .string(destination)])
        case .folderBaseline(let source, let counts):
            line([
                "event": .string("folder_baseline"), "folder": .string(source), "expected": .int(counts.expected),
                "copied": .int(counts.copied), "skipped": .int(counts.skipped), "failed": .int(counts.failed),
            ])
        case .messageCopied(let folder, let bytes):
            line(["event": .string("message_copied"), "folder": .string(folder), "bytes": .int(bytes)])
        case .messageSkipped(let folder):
            line(["event": .string("message_skipped"), "folder": .string(folder)])
        case .messageFailed(let folder, let uid, _, _, let reason):
            line([
                "event": .string("message_failed"), "folder": .string(folder), "uid": .int(Int(uid)),
                "reason": .string(reason),
            ])
        case .notice(let folder, let message):
            line(["event": .string("notice"), "folder": .string(folder), "message": .string(message)])
        case .retrying(let folder, let attempt, let delay, let reason):
            line([
                "event": .string("retrying"), "folder": .string(folder), "attempt": .int(attempt),
                "delay_seconds": .double(delay), "reason": .string(reason),
            ])
        case .folderFinished(let source, let summary):
            line([
                "event": .string("folder_done"), "folder": .string(source), "expected": .int(summary.expected),
                "copied": .int(summary.copied), "skipped": .int(summary.skipped), "failed": .int(summary.failed),
                "flags_updated": .int(summary.flagsUpdated), "deleted": .int(summary.deleted),
            ])
        case .folderFailed(let source, let failure):
            line([
                "event": .string("folder_failed"), "folder": .string(source), "code": .string(failure.code.rawValue),
                "message": .string(failure.message),
            ])
        }
    }
}
