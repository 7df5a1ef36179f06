import Foundation
import HTTPAPI
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Store
import Testing

/// Tokens of the fixture's pro account with the mailbox scopes.
private func mailboxTokens(_ fixture: APIFixture) async throws -> (write: String, read: String) {
    let write = try await fixture.store.createToken(
        accountID: fixture.pro.id, name: "mb",
        scopes: [.mailboxesRead, .mailboxesWrite]
    ).token
    let read = try await fixture.store.createToken(accountID: fixture.pro.id, name: "mb-ro", scopes: [.mailboxesRead])
        .token
    return (write, read)
}

@Suite("REST API: mailboxes")
struct MailboxRouteTests {
    @Test func manyAddressesInOneCallEachGetTheirOwnResult() async throws {
        try await APIFixture.with { fixture in
            let tokens = try await mailboxTokens(fixture)
            try await fixture.test { client in
                let emails: JSONValue = .strings([
                    "Anna@Acme.example ", "support@acme.example", "not-an-address",
                    "ben@acme.example", "anna@acme.example", "x@nodot",
                ])
                let reply = try await client.call(
                    .post, "/api/v1/mailboxes", token: tokens.write,
                    json: .object([("emails", emails)]))
                #expect(reply.status == .created)
                let results = try #require(array(reply.data?["results"]))
                #expect(
                    results.compactMap { string($0["status"]) }
                        == ["added", "duplicate", "invalid", "added", "duplicate", "invalid"])
                #expect(
                    results.compactMap { string($0["email"]) }
                        == [
                            "anna@acme.example", "support@acme.example", "not-an-address", "ben@acme.example",
                            "anna@acme.example", "x@nodot",
                        ])
                #expect(results.compactMap { int($0["index"]) } == [0, 1, 2, 3, 4, 5])
                #expect(string(results[2]["message"])?.contains("local@domain.tld") == true)
                #expect(int(results[0]["mailbox"]?["id"]) != nil && results[1]["mailbox"] == .null)
                #expect(
                    int(reply.data?["counts"]?["added"]) == 2 && int(reply.data?["counts"]?["duplicate"]) == 2
                        && int(reply.data?["counts"]?["invalid"]) == 2)
                let stored = try await fixture.store.mailboxes(accountID: fixture.pro.id).map(\.email)
                #expect(stored == ["support@acme.example", "anna@acme.example", "ben@acme.example"])
                let events = try await fixture.store.auditEvents(accountID: fixture.pro.id).items
                #expect(events.filter { $0.action == "mailbox_added" }.count == 2)

