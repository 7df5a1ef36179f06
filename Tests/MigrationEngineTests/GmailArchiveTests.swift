import IMAPClient
import MigrationEngine
import NIOCore
import Synchronization
import Testing
import TestSupport

// MARK: - Fixture

/// A Gmail account in miniature: every message is in All Mail, and in the folder of each label.
private struct GmailMailbox {
    struct Entry {
        var message: ScriptedGmailServer.Message
        /// The destination folder it must end up in, exactly once.
        var destination: String
    }

    static let entries: [Entry] = [
        entry(
            1, "in the inbox, important", at: (2021, 3, 4, 10, 0, 60), flags: ["\\Seen"],
            labels: ["\\Inbox", "\\Important"],
            destination: "INBOX"),
        entry(
            2, "in the inbox, old", at: (2019, 6, 1, 8, 0, -420), flags: [], labels: ["\\Inbox"], destination: "INBOX"),
        entry(3, "sent", at: (2020, 11, 11, 12, 0, 0), flags: ["\\Seen"], labels: ["\\Sent"], destination: "Sent"),
        entry(
            4, "labelled Work", at: (2018, 2, 2, 9, 30, 120), flags: ["\\Seen", "\\Answered"], labels: ["Work"],
            destination: "Work"),
        // Archived without a label: in All Mail only. Without a Message-ID, so duplicate detection
        // takes the header-hash path against the scripted server too.
        entry(
            5, "archived, no label", at: (2022, 5, 5, 14, 0, 330), flags: ["\\Seen"], labels: [],
            destination: "Archive",
            messageID: false),
        // Starred and important are views, not labels that put a message in a folder.
        entry(
            6, "archived, starred", at: (2019, 9, 9, 23, 0, -300), flags: ["\\Seen", "\\Flagged"],
            labels: ["\\Starred", "\\Important"], destination: "Archive"),
    ]

    static var messages: [ScriptedGmailServer.Message] { entries.map(\.message) }

    /// Per destination folder, what a migration must leave there (folders it covers are keys even when empty).
    static func expected(since: InternalDate? = nil, archive: Bool = true) -> [String: [StoredMessage]] {
        var result: [String: [StoredMessage]] = ["INBOX": [], "Sent": [], "Work": []]
        if archive { result["Archive"] = [] }
        for entry in entries where result[entry.destination] != nil {
            if let since, entry.message.internalDate.isBeforeDay(of: since) { continue }
            result[entry.destination, default: []].append(
                StoredMessage(
                    body: entry.message.bytes, flags: Set(entry.message.flags),
                    internalDate: entry.message.internalDate.secondsSince1970))
        }
        return result
    }

    private static func entry(
        _ number: Int, _ subject: String, at date: (Int, Int, Int, Int, Int, Int), flags: [String],
        labels: [String], destination: String, messageID: Bool = true
    ) -> Entry {
        let internalDate = InternalDate(
            year: date.0, month: date.1, day: date.2, hour: date.3, minute: date.4, second: 0,
            zoneMinutes: date.5)
        var text =
            "From: \"Sender \(number)\" <sender\(number)@example.org>\r\nTo: jane@gmail.com\r\n"
            + "Subject: [gmail] #\(number) \(subject)\r\nDate: \(internalDate)\r\n"
        if messageID { text += "Message-ID: <gmail-\(number)@mailporter.test>\r\n" }
        text += "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        for line in 0..<(3 + number * 4) { text += "Line \(line) of message \(number): Grüße aus dem Archiv.\r\n" }
        return Entry(
            message: ScriptedGmailServer.Message(
                bytes: ByteBuffer(string: text), flags: flags, internalDate: internalDate,
                labels: labels),
            destination: destination)
    }
}

private extension InternalDate {
    /// Whether this date's own calendar day lies before `since`'s: what `SINCE` leaves out.
    func isBeforeDay(of since: InternalDate) -> Bool {
        (year, month, day) < (since.year, since.month, since.day)
    }
}

