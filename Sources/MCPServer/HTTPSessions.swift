import Foundation
import Logging
import MCP

/// Settings of Streamable HTTP at `/mcp`.
public struct MCPHTTPSettings: Sendable, Equatable {
    /// Browser origins allowed besides the server's own (`scheme://host[:port]`, exact).
    public var allowedOrigins: [String]
    /// A session unused this long is ended; its next request gets 404 and the client starts anew.
    public var idleTimeoutSeconds: Int
    /// Sessions open at once, all tokens; an `initialize` beyond it gets 503.
    public var maxSessions: Int
    public var allowMigration: Bool

    public init(
        allowedOrigins: [String] = [], idleTimeoutSeconds: Int = 1800, maxSessions: Int = 200,
        allowMigration: Bool = false
    ) {
        self.allowedOrigins = allowedOrigins
        self.idleTimeoutSeconds = idleTimeoutSeconds
        self.maxSessions = maxSessions
        self.allowMigration = allowMigration
    }

    /// `MAILPORTER_MCP_ALLOWED_ORIGINS` (comma-separated), `MAILPORTER_MCP_SESSION_IDLE_SECONDS`,
    /// `MAILPORTER_MCP_MAX_SESSIONS` and `MAILPORTER_ALLOW_MIGRATION`.
    public init(environment: [String: String]) throws(MCPConfigurationError) {
        func number(_ name: String, default fallback: Int, range: ClosedRange<Int>) throws(MCPConfigurationError)
            -> Int
        {
            guard let text = environment[name]?.trimmingCharacters(in: .whitespaces), !text.isEmpty else {
                return fallback
            }
            guard let value = Int(text), range.contains(value) else {
                throw MCPConfigurationError(
                    "\(name) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
            return value
        }
        var origins: [String] = []
        for item in (environment["MAILPORTER_MCP_ALLOWED_ORIGINS"] ?? "").split(separator: ",") {
            let origin = item.trimmingCharacters(in: .whitespaces)
            if origin.isEmpty { continue }
            guard let normalized = Self.normalizedOrigin(origin) else {
                throw MCPConfigurationError(
                    "MAILPORTER_MCP_ALLOWED_ORIGINS holds \"\(origin.prefix(80))\", which is not an origin such as https://agent.example.com"
                )
            }
            origins.append(normalized)
        }
        self.init(
            allowedOrigins: origins,
            idleTimeoutSeconds: try number("MAILPORTER_MCP_SESSION_IDLE_SECONDS", default: 1800, range: 1...86400),
            maxSessions: try number("MAILPORTER_MCP_MAX_SESSIONS", default: 200, range: 1...100_000),
            allowMigration: try MCPConfiguration.allowMigration(environment))
    }

    /// `scheme://host[:port]` in lower case, or nil for anything else (a path, a query, `null`).
    static func normalizedOrigin(_ text: String) -> String? {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            scheme == "http" || scheme == "https", let host = components.host?.lowercased(), !host.isEmpty,
            components.path.isEmpty || components.path == "/", components.query == nil, components.user == nil
        else { return nil }
        let port = components.port.map { ":\($0)" } ?? ""
        return "\(scheme)://\(host)\(port)"
    }

    /// Whether a request with this `Origin` may go on: none (not a browser), an allowed one, or
    /// the server's own (`host`, the request's `Host`). A foreign page must not drive an agent's
    /// token through a user's browser (DNS rebinding included).
    public func allows(origin: String?, host: String?) -> Bool {
        guard let origin else { return true }
        guard let normalized = Self.normalizedOrigin(origin) else { return false }
        if allowedOrigins.contains(normalized) { return true }
        guard let host = host?.lowercased(), !host.isEmpty else { return false }
        return normalized == "http://\(host)" || normalized == "https://\(host)"
    }
}

/// The bookkeeping of `/mcp` sessions as a value, one mutating method per input returning what to do:
/// which sessions exist, whose they are, when each was last used, which JSON-RPC ids are in flight,
/// and how many are being opened (a slot is reserved before the `Server` starts, so concurrent
/// `initialize`s cannot pass the cap). `Handle` is what a session runs on (a `Server` and its
/// transport in `serve`, anything in tests).
struct SessionTable<Handle> {
    struct Entry {
        var handle: Handle
        var owner: String
        var lastUsed: ContinuousClock.Instant
        var inFlight: Set<String> = []
    }

    /// What `receive` decided.
    enum Action {
        case reject(status: Int, message: String, headers: [String: String])
        /// Start a session for `owner`, then report `opened` or `openFailed`.
        case open(id: String)
        /// Pass the request to the session, then report `finished`.
        case forward(id: String, handle: Handle)
        /// The session is gone from the table: stop it.
        case close(handle: Handle)
    }

    let settings: MCPHTTPSettings
    private(set) var entries: [String: Entry] = [:]
    private(set) var opening: Set<String> = []

    init(settings: MCPHTTPSettings) { self.settings = settings }

    /// One request: its method, `Mcp-Session-Id`, `Origin`, `Host`, token, whether it is an
    /// `initialize`, and its JSON-RPC id. `newID` names the session an `initialize` would open.
    mutating func receive(
        method: String, sessionID: String?, origin: String?, host: String?, owner: String,
        isInitialize: Bool, rpcID: String?, now: ContinuousClock.Instant, newID: String
    ) -> Action {
        guard settings.allows(origin: origin, host: host) else {
            return .reject(status: 403, message: "Forbidden: this Origin may not use the MCP endpoint", headers: [:])
        }
        guard method == "POST" || method == "DELETE" else {
            // No server-initiated messages here, so no GET stream (the spec allows 405).
            return .reject(status: 405, message: "Method Not Allowed", headers: [HTTPHeaderName.allow: "POST, DELETE"])
        }
        guard let sessionID else {
            guard method == "POST", isInitialize else {
                return .reject(
                    status: 400, message: "Bad Request: send initialize first, or the Mcp-Session-Id it gave",
                    headers: [:])
            }
            guard entries.count + opening.count < settings.maxSessions else {
                return .reject(
                    status: 503, message: "Service Unavailable: too many MCP sessions are open; try again later",
                    headers: ["Retry-After": "30"])
            }
            opening.insert(newID)
            return .open(id: newID)
        }
        guard var entry = entries[sessionID], entry.owner == owner else {
            return .reject(
                status: 404, message: "Not Found: unknown or expired session; initialize again", headers: [:])
        }
        if method == "DELETE" {
            entries[sessionID] = nil
            return .close(handle: entry.handle)
        }
        if let rpcID {
            guard !entry.inFlight.contains(rpcID) else {
                return .reject(
                    status: 409, message: "Conflict: a request with this id is already in flight",
                    headers: [HTTPHeaderName.sessionID: sessionID])
            }
            entry.inFlight.insert(rpcID)
        }
        entry.lastUsed = now
        entries[sessionID] = entry
        return .forward(id: sessionID, handle: entry.handle)
    }

    /// The session `id` started and answered its `initialize` well.
    mutating func opened(_ id: String, handle: Handle, owner: String, now: ContinuousClock.Instant) {
        opening.remove(id)
        entries[id] = Entry(handle: handle, owner: owner, lastUsed: now)
    }

    mutating func openFailed(_ id: String) {
        opening.remove(id)
    }

    /// A forwarded request has its answer.
    mutating func finished(_ id: String, rpcID: String?, now: ContinuousClock.Instant) {
        guard var entry = entries[id] else { return }
        if let rpcID { entry.inFlight.remove(rpcID) }
        entry.lastUsed = now
        entries[id] = entry
    }

    /// Removes the sessions idle longer than the timeout (none with a request in flight); answers
    /// them, to be stopped.
    mutating func expire(now: ContinuousClock.Instant) -> [Handle] {
        let limit = Duration.seconds(settings.idleTimeoutSeconds)
        let expired = entries.filter { now - $0.value.lastUsed > limit && $0.value.inFlight.isEmpty }
        for id in expired.keys { entries[id] = nil }
        return expired.map(\.value.handle)
    }
}

/// The `/mcp` sessions of `serve`: one `Server` and one transport per `Mcp-Session-Id`, since a
/// `Server` refuses a second `initialize` and one shared transport would mix up the answers of
/// clients that reuse JSON-RPC ids. Each session's transport answers with plain JSON and keeps
/// nothing after the answer, so a session holds only its requests in flight. A session is owned by
/// the token that opened it; another token gets 404 as if it did not exist. The rules are
/// `SessionTable`'s; this actor runs what it decides.
public actor MCPHTTPSessions {
    struct Session: Sendable {
        var server: Server
        var transport: StatelessHTTPServerTransport
    }

    public let settings: MCPHTTPSettings
    let logger: Logger
    private var table: SessionTable<Session>
    private let clock = ContinuousClock()

    public init(settings: MCPHTTPSettings, logger: Logger) {
        self.settings = settings
        self.logger = logger
        table = SessionTable(settings: settings)
    }

    public var count: Int { table.entries.count }

    /// Handles one HTTP request to `/mcp` whose token is already checked. `owner` names the token;
    /// `caller` reaches the API with it, for a session this request opens.
    public func handle(_ request: HTTPRequest, owner: String, caller: any APICaller) async -> HTTPResponse {
        let expired = table.expire(now: clock.now)
        for session in expired { Task { await session.server.stop() } }
        if !expired.isEmpty {
            logger.info(
                "mcp sessions expired", metadata: ["expired": "\(expired.count)", "sessions": "\(table.entries.count)"])
        }
        let rpcID = Self.requestID(request.body)
        let action = table.receive(
            method: request.method.uppercased(), sessionID: request.header(HTTPHeaderName.sessionID),
            origin: request.header("Origin"), host: request.header("Host"), owner: owner,
            isInitialize: request.body.map(Self.isInitialize) ?? false, rpcID: rpcID, now: clock.now,
            newID: Self.newSessionID())
        switch action {
        case .reject(let status, let message, let headers):
            return .error(statusCode: status, .invalidRequest(message), extraHeaders: headers)
        case .close(let session):
            await session.server.stop()
            logger.info("mcp session closed", metadata: ["sessions": "\(table.entries.count)"])
            return .ok(headers: [:])
        case .forward(let id, let session):
            let response = await session.transport.handleRequest(request)
            table.finished(id, rpcID: rpcID, now: clock.now)
            return Self.adding(sessionID: id, to: response)
        case .open(let id):
            return await open(id, request, owner: owner, caller: caller)
        }
    }

    private func open(_ id: String, _ request: HTTPRequest, owner: String, caller: any APICaller) async
        -> HTTPResponse
    {
        let transport = StatelessHTTPServerTransport(
            validationPipeline: StandardValidationPipeline(validators: [
                AcceptHeaderValidator(mode: .jsonOnly), ContentTypeValidator(), ProtocolVersionValidator(),
            ]),
            logger: logger)
        let tools = MailporterTools(caller: caller, allowMigration: settings.allowMigration, logger: logger)
        let server = await MailporterMCPServer.make(tools: tools)
        do {
            try await server.start(transport: transport)
        } catch {
            table.openFailed(id)
            return .error(statusCode: 500, .internalError("The MCP session could not start"))
        }
        let response = await transport.handleRequest(request)
        guard response.statusCode < 400 else {
            table.openFailed(id)
            await server.stop()
            return response
        }
        table.opened(id, handle: Session(server: server, transport: transport), owner: owner, now: clock.now)
        logger.info("mcp session opened", metadata: ["sessions": "\(table.entries.count)"])
        return Self.adding(sessionID: id, to: response)
    }

    static func newSessionID() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<16).map { _ in
            let byte = UInt8.random(in: .min ... .max, using: &generator)
            return (byte < 16 ? "0" : "") + String(byte, radix: 16)
        }.joined()
    }

