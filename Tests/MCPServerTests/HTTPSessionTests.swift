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

/// The session rules alone: a value, inputs in, actions out.
@Suite("MCP session table")
struct SessionTableTests {
    let start = ContinuousClock.now

    func post(
        _ table: inout SessionTable<Int>, session: String? = nil, owner: String = "a", initialize: Bool = false,
        rpcID: String? = "n:1", after seconds: Int = 0, newID: String = "s1", origin: String? = nil
    ) -> SessionTable<Int>.Action {
        table.receive(
            method: "POST", sessionID: session, origin: origin, host: "127.0.0.1:8080", owner: owner,
            isInitialize: initialize, rpcID: rpcID, now: start + .seconds(seconds), newID: newID)
    }

    func status(_ action: SessionTable<Int>.Action) -> Int? {
        if case .reject(let status, _, _) = action { return status }
        return nil
    }

    @Test func initializeReservesASlotSoTheCapHoldsWhileSessionsStart() {
        var table = SessionTable<Int>(settings: MCPHTTPSettings(maxSessions: 2))
        guard case .open(let first) = post(&table, initialize: true, newID: "s1") else {
            Issue.record("no open")
            return
        }
        guard case .open = post(&table, initialize: true, newID: "s2") else {
            Issue.record("no second open")
            return
        }
        // Both still starting: a third is refused, not a third Server.
        #expect(status(post(&table, initialize: true, newID: "s3")) == 503)
        table.openFailed("s2")
        table.opened(first, handle: 1, owner: "a", now: start)
        guard case .open = post(&table, initialize: true, newID: "s4") else {
            Issue.record("a failed start frees its slot")
            return
        }
        #expect(status(post(&table)) == 400, "no session id and no initialize")
    }

    @Test func aSessionIsItsOwnersAndKeepsOneRequestPerIdInFlight() {
        var table = SessionTable<Int>(settings: MCPHTTPSettings())
        table.opened("s1", handle: 7, owner: "a", now: start)
        guard case .forward(let id, let handle) = post(&table, session: "s1") else {
            Issue.record("not forwarded")
            return
        }
        #expect(id == "s1" && handle == 7)
        #expect(status(post(&table, session: "s1")) == 409, "the same id while the first is in flight")
        table.finished("s1", rpcID: "n:1", now: start)
        guard case .forward = post(&table, session: "s1") else {
            Issue.record("the id is free again once answered")
            return
        }
        #expect(status(post(&table, session: "s1", owner: "b")) == 404)
        #expect(status(post(&table, session: "nope")) == 404)
        #expect(status(post(&table, session: "s1", origin: "https://evil.example")) == 403)
        let get = table.receive(
            method: "GET", sessionID: "s1", origin: nil, host: nil, owner: "a", isInitialize: false, rpcID: nil,
            now: start, newID: "x")
        #expect(status(get) == 405)
        let delete = table.receive(
            method: "DELETE", sessionID: "s1", origin: nil, host: nil, owner: "a", isInitialize: false, rpcID: nil,
            now: start, newID: "x")
        guard case .close(let closed) = delete else {
            Issue.record("not closed")
            return
        }
        #expect(closed == 7 && table.entries.isEmpty)
    }

    @Test func anIdleSessionExpiresButNotWhileARequestIsInFlight() {
        var table = SessionTable<Int>(settings: MCPHTTPSettings(idleTimeoutSeconds: 60))
        table.opened("idle", handle: 1, owner: "a", now: start)
        table.opened("busy", handle: 2, owner: "a", now: start)
        _ = post(&table, session: "busy", rpcID: "n:5")
        #expect(table.expire(now: start + .seconds(60)).isEmpty, "exactly the timeout is not past it")
        #expect(table.expire(now: start + .seconds(61)) == [1])
        #expect(status(post(&table, session: "idle", after: 61)) == 404)
        table.finished("busy", rpcID: "n:5", now: start + .seconds(61))
        #expect(table.expire(now: start + .seconds(121)).isEmpty)
        #expect(table.expire(now: start + .seconds(122)) == [2])
    }
}