// MARK: - Helpers

/// A migration's events; `cancel` is called once `cancelAfterCopied` messages were copied.
private final class GmailEventLog: Sendable {
    private struct State {
        var events: [MigrationEvent] = []
        var copied = 0
        var cancel: (@Sendable () -> Void)?
    }

    private let state = Mutex(State())
    private let cancelAfterCopied: Int?

    init(cancelAfterCopied: Int? = nil) { self.cancelAfterCopied = cancelAfterCopied }

    var emit: @Sendable (MigrationEvent) -> Void {
        { [self] event in
            let cancel = state.withLock { state -> (@Sendable () -> Void)? in
                state.events.append(event)
                guard case .messageCopied = event else { return nil }
                state.copied += 1
                return state.copied == cancelAfterCopied ? state.cancel : nil
            }
            cancel?()
        }
    }

    /// Sets what to call; calls it at once if enough messages were copied already.
    func arm(_ cancel: @escaping @Sendable () -> Void) {
        let late = state.withLock { state in
            state.cancel = cancel
            return cancelAfterCopied.map { state.copied >= $0 } ?? false
        }
        if late { cancel() }
    }

    var events: [MigrationEvent] { state.withLock { $0.events } }
    var copied: Int { state.withLock { $0.copied } }
    var skipped: Int { events.filter { if case .messageSkipped = $0 { true } else { false } }.count }
    var notices: [String: String] {
        var result: [String: String] = [:]
        for case .notice(let folder, let message) in events { result[folder] = message }
        return result
    }
    var planned: [FolderPlan] {
        events.lazy.compactMap { if case .planned(let plans) = $0 { plans } else { nil } }.first ?? []
    }
    var finished: [String: FolderSummaryCounts] {
        var result: [String: FolderSummaryCounts] = [:]
        for case .folderFinished(let source, let summary) in events { result[source] = summary }
        return result
    }
}

private func gmailAccount(_ server: ScriptedGmailServer) -> MailAccount {
    MailAccount(
        server: server.configuration(),
        credentials: .password(username: "jane@gmail.com", password: ScriptedGmailServer.password))
}

private func dovecotAccount(_ server: DovecotServer, _ user: String) -> MailAccount {
    MailAccount(
        server: server.configuration(), credentials: .password(username: user, password: DovecotServer.password))
}

/// Every command the engine sent was one the scripted Gmail serves.
private func expectNothingRefused(_ server: ScriptedGmailServer, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(
        server.refusals.isEmpty,
        """
        the scripted Gmail refused: \(server.refusals.joined(separator: "; "))
        commands received:
        \(server.commands.joined(separator: "\n"))
        """, sourceLocation: sourceLocation)
}

/// The destination holds exactly `expected`; on a difference the commands the source received are shown too.
private func expectExact(
    _ snapshot: AccountSnapshot, _ expected: [String: [StoredMessage]], _ context: String,
    source: ScriptedGmailServer, sourceLocation: SourceLocation = #_sourceLocation
) {
    let problems = snapshot.differences(from: expected)
    for problem in problems {
        Issue.record("\(context): \(problem)", sourceLocation: sourceLocation)
    }
    if !problems.isEmpty {
        Issue.record(
            "commands the scripted Gmail received:\n\(source.commands.joined(separator: "\n"))",
            sourceLocation: sourceLocation)
    }
}

private func totalBytes(_ expected: [String: [StoredMessage]]) -> Int64 {
    Int64(expected.values.joined().reduce(0) { $0 + $1.body.readableBytes })
}

// MARK: - Tests