                // One address, nothing new: 200 and the duplicate said.
                let again = try await client.call(
                    .post, "/api/v1/mailboxes", token: tokens.write,
                    json: .object([("email", .string("ben@acme.example"))]))
                #expect(again.status == .ok)
                #expect(string(array(again.data?["results"])?.first?["status"]) == "duplicate")
            }
        }
    }

    @Test func aBodyWithoutAddressesIsAValidationError() async throws {
        try await APIFixture.with { fixture in
            let tokens = try await mailboxTokens(fixture)
            try await fixture.test { client in
                for body: JSONValue in [
                    .object([]), .object([("emails", .array([]))]),
                    .object([("emails", .array([.int(1)]))]),
                    .object([("email", .string("a@b.example")), ("emails", .strings(["c@d.example"]))]),
                    .object([("emails", .strings(Array(repeating: "a@b.example", count: 1001)))]),
                ] {
                    let reply = try await client.call(.post, "/api/v1/mailboxes", token: tokens.write, json: body)
                    #expect(reply.status == .unprocessableContent)
                    #expect(reply.errorCode == "validation_error")
                }
                #expect(try await fixture.store.mailboxes(accountID: fixture.pro.id).count == 1)
            }
        }
    }

    @Test func listIsPagedAndShowsOnlyTheAccountsMailboxes() async throws {
        try await APIFixture.with { fixture in
            let tokens = try await mailboxTokens(fixture)
            _ = try await fixture.store.addMailboxes(
                accountID: fixture.pro.id,
                emails: (1...4).map { "user\($0)@acme.example" })
            try await fixture.test { client in
                let first = try await client.call(.get, "/api/v1/mailboxes?per_page=2", token: tokens.read)
                #expect(first.status == .ok)
                #expect(
                    array(first.json?["data"])?.compactMap { string($0["email"]) }
                        == ["support@acme.example", "user1@acme.example"])
                #expect(int(first.json?["meta"]?["total"]) == 5 && int(first.json?["meta"]?["last_page"]) == 3)
                #expect(string(first.json?["links"]?["next"]) == "/api/v1/mailboxes?page=2&per_page=2")
                let last = try await client.call(.get, "/api/v1/mailboxes?page=3&per_page=2", token: tokens.read)
                #expect(array(last.json?["data"])?.compactMap { string($0["email"]) } == ["user4@acme.example"])
                #expect(!last.text.contains("desk@other.example"))
                let bad = try await client.call(.get, "/api/v1/mailboxes?per_page=500", token: tokens.read)
                #expect(bad.status == .unprocessableContent)
            }
        }
    }

    @Test func scopesAreTheMailboxOnes() async throws {
        try await APIFixture.with { fixture in
            let tokens = try await mailboxTokens(fixture)
            try await fixture.test { client in
                // The migration token has no mailbox scope; the read-only one cannot write.
                let list = try await client.call(.get, "/api/v1/mailboxes", token: fixture.token)
                #expect(list.status == .forbidden && list.errorCode == "insufficient_scope")
                let add = try await client.call(
                    .post, "/api/v1/mailboxes", token: tokens.read,
                    json: .object([("email", .string("new@acme.example"))]))
                #expect(add.status == .forbidden && add.errorCode == "insufficient_scope")
                let delete = try await client.call(
                    .delete, "/api/v1/mailboxes/\(fixture.mailbox.id)", token: tokens.read)
                #expect(delete.status == .forbidden)
                let anonymous = try await client.call(.get, "/api/v1/mailboxes")
                #expect(anonymous.status == .unauthorized)
                // A nano account may manage its mailboxes: the plan blocks only the migration scopes.
                let nano = try await fixture.store.createToken(
                    accountID: fixture.nano.id, name: "nb",
                    scopes: [.mailboxesRead]
                ).token
                #expect(try await client.call(.get, "/api/v1/mailboxes", token: nano).status == .ok)
                #expect(try await fixture.store.mailboxes(accountID: fixture.pro.id).count == 1)
            }
        }
    }

    @Test func deleteIsRefusedWhileAMigrationThatHasNotEndedTargetsTheMailbox() async throws {
        try await APIFixture.with { fixture in
            let tokens = try await mailboxTokens(fixture)
            let migration = try await fixture.store.createMigration(
                NewMigration(
                    accountID: fixture.pro.id, mailboxID: fixture.mailbox.id, provider: "generic_imap",
                    sourceHost: "imap.example.net", sourcePort: 993, sourceSecurity: "ssl",
                    sourceEmail: "jane@example.net",
                    sourcePassword: "pw"))
            try await fixture.test { client in
                let path = "/api/v1/mailboxes/\(fixture.mailbox.id)"
                let busy = try await client.call(.delete, path, token: tokens.write)
                #expect(busy.status == .conflict && busy.errorCode == "conflict")
                #expect(try await fixture.store.mailbox(id: fixture.mailbox.id, accountID: fixture.pro.id) != nil)

                _ = try await fixture.store.cancelMigration(id: migration.id, accountID: fixture.pro.id)
                let key = [("Idempotency-Key", "del-1")]
                let gone = try await client.call(.delete, path, token: tokens.write, headers: key)
                #expect(gone.status == .noContent)
                #expect(try await fixture.store.mailbox(id: fixture.mailbox.id, accountID: fixture.pro.id) == nil)
                #expect(try await fixture.store.migration(id: migration.id, accountID: fixture.pro.id) == nil)
                // The same key replays the 204; without it, the mailbox is gone.
                let replay = try await client.call(.delete, path, token: tokens.write, headers: key)
                #expect(replay.status == .noContent && replay.headers[HTTPField.Name("Idempotent-Replayed")!] == "true")
                #expect(try await client.call(.delete, path, token: tokens.write).status == .notFound)
                let events = try await fixture.store.auditEvents(accountID: fixture.pro.id).items
                #expect(
                    events.filter { $0.action == "mailbox_deleted" }.map(\.resourceID) == [String(fixture.mailbox.id)])

                // Another account's mailbox and ids that are not ids are 404.
                #expect(
                    try await client.call(
                        .delete, "/api/v1/mailboxes/\(fixture.otherMailbox.id)",
                        token: tokens.write
                    ).status == .notFound)
                #expect(
                    try await client.call(.delete, "/api/v1/mailboxes/abc", token: tokens.write).status == .notFound)
            }
        }
    }

    @Test func anAddReplaysWithItsKeyAndRefusesAnotherBodyUnderIt() async throws {
        try await APIFixture.with { fixture in
            let tokens = try await mailboxTokens(fixture)
            try await fixture.test { client in
                let key = [("Idempotency-Key", "add-1")]
                let body: JSONValue = .object([("emails", .strings(["new@acme.example"]))])
                let first = try await client.call(
                    .post, "/api/v1/mailboxes", token: tokens.write, json: body, headers: key)
                #expect(first.status == .created)
                let replay = try await client.call(
                    .post, "/api/v1/mailboxes", token: tokens.write, json: body, headers: key)
                #expect(replay.status == .created && replay.text == first.text)
                let other = try await client.call(
                    .post, "/api/v1/mailboxes", token: tokens.write,
                    json: .object([("emails", .strings(["other@acme.example"]))]), headers: key)
                #expect(other.errorCode == "idempotency_key_reused")
                #expect(try await fixture.store.mailboxes(accountID: fixture.pro.id).count == 2)
            }
        }
    }
}
