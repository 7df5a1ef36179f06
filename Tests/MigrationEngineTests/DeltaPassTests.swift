import Foundation
import IMAPClient
@testable import MigrationEngine
import NIOCore
import Synchronization
import Testing
import TestSupport

// MARK: - Helpers

/// Events of one run, for the notices and counts a user would read.
private final class Events: Sendable {
    private let events = Mutex<[MigrationEvent]>([])
    var emit: @Sendable (MigrationEvent) -> Void { { [self] event in events.withLock { $0.append(event) } } }
    var notices: [String] {
        events.withLock { $0 }.compactMap { if case .notice(_, let message) = $0 { message } else { nil } }
    }
    var retries: Int { events.withLock { $0 }.filter { if case .retrying = $0 { true } else { false } }.count }
}

private func account(_ server: DovecotServer, _ user: String) -> MailAccount {
    MailAccount(
        server: server.configuration(), credentials: .password(username: user, password: DovecotServer.password))
}

/// A small message with a Message-ID, numbered.
private func message(_ number: Int, tag: String) -> ByteBuffer {
    ByteBuffer(
        string: "From: a@example.test\r\nTo: b@example.test\r\nSubject: delta \(tag) \(number)\r\n"
            + "Message-ID: <delta-\(tag)-\(number)@example.test>\r\nDate: Mon, 1 Jun 2020 10:00:00 +0000\r\n\r\n"
            + "Body \(number)\r\n")
}

private let date = InternalDate(year: 2020, month: 6, day: 1, hour: 10, minute: 0, second: 0, zoneMinutes: 0)

/// Runs `body` on a session of `user` with `folder` selected read-write.
private func onFolder<T: Sendable>(
    _ server: DovecotServer, _ user: String, _ folder: String = "INBOX",
    _ body: (IMAPSession) async throws -> T
) async throws -> T {
    let session = try await IMAPSession.open(
        server.configuration(), credentials: .password(username: user, password: DovecotServer.password))
    do {
        _ = try await session.select(MailboxName(decoded: server.folder(folder)))
        let result = try await body(session)
        await session.logout()
        return result
    } catch {
        await session.close()
        throw error
    }
}

private func append(
    _ messages: [(flags: [String], body: ByteBuffer)], on server: DovecotServer, user: String,
    folder: String = "INBOX"
) async throws {
    try await onFolder(server, user, folder) { session in
        let mailbox = MailboxName(decoded: server.folder(folder))
        for start in stride(from: 0, to: messages.count, by: 200) {
            let chunk = messages[start..<min(messages.count, start + 200)]
            _ = try await session.appendAll(to: mailbox, messages: chunk.map { ($0.flags, date, $0.body) })
        }
    }
}

private func store(
    _ uids: ClosedRange<UInt32>, _ operation: IMAPSession.FlagOperation, _ flags: [String],
    on session: IMAPSession
) async throws {
    _ = try await session.storeResult(
        try await session.sendUIDStore(UIDSet([uids]), operation, flags: flags, unchangedSince: nil))
}

/// The messages of a folder as a user compares them: bytes, flags and keywords, date; with how
/// often each is there.
private func contents(_ server: DovecotServer, _ user: String, folder: String = "INBOX") async throws
    -> [StoredMessage: Int]
{
    let snapshot = try await AccountSnapshot.take(server, user: user)
    return (snapshot.folders[folder] ?? []).reduce(into: [:]) { $0[$1, default: 0] += 1 }
}

private func differences(_ actual: [StoredMessage: Int], _ expected: [StoredMessage: Int]) -> [String] {
    var problems: [String] = []
    for (message, count) in expected where actual[message] != count {
        problems.append("expected \(count)× \(message), found \(actual[message] ?? 0)")
    }
    for (message, count) in actual where expected[message] == nil {
        problems.append("unexpected \(count)× \(message)")
    }
    return problems.sorted()
}

private func folderCounts(_ summary: MigrationSummary, _ folder: String = "INBOX") -> FolderSummaryCounts? {
    summary.folders.first { $0.plan.sourceName == folder }?.counts
}

/// The capabilities a Dovecot shows after login, without CONDSTORE and QRESYNC.
private func capabilitiesWithoutCondstore(like server: DovecotServer) async throws -> String {
    let user = try await server.freshUser("caps")
    let session = try await IMAPSession.open(
        server.configuration(), credentials: .password(username: user, password: DovecotServer.password))
    let names = await session.capabilities
    await session.logout()
    return names.filter { !["CONDSTORE", "QRESYNC"].contains($0) }.sorted().joined(separator: " ")
}

// MARK: - Tests

