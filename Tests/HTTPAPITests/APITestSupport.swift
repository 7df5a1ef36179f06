import Foundation
import HTTPAPI
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Store

/// A store with two accounts (pro and nano), a mailbox and tokens, and the API over it.
struct APIFixture: Sendable {
    let store: Store
    let environment: APIEnvironment
    let pro: Account
    let nano: Account
    let other: Account
    let mailbox: Mailbox
    let otherMailbox: Mailbox
    /// migrations:read + migrations:write on the pro account.
    let token: String
    let readOnlyToken: String
    let nanoToken: String
    let otherToken: String

    static func make(
        limits: APILimits = APILimits(requestsPerMinute: 1000, writesPerMinute: 1000),
        hasMasterCredentials: Bool = false, allowPrivateHosts: Bool = true,
        trustRootsPEM: [String] = []
    ) async throws -> APIFixture {
        let store = try await Store.openInMemorySQLite()
        let pro = try await store.createAccount(plan: .pro, notificationEmail: "ops@example.com")
        let nano = try await store.createAccount(plan: .nano, notificationEmail: "nano@example.com")
        let other = try await store.createAccount(plan: .starter, notificationEmail: "other@example.com")
        let mailbox = try await store.addMailbox(accountID: pro.id, email: "support@acme.example")
        let otherMailbox = try await store.addMailbox(accountID: other.id, email: "desk@other.example")
        let both: [Scope] = [.migrationsRead, .migrationsWrite]
        let token = try await store.createToken(accountID: pro.id, name: "ci", scopes: both).token
        let readOnly = try await store.createToken(accountID: pro.id, name: "ro", scopes: [.migrationsRead]).token
        let nanoToken = try await store.createToken(accountID: nano.id, name: "n", scopes: both).token
        let otherToken = try await store.createToken(accountID: other.id, name: "o", scopes: both).token
        let environment = APIEnvironment(
            store: store, limits: limits, hasMasterCredentials: hasMasterCredentials,
            allowPrivateHosts: allowPrivateHosts, sourceTrustRootsPEM: trustRootsPEM)
        return APIFixture(
            store: store, environment: environment, pro: pro, nano: nano, other: other,
            mailbox: mailbox, otherMailbox: otherMailbox, token: token, readOnlyToken: readOnly,
            nanoToken: nanoToken, otherToken: otherToken)
    }

    /// A fixture for `body`, its store closed afterwards whatever happens.
    static func with<Value>(
        limits: APILimits = APILimits(requestsPerMinute: 1000, writesPerMinute: 1000),
        hasMasterCredentials: Bool = false, allowPrivateHosts: Bool = true,
        trustRootsPEM: [String] = [], _ body: (APIFixture) async throws -> Value
    ) async throws -> Value {
        let fixture = try await make(
            limits: limits, hasMasterCredentials: hasMasterCredentials,
            allowPrivateHosts: allowPrivateHosts, trustRootsPEM: trustRootsPEM)
        do {
            let value = try await body(fixture)
            try await fixture.store.close()
            return value
        } catch {
            try? await fixture.store.close()
            throw error
        }
    }

    func test<Value>(_ body: @Sendable (any TestClientProtocol) async throws -> Value) async throws -> Value {
        let app = Application(router: APIRouter.make(environment))
        return try await app.test(.router, body)
    }

    /// A start body for the pro account's mailbox.
    func startBody(_ overrides: [(String, JSONValue)] = [], without: Set<String> = []) -> JSONValue {
        var fields: [(String, JSONValue)] = [
            ("mailbox_id", .int(mailbox.id)),
            ("provider", .string("generic_imap")),
            ("source_host", .string("imap.example.net")),
            ("source_port", .int(993)),
            ("source_security", .string("ssl")),
            ("source_email", .string("jane@example.net")),
            ("source_password", .string("s3cret-source-pw")),
            ("target_password", .string("s3cret-target-pw")),
            ("selected_folders", .strings(["INBOX", "Sent"])),
            ("import_since", .string("2025-01-01")),
        ]
        fields.removeAll { without.contains($0.0) || overrides.map(\.0).contains($0.0) }
        return .object(fields + overrides)
    }
}

/// What a test reads off a response.
struct Reply {
    let status: HTTPResponse.Status
    let headers: HTTPFields
    let text: String
    var json: JSONValue? { JSONValue.parse(Array(text.utf8)) }
    var errorCode: String? { string(json?["error"]?["code"]) }
    var data: JSONValue? { json?["data"] }
}

func string(_ value: JSONValue?) -> String? {
    if case .string(let text)? = value { return text }
    return nil
}

func int(_ value: JSONValue?) -> Int64? {
    if case .int(let number)? = value { return number }
    return nil
}

func bool(_ value: JSONValue?) -> Bool? {
    if case .bool(let flag)? = value { return flag }
    return nil
}

func array(_ value: JSONValue?) -> [JSONValue]? {
    if case .array(let items)? = value { return items }
    return nil
}

extension TestClientProtocol {
    func call(
        _ method: HTTPRequest.Method, _ uri: String, token: String? = nil, json: JSONValue? = nil,
        rawBody: String? = nil, headers extra: [(String, String)] = []
    ) async throws -> Reply {
        var headers = HTTPFields()
        if let token { headers[.authorization] = "Bearer \(token)" }
        if json != nil || rawBody != nil { headers[.contentType] = "application/json" }
        for (name, value) in extra {
            if let field = HTTPField.Name(name) { headers[field] = value }
        }
        let body = (json?.serialized ?? rawBody).map { ByteBuffer(string: $0) }
        return try await execute(uri: uri, method: method, headers: headers, body: body) { response in
            Reply(status: response.status, headers: response.headers, text: String(buffer: response.body))
        }
    }
}
