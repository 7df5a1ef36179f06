import Foundation
import Logging
import MCP

/// The tools of one MCP session, calling the API through `caller` with the session's token.
public struct MailporterTools: Sendable {
    public let caller: any APICaller
    /// `MAILPORTER_ALLOW_MIGRATION`: off, the writes but cancel and resume are neither listed nor run.
    public let allowMigration: Bool
    public var retry: RetryPolicy
    var sleep: @Sendable (Int) async throws -> Void
    var makeKey: @Sendable () -> String
    let logger: Logger

    public init(
        caller: any APICaller, allowMigration: Bool, retry: RetryPolicy = RetryPolicy(), logger: Logger,
        sleep: @escaping @Sendable (Int) async throws -> Void = { try await Task.sleep(for: .seconds($0)) },
        makeKey: @escaping @Sendable () -> String = { "mcp-" + UUID().uuidString.lowercased() }
    ) {
        self.caller = caller
        self.allowMigration = allowMigration
        self.retry = retry
        self.logger = logger
        self.sleep = sleep
        self.makeKey = makeKey
    }

    /// The tools a token with `scopes` can use, as far as the gate allows.
    public static func visible(scopes: Set<String>, allowMigration: Bool) -> [ToolDefinition] {
        ToolCatalog.all.filter { scopes.contains($0.scope.rawValue) && (allowMigration || !$0.needsAllowMigration) }
    }

    /// The scopes the token holds and its plan allows, from `GET /api/v1/me`.
    public func effectiveScopes() async throws -> Set<String> {
        let response: APIResponse
        do {
            response = try await caller.call(
                APIRequest(method: "GET", path: "/api/v1/me"), retrying: retry, sleep: sleep)
        } catch {
            throw MCPError.internalError(Self.unreachable(error).message)
        }
        guard response.status == 200, let me = Self.decode(response.body)?.objectValue,
            let scopes = me["capabilities"]?.objectValue?["effective_scopes"]?.arrayValue
        else {
            let refusal = Self.apiRefusal(response)
            throw MCPError.internalError("\(refusal.code): \(refusal.message) \(refusal.hint)")
        }
        return Set(scopes.compactMap(\.stringValue))
    }

    public func listTools() async throws -> [Tool] {
        Self.visible(scopes: try await effectiveScopes(), allowMigration: allowMigration).map(\.tool)
    }

    public func call(_ name: String, arguments: [String: Value]) async -> CallTool.Result {
        guard let tool = ToolCatalog.named(name) else {
            return Self.errorResult(
                ToolRefusal(
                    code: "unknown_tool", message: "There is no tool named \(name).",
                    hint: "Call tools/list for the tools this token can use."))
        }
        let request: APIRequest
        switch tool.request(arguments, allowMigration: allowMigration, idempotencyKey: makeKey()) {
        case .failure(let refusal):
            logger.info("tool refused", metadata: ["tool": "\(name)", "code": "\(refusal.code)"])
            return Self.errorResult(refusal)
        case .success(let built):
            request = built
        }
        let started = ContinuousClock.now
        let response: APIResponse
        do {
            response = try await caller.call(request, retrying: retry, sleep: sleep)
        } catch {
            let refusal = Self.unreachable(error)
            logger.warning("tool failed", metadata: ["tool": "\(name)", "code": "\(refusal.code)"])
            return Self.errorResult(refusal)
        }
        let elapsed = ContinuousClock.now - started
        // Never the arguments or the body: they hold passwords.
        logger.info(
            "tool called",
            metadata: [
                "tool": "\(name)", "status": "\(response.status)",
                "ms": "\(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)",
            ])
        return Self.result(response, tool: tool, arguments: arguments)
    }

    // MARK: Results

