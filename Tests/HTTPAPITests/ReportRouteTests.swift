import Foundation
import HTTPAPI
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Store
import Testing
import TestSupport

/// The CSV reports and the notification outbox, read back and checked against the records.
@Suite("REST API: reports and notifications")
struct ReportRouteTests {
    /// A batch of the pro account with two jobs: one completed with two folders, one failed.
    private func endedBatch(_ fixture: APIFixture) async throws -> BatchDetail {
        let second = try await fixture.store.addMailbox(accountID: fixture.pro.id, email: "ben@acme.example")
        let jobs = [fixture.mailbox, second].enumerated().map { index, box in
            NewBatchJob(
                line: index + 2, mailboxID: box.id, provider: "generic_imap", sourceHost: "imap.old.example",
                sourcePort: 993, sourceSecurity: "ssl", sourceEmail: "jane\(index)@old.example",
                sourcePassword: "s3cret-\(index)")
        }
        let detail = try await fixture.store.createBatch(
            NewBatch(accountID: fixture.pro.id, name: "report me"), jobs: jobs)
        let store = fixture.store
        let first = try #require(try await store.claimPendingMigration(owner: "n", leaseSeconds: 30))
        var totals = MigrationTotals(total: 12, imported: 9, failed: 1, skipped: 2)
        totals.bytes = 48_213
        try await store.updateProgress(
            try await store.lease(first.id, heldBy: "n"), totals: totals,
            folders: [
                FolderProgress(
                    sourceName: "INBOX", destinationName: "INBOX", status: .completed, expected: 10, imported: 8,
                    failed: 0, skipped: 2),
                FolderProgress(
                    sourceName: "Projects, \"2024\"", destinationName: "Projects, \"2024\"", status: .completed,
                    expected: 2, imported: 1, failed: 1, skipped: 0),
            ])
        try await store.updateStatus(try await store.lease(first.id, heldBy: "n"), to: .completed)
        let failing = try #require(try await store.claimPendingMigration(owner: "n", leaseSeconds: 30))
        try await store.updateStatus(
            try await store.lease(failing.id, heldBy: "n"), to: .failed,
            error: MigrationError(
                code: "authentication_failed", message: "refused",
                hint: "=HYPERLINK(\"x\") use an app password, then retry"))
        return try #require(try await store.batchDetail(id: detail.batch.id))
    }

    @Test func theBatchReportHasOneRowPerJobAsTheRecordsSay() async throws {
        try await APIFixture.with { fixture in
            let detail = try await endedBatch(fixture)
            try await fixture.test { client in
                let reply = try await client.call(
                    .get, "/api/v1/migrations/bulk/\(detail.batch.id)/report.csv", token: fixture.readOnlyToken)
                #expect(reply.status == .ok)
                #expect(reply.headers[.contentType]?.hasPrefix("text/csv") == true)
                #expect(reply.headers[.contentDisposition]?.contains("attachment") == true)
                #expect(reply.text.hasSuffix("\r\n"))
                let rows = try CSVRows.parse(reply.text)
                #expect(rows.count == 3)
                #expect(rows[0].first == "line" && rows[0].count == 13)
                let completed = rows[1]
                let record = detail.jobs[0].migration
                #expect(completed[0] == "2")
                #expect(completed[1] == "support@acme.example")
                #expect(completed[2] == "j***0@old.example")
                #expect(Array(completed[3...8]) == ["completed", "12", "9", "2", "1", "48213"])
                #expect(record.startedAt != nil && completed[9].hasSuffix("+00:00") && completed[9].count == 25)
                #expect(!completed[10].isEmpty && completed[11].isEmpty && completed[12].isEmpty)
                let failed = rows[2]
                #expect(failed[1] == "ben@acme.example" && failed[3] == "failed")
                #expect(failed[11] == "authentication_failed")
                // A server's words never run as a spreadsheet formula.
                #expect(failed[12] == "'=HYPERLINK(\"x\") use an app password, then retry")
                #expect(!reply.text.contains("s3cret"))
            }
        }
    }

