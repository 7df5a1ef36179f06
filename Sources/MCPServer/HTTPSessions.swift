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

/// The `/mcp` sessions of `serve`: one `Server` and one transport per `Mcp-Session-Id`, since a
/// `Server` refuses a second `initialize` and one shared transport would mix up the answers of
/// clients that reuse JSON-RPC ids. Each session's transport answers with plain JSON and keeps
/// nothing after the answer, so a session holds only its requests in flight. A session is owned by
/// the token that opened it; another token gets 404 as if it did not exist.
public actor MCPHTTPSessions {
    struct Session {
        var server: Server
        var transport: StatelessHTTPServerTransport
        var owner: String
        var lastUsed: ContinuousClock.Instant
        var inFlight: Set<String>
    }

    public let settings: MCPHTTPSettings
    let logger: Logger
    private var sessions: [String: Session] = [:]
    private let clock = ContinuousClock()

    public init(settings: MCPHTTPSettings, logger: Logger) {
        self.settings = settings
        self.logger = logger
    }

    public var count: Int { sessions.count }

    /// Handles one HTTP request to `/mcp` whose token is already checked. `owner` names the token;
    /// `caller` reaches the API with it, for a session this request opens.
    public func handle(_ request: HTTPRequest, owner: String, caller: any APICaller) async -> HTTPResponse {
        expireIdle()
        guard settings.allows(origin: request.header("Origin"), host: request.header("Host")) else {
            return .error(statusCode: 403, .invalidRequest("Forbidden: this Origin may not use the MCP endpoint"))
        }
        let method = request.method.uppercased()
        guard method == "POST" || method == "DELETE" else {
            // No server-initiated messages here, so no GET stream (the spec allows 405).
            return .error(
                statusCode: 405, .invalidRequest("Method Not Allowed"),
                extraHeaders: [HTTPHeaderName.allow: "POST, DELETE"])
        }
        guard let id = request.header(HTTPHeaderName.sessionID) else {
            return await open(request, owner: owner, caller: caller)
        }
        guard var session = sessions[id], session.owner == owner else {
            return .error(statusCode: 404, .invalidRequest("Not Found: unknown or expired session; initialize again"))
        }
        session.lastUsed = clock.now
        sessions[id] = session
        if method == "DELETE" {
            sessions[id] = nil
            await session.server.stop()
            logger.info("mcp session closed", metadata: ["sessions": "\(sessions.count)"])
            return .ok(headers: [:])
        }
        let rpcID = Self.requestID(request.body)
        if let rpcID {
            guard !session.inFlight.contains(rpcID) else {
                return .error(
                    statusCode: 409, .invalidRequest("Conflict: a request with this id is already in flight"),
                    sessionID: id)
            }
            sessions[id]?.inFlight.insert(rpcID)
        }
        let response = await session.transport.handleRequest(request)
        if let rpcID { sessions[id]?.inFlight.remove(rpcID) }
        sessions[id]?.lastUsed = clock.now
        return Self.adding(sessionID: id, to: response)
    }

    private func open(_ request: HTTPRequest, owner: String, caller: any APICaller) async -> HTTPResponse {
        guard request.method.uppercased() == "POST", let body = request.body, Self.isInitialize(body) else {
            return .error(
                statusCode: 400, .invalidRequest("Bad Request: send initialize first, or the Mcp-Session-Id it gave"))
        }
        guard sessions.count < settings.maxSessions else {
            return .error(
                statusCode: 503,
                .invalidRequest("Service Unavailable: too many MCP sessions are open; try again later"),
                extraHeaders: ["Retry-After": "30"])
        }
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
            return .error(statusCode: 500, .internalError("The MCP session could not start"))
        }
        let id = Self.newSessionID()
        sessions[id] = Session(server: server, transport: transport, owner: owner, lastUsed: clock.now, inFlight: [])
        logger.info("mcp session opened", metadata: ["sessions": "\(sessions.count)"])
        let response = await transport.handleRequest(request)
        if response.statusCode >= 400 {
            sessions[id] = nil
            await server.stop()
            return response
        }
        return Self.adding(sessionID: id, to: response)
    }

    private func expireIdle() {
        let limit = Duration.seconds(settings.idleTimeoutSeconds)
        let now = clock.now
        let expired = sessions.filter { now - $0.value.lastUsed > limit && $0.value.inFlight.isEmpty }
        for (id, session) in expired {
            sessions[id] = nil
            Task { await session.server.stop() }
        }
        if !expired.isEmpty {
            logger.info(
                "mcp sessions expired", metadata: ["expired": "\(expired.count)", "sessions": "\(sessions.count)"])
        }
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