/// Gmail as the source (the scripted server, since Dovecot has no labels), a real Dovecot as the
/// destination: All Mail, Important and Starred are views and never become folders, but what is
/// in All Mail only (archived without a label) lands in the destination's Archive (SPEC §8).
@Suite("Gmail: messages only in All Mail go to Archive", .serialized, .timeLimit(.minutes(3)))
struct GmailArchiveTests {
    @Test func unlabelledMessagesLandInArchiveAndEverythingElseInItsLabelFolder() async throws {
        let gmail = try await ScriptedGmailServer.start(messages: GmailMailbox.messages)
        defer { Task { await gmail.stop() } }
        let destination = try await SharedServers.shared.server(.slash)
        let user = try await destination.freshUser("gmail")
        let request = MigrationRequest(
            source: gmailAccount(gmail), destination: dovecotAccount(destination, user), provider: .gmail)
        let store = MemoryCheckpointStore()

        // The plan: All Mail goes to Archive with the count of its unlabelled messages; the views do not appear.
        let plans = try await Migration(request: request, checkpoints: store).plan()
        let byName = Dictionary(uniqueKeysWithValues: plans.map { ($0.sourceName, $0) })
        #expect(byName["[Gmail]/All Mail"]?.destinationName == "Archive")
        #expect(byName["[Gmail]/All Mail"]?.expected == 2, "only the two unlabelled messages count")
        #expect(byName["[Gmail]/All Mail"]?.onlyUnlabelled == true)
        #expect(byName["INBOX"]?.expected == 2)
        #expect(byName["[Gmail]/Sent Mail"]?.destinationName == "Sent")
        #expect(byName["Work"]?.destinationName == "Work")
        #expect(
            byName["[Gmail]/Important"] == nil && byName["[Gmail]/Starred"] == nil,
            "views are not folders: \(byName.keys.sorted())")
        #expect(plans.filter(\.onlyUnlabelled).count == 1)

