import Foundation
import HTTPAPI
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import MigrationEngine
import Store
import Testing

@Suite("REST API routes")
struct RouteTests {
    // MARK: Envelope, health, documents

    @Test func everyResponseCarriesARequestIDAndErrorsUseTheEnvelope() async throws {
        try await APIFixture.with { fixture in
            try await fixture.test { client in
                let health = try await client.call(.get, "/healthz")
                #expect(health.status == .ok)
                #expect(string(health.json?["status"]) == "ok")
                let generated = try #require(health.headers[HTTPField.Name("X-Request-Id")!])
                #expect(generated.hasPrefix("req_") && generated.count == 28)

                let echoed = try await client.call(.get, "/healthz", headers: [("X-Request-Id", "trace-42.a_b")])
                #expect(echoed.headers[HTTPField.Name("X-Request-Id")!] == "trace-42.a_b")
                let hostile = try await client.call(.get, "/healthz", headers: [("X-Request-Id", "a b\"<script>")])
                #expect(hostile.headers[HTTPField.Name("X-Request-Id")!]?.hasPrefix("req_") == true)

                let wrongMethod = try await client.call(.put, "/api/v1/migrations/7", token: fixture.token)
                #expect(wrongMethod.status == .methodNotAllowed)
                #expect(wrongMethod.errorCode == "method_not_allowed")
                #expect(wrongMethod.headers[.allow] == "GET, DELETE")
                let wrongOnAction = try await client.call(.get, "/api/v1/migrations/7:cancel")
                #expect(wrongOnAction.headers[.allow] == "POST")
                #expect(try await client.call(.delete, "/healthz").status == .methodNotAllowed)

                let missing = try await client.call(.get, "/api/v2/nothing", headers: [("X-Request-Id", "rid-1")])
                #expect(missing.status == .notFound)
                let error = try #require(missing.json?["error"])
                #expect(string(error["code"]) == "not_found")
                #expect(string(error["request_id"]) == "rid-1")
                #expect(bool(error["retryable"]) == false)
                #expect(string(error["message"])?.isEmpty == false)
                #expect(missing.headers[HTTPField.Name("X-Request-Id")!] == "rid-1")
            }
        }
    }

