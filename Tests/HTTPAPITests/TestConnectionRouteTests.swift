import Foundation
import HTTPAPI
import HTTPTypes
import HummingbirdTesting
import Testing
import TestSupport

/// `POST /api/v1/migrations/test-connection` against a real Dovecot.
@Suite("test-connection route")
struct TestConnectionRouteTests {
    func body(
        _ server: DovecotServer, user: String, password: String = DovecotServer.password,
        security: String = "none"
    ) -> JSONValue {
        .object([
            ("source_host", .string("127.0.0.1")),
            ("source_port", .int(security == "ssl" ? server.imapsPort : server.imapPort)),
            ("source_security", .string(security)),
            ("source_email", .string("\(user)@example.org")),
            ("source_username", .string(user)),
            ("source_password", .string(password)),
        ])
    }

    @Test func listsTheSourceFoldersWithTheirCounts() async throws {
        let server = try await SharedServers.shared.server(.dot)
        let user = try await server.freshUser("api")
        let corpus = try await Corpus.fill(server, user: user, options: .init(scale: 1, largeAttachment: false))
        try await APIFixture.with(trustRootsPEM: [server.certificatePEM]) { fixture in
            try await fixture.test { client in
                let reply = try await client.call(
                    .post, "/api/v1/migrations/test-connection", token: fixture.token,
                    json: body(server, user: user, security: "ssl"))
                #expect(reply.status == .ok)
                #expect(bool(reply.json?["success"]) == true)
                guard case .object(let folders)? = reply.json?["folders"] else {
                    Issue.record("no folders in \(reply.text)")
                    return
                }
                let counts = Dictionary(folders.map { ($0.0, int($0.1) ?? -1) }, uniquingKeysWith: { a, _ in a })
                #expect(counts["INBOX"] == Int64(corpus.folders["INBOX"]?.count ?? -1))
                let total = counts.values.reduce(0, +)
                #expect(total == Int64(corpus.all.count))
            }
        }
    }

    @Test func aWrongPasswordIsConnectionFailedWithTheClassifiedReason() async throws {
        let server = try await SharedServers.shared.server(.slash)
        try await APIFixture.with { fixture in
            try await fixture.test { client in
                let reply = try await client.call(
                    .post, "/api/v1/migrations/test-connection", token: fixture.token,
                    json: body(server, user: uniqueUser("api"), password: "wrong-password"))
                #expect(reply.status == .unprocessableContent)
                #expect(reply.errorCode == "connection_failed")
                let error = try #require(reply.json?["error"])
                #expect(string(error["reason"]) == "authentication_failed")
                #expect(string(error["hint"])?.isEmpty == false)
                #expect(!reply.text.contains("wrong-password"))
            }
        }
    }

    @Test func privateHostsAreRefusedUnlessTheOperatorAllowsThem() async throws {
        let server = try await SharedServers.shared.server(.slash)
        try await APIFixture.with(allowPrivateHosts: false) { fixture in
            try await fixture.test { client in
                for host in ["127.0.0.1", "localhost", "169.254.169.254", "10.1.2.3", "[::1]"] {
                    var request = body(server, user: uniqueUser("api"))
                    if case .object(var fields) = request {
                        fields.removeAll { $0.0 == "source_host" }
                        fields.append(("source_host", .string(host)))
                        request = .object(fields)
                    }
                    let reply = try await client.call(
                        .post, "/api/v1/migrations/test-connection", token: fixture.token, json: request)
                    #expect(reply.status == .unprocessableContent, "\(host)")
                    #expect(string(reply.json?["error"]?["reason"]) == "private_host_blocked", "\(host): \(reply.text)")
                    #expect(string(reply.json?["error"]?["hint"])?.contains("MAILPORTER_ALLOW_PRIVATE_HOSTS") == true)
                }
            }
        }
    }
}
