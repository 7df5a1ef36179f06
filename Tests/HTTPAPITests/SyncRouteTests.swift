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
}
