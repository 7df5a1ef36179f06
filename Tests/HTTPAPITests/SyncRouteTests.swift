import Foundation
import HTTPAPI
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import MigrationEngine
import Store
import Testing

/// `POST /api/v1/migrations/{id}:sync`: a delta pass of a completed migration, queued as a retry is.
@Suite struct SyncRouteTests {
    @Test func onlyACompletedMigrationRunsADeltaPassAndItsRecordCountsThePasses() async throws {
        try await APIFixture.with { fixture in
            try await fixture.test { client in
                let started = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.token, json: fixture.startBody())
                let id = try #require(int(started.data?["id"]))
                let base = "/api/v1/migrations/\(id)"
                #expect(int(started.data?["passes"]) == 0)
                #expect(started.data?["last_pass_at"] == .null)

                let early = try await client.call(.post, "\(base):sync", token: fixture.token)
                #expect(early.status == .conflict)
                #expect(
                    string(early.json?["error"]?["message"])
                        == "The migration is pending; only a completed migration can run a delta pass (retry a failed or cancelled one)."
                )

                // A runner copies it to the end: the first pass.
                _ = try await fixture.store.claimPendingMigration(owner: "runner", leaseSeconds: 30)
                #expect(
                    try await fixture.store.updateStatus(
                        try await fixture.store.lease(id, heldBy: "runner"), to: .completed))
                let completed = try await client.call(.get, base, token: fixture.token)
                #expect(int(completed.data?["passes"]) == 1)
                #expect(string(completed.data?["last_pass_at"]) != nil)
                #expect(bool(completed.data?["sync_deletions"]) == false)

                let refused = try await client.call(
                    .post, "\(base):sync", token: fixture.token, json: .object([("sync_deletions", .string("yes"))]))
                #expect(refused.status == .unprocessableContent)
                #expect(refused.errorCode == "validation_error")

                let synced = try await client.call(
                    .post, "\(base):sync", token: fixture.token, json: .object([("sync_deletions", .bool(true))]))
                #expect(synced.status == .ok)
                #expect(string(synced.data?["status"]) == "pending")
                #expect(bool(synced.data?["sync_deletions"]) == true)
                #expect(int(synced.data?["passes"]) == 1)

                let audit = try await client.call(.get, "/api/v1/audit-events?per_page=10", token: fixture.token)
                let actions = array(audit.data)?.compactMap { string($0["action"]) }
                #expect(actions?.first == "migration_synced")
            }
        }
    }

    /// `sync_every_hours` on start schedules passes: the record says when the next is due once the
    /// migration has completed; `:finalize` ends them (409 when none are scheduled), audited.
    @Test func scheduledPassesAreShownAndFinalizeEndsThem() async throws {
        try await APIFixture.with { fixture in
            try await fixture.test { client in
                for bad: JSONValue in [.int(0), .int(8761), .string("24")] {
                    let refused = try await client.call(
                        .post, "/api/v1/migrations", token: fixture.token,
                        json: fixture.startBody([("sync_every_hours", bad)]))
                    #expect(refused.status == .unprocessableContent)
                    #expect(refused.errorCode == "validation_error")
                }
                let started = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.token,
                    json: fixture.startBody([("sync_every_hours", .int(24))]))
                #expect(started.status == .created)
                let id = try #require(int(started.data?["id"]))
                let base = "/api/v1/migrations/\(id)"
                #expect(int(started.data?["sync_every_hours"]) == 24)
                #expect(started.data?["next_pass_at"] == .null, "not due before the first pass has ended")

                _ = try await fixture.store.claimPendingMigration(owner: "runner", leaseSeconds: 30)
                #expect(
                    try await fixture.store.updateStatus(
                        try await fixture.store.lease(id, heldBy: "runner"), to: .completed))
                let completed = try await client.call(.get, base, token: fixture.token)
                let lastPass = try #require(Self.date(string(completed.data?["last_pass_at"])))
                let nextPass = try #require(Self.date(string(completed.data?["next_pass_at"])))
                #expect(abs(nextPass.timeIntervalSince(lastPass) - 24 * 3600) < 1)

                let finalized = try await client.call(.post, "\(base):finalize", token: fixture.token)
                #expect(finalized.status == .ok)
                #expect(finalized.data?["sync_every_hours"] == .null)
                #expect(finalized.data?["next_pass_at"] == .null)
                #expect(string(finalized.data?["status"]) == "completed")
                let again = try await client.call(.post, "\(base):finalize", token: fixture.token)
                #expect(again.status == .conflict)
                #expect(string(again.json?["error"]?["message"]) == "The migration has no scheduled passes to end.")
                let missing = try await client.call(.post, "/api/v1/migrations/999999:finalize", token: fixture.token)
                #expect(missing.status == .notFound)

                let audit = try await client.call(.get, "/api/v1/audit-events?per_page=10", token: fixture.token)
                #expect(array(audit.data)?.compactMap { string($0["action"]) }.first == "migration_finalized")
            }
        }
    }

    private static func date(_ text: String?) -> Date? {
        guard let text else { return nil }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text) ?? ISO8601DateFormatter().date(from: text)
    }
}