    @Test func theMigrationReportHasOneRowPerFolder() async throws {
        try await APIFixture.with { fixture in
            let detail = try await endedBatch(fixture)
            let id = detail.jobs[0].migration.id
            try await fixture.test { client in
                let reply = try await client.call(.get, "/api/v1/migrations/\(id)/report.csv", token: fixture.token)
                #expect(reply.status == .ok)
                let rows = try CSVRows.parse(reply.text)
                #expect(
                    rows == [
                        [
                            "kind", "folder", "destination_folder", "status", "expected", "imported", "skipped",
                            "failed",
                            "uid", "size", "internal_date", "reason",
                        ],
                        ["folder", "INBOX", "INBOX", "completed", "10", "8", "2", "0", "", "", "", ""],
                        [
                            "folder", "Projects, \"2024\"", "Projects, \"2024\"", "completed", "2", "1", "0", "1", "",
                            "",
                            "", "",
                        ],
                    ])
            }
        }
    }

    @Test func theMigrationReportListsTheLatestRunsFailedMessagesAfterTheFolders() async throws {
        try await APIFixture.with { fixture in
            let store = fixture.store
            let record = try await store.createMigration(
                NewMigration(
                    accountID: fixture.pro.id, mailboxID: fixture.mailbox.id, provider: "generic_imap",
                    sourceHost: "imap.old.example", sourcePort: 993, sourceSecurity: "ssl",
                    sourceEmail: "jane@old.example", sourcePassword: "s3cret"))
            let claimed = try #require(try await store.claimPendingMigration(owner: "n", leaseSeconds: 30))
            #expect(claimed.id == record.id)
            try await store.updateProgress(
                try await store.lease(record.id, heldBy: "n"),
                totals: MigrationTotals(total: 7, imported: 4, failed: 3, skipped: 0),
                folders: [
                    FolderProgress(
                        sourceName: "Sent", destinationName: "Sent Items", status: .completed, expected: 3,
                        imported: 2, failed: 1, skipped: 0),
                    FolderProgress(
                        sourceName: "Archive", destinationName: "Archive", status: .completed, expected: 4,
                        imported: 2, failed: 2, skipped: 0),
                ])
            // 2023-05-01T08:30:00Z
            let date = Date(timeIntervalSince1970: 1_682_929_800)
            for message in [
                FailedMessage(folder: "Archive", uid: 41, reason: "=cmd|' /C calc'!A0, \"quoted\""),
                FailedMessage(folder: "Sent", uid: 17, size: 52_311, internalDate: date, reason: "message too large"),
                FailedMessage(folder: "Archive", uid: 5, size: 0, internalDate: date, reason: "zero byte\r\nmessage"),
            ] {
                #expect(try await store.recordFailedMessage(try await store.lease(record.id, heldBy: "n"), message))
            }
            try await store.updateStatus(try await store.lease(record.id, heldBy: "n"), to: .completed)
            try await fixture.test { client in
                let reply = try await client.call(
                    .get, "/api/v1/migrations/\(record.id)/report.csv", token: fixture.readOnlyToken)
                #expect(reply.status == .ok)
                let rows = try CSVRows.parse(reply.text)
                // RFC 4180: every record as wide as the header.
                #expect(rows.allSatisfy { $0.count == 12 }, "\(rows)")
                #expect(
                    rows.map(\.first) == [
                        "kind", "folder", "folder", "failed_message", "failed_message", "failed_message",
                    ])
                let failed = Array(rows.dropFirst(3))
                // In the folder rows' order, then by UID.
                #expect(
                    failed[0] == [
                        "failed_message", "Sent", "Sent Items", "", "", "", "", "", "17", "52311",
                        "2023-05-01T08:30:00+00:00", "message too large",
                    ])
                #expect(
                    failed[1] == [
                        "failed_message", "Archive", "Archive", "", "", "", "", "", "5", "0",
                        "2023-05-01T08:30:00+00:00",
                        "zero byte message",
                    ])
                // Unknown size and date stay empty; a server's words never run as a formula.
                #expect(
                    failed[2] == [
                        "failed_message", "Archive", "Archive", "", "", "", "", "", "41", "", "",
                        "'=cmd|' /C calc'!A0, \"quoted\"",
                    ])
            }
        }
    }

    @Test func reportsNeedTheReadScopeAndAreTheAccountsOwn() async throws {
        try await APIFixture.with { fixture in
            let detail = try await endedBatch(fixture)
            let job = detail.jobs[0].migration.id
            try await fixture.test { client in
                for path in [
                    "/api/v1/migrations/bulk/\(detail.batch.id)/report.csv", "/api/v1/migrations/\(job)/report.csv",
                ] {
                    #expect(try await client.call(.get, path).status == .unauthorized)
                    #expect(try await client.call(.get, path, token: fixture.otherToken).status == .notFound)
                    #expect(try await client.call(.get, path, token: fixture.nanoToken).status == .forbidden)
                    let wrongMethod = try await client.call(.post, path, token: fixture.token)
                    #expect(wrongMethod.status == .methodNotAllowed, "\(path)")
                }
                #expect(
                    try await client.call(.get, "/api/v1/migrations/bulk/999/report.csv", token: fixture.token).status
                        == .notFound)
            }
        }
    }

    @Test func theOutboxShowsEachNoticeAndNotifyIsOptIn() async throws {
        try await APIFixture.with { fixture in
            let detail = try await endedBatch(fixture)
            try await fixture.test { client in
                let started = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.token,
                    json: fixture.startBody([("notify", .bool(true))]))
                #expect(started.status == .created, "\(started.text)")
                let id = try #require(int(started.data?["id"]))
                #expect(
                    try await client.call(.post, "/api/v1/migrations/\(id):cancel", token: fixture.token).status == .ok)
                let reply = try await client.call(.get, "/api/v1/notifications", token: fixture.readOnlyToken)
                #expect(reply.status == .ok)
                let items = try #require(array(reply.data))
                #expect(items.compactMap { string($0["event"]) } == ["migration_ended", "batch_finished"])
                #expect(int(items[1]["batch_id"]) == detail.batch.id)
                #expect(int(items[0]["migration_id"]) == id)
                #expect(
                    items.allSatisfy {
                        string($0["status"]) == "pending" && string($0["recipient"]) == "ops@example.com"
                    })
                let others = try await client.call(.get, "/api/v1/notifications", token: fixture.otherToken)
                #expect(array(others.data)?.isEmpty == true)
                let badNotify = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.token,
                    json: fixture.startBody([("notify", .string("yes"))]))
                #expect(badNotify.errorCode == "validation_error")
            }
        }
    }
}