    static func adding(sessionID: String, to response: HTTPResponse) -> HTTPResponse {
        switch response {
        case .accepted(var headers):
            headers[HTTPHeaderName.sessionID] = sessionID
            return .accepted(headers: headers)
        case .ok(var headers):
            headers[HTTPHeaderName.sessionID] = sessionID
            return .ok(headers: headers)
        case .data(let data, var headers):
            headers[HTTPHeaderName.sessionID] = sessionID
            return .data(data, headers: headers)
        case .stream(let stream, var headers):
            headers[HTTPHeaderName.sessionID] = sessionID
            return .stream(stream, headers: headers)
        case .error(let status, let error, _, let extra):
            return .error(statusCode: status, error, sessionID: sessionID, extraHeaders: extra)
        }
    }

    static func json(_ body: Data?) -> [String: Any]? {
        guard let body else { return nil }
        return (try? JSONSerialization.jsonObject(with: body)) as? [String: Any]
    }

    static func isInitialize(_ body: Data) -> Bool {
        json(body)?["method"] as? String == "initialize" && json(body)?["id"] != nil
    }

    /// The JSON-RPC id of a request (not of a notification or a response).
    static func requestID(_ body: Data?) -> String? {
        guard let object = json(body), object["method"] is String, let id = object["id"] else { return nil }
        if let text = id as? String { return "s:" + text }
        if let number = id as? NSNumber { return "n:" + number.stringValue }
        return nil
    }
}