    static func result(_ response: APIResponse, tool: ToolDefinition, arguments: [String: Value]) -> CallTool.Result {
        guard (200..<300).contains(response.status) else {
            let text = String(decoding: response.body, as: UTF8.self)
            let refusal = apiRefusal(response)
            var content: [Tool.Content] = [.text(text: refusal.summary, annotations: nil, _meta: nil)]
            if decode(response.body) != nil { content.append(.text(text: text, annotations: nil, _meta: nil)) }
            return CallTool.Result(
                content: content, structuredContent: (decode(response.body) ?? refusal.envelope) as Value?,
                isError: true)
        }
        if response.status == 204 || response.body.isEmpty {
            let ids = tool.ids.compactMap { arguments[$0].flatMap(ToolDefinition.positiveInteger) }
            let value = tool.noContent?(ids) ?? .object([:])
            return CallTool.Result(
                content: [.text(text: encode(value), annotations: nil, _meta: nil)], structuredContent: value as Value?,
                isError: false)
        }
        guard let value = decode(response.body), value.objectValue != nil else {
            return errorResult(
                ToolRefusal(
                    code: "unexpected_response",
                    message: "The API answered \(response.status) with a body that is not JSON.",
                    hint: "Check that MAILPORTER_URL points at the Mailporter server itself."))
        }
        return CallTool.Result(
            content: [.text(text: String(decoding: response.body, as: UTF8.self), annotations: nil, _meta: nil)],
            structuredContent: value as Value?, isError: false)
    }

    static func errorResult(_ refusal: ToolRefusal) -> CallTool.Result {
        CallTool.Result(
            content: [.text(text: refusal.summary, annotations: nil, _meta: nil)],
            structuredContent: refusal.envelope as Value?,
            isError: true)
    }

    /// The API's error envelope (SPEC.md §7) as a refusal; a body without one is named by its status.
    static func apiRefusal(_ response: APIResponse) -> ToolRefusal {
        if let error = decode(response.body)?.objectValue?["error"]?.objectValue,
            let code = error["code"]?.stringValue
        {
            var hint = error["hint"]?.stringValue ?? ""
            if let fields = error["fields"]?.objectValue, !fields.isEmpty {
                let listed = fields.keys.sorted().map { "\($0) \(fields[$0]?.stringValue ?? "is invalid")" }
                hint = (hint.isEmpty ? "" : hint + " ") + "Fields: " + listed.joined(separator: "; ") + "."
            }
            return ToolRefusal(code: code, message: error["message"]?.stringValue ?? "", hint: hint)
        }
        return ToolRefusal(
            code: "http_\(response.status)", message: "The API answered HTTP \(response.status).",
            hint: "Check MAILPORTER_URL and the server's log.")
    }

    static func unreachable(_ error: any Error) -> ToolRefusal {
        if let unreachable = error as? APIUnreachable {
            return ToolRefusal(code: "api_unreachable", message: unreachable.message, hint: unreachable.hint)
        }
        return ToolRefusal(
            code: "api_unreachable", message: "The Mailporter API did not answer.",
            hint: "Check MAILPORTER_URL and that the server is running.")
    }

    static func decode(_ bytes: [UInt8]) -> Value? {
        guard !bytes.isEmpty else { return nil }
        return try? JSONDecoder().decode(Value.self, from: Data(bytes))
    }

    static func encode(_ value: Value) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}

extension ToolRefusal {
    /// One line an agent (and its user) can read: code, message and hint.
    var summary: String { "Error \(code): \(message)" + (hint.isEmpty ? "" : " Hint: \(hint)") }

    var envelope: Value {
        ["error": ["code": .string(code), "message": .string(message), "hint": .string(hint)]]
    }
}

/// Builds the MCP `Server` of one session (stdio has one; HTTP one per `Mcp-Session-Id`, as a
/// `Server` refuses a second `initialize`).
public enum MailporterMCPServer {
    public static let version = "0.1.0"

    static let instructions = """
        Mailporter imports email from old IMAP mailboxes into this platform's mailboxes. Single import: \
        test_migration_connection, then start_migration (confirm_start: true), then get_migration every \
        poll_hint_seconds until completed or failed; on failure read error_hint. Bulk: preview_bulk_migration, \
        start_bulk_migration, get_bulk_migration. Writes need the user's agreement: set the confirm_* parameter \
        only after asking.
        """

    public static func make(tools: MailporterTools) async -> Server {
        let server = Server(
            name: "mailporter", version: version, title: "Mailporter", instructions: instructions,
            capabilities: .init(tools: .init(listChanged: false)))
        await server.withMethodHandler(ListTools.self) { _ in
            ListTools.Result(tools: try await tools.listTools())
        }
        await server.withMethodHandler(CallTool.self) { parameters in
            await tools.call(parameters.name, arguments: parameters.arguments ?? [:])
        }
        return server
    }
}
