import Foundation
import Logging
import MCP
import Synchronization
import Testing

@testable import MCPServer

/// The API as a script: records every request and answers from `answer`; no sockets.
final class ScriptedAPI: APICaller {
    private let sent = Mutex<[APIRequest]>([])
    let answer: @Sendable (APIRequest, Int) -> APIResponse

    init(answer: @escaping @Sendable (APIRequest, Int) -> APIResponse) { self.answer = answer }

    var requests: [APIRequest] { sent.withLock { $0 } }

    func call(_ request: APIRequest) async throws -> APIResponse {
        let index = sent.withLock { list in
            list.append(request)
            return list.count - 1
        }
        return answer(request, index)
    }

    static func json(_ status: Int, _ text: String, headers: [String: String] = [:]) -> APIResponse {
        APIResponse(
            status: status, headers: headers.merging(["content-type": "application/json"]) { $1 },
            body: Array(text.utf8))
    }

    static let me = json(
        200, #"{"capabilities":{"effective_scopes":["migrations:read","migrations:write"]}}"#)
}

/// Every log line, message and metadata, as text.
final class CapturedLog: Sendable {
    let lines = Mutex<[String]>([])

    var text: String { lines.withLock { $0.joined(separator: "\n") } }

    var logger: Logger {
        Logger(label: "test") { _ in Handler(log: self) }
    }

    struct Handler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let line = "\(event.message) \(event.metadata ?? [:]) \(metadata)"
            log.lines.withLock { $0.append(line) }
        }
    }
}

/// The waits a retry asked for.
final class Sleeps: Sendable {
    let values = Mutex<[Int]>([])
    var list: [Int] { values.withLock { $0 } }
}

func text(_ result: CallTool.Result) -> String {
    result.content.map { content in
        if case .text(let text, _, _) = content { return text }
        return ""
    }.joined(separator: "\n")
}

@Suite("MCP tool table")
struct ToolCatalogTests {
    static let specNames = [
        "test_migration_connection", "list_migrations", "get_migration", "start_migration", "cancel_migration",
        "retry_migration", "delete_migration", "preview_bulk_migration", "start_bulk_migration",
        "list_bulk_migrations", "get_bulk_migration", "cancel_bulk_migration", "retry_bulk_migration",
        "resume_bulk_migration", "delete_bulk_migration", "update_bulk_migration_job_password",
    ]

    func properties(_ tool: ToolDefinition) -> [String: Value] {
        tool.inputSchema.objectValue?["properties"]?.objectValue ?? [:]
    }

    func required(_ tool: ToolDefinition) -> Set<String> {
        Set(tool.inputSchema.objectValue?["required"]?.arrayValue?.compactMap(\.stringValue) ?? [])
    }

    @Test func theSixteenToolsOfTheSpecEachWithTitleDescriptionAndObjectSchemas() {
        #expect(ToolCatalog.all.map(\.name) == Self.specNames)
        for tool in ToolCatalog.all {
            #expect(!tool.title.isEmpty && tool.description.count > 60, "\(tool.name)")
            #expect(tool.inputSchema.objectValue?["type"] == "object", "\(tool.name)")
            #expect(tool.outputSchema.objectValue?["type"] == "object", "\(tool.name)")
            #expect(required(tool).isSubset(of: Set(properties(tool).keys)), "\(tool.name)")
            for (name, schema) in properties(tool) {
                let type = schema.objectValue?["type"]?.stringValue
                if name.hasSuffix("_id") || name.hasSuffix("_port") || name == "page" || name == "per_page" {
                    #expect(type == "integer", "\(tool.name).\(name)")
                }
                if name.hasPrefix("confirm_") || ["skip_duplicates", "per_row_server", "check_logins"].contains(name) {
                    #expect(type == "boolean", "\(tool.name).\(name)")
                }
            }
        }
    }

