import Foundation
import Logging
import MCP
import Testing

@testable import MCPServer

/// `/mcp` sessions driven with plain requests: no sockets, no Hummingbird.
@Suite("MCP HTTP sessions")
struct HTTPSessionTests {
    static let initialize = #"""
        {"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}
        """#
    static let list = #"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}"#

    func post(_ body: String, session: String? = nil, origin: String? = nil) -> HTTPRequest {
        var headers = [
            "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
            "Host": "127.0.0.1:8080",
        ]
        if let session { headers[HTTPHeaderName.sessionID] = session }
        if let origin { headers["Origin"] = origin }
        return HTTPRequest(method: "POST", headers: headers, body: Data(body.utf8), path: "/mcp")
    }

    func body(_ response: HTTPResponse) -> String { String(decoding: response.bodyData ?? Data(), as: UTF8.self) }

    @Test func aSessionIsOpenedByInitializeAndOwnedByItsToken() async throws {
        let sessions = MCPHTTPSessions(settings: MCPHTTPSettings(maxSessions: 2), logger: Logger(label: "test"))
        let api = ScriptedAPI { _, _ in ScriptedAPI.me }
        let opened = await sessions.handle(post(Self.initialize), owner: "token:1", caller: api)
        #expect(opened.statusCode == 200, "\(body(opened))")
        let id = try #require(opened.headers[HTTPHeaderName.sessionID])
        let listed = await sessions.handle(post(Self.list, session: id), owner: "token:1", caller: api)
        #expect(listed.statusCode == 200 && body(listed).contains("start_migration") == false, "\(body(listed))")
        #expect(body(listed).contains("get_migration"))

        let unknown = await sessions.handle(post(Self.list, session: "feedface"), owner: "token:1", caller: api)
        #expect(unknown.statusCode == 404)
        let otherToken = await sessions.handle(post(Self.list, session: id), owner: "token:2", caller: api)
        #expect(otherToken.statusCode == 404)
        let withoutSession = await sessions.handle(post(Self.list), owner: "token:1", caller: api)
        #expect(withoutSession.statusCode == 400)
        let stream = await sessions.handle(
            HTTPRequest(method: "GET", headers: [HTTPHeaderName.sessionID: id], path: "/mcp"), owner: "token:1",
            caller: api)
        #expect(stream.statusCode == 405 && stream.headers[HTTPHeaderName.allow] == "POST, DELETE")

        let closed = await sessions.handle(
            HTTPRequest(method: "DELETE", headers: [HTTPHeaderName.sessionID: id], path: "/mcp"), owner: "token:1",
            caller: api)
        #expect(closed.statusCode == 200)
        let afterClose = await sessions.handle(post(Self.list, session: id), owner: "token:1", caller: api)
        #expect(afterClose.statusCode == 404)
        #expect(await sessions.count == 0)
    }

    @Test func aForeignOriginIsRefusedAndTheCapHolds() async throws {
        let sessions = MCPHTTPSessions(settings: MCPHTTPSettings(maxSessions: 1), logger: Logger(label: "test"))
        let api = ScriptedAPI { _, _ in ScriptedAPI.me }
        let foreign = await sessions.handle(
            post(Self.initialize, origin: "https://evil.example"), owner: "t", caller: api)
        #expect(foreign.statusCode == 403)
        #expect(await sessions.count == 0)
        let own = await sessions.handle(post(Self.initialize, origin: "http://127.0.0.1:8080"), owner: "t", caller: api)
        #expect(own.statusCode == 200)
        let beyond = await sessions.handle(post(Self.initialize), owner: "t", caller: api)
        #expect(beyond.statusCode == 503)
        #expect(api.requests.isEmpty, "initialize asks the API nothing")
    }
}