/// Delta passes against real Dovecots: a rerun copies what is new and carries flag and keyword
/// changes (and deletions when asked) to the copies this migration made, and to no other message.
@Suite("Delta passes against real Dovecot servers", .serialized, .timeLimit(.minutes(5)))
struct DeltaPassTests {
    @Test func aRerunCarriesFlagChangesAndNewMailAndTouchesOnlyItsCopies() async throws {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let sourceUser = try await source.freshUser("dsrc")
        let destinationUser = try await destination.freshUser("ddst")
        // 1,500 messages; 101–110 read, every 7th with a keyword.
        let originals = (1...1500).map { number in
            (
                flags: (101...110).contains(number) ? ["\\Seen"] : number % 7 == 0 ? ["$Work"] : [],
                body: message(number, tag: sourceUser)
            )
        }
        try await append(originals, on: source, user: sourceUser)
        // The destination already has message 5 (a duplicate, so never copied), with its own flags.
        try await append([(["$Mine"], message(5, tag: sourceUser))], on: destination, user: destinationUser)

        let checkpoints = MemoryCheckpointStore()
        let request = MigrationRequest(
            source: account(source, sourceUser), destination: account(destination, destinationUser))
        let first = try await Migration(request: request, checkpoints: checkpoints).run(emit: { _ in })
        #expect(first.totals.copied == 1499)
        #expect(first.totals.skipped == 1)

        try await onFolder(source, sourceUser) { session in
            try await store(1...20, .add, ["\\Seen", "\\Flagged"], on: session)
            try await store(101...110, .remove, ["\\Seen"], on: session)
        }
        try await append([([], message(1501, tag: sourceUser))], on: source, user: sourceUser)

        let second = try await Migration(request: request, checkpoints: checkpoints).run(emit: { _ in })
        let inbox = try #require(folderCounts(second))
        #expect(inbox.copied == 1500, "the new message is copied")
        #expect(inbox.skipped == 1)
        // 30 changes at the source; message 5's copy is not this migration's, so 29 copies change.
        #expect(inbox.flagsUpdated == 29)
        #expect(inbox.deleted == 0)

        var expected = try await contents(source, sourceUser)
        let fifth = try #require(expected.keys.first { $0.subject == "delta \(sourceUser) 5" })
        expected[fifth] = nil
        expected[StoredMessage(body: fifth.body, flags: ["$Mine"], internalDate: fifth.internalDate)] = 1
        let problems = differences(try await contents(destination, destinationUser), expected)
        #expect(problems.isEmpty, "\(problems.prefix(10))")

        // Nothing changed since: the next pass updates nothing.
        let third = try await Migration(request: request, checkpoints: checkpoints).run(emit: { _ in })
        #expect(folderCounts(third)?.flagsUpdated == 0)
        #expect(folderCounts(third)?.copied == 1500)
    }

    @Test func withoutCondstoreTheFlagsOfTheCopiedRangeAreComparedIncludingKeywords() async throws {
        let source = try DovecotServer.start(
            layout: .dot,
            imapCapability: try await capabilitiesWithoutCondstore(like: try await SharedServers.shared.server(.dot)))
        defer { source.stop() }
        let destination = try await SharedServers.shared.server(.slash)
        let sourceUser = try await source.freshUser("ncsrc")
        let destinationUser = try await destination.freshUser("ncdst")
        let probe = try await IMAPSession.open(
            source.configuration(), credentials: .password(username: sourceUser, password: DovecotServer.password))
        #expect(await !probe.hasCapability("CONDSTORE"), "the source offers no CONDSTORE")
        await probe.logout()

        try await append(
            (1...300).map { (flags: $0 % 3 == 0 ? ["$Todo"] : [], body: message($0, tag: sourceUser)) },
            on: source, user: sourceUser)
        let checkpoints = MemoryCheckpointStore()
        var request = MigrationRequest(
            source: account(source, sourceUser), destination: account(destination, destinationUser))
        request.flagBatchSize = 100  // several pipelined FETCH FLAGS
        _ = try await Migration(request: request, checkpoints: checkpoints).run(emit: { _ in })

        try await onFolder(source, sourceUser) { session in
            try await store(1...30, .add, ["\\Answered", "$Billing"], on: session)  // 10 of them had $Todo
            try await store(31...60, .remove, ["$Todo"], on: session)  // 10 had it
            try await store(61...62, .replace, ["\\Draft"], on: session)
        }
        let second = try await Migration(request: request, checkpoints: checkpoints).run(emit: { _ in })
        #expect(folderCounts(second)?.flagsUpdated == 42)
        let problems = differences(
            try await contents(destination, destinationUser), try await contents(source, sourceUser))
        #expect(problems.isEmpty, "\(problems.prefix(10))")

        // One message changes at the source, in the last run of 100 copies; the user flags a copy in
        // the first run at the destination. The pass reads the destination only for the run whose
        // source flags moved (as mbsync and CONDSTORE do): it sets the one change, and the user's own
        // flag, on a copy whose source did not change, stays.
        try await onFolder(source, sourceUser) { session in try await store(250...250, .add, ["\\Flagged"], on: session)
        }
        try await onFolder(destination, destinationUser) { session in
            try await store(5...5, .add, ["$Mine"], on: session)
        }
        let third = try await Migration(request: request, checkpoints: checkpoints).run(emit: { _ in })
        #expect(folderCounts(third)?.flagsUpdated == 1)
        let destinationNow = try await contents(destination, destinationUser)
        var expected = try await contents(source, sourceUser)
        let fifth = try #require(expected.keys.first { $0.subject == "delta \(sourceUser) 5" })
        expected[fifth] = nil
        expected[
            StoredMessage(body: fifth.body, flags: fifth.flags.union(["$Mine"]), internalDate: fifth.internalDate)] = 1
        let afterThird = differences(destinationNow, expected)
        #expect(afterThird.isEmpty, "\(afterThird.prefix(10))")
    }

