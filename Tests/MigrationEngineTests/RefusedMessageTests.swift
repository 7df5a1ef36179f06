import IMAPClient
import MigrationEngine
import NIOCore
import Synchronization
import Testing
import TestSupport

/// A source message the destination will not store (Dovecot refuses an empty message) among good
/// ones. The engine sends a batch as one MULTIAPPEND, which the server stores all or none: the
/// refusal must cost only the message at fault. The source is the scripted server, since no real
/// server holds an empty message; the destination is a real Dovecot.
@Suite("A message the destination refuses", .serialized, .timeLimit(.minutes(2)))
struct RefusedMessageTests {
    private static let emptyIndex = 2
    private static let messages: [ScriptedGmailServer.Message] = (0..<6).map { index in
        let date = InternalDate(year: 2023, month: 5, day: 1 + index, hour: 9, minute: 30, second: 0, zoneMinutes: 60)
        let text =
            index == emptyIndex
            ? ""
            : "From: a@example.org\r\nSubject: message \(index)\r\n"
                + "Message-ID: <refused-\(index)@mailporter.test>\r\n\r\nBody of message \(index).\r\n"
        return ScriptedGmailServer.Message(
            bytes: ByteBuffer(string: text), flags: index.isMultiple(of: 2) ? ["\\Seen"] : [],
            internalDate: date, labels: ["\\Inbox"])
    }

    @Test func onlyTheRefusedMessageFailsAndTheRestOfItsBatchArrives() async throws {
        let source = try await ScriptedGmailServer.start(messages: Self.messages, gmailExtension: false)
        defer { Task { await source.stop() } }
        let destination = try await SharedServers.shared.server(.slash)
        let user = try await destination.freshUser("refused")
        let request = MigrationRequest(
            source: MailAccount(
                server: source.configuration(),
                credentials: .password(username: "jane@example.org", password: ScriptedGmailServer.password)),
            destination: MailAccount(
                server: destination.configuration(),
                credentials: .password(username: user, password: DovecotServer.password)),
            strategy: .inboxOnly)
        let store = MemoryCheckpointStore()
        let failures = Mutex<[(uid: UInt32, size: Int?, date: InternalDate?, reason: String)]>([])
        let emit: @Sendable (MigrationEvent) -> Void = { event in
            if case .messageFailed(_, let uid, let size, let date, let reason) = event {
                failures.withLock { $0.append((uid, size, date, reason)) }
            }
        }

        let summary = try await Migration(request: request, checkpoints: store).run(emit: emit)
        let good = Self.messages.enumerated().filter { $0.offset != Self.emptyIndex }.map(\.element)
        let expected = [
            "INBOX": good.map {
                StoredMessage(body: $0.bytes, flags: Set($0.flags), internalDate: $0.internalDate.secondsSince1970)
            }
        ]
        let snapshot = try await AccountSnapshot.take(destination, user: user)
        for problem in snapshot.differences(from: expected) { Issue.record("\(problem)") }
        let goodBytes = Int64(good.reduce(0) { $0 + $1.bytes.readableBytes })
        #expect(
            summary.totals == FolderSummaryCounts(expected: 6, copied: 5, failed: 1, bytes: goodBytes),
            "\(summary.totals)")
        let reported = failures.withLock { $0 }
        #expect(reported.count == 1 && reported.first?.reason.contains("zero byte") == true, "\(reported)")
        // What the report lists: the source's UID, size and date of the message at fault.
        let refused = Self.messages[Self.emptyIndex]
        #expect(reported.first?.uid == UInt32(Self.emptyIndex + 1))
        #expect(reported.first?.size == 0)
        #expect(reported.first?.date == refused.internalDate)

        // Run again: the failed message is accounted for, nothing is copied twice.
        let rerun = try await Migration(request: request, checkpoints: store).run(emit: { _ in })
        #expect(rerun.totals == summary.totals)
        #expect(try await AccountSnapshot.take(destination, user: user) == snapshot, "the destination changed")
    }
}
