import Foundation
import HTTPAPI
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Store
import Testing
import TestSupport

/// A fixture's API with its environment changed (storage figures, limits).
private func test<Value>(
    _ fixture: APIFixture, storageUsed: Int64? = nil,
    destinationAccepts: @escaping @Sendable (String) async -> Bool = { _ in false },
    _ body: @Sendable (any TestClientProtocol) async throws -> Value
) async throws -> Value {
    var environment = fixture.environment
    environment.storageUsedBytes = { _, _ in storageUsed }
    environment.destinationAccepts = destinationAccepts
    let app = Application(router: APIRouter.make(environment))
    return try await app.test(.router, body)
}

/// The pro account gets mailboxes anna@, ben@ and cleo@acme.example beside the fixture's support@.
private func addMailboxes(_ fixture: APIFixture) async throws {
    for name in ["anna", "ben", "cleo"] {
        _ = try await fixture.store.addMailbox(accountID: fixture.pro.id, email: "\(name)@acme.example")
    }
}

private let csv = #"""
    source_email,source_password,destination_email
    anna@old.example,"s3cret,with ""quotes""",anna@acme.example
    ben@old.example,s3cret-ben,ben@acme.example
    not-an-email,s3cret-x,cleo@acme.example
    cleo@old.example,,cleo@acme.example
    cleo@old.example,s3cret-cleo,nobody@acme.example
    anna@old.example,s3cret-again,anna@acme.example
    """#

private func body(_ data: String = csv, _ extra: [(String, JSONValue)] = []) -> JSONValue {
    .object(
        [
            ("data", .string(data)), ("source_host", .string("imap.old.example")), ("source_port", .int(993)),
            ("source_security", .string("ssl")),
        ] + extra)
}

@Suite("REST API: bulk migrations")
struct BulkRouteTests {
    @Test func previewGivesEachRowOneCategoryAndNeverAPassword() async throws {
        try await APIFixture.with { fixture in
            try await addMailboxes(fixture)
            try await test(fixture) { client in
                let reply = try await client.call(
                    .post, "/api/v1/migrations/bulk/preview", token: fixture.token, json: body())
                #expect(reply.status == .ok)
                let data = try #require(reply.data)
                #expect(bool(data["header"]) == true)
                let rows = try #require(array(data["rows"]))
                #expect(
                    rows.compactMap { string($0["category"]) } == [
                        "valid", "valid", "invalid_source_email", "missing_password", "invalid_destination",
                        "duplicate_row",
                    ])
                #expect(rows.compactMap { int($0["line"]) } == [2, 3, 4, 5, 6, 7])
                #expect(string(rows[0]["source_email"]) == "anna@old.example")
                #expect(rows[2]["source_email"] == .null)
                #expect(string(rows[5]["message"])?.contains("line 2") == true)
                #expect(int(data["counts"]?["total"]) == 6 && int(data["counts"]?["valid"]) == 2)
                #expect(int(data["counts"]?["over_plan_limit"]) == 0)
                #expect(int(data["plan"]?["rows_per_batch"]) == 300 && int(data["plan"]?["jobs_at_once"]) == 5)
                #expect(int(data["storage"]?["pool_bytes"]) == 50_000_000_000)
                #expect(int(data["storage"]?["used_bytes"]) == 0 && bool(data["storage"]?["measured"]) == false)
                #expect(int(data["storage"]?["pause_threshold_percent"]) == 90)
                #expect(int(data["estimate"]?["jobs"]) == 2 && int(data["estimate"]?["jobs_at_once"]) == 5)
                #expect((array(data["estimate"]?["assumptions"])?.count ?? 0) >= 3)
                #expect(!reply.text.contains("s3cret"))
                #expect(rows[0]["login_check"] == .null && data["login_checks"] == .null)
                // Nothing was started.
                #expect(try await fixture.store.listMigrations(accountID: fixture.pro.id).total == 0)
            }
        }
    }

    @Test func aCSVThatCannotBeReadIsRefusedNamingItsLine() async throws {
        try await APIFixture.with { fixture in
            try await test(fixture) { client in
                let broken =
                    "anna@old.example,pw,anna@acme.example\n\nben@old.example,\"s3cret\"oops,ben@acme.example\n"
                let reply = try await client.call(
                    .post, "/api/v1/migrations/bulk/preview", token: fixture.token, json: body(broken))
                #expect(reply.status == .unprocessableContent)
                #expect(reply.errorCode == "validation_error")
                #expect(string(reply.json?["error"]?["fields"]?["data"])?.hasPrefix("Line 3:") == true)
                #expect(!reply.text.contains("s3cret") && !reply.text.contains("oops"))

                let row = "anna@old.example,password,anna@acme.example\n"
                var big = String(repeating: row, count: 2 * 1024 * 1024 / row.utf8.count)
                big += String(repeating: "#", count: 2 * 1024 * 1024 + 1 - big.utf8.count)
                let tooBig = try await client.call(
                    .post, "/api/v1/migrations/bulk/preview", token: fixture.token, json: body(big))
                #expect(tooBig.status == .unprocessableContent)
                #expect(string(tooBig.json?["error"]?["fields"]?["data"])?.contains("2 MB") == true)

                let missing = try await client.call(
                    .post, "/api/v1/migrations/bulk/preview", token: fixture.token,
                    json: .object([("source_host", .string("imap.old.example"))]))
                #expect(missing.errorCode == "validation_error")
                #expect(string(missing.json?["error"]?["fields"]?["data"]) == "is required")
                let noServer = try await client.call(
                    .post, "/api/v1/migrations/bulk/preview", token: fixture.token,
                    json: .object([("data", .string(csv))]))
                #expect(string(noServer.json?["error"]?["fields"]?["source_host"])?.contains("per_row_server") == true)
            }
        }
    }

    @Test func privateHostsAreInvalidServersWhereTheServiceRefusesThem() async throws {
        try await APIFixture.with(allowPrivateHosts: false) { fixture in
            try await addMailboxes(fixture)
            try await test(fixture) { client in
                let rows =
                    "anna@old.example,pw,anna@acme.example,127.0.0.1,143,none\n"
                    + "ben@old.example,pw,ben@acme.example,imap.old.example,993,ssl\n"
                    + "cleo@old.example,pw,cleo@acme.example,imap.old.example,0,ssl\n"
                let reply = try await client.call(
                    .post, "/api/v1/migrations/bulk/preview", token: fixture.token,
                    json: .object([("data", .string(rows)), ("per_row_server", .bool(true))]))
                #expect(
                    array(reply.data?["rows"])?.compactMap { string($0["category"]) } == [
                        "invalid_server", "valid", "invalid_server",
                    ])
                let batchHost = try await client.call(
                    .post, "/api/v1/migrations/bulk/preview", token: fixture.token,
                    json: .object([
                        ("data", .string(csv)), ("source_host", .string("10.0.0.8")),
                        ("source_port", .int(993)), ("source_security", .string("ssl")),
                    ]))
                #expect(string(batchHost.json?["error"]?["fields"]?["source_host"])?.contains("private") == true)
            }
        }
    }

    @Test func scopesAndPlans() async throws {
        try await APIFixture.with(hasMasterCredentials: true) { fixture in
            try await test(fixture) { client in
                for (method, path) in [
                    (HTTPRequest.Method.post, "/api/v1/migrations/bulk/preview"), (.post, "/api/v1/migrations/bulk"),
                    (.post, "/api/v1/migrations/bulk/1:cancel"), (.delete, "/api/v1/migrations/bulk/1"),
                    (.patch, "/api/v1/migrations/bulk/1/jobs/1/password"),
                ] {
                    let readOnly = try await client.call(method, path, token: fixture.readOnlyToken, json: body())
                    #expect(readOnly.errorCode == "insufficient_scope", "\(path)")
                    let nano = try await client.call(method, path, token: fixture.nanoToken, json: body())
                    #expect(nano.errorCode == "token_scope_blocked_by_plan", "\(path)")
                    #expect(try await client.call(method, path, json: body()).status == .unauthorized)
                }
                #expect(
                    try await client.call(.get, "/api/v1/migrations/bulk", token: fixture.readOnlyToken).status == .ok)
                #expect(
                    try await client.call(.get, "/api/v1/migrations/bulk", token: fixture.nanoToken).errorCode
                        == "token_scope_blocked_by_plan")
            }
        }
    }

    @Test func aStartMakesOneJobPerValidRowVisibleAsMigrations() async throws {
        try await APIFixture.with(hasMasterCredentials: true) { fixture in
            try await addMailboxes(fixture)
            try await test(fixture) { client in
                let reply = try await client.call(
                    .post, "/api/v1/migrations/bulk", token: fixture.token,
                    json: body(
                        csv,
                        [
                            ("folder_strategy", .string("inbox_only")),
                            ("import_since", .string("2024-01-31")),
                        ]))
                #expect(reply.status == .created)
                let data = try #require(reply.data)
                let id = try #require(int(data["id"]))
                #expect(string(data["status"]) == "queued")
                #expect(string(data["name"])?.hasPrefix("Bulk import of 2 mailboxes, ") == true)
                #expect(string(data["folder_strategy"]) == "inbox_only")
                let jobs = try #require(array(data["jobs"]))
                #expect(jobs.compactMap { int($0["line"]) } == [2, 3])
                #expect(jobs.compactMap { string($0["source_email"]) } == ["a***a@old.example", "b***n@old.example"])
                #expect(jobs.allSatisfy { int($0["batch_id"]) == id && string($0["status"]) == "pending" })
                #expect(jobs.allSatisfy { array($0["selected_folders"]) == [.string("INBOX")] })
                #expect(array(data["skipped_rows"])?.count == 4)
                #expect(!reply.text.contains("s3cret"))
                let jobID = try #require(int(jobs[0]["id"]))
                #expect(
                    try await fixture.store.credentials(forMigration: jobID)?.sourcePassword == "s3cret,with \"quotes\""
                )

                let migrations = try await client.call(.get, "/api/v1/migrations", token: fixture.token)
                #expect(int(migrations.json?["meta"]?["total"]) == 2)
                // Bulk jobs do not hold the account's one active single migration.
                let single = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.token, json: fixture.startBody())
                #expect(single.status == .created)

                let fetched = try await client.call(.get, "/api/v1/migrations/bulk/\(id)", token: fixture.token)
                #expect(int(fetched.data?["counts"]?["pending"]) == 2)
                #expect(
                    try await client.call(.get, "/api/v1/migrations/bulk/\(id)", token: fixture.otherToken).status
                        == .notFound)
                let audit = try await client.call(.get, "/api/v1/audit-events", token: fixture.token)
                #expect(
                    array(audit.data)?.contains {
                        string($0["action"]) == "bulk_migration_started"
                            && string($0["resource_id"]) == String(id)
                    } == true)

                let nothingValid = try await client.call(
                    .post, "/api/v1/migrations/bulk", token: fixture.token,
                    json: body("bad,pw,anna@acme.example"))
                #expect(nothingValid.errorCode == "validation_error")
            }
        }
        try await APIFixture.with(hasMasterCredentials: false) { fixture in
            try await addMailboxes(fixture)
            try await test(fixture) { client in
                let reply = try await client.call(.post, "/api/v1/migrations/bulk", token: fixture.token, json: body())
                #expect(reply.status == .unprocessableContent)
                #expect(reply.errorCode == "master_credentials_required")
            }
        }
    }

    @Test func cancelRetryPasswordAndDeleteFollowTheBatchRules() async throws {
        try await APIFixture.with(hasMasterCredentials: true) { fixture in
            try await addMailboxes(fixture)
            try await test(fixture) { client in
                let started = try await client.call(
                    .post, "/api/v1/migrations/bulk", token: fixture.token, json: body())
                let id = try #require(int(started.data?["id"]))
                let jobIDs = try #require(array(started.data?["jobs"])?.compactMap { int($0["id"]) })
                #expect(jobIDs.count == 2)

                // Active: no delete, no retry, no resume, no password change.
                let deleteActive = try await client.call(.delete, "/api/v1/migrations/bulk/\(id)", token: fixture.token)
                #expect(deleteActive.status == .conflict)
                #expect(
                    string(deleteActive.json?["error"]?["message"])
                        == "The batch is queued; cancel it before deleting it.")
                #expect(
                    try await client.call(.post, "/api/v1/migrations/bulk/\(id):retry", token: fixture.token).status
                        == .conflict)
                let resume = try await client.call(.post, "/api/v1/migrations/bulk/\(id):resume", token: fixture.token)
                #expect(
                    string(resume.json?["error"]?["message"])
                        == "The batch is queued; only a paused batch can be resumed.")
                let early = try await client.call(
                    .patch, "/api/v1/migrations/bulk/\(id)/jobs/\(jobIDs[0])/password",
                    token: fixture.token, json: .object([("source_password", .string("new"))]))
                #expect(
                    string(early.json?["error"]?["message"])
                        == "The job is pending; only a failed job's password can be changed.")

                // The runner: one job fails, one completes.
                let first = try #require(try await fixture.store.claimPendingMigration(owner: "r", leaseSeconds: 30))
                let second = try #require(try await fixture.store.claimPendingMigration(owner: "r", leaseSeconds: 30))
                #expect(
                    try await fixture.store.updateStatus(
                        try await fixture.store.lease(first.id, heldBy: "r"), to: .failed,
                        error: MigrationError(code: "authentication_failed", message: "refused")))
                #expect(
                    try await fixture.store.updateStatus(
                        try await fixture.store.lease(second.id, heldBy: "r"), to: .completed))
                _ = try await fixture.store.releaseLease(try await fixture.store.lease(first.id, heldBy: "r"))
                let ended = try await client.call(.get, "/api/v1/migrations/bulk/\(id)", token: fixture.token)
                #expect(string(ended.data?["status"]) == "completed_with_errors")
                #expect(ended.data?["poll_hint_seconds"] == .null)

                let wrongJob = try await client.call(
                    .patch, "/api/v1/migrations/bulk/\(id)/jobs/\(second.id)/password",
                    token: fixture.token, json: .object([("source_password", .string("new"))]))
                #expect(wrongJob.status == .conflict)
                let noPassword = try await client.call(
                    .patch, "/api/v1/migrations/bulk/\(id)/jobs/\(first.id)/password",
                    token: fixture.token, json: .object([]))
                #expect(string(noPassword.json?["error"]?["fields"]?["source_password"]) == "is required")
                let fixed = try await client.call(
                    .patch, "/api/v1/migrations/bulk/\(id)/jobs/\(first.id)/password",
                    token: fixture.token, json: .object([("source_password", .string(" n3w, \"pw\" "))]))
                #expect(fixed.status == .ok)
                #expect(!fixed.text.contains("n3w"))
                #expect(try await fixture.store.credentials(forMigration: first.id)?.sourcePassword == " n3w, \"pw\" ")
                #expect(
                    try await client.call(
                        .patch, "/api/v1/migrations/bulk/\(id)/jobs/999/password", token: fixture.token,
                        json: .object([("source_password", .string("x"))])
                    ).status == .notFound)

                let retried = try await client.call(.post, "/api/v1/migrations/bulk/\(id):retry", token: fixture.token)
                #expect(retried.status == .ok)
                #expect(string(retried.data?["status"]) == "queued")
                #expect(array(retried.data?["jobs"])?.compactMap { string($0["status"]) } == ["pending", "completed"])

                let cancelled = try await client.call(
                    .post, "/api/v1/migrations/bulk/\(id):cancel", token: fixture.token)
                #expect(string(cancelled.data?["status"]) == "cancelled")
                let again = try await client.call(.post, "/api/v1/migrations/bulk/\(id):cancel", token: fixture.token)
                #expect(
                    string(again.json?["error"]?["message"])
                        == "The batch is cancelled; only a queued, running or paused batch can be cancelled.")
                let nothingFailed = try await client.call(
                    .post, "/api/v1/migrations/bulk/\(id):retry", token: fixture.token)
                #expect(string(nothingFailed.json?["error"]?["message"]) == "The batch has no failed jobs to retry.")

                #expect(
                    try await client.call(.delete, "/api/v1/migrations/bulk/\(id)", token: fixture.otherToken).status
                        == .notFound)
                #expect(
                    try await client.call(.delete, "/api/v1/migrations/bulk/\(id)", token: fixture.token).status
                        == .noContent)
                #expect(
                    try await client.call(.get, "/api/v1/migrations/bulk/\(id)", token: fixture.token).status
                        == .notFound)
                #expect(try await fixture.store.credentials(forMigration: first.id) == nil)

                let audit = try await client.call(.get, "/api/v1/audit-events?per_page=20", token: fixture.token)
                let actions = Set(array(audit.data)?.compactMap { string($0["action"]) } ?? [])
                #expect(
                    actions.isSuperset(of: [
                        "bulk_migration_started", "bulk_migration_job_password_updated",
                        "bulk_migration_retried", "bulk_migration_cancelled", "bulk_migration_deleted",
                    ]))
            }
        }
    }

    @Test func createMissingMailboxesListsThenAddsOnlyKnownDomainsTheServerAccepts() async throws {
        try await APIFixture.with(hasMasterCredentials: true) { fixture in
            try await addMailboxes(fixture)
            let rows = """
                anna@old.example,pw-a,anna@acme.example
                dora@old.example,pw-d,dora@acme.example
                eve@old.example,pw-e,eve@elsewhere.example
                finn@old.example,pw-f,finn@acme.example
                dora@old.example,pw-d2,Dora@acme.example
                """
            let create: [(String, JSONValue)] = [("create_missing_mailboxes", .bool(true))]
            // finn@ is refused by the destination server; eve@ is in a domain the account has no mailbox in.
            let accepts: @Sendable (String) async -> Bool = { $0 != "finn@acme.example" }
            try await test(fixture, destinationAccepts: accepts) { client in
                let preview = try await client.call(
                    .post, "/api/v1/migrations/bulk/preview", token: fixture.token, json: body(rows, create))
                #expect(preview.status == .ok, "\(preview.text)")
                let data = try #require(preview.data)
                #expect(array(data["mailboxes_to_create"])?.compactMap(string) == ["dora@acme.example"])
                #expect(
                    array(data["rows"])?.compactMap { string($0["category"]) } == [
                        "valid", "valid", "invalid_destination", "invalid_destination", "duplicate_row",
                    ])
                #expect(
                    try await fixture.store.mailboxEmails(accountID: fixture.pro.id).contains("dora@acme.example")
                        == false, "a preview adds nothing")
                // Without the flag, the row stays invalid and nothing is listed.
                let plain = try await client.call(
                    .post, "/api/v1/migrations/bulk/preview", token: fixture.token, json: body(rows))
                #expect(plain.data?["mailboxes_to_create"] == nil)
                #expect(string(array(plain.data?["rows"])?[1]["category"]) == "invalid_destination")

                let started = try await client.call(
                    .post, "/api/v1/migrations/bulk", token: fixture.token, json: body(rows, create))
                #expect(started.status == .created, "\(started.text)")
                #expect(array(started.data?["mailboxes_created"])?.compactMap(string) == ["dora@acme.example"])
                #expect(array(started.data?["jobs"])?.count == 2)
                let emails = try await fixture.store.mailboxEmails(accountID: fixture.pro.id)
                #expect(emails.contains("dora@acme.example") && !emails.contains("finn@acme.example"))
                #expect(!emails.contains("eve@elsewhere.example"))
            }
        }
        // Without master credentials nothing can be checked: a clear validation error.
        try await APIFixture.with(hasMasterCredentials: false) { fixture in
            try await addMailboxes(fixture)
            try await test(fixture, destinationAccepts: { _ in true }) { client in
                let reply = try await client.call(
                    .post, "/api/v1/migrations/bulk/preview", token: fixture.token,
                    json: body(csv, [("create_missing_mailboxes", .bool(true))]))
                #expect(reply.status == .unprocessableContent, "\(reply.text)")
                #expect(reply.text.contains("create_missing_mailboxes"))
            }
        }
    }

    @Test func resumeWaitsForStorageBelowTheThreshold() async throws {
        try await APIFixture.with(hasMasterCredentials: true) { fixture in
            try await addMailboxes(fixture)
            let pool = Plan.pro.storagePoolBytes
            let batchID = try await test(fixture, storageUsed: pool / 100 * 95) { client in
                let started = try await client.call(
                    .post, "/api/v1/migrations/bulk", token: fixture.token, json: body())
                return try #require(int(started.data?["id"]))
            }
            try await test(fixture, storageUsed: pool / 100 * 95) { client in
                #expect(try await fixture.store.pauseBatch(id: batchID, reason: "storage at 95% of the pool"))
                let paused = try await client.call(.get, "/api/v1/migrations/bulk/\(batchID)", token: fixture.token)
                #expect(string(paused.data?["status"]) == "paused")
                #expect(string(paused.data?["pause_reason"]) == "storage at 95% of the pool")
                let refused = try await client.call(
                    .post, "/api/v1/migrations/bulk/\(batchID):resume", token: fixture.token)
                #expect(refused.status == .conflict)
                #expect(string(refused.json?["error"]?["message"])?.hasPrefix("Storage is at 95% of the pool") == true)
                let preview = try await client.call(
                    .post, "/api/v1/migrations/bulk/preview", token: fixture.token, json: body())
                #expect(
                    int(preview.data?["storage"]?["used_percent"]) == 95
                        && bool(preview.data?["storage"]?["measured"]) == true)
            }
            try await test(fixture, storageUsed: pool / 100 * 50) { client in
                let resumed = try await client.call(
                    .post, "/api/v1/migrations/bulk/\(batchID):resume", token: fixture.token)
                #expect(resumed.status == .ok)
                #expect(string(resumed.data?["status"]) == "queued")
                let audit = try await client.call(.get, "/api/v1/audit-events", token: fixture.token)
                #expect(array(audit.data)?.contains { string($0["action"]) == "bulk_migration_resumed" } == true)
            }
        }
    }

    @Test func idempotencyByHeaderOrBodyField() async throws {
        try await APIFixture.with(hasMasterCredentials: true) { fixture in
            try await addMailboxes(fixture)
            try await test(fixture) { client in
                let keyed = body(csv, [("idempotency_key", .string("batch-1"))])
                let first = try await client.call(.post, "/api/v1/migrations/bulk", token: fixture.token, json: keyed)
                #expect(first.status == .created)
                let replay = try await client.call(.post, "/api/v1/migrations/bulk", token: fixture.token, json: keyed)
                #expect(replay.status == .created && replay.text == first.text)
                #expect(replay.headers[HTTPField.Name("Idempotent-Replayed")!] == "true")
                let sameKeyByHeader = try await client.call(
                    .post, "/api/v1/migrations/bulk", token: fixture.token,
                    json: keyed, headers: [("Idempotency-Key", "batch-1")])
                #expect(sameKeyByHeader.text == first.text)
                let reused = try await client.call(
                    .post, "/api/v1/migrations/bulk", token: fixture.token,
                    json: body(csv, [("idempotency_key", .string("batch-1")), ("name", .string("x"))]))
                #expect(reused.errorCode == "idempotency_key_reused")
                let mismatch = try await client.call(
                    .post, "/api/v1/migrations/bulk", token: fixture.token,
                    json: keyed, headers: [("Idempotency-Key", "other")])
                #expect(string(mismatch.json?["error"]?["fields"]?["idempotency_key"]) != nil)
                #expect(try await fixture.store.listBatches(accountID: fixture.pro.id).total == 1)
            }
        }
    }

    @Test func listingsPaginateFilterAndRouteBeforeMigrationIDs() async throws {
        try await APIFixture.with(hasMasterCredentials: true) { fixture in
            try await addMailboxes(fixture)
            try await test(fixture) { client in
                var ids: [Int64] = []
                for _ in 0..<3 {
                    let started = try await client.call(
                        .post, "/api/v1/migrations/bulk", token: fixture.token, json: body())
                    ids.append(try #require(int(started.data?["id"])))
                }
                _ = try await client.call(.post, "/api/v1/migrations/bulk/\(ids[0]):cancel", token: fixture.token)
                let page = try await client.call(
                    .get, "/api/v1/migrations/bulk?per_page=2&page=1", token: fixture.token)
                #expect(array(page.data)?.compactMap { int($0["id"]) } == [ids[2], ids[1]])
                #expect(int(page.json?["meta"]?["total"]) == 3 && int(page.json?["meta"]?["last_page"]) == 2)
                #expect(array(page.data)?.first?["jobs"] == nil)
                let cancelled = try await client.call(
                    .get, "/api/v1/migrations/bulk?status=cancelled", token: fixture.token)
                #expect(array(cancelled.data)?.compactMap { int($0["id"]) } == [ids[0]])
                #expect(string(cancelled.json?["links"]?["first"])?.contains("status=cancelled") == true)
                let bad = try await client.call(.get, "/api/v1/migrations/bulk?status=running", token: fixture.token)
                #expect(bad.errorCode == "validation_error")
                #expect(
                    try await client.call(.get, "/api/v1/migrations/bulk/abc", token: fixture.token).status == .notFound
                )
                let wrongMethod = try await client.call(.delete, "/api/v1/migrations/bulk", token: fixture.token)
                #expect(wrongMethod.status == .methodNotAllowed)
                #expect(wrongMethod.headers[.allow] == "GET, POST")
            }
        }
    }

    @Test func bulkWritesCountAgainstTheWriteRateLimit() async throws {
        try await APIFixture.with(limits: APILimits(requestsPerMinute: 100, writesPerMinute: 2)) { fixture in
            try await test(fixture) { client in
                for _ in 0..<2 {
                    #expect(
                        try await client.call(.post, "/api/v1/migrations/bulk/9:cancel", token: fixture.token).status
                            == .notFound)
                }
                let limited = try await client.call(
                    .post, "/api/v1/migrations/bulk/preview", token: fixture.token, json: body())
                #expect(limited.status == .tooManyRequests)
                #expect(try await client.call(.get, "/api/v1/migrations/bulk", token: fixture.token).status == .ok)
            }
        }
    }

    @Test func checkLoginsLogsInToEachValidRowsSourceBeforeAnythingStarts() async throws {
        let server = try await SharedServers.shared.server(.dot)
        try await APIFixture.with { fixture in
            try await addMailboxes(fixture)
            try await test(fixture) { client in
                let rows =
                    "anna@old.example,\(DovecotServer.password),anna@acme.example\n"
                    + "ben@old.example,s3cret-wrong,ben@acme.example\n"
                    + "bad-address,\(DovecotServer.password),cleo@acme.example\n"
                let request: JSONValue = .object([
                    ("data", .string(rows)), ("source_host", .string("127.0.0.1")),
                    ("source_port", .int(Int64(server.imapPort))),
                    ("source_security", .string("none")), ("check_logins", .bool(true)),
                ])
                let reply = try await client.call(
                    .post, "/api/v1/migrations/bulk/preview", token: fixture.token, json: request)
                #expect(reply.status == .ok)
                let checked = try #require(array(reply.data?["rows"]))
                #expect(string(checked[0]["login_check"]?["status"]) == "ok")
                #expect(string(checked[1]["login_check"]?["status"]) == "failed")
                #expect(string(checked[1]["login_check"]?["error_code"]) == "authentication_failed")
                #expect(string(checked[1]["login_check"]?["hint"])?.isEmpty == false)
                #expect(checked[2]["login_check"] == .null)
                #expect(
                    int(reply.data?["login_checks"]?["ok"]) == 1 && int(reply.data?["login_checks"]?["failed"]) == 1)
                #expect(!reply.text.contains("s3cret") && !reply.text.contains(DovecotServer.password))
                #expect(try await fixture.store.listMigrations(accountID: fixture.pro.id).total == 0)
            }
        }
    }
}