    /// The destination connection drops right after the first UID STORE of a pass is answered: the
    /// folder reconnects, the pass runs again from the last finished one, and the copies end exact.
    @Test func aPassCutOffMidwayAndRunAgainIsExact() async throws {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let sourceUser = try await source.freshUser("cutsrc")
        let destinationUser = try await destination.freshUser("cutdst")
        try await append((1...90).map { (flags: [], body: message($0, tag: sourceUser)) }, on: source, user: sourceUser)
        let checkpoints = MemoryCheckpointStore()
        let direct = MigrationRequest(
            source: account(source, sourceUser), destination: account(destination, destinationUser))
        _ = try await Migration(request: direct, checkpoints: checkpoints).run(emit: { _ in })
        // Three different changes: three STOREs.
        try await onFolder(source, sourceUser) { session in
            try await store(1...30, .add, ["\\Seen"], on: session)
            try await store(31...60, .add, ["$Later"], on: session)
            try await store(61...90, .add, ["\\Flagged", "$Later"], on: session)
        }

        let proxy = try await FaultInjectingProxy.start(
            upstreamPort: destination.imapPort, faults: [.dropAfterPattern(Array("tore completed".utf8), extraBytes: 0)]
        )
        var configuration = destination.configuration()
        configuration.port = proxy.port
        var cut = direct
        cut.parallelFolders = 1  // one worker, on the planning sessions: the cut connection is the one that stores
        cut.destination = MailAccount(
            server: configuration, credentials: .password(username: destinationUser, password: DovecotServer.password))
        let events = Events()
        let pass = try await Migration(request: cut, checkpoints: checkpoints, backoff: { _, _ in 0.05 })
            .run(emit: events.emit)
        await proxy.stop()
        #expect(events.retries == 1, "the first destination connection was cut mid-pass")
        // The STOREs are pipelined: the server may have carried out all three before the cut, so the
        // second attempt finds anything from none to all of them left to do; what counts is the result.
        #expect((0...90).contains(folderCounts(pass)?.flagsUpdated ?? -1))
        let problems = differences(
            try await contents(destination, destinationUser), try await contents(source, sourceUser))
        #expect(problems.isEmpty, "\(problems.prefix(10))")
    }