        let log = GmailEventLog()
        let summary = try await Migration(request: request, checkpoints: store).run(emit: log.emit)
        let snapshot = try await AccountSnapshot.take(destination, user: user)
        let expected = GmailMailbox.expected()
        expectExact(snapshot, expected, "gmail migration", source: gmail)
        #expect(snapshot.folders["Archive"]?.count == 2)
        for folder in snapshot.folders.keys {
            #expect(
                !["[Gmail]", "All Mail", "Important", "Starred"].contains { folder.contains($0) },
                "\(folder) should not exist at the destination")
        }

        // Totals: what was planned is what was copied, folder by folder.
        #expect(summary.totals == FolderSummaryCounts(expected: 6, copied: 6, bytes: totalBytes(expected)))
        #expect(log.copied == 6)
        #expect(log.planned.reduce(0) { $0 + $1.expected } == 6)
        #expect(
            log.finished["[Gmail]/All Mail"]
                == FolderSummaryCounts(expected: 2, copied: 2, bytes: totalBytes(["": expected["Archive"] ?? []])))
        for (source, counts) in log.finished {
            #expect(counts.isComplete && counts.copied == counts.expected, "\(source): \(counts)")
        }
        expectNothingRefused(gmail)
        #expect(gmail.commands.contains { $0.contains("X-GM-LABELS") }, "the labels were never asked for")

        // Again with the same checkpoints: nothing to copy, nothing changes.
        let again = GmailEventLog()
        let rerun = try await Migration(request: request, checkpoints: store).run(emit: again.emit)
        #expect(again.copied == 0)
        #expect(rerun.totals == summary.totals)
        #expect(try await AccountSnapshot.take(destination, user: user) == snapshot, "the destination changed")

        // Started over without checkpoints: every message is found already there, Archive's too.
        let fresh = GmailEventLog()
        let restarted = try await Migration(request: request, checkpoints: MemoryCheckpointStore()).run(
            emit: fresh.emit)
        #expect(fresh.copied == 0)
        #expect(restarted.totals.skipped == 6 && restarted.totals.expected == 6, "\(restarted.totals)")
        #expect(try await AccountSnapshot.take(destination, user: user) == snapshot, "the destination changed")
        expectNothingRefused(gmail)
    }

    @Test func theDateFilterAppliesToTheArchiveSelection() async throws {
        let gmail = try await ScriptedGmailServer.start(messages: GmailMailbox.messages)
        defer { Task { await gmail.stop() } }
        let destination = try await SharedServers.shared.server(.slash)
        let user = try await destination.freshUser("gmail")
        let since = InternalDate(year: 2020, month: 1, day: 1, hour: 0, minute: 0, second: 0, zoneMinutes: 0)
        let request = MigrationRequest(
            source: gmailAccount(gmail), destination: dovecotAccount(destination, user), provider: .gmail,
            since: since)
        let log = GmailEventLog()
        let summary = try await Migration(request: request, checkpoints: MemoryCheckpointStore()).run(emit: log.emit)
        let expected = GmailMailbox.expected(since: since)
        #expect(expected["Archive"]?.count == 1 && expected.values.joined().count == 3, "the fixture straddles the day")
        expectExact(
            try await AccountSnapshot.take(destination, user: user), expected, "since \(since.searchDate)",
            source: gmail)
        #expect(log.planned.first { $0.onlyUnlabelled }?.expected == 1, "All Mail's count is after the date filter")
        #expect(summary.totals == FolderSummaryCounts(expected: 3, copied: 3, bytes: totalBytes(expected)))
        expectNothingRefused(gmail)
    }

    /// Cancelled right after the first Archive message (one worker, batches of one), then resumed
    /// with the same checkpoints: the rest arrives, nothing twice, with or without duplicate detection.
    @Test(arguments: [true, false])
    func anInterruptedArchiveResumesExactly(skipDuplicates: Bool) async throws {
        let gmail = try await ScriptedGmailServer.start(messages: GmailMailbox.messages)
        defer { Task { await gmail.stop() } }
        let destination = try await SharedServers.shared.server(.slash)
        let user = try await destination.freshUser("gmail")
        let request = MigrationRequest(
            source: gmailAccount(gmail), destination: dovecotAccount(destination, user), provider: .gmail,
            skipDuplicates: skipDuplicates, parallelFolders: 1, batchSize: 1)
        let store = MemoryCheckpointStore()

        // Folders go in plan order (INBOX, Work, All Mail, Sent Mail): the fourth copy is Archive's first.
        let log = GmailEventLog(cancelAfterCopied: 4)
        let task = Task { () -> ImportFailure? in
            do throws(ImportFailure) {
                _ = try await Migration(request: request, checkpoints: store).run(emit: log.emit)
                return nil
            } catch {
                return error
            }
        }
        log.arm { task.cancel() }
        let failure = await task.value
        #expect(failure?.code == .cancelled, "\(String(describing: failure))")
        let checkpoint = await store.load(folder: "[Gmail]/All Mail")
        #expect(checkpoint?.copied == 1, "\(String(describing: checkpoint))")
        #expect(try await AccountSnapshot.take(destination, user: user).folders["Archive"]?.count == 1)

        let commandsBefore = gmail.commands.count
        let resumed = GmailEventLog()
        let summary = try await Migration(request: request, checkpoints: store).run(emit: resumed.emit)
        let expected = GmailMailbox.expected()
        expectExact(try await AccountSnapshot.take(destination, user: user), expected, "resumed", source: gmail)
        #expect(resumed.copied == 2, "Archive's second message and Sent's")
        #expect(summary.totals == FolderSummaryCounts(expected: 6, copied: 6, bytes: totalBytes(expected)))
        #expect(
            resumed.planned.first { $0.onlyUnlabelled }?.expected == 2,
            "All Mail's count includes what the checkpoint covers")
        expectNothingRefused(gmail)

        // Labels are asked for only above the checkpoint: what it covers is counted from it.
        let labelFetches = gmail.commands.dropFirst(commandsBefore).filter { $0.contains("X-GM-LABELS") }
        #expect(!labelFetches.isEmpty)
        let lastDone = try #require(checkpoint?.lastSourceUID)
        for command in labelFetches {
            let set = command.split(separator: " ").drop { $0 != "FETCH" }.dropFirst().first ?? ""
            let lowest = set.split(separator: ",").compactMap { UInt32($0.split(separator: ":")[0]) }.min()
            #expect(
                lowest.map { $0 > lastDone } == true,
                "\(command) asks about UIDs the checkpoint covers (up to \(lastDone))")
        }
    }

    /// The scripted server itself: labels as Gmail reports them, and a `BAD` (recorded) for what
    /// it does not emulate, so the tests above notice when the engine asks for something else.
    @Test func theScriptedGmailServesLabelsAndRefusesWhatItDoesNotEmulate() async throws {
        let gmail = try await ScriptedGmailServer.start(messages: GmailMailbox.messages)
        defer { Task { await gmail.stop() } }
        let session = try await IMAPSession.open(gmail.configuration(), credentials: gmailAccount(gmail).credentials)
        #expect(await session.hasCapability("X-GM-EXT-1"))
        let allMail = try await session.select(MailboxName(encoded: "[Gmail]/All Mail"), readOnly: true)
        #expect(allMail.exists == GmailMailbox.entries.count)
        let labels = try await session.uidFetch(UIDSet([1...UInt32.max]).description, items: "UID X-GM-LABELS").flatMap
        { $0.attributes.compactMap(\.gmailLabels) }
        #expect(labels == GmailMailbox.entries.map(\.message.labels))
        #expect(gmail.refusals.isEmpty, "\(gmail.refusals)")

        for command in [
            " FETCH 1:* (BODY[])", " FETCH 1:* (ENVELOPE)", " SEARCH X-GM-RAW \"has:nouserlabels\"", " EXPUNGE",
        ] {
            let refused = try await session.send(Command("UID", [.text(command)]))
            #expect(try await session.finish(refused, throwing: false).status == .bad, "UID\(command)")
        }
        #expect(gmail.refusals.count == 4, "\(gmail.refusals)")
        await session.logout()
    }

    /// A server with Gmail's folders but without X-GM-EXT-1 is not Gmail: All Mail is skipped as
    /// before, and no label is ever asked for.
    @Test func withoutTheGmailExtensionAllMailIsSkippedAsBefore() async throws {
        let server = try await ScriptedGmailServer.start(messages: GmailMailbox.messages, gmailExtension: false)
        defer { Task { await server.stop() } }
        let destination = try await SharedServers.shared.server(.slash)
        let user = try await destination.freshUser("gmail")
        let request = MigrationRequest(
            source: gmailAccount(server), destination: dovecotAccount(destination, user), provider: .gmail)
        let log = GmailEventLog()
        let summary = try await Migration(request: request, checkpoints: MemoryCheckpointStore()).run(emit: log.emit)

        let sources = Set(summary.folders.map(\.plan.sourceName))
        #expect(
            !sources.contains("[Gmail]/All Mail") && !sources.contains("[Gmail]/Important")
                && !sources.contains("[Gmail]/Starred"),
            "\(sources.sorted())")
        #expect(!summary.folders.contains { $0.plan.onlyUnlabelled })
        let expected = GmailMailbox.expected(archive: false)
        expectExact(
            try await AccountSnapshot.take(destination, user: user), expected, "without X-GM-EXT-1", source: server)
        #expect(summary.totals == FolderSummaryCounts(expected: 4, copied: 4, bytes: totalBytes(expected)))
        expectNothingRefused(server)
        #expect(!server.commands.contains { $0.contains("X-GM-") }, "labels asked of a server without X-GM-EXT-1")
    }

    /// Gmail is known by X-GM-EXT-1, not by what the request calls it: a Gmail account imported as
    /// generic IMAP gets the same exact result, archived-only mail in Archive, and the views are
    /// told as skipped, not copied.
    @Test(arguments: [Provider.genericIMAP, .outlook])
    func gmailIsKnownByItsExtensionWhateverTheProviderSays(provider: Provider) async throws {
        let gmail = try await ScriptedGmailServer.start(messages: GmailMailbox.messages)
        defer { Task { await gmail.stop() } }
        let destination = try await SharedServers.shared.server(.slash)
        let user = try await destination.freshUser("gmail")
        let request = MigrationRequest(
            source: gmailAccount(gmail), destination: dovecotAccount(destination, user), provider: provider)
        let log = GmailEventLog()
        let summary = try await Migration(request: request, checkpoints: MemoryCheckpointStore()).run(emit: log.emit)
        let expected = GmailMailbox.expected()
        expectExact(
            try await AccountSnapshot.take(destination, user: user), expected, "gmail as \(provider.rawValue)",
            source: gmail)
        #expect(summary.totals == FolderSummaryCounts(expected: 6, copied: 6, bytes: totalBytes(expected)))
        #expect(Set(log.notices.keys) == ["[Gmail]/Important", "[Gmail]/Starred"], "\(log.notices)")
        #expect(log.notices["[Gmail]/Starred"]?.contains("\\Flagged") == true)
        expectNothingRefused(gmail)
    }

    /// A server that lists views by their RFC 6154 / RFC 8457 attributes, but is not Gmail: none is
    /// copied when the provider is not named, and each is told with its reason.
    @Test func viewsOfAnyServerAreNotCopiedWithoutBeingNamed() async throws {
        let server = try await ScriptedGmailServer.start(messages: GmailMailbox.messages, gmailExtension: false)
        defer { Task { await server.stop() } }
        let destination = try await SharedServers.shared.server(.slash)
        let user = try await destination.freshUser("gmail")
        let request = MigrationRequest(source: gmailAccount(server), destination: dovecotAccount(destination, user))
        let log = GmailEventLog()
        let summary = try await Migration(request: request, checkpoints: MemoryCheckpointStore()).run(emit: log.emit)
        let expected = GmailMailbox.expected(archive: false)
        expectExact(
            try await AccountSnapshot.take(destination, user: user), expected, "views of a generic server",
            source: server)
        #expect(summary.totals == FolderSummaryCounts(expected: 4, copied: 4, bytes: totalBytes(expected)))
        #expect(
            Set(log.notices.keys) == ["[Gmail]/All Mail", "[Gmail]/Important", "[Gmail]/Starred"], "\(log.notices)")
        #expect(log.notices["[Gmail]/All Mail"]?.contains("not copied") == true)
    }

    /// A view the user names is copied, as the plain folder it looks like.
    @Test func aNamedViewIsCopied() async throws {
        let gmail = try await ScriptedGmailServer.start(messages: GmailMailbox.messages)
        defer { Task { await gmail.stop() } }
        let destination = try await SharedServers.shared.server(.slash)
        let user = try await destination.freshUser("gmail")
        let request = MigrationRequest(
            source: gmailAccount(gmail), destination: dovecotAccount(destination, user),
            selectedFolders: ["INBOX", "[Gmail]/Starred"])
        let log = GmailEventLog()
        _ = try await Migration(request: request, checkpoints: MemoryCheckpointStore()).run(emit: log.emit)
        var expected = GmailMailbox.expected().filter { $0.key == "INBOX" }
        expected["Starred"] = GmailMailbox.entries.filter { $0.message.labels.contains("\\Starred") }.map {
            StoredMessage(
                body: $0.message.bytes, flags: Set($0.message.flags),
                internalDate: $0.message.internalDate.secondsSince1970)
        }
        #expect(expected["Starred"]?.count == 1)
        expectExact(try await AccountSnapshot.take(destination, user: user), expected, "a named view", source: gmail)
        #expect(log.notices.isEmpty, "\(log.notices)")
    }
}