    @Test func idsAreNamedForWhatTheyIdentifyAndRequired() {
        let ids = Dictionary(uniqueKeysWithValues: ToolCatalog.all.map { ($0.name, $0.ids) })
        #expect(ids["get_migration"] == ["migration_id"])
        #expect(ids["delete_bulk_migration"] == ["batch_id"])
        #expect(ids["update_bulk_migration_job_password"] == ["batch_id", "job_id"])
        for tool in ToolCatalog.all { #expect(Set(tool.ids).isSubset(of: required(tool)), "\(tool.name)") }
    }

    @Test func enumsListProvidersSecuritiesStatusesAndFolderStrategies() throws {
        func values(_ tool: String, _ field: String) -> [String] {
            let definition = ToolCatalog.named(tool)
            return definition.flatMap {
                properties($0)[field]?.objectValue?["enum"]?.arrayValue?.compactMap(\.stringValue)
            }
                ?? []
        }
        #expect(values("start_migration", "provider") == ["gmail", "outlook", "yahoo", "icloud", "generic_imap"])
        #expect(values("test_migration_connection", "source_security") == ["ssl", "tls", "none"])
        #expect(values("start_bulk_migration", "source_security") == ["ssl", "tls", "none"])
        #expect(
            values("list_migrations", "status")
                == ["pending", "validating", "planning", "processing", "completed", "failed", "cancelled"])
        #expect(
            values("list_bulk_migrations", "status")
                == ["queued", "processing", "paused", "completed", "completed_with_errors", "cancelled"])
        #expect(values("start_bulk_migration", "folder_strategy") == ["all", "standard", "inbox_only"])
    }

    @Test func confirmationsAndTheGateFollowTheSpec() {
        let confirm = Dictionary(uniqueKeysWithValues: ToolCatalog.all.map { ($0.name, $0.confirmation) })
        #expect(confirm["start_migration"] == "confirm_start" && confirm["start_bulk_migration"] == "confirm_start")
        #expect(confirm["cancel_migration"] == "confirm_cancel" && confirm["cancel_bulk_migration"] == "confirm_cancel")
        #expect(confirm["retry_migration"] == "confirm_retry" && confirm["retry_bulk_migration"] == "confirm_retry")
        #expect(confirm["delete_migration"] == "confirm_delete" && confirm["delete_bulk_migration"] == "confirm_delete")
        #expect(confirm["resume_bulk_migration"] == "confirm_resume")
        for tool in ToolCatalog.all where tool.confirmation != nil {
            #expect(required(tool).contains(tool.confirmation ?? ""), "\(tool.name)")
        }
        let ungatedWrites = ToolCatalog.all.filter { $0.scope == .write && !$0.needsAllowMigration }.map(\.name)
        #expect(ungatedWrites == ["cancel_migration", "cancel_bulk_migration", "resume_bulk_migration"])
        #expect(ToolCatalog.all.filter { $0.scope == .read }.allSatisfy { !$0.needsAllowMigration })
    }

    @Test func annotationsMarkReadsDeletesAndIdempotentChanges() {
        for tool in ToolCatalog.all {
            let hints = tool.annotations
            if tool.scope == .read { #expect(hints.readOnlyHint == true, "\(tool.name)") }
            if tool.method == "DELETE" {
                #expect(hints.destructiveHint == true && hints.readOnlyHint == false, "\(tool.name)")
            } else {
                #expect(hints.destructiveHint != true, "\(tool.name)")
            }
            if tool.name.hasPrefix("cancel_") || tool.name.hasPrefix("retry_") {
                #expect(hints.idempotentHint == true, "\(tool.name)")
            }
            if tool.name.hasPrefix("start_") { #expect(hints.readOnlyHint == false, "\(tool.name)") }
        }
    }

    @Test func descriptionsTellAnAgentToPollAtTheHint() {
        for name in ["get_migration", "start_migration", "get_bulk_migration", "start_bulk_migration"] {
            #expect(ToolCatalog.named(name)?.description.contains("poll_hint_seconds") == true, "\(name)")
        }
    }

    /// Each REST field of a tool exists in the API's request schema (openapi.json), with its type and enum.
    @Test func fieldsMatchTheOpenAPIDocument() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/HTTPAPI/Resources/openapi.json")
        let document = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let schemas = try #require((document["components"] as? [String: Any])?["schemas"] as? [String: Any])
        let requests = [
            "test_migration_connection": "TestConnectionRequest", "start_migration": "StartMigrationRequest",
            "preview_bulk_migration": "BulkPreviewRequest", "start_bulk_migration": "StartBulkMigrationRequest",
            "update_bulk_migration_job_password": "UpdateJobPasswordRequest",
        ]
        for (toolName, schemaName) in requests {
            let tool = try #require(ToolCatalog.named(toolName))
            let schema = try #require(schemas[schemaName] as? [String: Any])
            let api = try #require(schema["properties"] as? [String: [String: Any]])
            let apiRequired = Set(schema["required"] as? [String] ?? [])
            for field in tool.fields {
                let apiField = try #require(api[field.name], "\(toolName).\(field.name) is not in \(schemaName)")
                let ours = field.schema.objectValue ?? [:]
                let apiType = (apiField["type"] as? String) ?? (apiField["type"] as? [String])?.first { $0 != "null" }
                #expect(ours["type"]?.stringValue == apiType, "\(toolName).\(field.name)")
                if let apiEnum = apiField["enum"] as? [String] {
                    #expect(ours["enum"]?.arrayValue?.compactMap(\.stringValue) == apiEnum, "\(toolName).\(field.name)")
                }
                #expect(field.required == apiRequired.contains(field.name), "\(toolName).\(field.name)")
            }
            for name in apiRequired { #expect(tool.fields.contains { $0.name == name }, "\(toolName) lacks \(name)") }
        }
    }
}

@Suite("MCP tool calls: gate, confirmations, API answers")
struct ToolCallTests {
    static let startArguments: [String: Value] = [
        "mailbox_id": 3, "provider": "generic_imap", "source_host": "imap.old.example", "source_port": 993,
        "source_security": "ssl", "source_email": "jane@old.example", "source_password": "s3cret-Pass!",
    ]

    func tools(_ api: ScriptedAPI, allow: Bool, log: CapturedLog = CapturedLog(), sleeps: Sleeps = Sleeps())
        -> MailporterTools
    {
        MailporterTools(
            caller: api, allowMigration: allow, logger: log.logger,
            sleep: { seconds in sleeps.values.withLock { $0.append(seconds) } }, makeKey: { "key-1" })
    }

    @Test func theGateHidesAndRefusesEveryWriteButCancelAndResume() async throws {
        let api = ScriptedAPI { _, _ in ScriptedAPI.me }
        let listed = try await tools(api, allow: false).listTools().map(\.name)
        #expect(
            listed == [
                "list_migrations", "get_migration", "cancel_migration", "list_bulk_migrations",
                "get_bulk_migration", "cancel_bulk_migration", "resume_bulk_migration",
            ])
        #expect(try await tools(api, allow: true).listTools().count == 16)
        let before = api.requests.count
        var arguments = Self.startArguments
        arguments["confirm_start"] = true
        let refused = await tools(api, allow: false).call("start_migration", arguments: arguments)
        #expect(refused.isError == true)
        #expect(text(refused).contains("MAILPORTER_ALLOW_MIGRATION"), "\(text(refused))")
        #expect(api.requests.count == before, "a refused tool sent nothing")

        let cancel = await tools(api, allow: false).call(
            "cancel_migration", arguments: ["migration_id": 7, "confirm_cancel": true])
        #expect(cancel.isError != true)
        #expect(api.requests.last?.method == "POST" && api.requests.last?.path == "/api/v1/migrations/7:cancel")
    }

    @Test func aReadOnlyTokenListsOnlyTheReadTools() async throws {
        let api = ScriptedAPI { _, _ in
            ScriptedAPI.json(200, #"{"capabilities":{"effective_scopes":["migrations:read"]}}"#)
        }
        let listed = try await tools(api, allow: true).listTools().map(\.name)
        #expect(listed == ["list_migrations", "get_migration", "list_bulk_migrations", "get_bulk_migration"])
    }

    @Test func aWriteWithoutItsConfirmationNamesItAndCallsNothing() async {
        let api = ScriptedAPI { _, _ in ScriptedAPI.json(201, #"{"data":{"id":1,"status":"pending"}}"#) }
        for confirm: Value? in [nil, false, "true"] {
            var arguments = Self.startArguments
            arguments["confirm_start"] = confirm
            let result = await tools(api, allow: true).call("start_migration", arguments: arguments)
            #expect(result.isError == true)
            #expect(text(result).contains("confirm_start"), "\(text(result))")
        }
        for (tool, argument) in [
            ("delete_migration", "confirm_delete"), ("retry_bulk_migration", "confirm_retry"),
            ("resume_bulk_migration", "confirm_resume"), ("cancel_bulk_migration", "confirm_cancel"),
        ] {
            let id = tool.contains("bulk") ? "batch_id" : "migration_id"
            let result = await tools(api, allow: true).call(tool, arguments: [id: 4])
            #expect(result.isError == true && text(result).contains(argument), "\(tool): \(text(result))")
        }
        #expect(api.requests.isEmpty)
    }

    @Test func aConfirmedStartSendsTheRESTFieldsWithAnIdempotencyKeyAndAnswersTheRecord() async throws {
        let record = #"{"data":{"id":12,"status":"pending","poll_hint_seconds":5}}"#
        let api = ScriptedAPI { _, _ in ScriptedAPI.json(201, record) }
        var arguments = Self.startArguments
        arguments["confirm_start"] = true
        let result = await tools(api, allow: true).call("start_migration", arguments: arguments)
        #expect(result.isError == false)
        #expect(text(result) == record)
        #expect(result.structuredContent?.objectValue?["data"]?.objectValue?["id"] == 12)
        let sent = try #require(api.requests.first)
        #expect(sent.method == "POST" && sent.path == "/api/v1/migrations" && sent.idempotencyKey == "key-1")
        let body = try #require(try JSONDecoder().decode(Value.self, from: Data(sent.body ?? [])).objectValue)
        #expect(Set(body.keys) == Set(Self.startArguments.keys), "confirm_start is not a REST field")
        #expect(body["source_port"] == 993)
    }

    @Test func listFiltersGoIntoTheQueryAndBadIdsAreRefused() async {
        let api = ScriptedAPI { _, _ in ScriptedAPI.json(200, #"{"data":[],"meta":{},"links":{}}"#) }
        _ = await tools(api, allow: false).call(
            "list_migrations", arguments: ["status": "failed", "mailbox_id": 2, "per_page": 5])
        #expect(api.requests.last?.path == "/api/v1/migrations?status=failed&mailbox_id=2&per_page=5")
        #expect(api.requests.last?.body == nil && api.requests.last?.idempotencyKey == nil)
        for bad: Value in [0, -3, "x", 1.5, nil] {
            let result = await tools(api, allow: false).call("get_migration", arguments: ["migration_id": bad])
            #expect(result.isError == true && text(result).contains("migration_id"))
        }
        let unknown = await tools(api, allow: false).call("get_migration", arguments: ["migration_id": 1, "id": 1])
        #expect(unknown.isError == true && text(unknown).contains("does not take id"))
        #expect(api.requests.count == 1)
    }

    @Test func anAPIErrorBecomesAnErrorResultWithCodeMessageAndHint() async {
        let envelope = #"""
            {"error":{"code":"conflict","message":"The account already has an active migration.","hint":"Wait for it to finish or cancel it first.","request_id":"req_1","retryable":false}}
            """#
        let api = ScriptedAPI { _, _ in ScriptedAPI.json(409, envelope) }
        let result = await tools(api, allow: true).call(
            "retry_migration", arguments: ["migration_id": 5, "confirm_retry": true])
        #expect(result.isError == true)
        let shown = text(result)
        #expect(shown.contains("conflict") && shown.contains("already has an active migration"))
        #expect(shown.contains("Wait for it to finish or cancel it first."))
        #expect(result.structuredContent?.objectValue?["error"]?.objectValue?["code"] == "conflict")
    }

    @Test func aDeleteAnswersWhatWasDeleted() async {
        let api = ScriptedAPI { _, _ in APIResponse(status: 204) }
        let result = await tools(api, allow: true).call(
            "delete_bulk_migration", arguments: ["batch_id": 9, "confirm_delete": true])
        #expect(result.isError == false)
        #expect(result.structuredContent == ["deleted": true, "batch_id": 9])
        #expect(api.requests.first?.method == "DELETE" && api.requests.first?.path == "/api/v1/migrations/bulk/9")
    }

    @Test func retryAfterIsHonouredBoundedAndWithTheSameKey() async {
        let sleeps = Sleeps()
        let limited =
            #"{"error":{"code":"rate_limited","message":"More than 10 migration writes per minute for this token.","hint":"Wait 40 seconds before sending more.","request_id":"r","retryable":true,"retry_after":40}}"#
        let api = ScriptedAPI { _, index in
            index == 0
                ? ScriptedAPI.json(429, limited, headers: ["Retry-After": "2"])
                : ScriptedAPI.json(200, #"{"data":{"id":5,"status":"cancelled"}}"#)
        }
        let result = await tools(api, allow: false, sleeps: sleeps).call(
            "cancel_migration", arguments: ["migration_id": 5, "confirm_cancel": true])
        #expect(result.isError == false)
        #expect(sleeps.list == [2])
        #expect(api.requests.count == 2 && Set(api.requests.map(\.idempotencyKey)) == ["key-1"])

        let stuck = ScriptedAPI { _, _ in ScriptedAPI.json(503, limited, headers: ["Retry-After": "3600"]) }
        let waits = Sleeps()
        let given = await tools(stuck, allow: false, sleeps: waits).call(
            "cancel_migration", arguments: ["migration_id": 5, "confirm_cancel": true])
        #expect(given.isError == true && text(given).contains("rate_limited"))
        #expect(stuck.requests.count == RetryPolicy().maxAttempts)
        #expect(!waits.list.isEmpty && waits.list.allSatisfy { $0 <= RetryPolicy().maxWaitSeconds })
    }

    @Test func noPasswordInLogsOrRefusals() async {
        let log = CapturedLog()
        let api = ScriptedAPI { _, _ in
            ScriptedAPI.json(
                422,
                #"{"error":{"code":"validation_error","message":"m","hint":"h","request_id":"r","retryable":false,"fields":{"source_host":"is required"}}}"#
            )
        }
        var arguments = Self.startArguments
        arguments["confirm_start"] = true
        let result = await tools(api, allow: true, log: log).call("start_migration", arguments: arguments)
        #expect(text(result).contains("source_host is required"), "\(text(result))")
        arguments["confirm_start"] = nil
        let refused = await tools(api, allow: true, log: log).call("start_migration", arguments: arguments)
        #expect(!log.text.isEmpty)
        for shown in [log.text, text(result), text(refused)] { #expect(!shown.contains("s3cret-Pass!")) }
    }
}

@Suite("MCP settings")
struct MCPConfigurationTests {
    @Test func allowMigrationIsExactlyTrueOrFalseAndFalseByDefault() throws {
        #expect(try MCPConfiguration.allowMigration([:]) == false)
        #expect(try MCPConfiguration.allowMigration(["MAILPORTER_ALLOW_MIGRATION": "false"]) == false)
        #expect(try MCPConfiguration.allowMigration(["MAILPORTER_ALLOW_MIGRATION": "true"]) == true)
        for value in ["TRUE", "1", "yes", " true", ""] {
            #expect(throws: MCPConfigurationError.self) {
                try MCPConfiguration.allowMigration(["MAILPORTER_ALLOW_MIGRATION": value])
            }
        }
    }

    @Test func stdioNeedsAnHTTPURLAndAToken() throws {
        let good = try StdioConfiguration(environment: [
            "MAILPORTER_URL": "http://127.0.0.1:8080/", "MAILPORTER_API_TOKEN": "mp_live_abc",
        ])
        #expect(good.baseURL == "http://127.0.0.1:8080" && good.allowMigration == false)
        for environment in [
            ["MAILPORTER_API_TOKEN": "mp_live_abc"],
            ["MAILPORTER_URL": "ftp://x", "MAILPORTER_API_TOKEN": "mp_live_abc"],
            ["MAILPORTER_URL": "http://127.0.0.1:8080"],
        ] {
            #expect(throws: MCPConfigurationError.self) { try StdioConfiguration(environment: environment) }
        }
        do {
            _ = try StdioConfiguration(environment: [
                "MAILPORTER_URL": "http://h", "MAILPORTER_API_TOKEN": "mp_live_secret",
                "MAILPORTER_ALLOW_MIGRATION": "on",
            ])
            Issue.record("accepted MAILPORTER_ALLOW_MIGRATION=on")
        } catch {
            #expect(error.description.contains("MAILPORTER_ALLOW_MIGRATION") && !error.description.contains("secret"))
        }
    }

    @Test func originsAreTheServersOwnOrConfigured() throws {
        let settings = try MCPHTTPSettings(environment: [
            "MAILPORTER_MCP_ALLOWED_ORIGINS": "https://Agent.example.com, http://localhost:3000"
        ])
        #expect(settings.allows(origin: nil, host: "127.0.0.1:8080"))
        #expect(settings.allows(origin: "http://127.0.0.1:8080", host: "127.0.0.1:8080"))
        #expect(settings.allows(origin: "https://agent.example.com", host: "mp.example.net"))
        #expect(settings.allows(origin: "http://localhost:3000", host: "mp.example.net"))
        #expect(!settings.allows(origin: "https://evil.example", host: "127.0.0.1:8080"))
        #expect(!settings.allows(origin: "null", host: "127.0.0.1:8080"))
        #expect(!settings.allows(origin: "http://localhost:3001", host: "mp.example.net"))
        #expect(throws: MCPConfigurationError.self) {
            try MCPHTTPSettings(environment: ["MAILPORTER_MCP_ALLOWED_ORIGINS": "agent.example.com/path"])
        }
    }
}