    @Test func deletionsAreListedByADryRunAndPropagatedOnlyWhenAsked() async throws {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let sourceUser = try await source.freshUser("delsrc")
        let destinationUser = try await destination.freshUser("deldst")
        try await append((1...50).map { (flags: [], body: message($0, tag: sourceUser)) }, on: source, user: sourceUser)
        // The user's own message at the destination, flagged \Deleted: a plain EXPUNGE would take it.
        let own = message(999, tag: "own-\(destinationUser)")
        try await append([(["\\Deleted"], own)], on: destination, user: destinationUser)

        let checkpoints = MemoryCheckpointStore()
        var request = MigrationRequest(
            source: account(source, sourceUser), destination: account(destination, destinationUser))
        _ = try await Migration(request: request, checkpoints: checkpoints).run(emit: { _ in })
        try await onFolder(source, sourceUser) { session in
            try await store(11...15, .add, ["\\Deleted"], on: session)
            try await session.uidExpunge(UIDSet([11...15]))
        }

        let kept = try await Migration(request: request, checkpoints: checkpoints).run(emit: { _ in })
        #expect(folderCounts(kept)?.deleted == 0, "the default never deletes")
        #expect(try await contents(destination, destinationUser).values.reduce(0, +) == 51)

        request.propagateDeletions = true
        let migration = Migration(request: request, checkpoints: checkpoints)
        let listed = try await migration.pendingDeletions(try await migration.plan())
        #expect(listed.map(\.folder) == ["INBOX"])
        #expect(listed.first?.pairs.map(\.source) == Array(11...15))
        #expect(try await contents(destination, destinationUser).values.reduce(0, +) == 51, "a dry run deletes nothing")

        let events = Events()
        let pass = try await migration.run(emit: events.emit)
        #expect(folderCounts(pass)?.deleted == 5)
        var expected = try await contents(source, sourceUser)
        expected[StoredMessage(body: own, flags: ["\\Deleted"], internalDate: date.secondsSince1970)] = 1
        let problems = differences(try await contents(destination, destinationUser), expected)
        #expect(problems.isEmpty, "\(problems.prefix(10))")
        #expect(events.notices.contains { $0.contains("deleted 5 copies") })

        let again = try await migration.run(emit: { _ in })
        #expect(folderCounts(again)?.deleted == 0)
    }

    @Test func aChangedSourceUIDValidityIsToldAndNothingIsDoubledOrDropped() async throws {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let sourceUser = try await source.freshUser("uvsrc")
        let destinationUser = try await destination.freshUser("uvdst")
        try await append((1...30).map { (flags: [], body: message($0, tag: sourceUser)) }, on: source, user: sourceUser)
        let checkpoints = MemoryCheckpointStore()
        // Duplicate detection off: only the UID map keeps the renumbered messages from coming twice.
        let request = MigrationRequest(
            source: account(source, sourceUser), destination: account(destination, destinationUser),
            skipDuplicates: false)
        _ = try await Migration(request: request, checkpoints: checkpoints).run(emit: { _ in })

        _ = try source.doveadm(["mailbox", "update", "-u", sourceUser, "--uid-validity", "4242", "INBOX"])
        try await onFolder(source, sourceUser) { session in try await store(1...3, .add, ["\\Flagged"], on: session) }

        let events = Events()
        let pass = try await Migration(request: request, checkpoints: checkpoints).run(emit: events.emit)
        #expect(events.notices.contains { $0.contains("UIDVALIDITY changed") && $0.contains("4242") })
        #expect(folderCounts(pass)?.copied == 30)
        #expect(folderCounts(pass)?.flagsUpdated == 3)
        let problems = differences(
            try await contents(destination, destinationUser), try await contents(source, sourceUser))
        #expect(problems.isEmpty, "\(problems.prefix(10))")
    }

    @Test func aCheckpointWithoutAUIDMapIsMatchedByMessageIDOnceAndSaysSo() async throws {
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let sourceUser = try await source.freshUser("lgsrc")
        let destinationUser = try await destination.freshUser("lgdst")
        try await append((1...40).map { (flags: [], body: message($0, tag: sourceUser)) }, on: source, user: sourceUser)
        let checkpoints = MemoryCheckpointStore()
        let request = MigrationRequest(
            source: account(source, sourceUser), destination: account(destination, destinationUser))
        _ = try await Migration(request: request, checkpoints: checkpoints).run(emit: { _ in })
        // As an earlier version wrote it: no map, no pass state.
        for folder in await checkpoints.checkpointedFolders() {
            guard var checkpoint = await checkpoints.load(folder: folder) else { continue }
            checkpoint.copiedMap = nil
            checkpoint.destinationUIDValidity = nil
            checkpoint.highestModSeq = nil
            checkpoint.sourceMessages = nil
            await checkpoints.save(checkpoint, folder: folder)
        }
        try await onFolder(source, sourceUser) { session in try await store(5...7, .add, ["\\Seen"], on: session) }

        let events = Events()
        let pass = try await Migration(request: request, checkpoints: checkpoints).run(emit: events.emit)
        #expect(events.notices.contains { $0.contains("earlier version") })
        #expect(events.notices.contains { $0.contains("matched 40 of 40") })
        #expect(folderCounts(pass)?.flagsUpdated == 3)
        #expect(folderCounts(pass)?.copied == 40)
        let problems = differences(
            try await contents(destination, destinationUser), try await contents(source, sourceUser))
        #expect(problems.isEmpty, "\(problems.prefix(10))")
        let inbox = try #require(await checkpoints.load(folder: "INBOX"))
        #expect(inbox.copiedMap?.count == 40)
        #expect(inbox.unmatched == nil)
    }
}