    @Test func theServedOpenAPIDocumentIsTheRepositoryFileAndEveryPathInItIsRouted() async throws {
        try await APIFixture.with { fixture in
            let repositoryFile = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
                .appendingPathComponent("../../Sources/HTTPAPI/Resources/openapi.json").standardized
            let expected = try String(contentsOf: repositoryFile, encoding: .utf8)
            try await fixture.test { client in
                let reply = try await client.call(.get, "/api/v1/openapi.json")
                #expect(reply.status == .ok)
                #expect(reply.text == expected)
                let document = try #require(reply.json)
                #expect(string(document["openapi"])?.hasPrefix("3.1") == true)
                guard case .object(let paths)? = document["paths"] else {
                    Issue.record("no paths")
                    return
                }
                #expect(paths.count >= 9)
                for (path, operations) in paths {
                    guard case .object(let methods) = operations else { continue }
                    let concrete = path.replacingOccurrences(of: "{id}", with: "1")
                    let documented = Set(methods.map(\.0))
                    for method in ["get", "post", "delete"] where !documented.contains(method) {
                        let reply = try await client.call(HTTPRequest.Method(method.uppercased())!, concrete)
                        #expect(
                            reply.status == .methodNotAllowed,
                            "\(method.uppercased()) \(path) is not documented: expected 405")
                    }
                    for (method, _) in methods where ["get", "post", "delete", "patch", "put"].contains(method) {
                        let reply = try await client.call(
                            HTTPRequest.Method(method.uppercased())!, concrete,
                            token: nil, json: method == "get" || method == "delete" ? nil : .object([]))
                        // Unauthenticated: a routed /api/v1 path answers 401, open ones 200; never "no such route".
                        #expect(
                            reply.status != .notFound, "\(method.uppercased()) \(path) is documented but not routed")
                    }
                }
            }
        }
    }

    @Test func metricsAreExposedForPrometheus() async throws {
        try await APIFixture.with { fixture in
            _ = try await fixture.store.createMigration(
                NewMigration(
                    accountID: fixture.pro.id, mailboxID: fixture.mailbox.id, provider: "generic_imap",
                    sourceHost: "h.example",
                    sourcePort: 993, sourceSecurity: "ssl", sourceEmail: "a@b.example", sourcePassword: "pw"))
            try await fixture.test { client in
                let reply = try await client.call(.get, "/metrics")
                #expect(reply.status == .ok)
                #expect(reply.headers[.contentType]?.hasPrefix("text/plain") == true)
                #expect(reply.text.contains("mailporter_migrations{status=\"pending\"} 1"))
                #expect(reply.text.contains("mailporter_active_migrations 0"))
            }
        }
    }

    // MARK: Authentication, scopes, plans

    @Test func missingUnknownExpiredAndRevokedTokensAre401() async throws {
        try await APIFixture.with { fixture in
            let expired = try await fixture.store.createToken(
                accountID: fixture.pro.id, name: "old", scopes: [.migrationsRead],
                expiresAt: Date().addingTimeInterval(-60)
            ).token
            let revoked = try await fixture.store.createToken(
                accountID: fixture.pro.id, name: "gone", scopes: [.migrationsRead])
            _ = try await fixture.store.revokeToken(id: revoked.record.id, accountID: fixture.pro.id)
            try await fixture.test { client in
                for token in [
                    nil, "mp_live_" + String(repeating: "0", count: 64), "not-a-token", expired, revoked.token,
                ] {
                    let reply = try await client.call(.get, "/api/v1/migrations", token: token)
                    #expect(reply.status == .unauthorized)
                    #expect(reply.errorCode == "unauthenticated")
                }
                let basic = try await client.execute(
                    uri: "/api/v1/me", method: .get,
                    headers: [.authorization: "Basic \(fixture.token)"]
                ) { $0.status }
                #expect(basic == .unauthorized)
            }
        }
    }

    @Test func scopesAndPlansAreEnforced() async throws {
        try await APIFixture.with { fixture in
            try await fixture.test { client in
                let readOnly = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.readOnlyToken, json: fixture.startBody())
                #expect(readOnly.status == .forbidden)
                #expect(readOnly.errorCode == "insufficient_scope")
                #expect(try await client.call(.get, "/api/v1/migrations", token: fixture.readOnlyToken).status == .ok)

                let nanoList = try await client.call(.get, "/api/v1/migrations", token: fixture.nanoToken)
                #expect(nanoList.status == .forbidden)
                #expect(nanoList.errorCode == "token_scope_blocked_by_plan")
                let nanoStart = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.nanoToken, json: fixture.startBody())
                #expect(nanoStart.errorCode == "token_scope_blocked_by_plan")

                let nanoMe = try await client.call(.get, "/api/v1/me", token: fixture.nanoToken)
                #expect(nanoMe.status == .ok)
                #expect(array(nanoMe.json?["capabilities"]?["effective_scopes"])?.isEmpty == true)
                #expect(bool(nanoMe.json?["plan"]?["migrations_allowed"]) == false)
            }
        }
    }

    @Test func meDescribesTheAccountPlanAndToken() async throws {
        try await APIFixture.with { fixture in
            try await fixture.test { client in
                let reply = try await client.call(.get, "/api/v1/me", token: fixture.token)
                #expect(reply.status == .ok)
                let me = try #require(reply.json)
                #expect(int(me["account"]?["id"]) == fixture.pro.id)
                #expect(string(me["account"]?["plan"]) == "pro")
                #expect(string(me["account"]?["notification_email"]) == "ops@example.com")
                #expect(int(me["plan"]?["bulk_rows_per_batch"]) == 300)
                #expect(
                    array(me["capabilities"]?["effective_scopes"]) == [
                        .string("migrations:read"), .string("migrations:write"),
                    ])
                #expect(string(me["token"]?["prefix"]).map { fixture.token.hasPrefix($0) } == true)
                #expect(!reply.text.contains(fixture.token))
                #expect(reply.headers[HTTPField.Name("X-RateLimit-Limit")!] == "1000")
            }
        }
    }

    // MARK: Start, validation, conflicts

    @Test func startReturnsTheMaskedRecordWithoutPasswords() async throws {
        try await APIFixture.with { fixture in
            try await fixture.test { client in
                let reply = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.token, json: fixture.startBody())
                #expect(reply.status == .created)
                let record = try #require(reply.data)
                #expect(string(record["status"]) == "pending")
                #expect(string(record["status_label"]) == "Queued")
                #expect(string(record["source_email"]) == "j***e@example.net")
                #expect(string(record["mailbox_email"]) == "support@acme.example")
                #expect(int(record["mailbox_id"]) == fixture.mailbox.id)
                #expect(int(record["poll_hint_seconds"]) == 5)
                #expect(int(record["progress"]) == 0)
                #expect(array(record["selected_folders"]) == [.string("INBOX"), .string("Sent")])
                #expect(string(record["import_since"]) == "2025-01-01")
                #expect(bool(record["skip_duplicates"]) == true)
                #expect(record["error_code"] == .null)
                #expect(record["finished_at"] == .null)
                #expect(string(record["created_at"])?.hasSuffix("+00:00") == true)
                #expect(!reply.text.contains("s3cret"))

                let id = try #require(int(record["id"]))
                let fetched = try await client.call(.get, "/api/v1/migrations/\(id)", token: fixture.token)
                #expect(fetched.status == .ok)
                #expect(int(fetched.data?["id"]) == id)
                #expect(!fetched.text.contains("s3cret"))

                // Another account cannot see it.
                let foreign = try await client.call(.get, "/api/v1/migrations/\(id)", token: fixture.otherToken)
                #expect(foreign.status == .notFound)
                #expect(foreign.errorCode == "not_found")
                let foreignCancel = try await client.call(
                    .post, "/api/v1/migrations/\(id):cancel", token: fixture.otherToken)
                #expect(foreignCancel.status == .notFound)

                // One active single migration per account.
                let second = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.token, json: fixture.startBody())
                #expect(second.status == .conflict)
                #expect(second.errorCode == "conflict")

                // The audit trail names the token and request.
                let audit = try await client.call(.get, "/api/v1/audit-events", token: fixture.token)
                let event = try #require(array(audit.data)?.first)
                #expect(string(event["action"]) == "migration_started")
                #expect(string(event["resource_id"]) == String(id))
                #expect(string(event["request_id"]) == reply.headers[HTTPField.Name("X-Request-Id")!])
                #expect(int(event["token_id"]) != nil)
            }
            let stored = try await fixture.store.credentials(forMigration: 1)
            #expect(stored?.sourcePassword == "s3cret-source-pw")
        }
    }

    @Test func aTooLargeBodyOutsideTheBodyReaderNamesTheConfiguredLimit() async throws {
        try await APIFixture.with(limits: APILimits(requestsPerMinute: 1000, writesPerMinute: 1000, maxBodyBytes: 64)) {
            fixture in
            let router = APIRouter.make(fixture.environment)
            // A handler that reads its body with Hummingbird and answers its 413 with HTTPError,
            // leaving the message to the envelope.
            router.post("upload") { request, _ -> Response in
                var request = request
                do {
                    _ = try await request.collectBody(upTo: fixture.environment.limits.maxBodyBytes)
                } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
                    throw HTTPError(.contentTooLarge)
                }
                return Response(status: .noContent)
            }
            try await Application(router: router).test(.router) { client in
                let reply = try await client.call(.post, "/upload", rawBody: String(repeating: "x", count: 65))
                #expect(reply.status == .contentTooLarge)
                #expect(reply.errorCode == "payload_too_large")
                #expect(string(reply.json?["error"]?["message"]) == "The request body is larger than 64 bytes.")
                #expect(
                    try await client.call(.post, "/upload", rawBody: String(repeating: "x", count: 64)).status
                        == .noContent)
            }
        }
    }

    @Test func badBodiesGetClassifiedErrorsNamingEachField() async throws {
        try await APIFixture.with(limits: APILimits(requestsPerMinute: 1000, writesPerMinute: 1000, maxBodyBytes: 4096))
        { fixture in
            try await fixture.test { client in
                let invalid = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.token, rawBody: "{\"mailbox_id\": 1,")
                #expect(invalid.status == .badRequest)
                #expect(invalid.errorCode == "invalid_json")
                let notObject = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.token, rawBody: "[1,2]")
                #expect(notObject.errorCode == "invalid_json")

                let huge = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.token,
                    json: fixture.startBody([("source_password", .string(String(repeating: "x", count: 5000)))]))
                #expect(huge.status == .contentTooLarge)
                #expect(huge.errorCode == "payload_too_large")

                let bad = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.token,
                    json: fixture.startBody(
                        [
                            ("source_port", .int(70000)), ("source_security", .string("starttls")),
                            ("import_since", .string("2025-02-30")),
                            ("source_email", .string("no-at-sign")), ("skip_duplicates", .string("yes")),
                            ("source_host", .string(String(repeating: "h", count: 256))),
                        ], without: ["source_password"]))
                #expect(bad.status == .unprocessableContent)
                #expect(bad.errorCode == "validation_error")
                let fields = try #require(bad.json?["error"]?["fields"])
                for name in [
                    "source_port", "source_security", "import_since", "source_email", "skip_duplicates",
                    "source_host", "source_password",
                ] {
                    #expect(string(fields[name]) != nil, "no message for \(name)")
                }

                // One rule for a day, in the engine: the API says what the CLI says (CLITests check its side).
                for day in ["2025-02-30", "2024-04-31", "2024-4-31", "1969-12-31", "2025-1-1x"] {
                    let refused = try await client.call(
                        .post, "/api/v1/migrations", token: fixture.token,
                        json: fixture.startBody([("import_since", .string(day))]))
                    #expect(refused.status == .unprocessableContent, "\(day)")
                    #expect(string(refused.json?["error"]?["fields"]?["import_since"]) == CalendarDay.rule, "\(day)")
                }

                let wrongTypes = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.token,
                    json: fixture.startBody([
                        ("mailbox_id", .string("1")), ("selected_folders", .string("INBOX")),
                        ("provider", .string("aol")),
                    ]))
                let typeFields = try #require(wrongTypes.json?["error"]?["fields"])
                #expect(string(typeFields["mailbox_id"]) != nil)
                #expect(string(typeFields["selected_folders"]) != nil)
                #expect(string(typeFields["provider"]) != nil)

                let noTarget = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.token,
                    json: fixture.startBody(without: ["target_password"]))
                #expect(string(noTarget.json?["error"]?["fields"]?["target_password"]) == "is required")

                let foreignMailbox = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.token,
                    json: fixture.startBody([("mailbox_id", .int(fixture.otherMailbox.id))]))
                #expect(foreignMailbox.errorCode == "validation_error")
                #expect(string(foreignMailbox.json?["error"]?["fields"]?["mailbox_id"]) != nil)

                let badQuery = try await client.call(
                    .get, "/api/v1/migrations?status=running&per_page=500", token: fixture.token)
                #expect(badQuery.status == .unprocessableContent)
                #expect(string(badQuery.json?["error"]?["fields"]?["status"]) != nil)
                #expect(string(badQuery.json?["error"]?["fields"]?["per_page"]) != nil)

                let textID = try await client.call(.get, "/api/v1/migrations/abc", token: fixture.token)
                #expect(textID.status == .notFound)
            }
            #expect(try await fixture.store.listMigrations(accountID: fixture.pro.id).total == 0)
        }
    }

    @Test func providerPresetsFillTheServerAndMasterCredentialsMakeTargetPasswordOptional() async throws {
        try await APIFixture.with(hasMasterCredentials: true) { fixture in
            try await fixture.test { client in
                let reply = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.token,
                    json: fixture.startBody(
                        [("provider", .string("gmail")), ("source_email", .string("jo@gmail.com"))],
                        without: ["source_host", "source_port", "source_security", "target_password"]))
                #expect(reply.status == .created)
                #expect(string(reply.data?["source_host"]) == "imap.gmail.com")
                #expect(int(reply.data?["source_port"]) == 993)
                #expect(string(reply.data?["source_security"]) == "ssl")
                #expect(string(reply.data?["source_email"]) == "j***@gmail.com")
            }
        }
    }

    @Test func atTheGlobalLimitAStartIs503AndRetryable() async throws {
        try await APIFixture.with(
            limits: APILimits(requestsPerMinute: 1000, writesPerMinute: 1000, maxConcurrentMigrations: 1)
        ) { fixture in
            // Another account's migration holds the only slot.
            _ = try await fixture.store.createMigration(
                NewMigration(
                    accountID: fixture.other.id, mailboxID: fixture.otherMailbox.id, provider: "generic_imap",
                    sourceHost: "h.example",
                    sourcePort: 993, sourceSecurity: "ssl", sourceEmail: "a@b.example", sourcePassword: "pw"))
            #expect(try await fixture.store.claimPendingMigration(owner: "node-a", leaseSeconds: 60) != nil)
            try await fixture.test { client in
                let reply = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.token, json: fixture.startBody())
                #expect(reply.status == .serviceUnavailable)
                #expect(reply.errorCode == "migration_capacity_reached")
                #expect(bool(reply.json?["error"]?["retryable"]) == true)
            }
        }
    }

    // MARK: Cancel, retry, delete, listing

    @Test func cancelRetryAndDeleteFollowTheStatusRules() async throws {
        try await APIFixture.with { fixture in
            try await fixture.test { client in
                let started = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.token, json: fixture.startBody())
                let id = try #require(int(started.data?["id"]))
                let base = "/api/v1/migrations/\(id)"

                let retryActive = try await client.call(.post, "\(base):retry", token: fixture.token)
                #expect(retryActive.status == .conflict)
                #expect(
                    string(retryActive.json?["error"]?["message"])
                        == "The migration is pending; only a failed or cancelled migration can be retried.")
                let deleteActive = try await client.call(.delete, base, token: fixture.token)
                #expect(deleteActive.status == .conflict)
                #expect(
                    string(deleteActive.json?["error"]?["message"])
                        == "The migration is pending; cancel it before deleting it.")

                let cancelled = try await client.call(.post, "\(base):cancel", token: fixture.token)
                #expect(cancelled.status == .ok)
                #expect(string(cancelled.data?["status"]) == "cancelled")
                #expect(cancelled.data?["poll_hint_seconds"] == .null)
                #expect(string(cancelled.data?["finished_at"]) != nil)
                let again = try await client.call(.post, "\(base):cancel", token: fixture.token)
                #expect(again.status == .conflict)
                #expect(again.errorCode == "conflict")
                #expect(
                    string(again.json?["error"]?["message"])
                        == "The migration is cancelled; only an active migration can be cancelled.")

                let retried = try await client.call(.post, "\(base):retry", token: fixture.token)
                #expect(retried.status == .ok)
                #expect(string(retried.data?["status"]) == "pending")
                _ = try await client.call(.post, "\(base):cancel", token: fixture.token)

                let deleted = try await client.call(.delete, base, token: fixture.token)
                #expect(deleted.status == .noContent)
                #expect(deleted.text.isEmpty)
                #expect(try await client.call(.get, base, token: fixture.token).status == .notFound)
                #expect(try await client.call(.delete, base, token: fixture.token).status == .notFound)

                let audit = try await client.call(.get, "/api/v1/audit-events?per_page=10", token: fixture.token)
                let actions = array(audit.data)?.compactMap { string($0["action"]) }
                #expect(
                    actions == [
                        "migration_deleted", "migration_cancelled", "migration_retried", "migration_cancelled",
                        "migration_started",
                    ])
            }
            #expect(try await fixture.store.credentials(forMigration: 1) == nil)
        }
    }

    @Test func listingsPaginateAndFilter() async throws {
        try await APIFixture.with { fixture in
            let second = try await fixture.store.addMailbox(accountID: fixture.pro.id, email: "sales@acme.example")
            for index in 0..<5 {
                let record = try await fixture.store.createMigration(
                    NewMigration(
                        accountID: fixture.pro.id, mailboxID: index == 4 ? second.id : fixture.mailbox.id,
                        provider: "generic_imap",
                        sourceHost: "h.example", sourcePort: 993, sourceSecurity: "ssl",
                        sourceEmail: "u\(index)@b.example",
                        sourcePassword: "pw"))
                if index < 4 { _ = try await fixture.store.cancelMigration(id: record.id, accountID: fixture.pro.id) }
            }
            try await fixture.test { client in
                let page = try await client.call(.get, "/api/v1/migrations?per_page=2&page=2", token: fixture.token)
                #expect(page.status == .ok)
                #expect(array(page.data)?.count == 2)
                let meta = try #require(page.json?["meta"])
                #expect(int(meta["current_page"]) == 2)
                #expect(int(meta["per_page"]) == 2)
                #expect(int(meta["total"]) == 5)
                #expect(int(meta["last_page"]) == 3)
                #expect(string(page.json?["links"]?["next"]) == "/api/v1/migrations?page=3&per_page=2")
                #expect(string(page.json?["links"]?["prev"]) == "/api/v1/migrations?page=1&per_page=2")

                let pending = try await client.call(.get, "/api/v1/migrations?status=pending", token: fixture.token)
                #expect(int(pending.json?["meta"]?["total"]) == 1)
                #expect(
                    string(pending.json?["links"]?["first"]) == "/api/v1/migrations?status=pending&page=1&per_page=20")
                let byMailbox = try await client.call(
                    .get, "/api/v1/migrations?mailbox_id=\(second.id)", token: fixture.token)
                #expect(array(byMailbox.data)?.count == 1)

                let empty = try await client.call(.get, "/api/v1/migrations", token: fixture.otherToken)
                #expect(int(empty.json?["meta"]?["total"]) == 0)
                #expect(int(empty.json?["meta"]?["last_page"]) == 1)
                #expect(empty.json?["links"]?["next"] == .null)
            }
        }
    }

    // MARK: Rate limits and idempotency

    @Test func rateLimitsAnswer429WithRetryAfter() async throws {
        try await APIFixture.with(limits: APILimits(requestsPerMinute: 5, writesPerMinute: 2)) { fixture in
            try await fixture.test { client in
                for _ in 0..<2 {
                    let reply = try await client.call(.post, "/api/v1/migrations/999:cancel", token: fixture.token)
                    #expect(reply.status == .notFound)
                }
                let limited = try await client.call(.post, "/api/v1/migrations/999:cancel", token: fixture.token)
                #expect(limited.status == .tooManyRequests)
                #expect(limited.errorCode == "rate_limited")
                let seconds = try #require(int(limited.json?["error"]?["retry_after"]))
                #expect((1...60).contains(seconds))
                #expect(limited.headers[.retryAfter] == String(seconds))
                #expect(bool(limited.json?["error"]?["retryable"]) == true)

                // Reads still pass until the standard limit, which counts every request.
                #expect(try await client.call(.get, "/api/v1/me", token: fixture.token).status == .ok)
                #expect(try await client.call(.get, "/api/v1/me", token: fixture.token).status == .ok)
                let over = try await client.call(.get, "/api/v1/me", token: fixture.token)
                #expect(over.status == .tooManyRequests)
                // Limits are per token.
                #expect(try await client.call(.get, "/api/v1/me", token: fixture.readOnlyToken).status == .ok)
            }
        }
    }

    @Test func idempotencyKeysReplayRefuseOrWait() async throws {
        try await APIFixture.with { fixture in
            try await fixture.test { client in
                let key = [("Idempotency-Key", "start-1")]
                let first = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.token, json: fixture.startBody(), headers: key)
                #expect(first.status == .created)
                let replay = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.token, json: fixture.startBody(), headers: key)
                #expect(replay.status == .created)
                #expect(replay.text == first.text)
                #expect(replay.headers[HTTPField.Name("Idempotent-Replayed")!] == "true")

                let reused = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.token,
                    json: fixture.startBody([("import_since", .null)]), headers: key)
                #expect(reused.status == .unprocessableContent)
                #expect(reused.errorCode == "idempotency_key_reused")

                // A refusal is replayed too: the key now stands for "already active".
                let conflictKey = [("Idempotency-Key", "start-2")]
                let conflict = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.token, json: fixture.startBody(), headers: conflictKey)
                #expect(conflict.status == .conflict)
                let conflictAgain = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.token, json: fixture.startBody(), headers: conflictKey)
                #expect(conflictAgain.status == .conflict)

                // Same key and body while the first request is still being handled.
                let body = fixture.startBody().serialized
                let hash = Store.requestHash(method: "POST", path: "/api/v1/migrations", body: Array(body.utf8))
                #expect(
                    try await fixture.store.beginIdempotency(accountID: fixture.pro.id, key: "busy", requestHash: hash)
                        == .proceed)
                let busy = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.token, rawBody: body,
                    headers: [("Idempotency-Key", "busy")])
                #expect(busy.status == .conflict)
                #expect(busy.errorCode == "idempotency_key_in_use")

                let badKey = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.token, json: fixture.startBody(),
                    headers: [("Idempotency-Key", String(repeating: "k", count: 300))])
                #expect(badKey.errorCode == "validation_error")

                // Keys belong to the account that used them.
                let otherBody = fixture.startBody([("mailbox_id", .int(fixture.otherMailbox.id))])
                let otherAccount = try await client.call(
                    .post, "/api/v1/migrations", token: fixture.otherToken, json: otherBody, headers: key)
                #expect(otherAccount.status == .created)
            }
            #expect(try await fixture.store.listMigrations(accountID: fixture.pro.id).total == 1)
        }
    }
}
