import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MCP
import MCPServer
import NIOCore
import Synchronization

/// Streamable HTTP at `/mcp` (SPEC.md §9): the Hummingbird side of `MCPHTTPSessions`. Every
/// request passes `AuthMiddleware` as a REST request does (401, rate limits); each tool then calls
/// the REST routes in process, through the same router responder and its middleware, so scopes,
/// rate limits, idempotency and audit events are the REST API's own, with no second hop over
/// loopback HTTP and no second listener to secure.
struct MCPRoutes {
    static let requestIDHeader = "X-Mailporter-Outer-Request-Id"
    static let clientIPHeader = "X-Mailporter-Outer-Client-Ip"

    let environment: APIEnvironment
    let sessions: MCPHTTPSessions
    /// The REST routes alone (no `/mcp`), for the tools' in-process calls.
    let api: RouterResponder<APIContext>

    func register(on router: Router<APIContext>) {
        let group = router.group("mcp").add(
            middleware: AuthMiddleware(store: environment.store, limits: environment.limits))
        group.post(use: handle)
        group.get(use: handle)
        group.delete(use: handle)
    }

    @Sendable func handle(_ request: Hummingbird.Request, context: APIContext) async throws -> Hummingbird.Response {
        let caller = try context.authenticated()
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: environment.limits.maxBulkBodyBytes)
        } catch {
            throw APIError.payloadTooLarge(environment.limits.maxBulkBodyBytes)
        }
        var headers: [String: String] = [:]
        for field in request.headers {
            let name = field.name.canonicalName
            // The two headers below are ours: a client cannot set them.
            if name == Self.requestIDHeader.lowercased() || name == Self.clientIPHeader.lowercased() { continue }
            headers[name] = headers[name].map { "\($0), \(field.value)" } ?? field.value
        }
        if let authority = request.head.authority { headers["host"] = authority }
        headers[Self.requestIDHeader] = context.requestID
        if let ip = context.clientIP { headers[Self.clientIPHeader] = ip }
        let mcpRequest = MCP.HTTPRequest(
            method: request.method.rawValue, headers: headers, body: Data(body.readableBytesView), path: "/mcp")
        let inProcess = InProcessAPICaller(
            responder: api, authorization: request.headers[.authorization] ?? "", clientIP: context.clientIP,
            requestID: context.requestID, logger: environment.logger)
        let answer = await sessions.handle(mcpRequest, owner: "token:\(caller.token.id)", caller: inProcess)
        return Self.response(answer)
    }

    static func response(_ answer: MCP.HTTPResponse) -> Hummingbird.Response {
        var fields = HTTPFields()
        for (name, value) in answer.headers {
            if let name = HTTPField.Name(name) { fields[name] = value }
        }
        if case .stream = answer {
            // The sessions' transport answers in JSON only.
            return Hummingbird.Response(status: .internalServerError)
        }
        let body = answer.bodyData.map { ResponseBody(byteBuffer: ByteBuffer(bytes: $0)) } ?? ResponseBody()
        return Hummingbird.Response(
            status: HTTPTypes.HTTPResponse.Status(code: answer.statusCode), headers: fields, body: body)
    }
}

/// The REST routes called in process with the session's token: the request goes through the same
/// middleware as one from the network (a migration write counts as one), its audit events carry the
/// `/mcp` request's id and address; the request itself was counted as its `/mcp` request.
struct InProcessAPICaller: APICaller {
    let responder: RouterResponder<APIContext>
    let authorization: String
    let clientIP: String?
    let requestID: String
    let logger: Logger

    func call(_ request: APIRequest) async throws -> APIResponse {
        // The `/mcp` request this tool call came in (headers set by `MCPRoutes.handle`).
        let current = MCP.Server.currentHandlerContext?.httpContext
        var fields = HTTPFields()
        fields[.authorization] = current?.header("Authorization") ?? authorization
        fields[.accept] = "application/json"
        fields[.requestID] = current?.header(MCPRoutes.requestIDHeader) ?? requestID
        if let key = request.idempotencyKey { fields[.idempotencyKey] = key }
        var buffer = ByteBuffer()
        if let body = request.body {
            fields[.contentType] = "application/json"
            fields[.contentLength] = String(body.count)
            buffer = ByteBuffer(bytes: body)
        }
        guard let method = HTTPTypes.HTTPRequest.Method(request.method) else {
            throw APIUnreachable(message: "The tool used an unknown HTTP method.", hint: "Report this as a bug.")
        }
        let head = HTTPTypes.HTTPRequest(
            method: method, scheme: "http", authority: "mailporter.internal", path: request.path, headerFields: fields)
        let context = APIContext(
            inProcess: logger, clientIP: current?.header(MCPRoutes.clientIPHeader) ?? clientIP)
        let response: Hummingbird.Response
        do {
            response = try await responder.respond(
                to: Hummingbird.Request(head: head, body: RequestBody(buffer: buffer)), context: context)
        } catch {
            throw APIUnreachable(
                message: "The API failed to handle the request.", hint: "Try again; see the server's log.")
        }
        let collected = CollectedBody()
        try await response.body.write(collected)
        var headers: [String: String] = [:]
        for field in response.headers { headers[field.name.canonicalName] = field.value }
        return APIResponse(status: response.status.code, headers: headers, body: collected.bytes)
    }
}

/// A response body gathered in memory (API answers are small JSON documents).
final class CollectedBody: ResponseBodyWriter, Sendable {
    private let storage = Mutex<[UInt8]>([])

    var bytes: [UInt8] { storage.withLock { $0 } }

    func write(_ buffer: ByteBuffer) async throws {
        storage.withLock { $0 += buffer.readableBytesView }
    }

    func finish(_ trailingHeaders: HTTPFields?) async throws {}
}

extension APIContext {
    struct InProcessSource: RequestContextSource {
        var logger: Logger
    }

    /// The context of a request made by an MCP tool in process (no channel of its own).
    init(inProcess logger: Logger, clientIP: String?) {
        self.coreContext = .init(source: InProcessSource(logger: logger))
        self.requestID = ""
        self.caller = nil
        self.clientIP = clientIP
        self.countedAsMCPRequest = true
    }
}
