import Foundation
import Hummingbird
import Logging
import MCPServer
import Prometheus
import Store

/// Builds the service's router: every route of the REST API plus health, metrics and the OpenAPI document.
public enum APIRouter {
    public static func make(_ environment: APIEnvironment) -> Router<APIContext> {
        let router = Router(context: APIContext.self)
        router.middlewares.add(
            ResponseEnvelopeMiddleware(
                logger: environment.logger,
                maxBodyBytes: environment.limits.maxBodyBytes))

        router.get("healthz") { _, _ in try await health(environment.store) }
        router.get("metrics") { _, _ in try await metrics(environment.store, environment.metrics) }
        router.get("api/v1/openapi.json") { _, _ in try openAPIResponse() }
        WebRoutes.register(on: router)

        let api = router.group("api/v1").add(
            middleware: AuthMiddleware(store: environment.store, limits: environment.limits))
        api.get("me") { _, context in try me(context, pools: environment.storagePools) }
        api.get("audit-events") { request, context in try await auditEvents(request, context, environment.store) }
        MigrationRoutes(environment: environment).register(on: api)
        BulkRoutes(environment: environment).register(on: api)
        MailboxRoutes(environment: environment).register(on: api)
        ReportRoutes(environment: environment).register(on: api)
        if let settings = environment.mcp {
            var restOnly = environment
            restOnly.mcp = nil
            MCPRoutes(
                environment: environment,
                sessions: MCPHTTPSessions(settings: settings, logger: environment.logger),
                api: make(restOnly).buildResponder()
            ).register(on: router)
        }
        return router
    }

    /// `/healthz` and `/metrics` alone, for `mailporter worker`'s listener: the same check and the
    /// same registry `serve` answers with; `status` adds fields to the health answer (the node).
    public static func makeOperations(
        store: Store, metrics registry: PrometheusCollectorRegistry, logger: Logger, status: [(String, String)] = []
    ) -> Router<APIContext> {
        let router = Router(context: APIContext.self)
        router.middlewares.add(
            ResponseEnvelopeMiddleware(logger: logger, maxBodyBytes: APILimits().maxBodyBytes, servesAPI: false))
        let extra = status.map { ($0.0, JSONValue.string($0.1)) }
        router.get("healthz") { _, _ in try await health(store, extra: extra) }
        router.get("metrics") { _, _ in try await metrics(store, registry) }
        return router
    }

    /// 200 while the database answers within `timeout`, else 503: a pool whose server is gone
    /// queues the check (it retries connecting for a while), and a probe wants an answer now.
    static func health(
        _ store: Store, extra: [(String, JSONValue)] = [], timeout: Duration = .seconds(5)
    ) async throws -> Response {
        let answered = await withTaskGroup(of: Bool.self) { group in
            group.addTask { (try? await store.schemaVersions()) != nil }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        guard answered else {
            throw APIError(
                .serviceUnavailable, code: .unavailable, message: "The database does not answer.",
                hint: "Check the database configured in MAILPORTER_DATABASE_URL.", retryable: true)
        }
        return jsonResponse(.object([("status", .string("ok"))] + extra))
    }

    static var byStatus: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "mailporter", metricName: "migrations", unitName: "",
            helpText: "Migrations by status.")
    }
    static var activeDescriptor: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "mailporter", metricName: "active_migrations",
            unitName: "", helpText: "Migrations validating, planning or processing.")
    }

    static func metrics(_ store: Store, _ registry: PrometheusCollectorRegistry) async throws -> Response {
        // Gauges come from the store at scrape time, so they are right for every node sharing it.
        let counts = try await store.statusCounts()
        var active = 0
        for status in MigrationStatus.allCases {
            let count = counts[status] ?? 0
            if status.isRunning { active += count }
            registry.makeGauge(descriptor: byStatus, labels: [("status", status.rawValue)]).set(
                Double(count))
        }
        registry.makeGauge(descriptor: activeDescriptor).set(Double(active))
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
    }

    static func me(_ context: APIContext, pools: StoragePools) throws -> Response {
        let caller = try context.authenticated()
        let account = caller.account
        let token = caller.token
        return jsonResponse(
            .object([
                (
                    "account",
                    .object([
                        ("id", .int(account.id)),
                        ("plan", .string(account.plan.rawValue)),
                        ("notification_email", .string(account.notificationEmail)),
                        ("created_at", Render.date(account.createdAt)),
                    ])
                ),
                (
                    "plan",
                    .object([
                        ("name", .string(account.plan.rawValue)),
                        ("migrations_allowed", .bool(account.plan.allowsMigrations)),
                        ("bulk_rows_per_batch", .int(account.plan.maxBulkRowsPerBatch)),
                        ("bulk_jobs_running_at_once", .int(account.plan.maxConcurrentBulkJobs)),
                        ("storage_pool_bytes", .int(pools.bytes(for: account.plan))),
                    ])
                ),
                (
                    "token",
                    .object([
                        ("id", .int(token.id)),
                        ("name", .string(token.name)),
                        ("prefix", .string(token.prefix)),
                        ("scopes", .array(token.scopes.map(JSONValue.string))),
                        ("expires_at", Render.date(token.expiresAt)),
                        ("created_at", Render.date(token.createdAt)),
                    ])
                ),
                (
                    "capabilities",
                    .object([
                        ("effective_scopes", .array(caller.effectiveScopes.map(JSONValue.string)))
                    ])
                ),
            ]))
    }

    static func auditEvents(_ request: Request, _ context: APIContext, _ store: Store) async throws -> Response {
        let caller = try context.require(anyOf: [.auditRead, .migrationsRead])
        var problems: [(String, String)] = []
        let page = MigrationRoutes.pageRequest(request.uri.queryParameters, problems: &problems)
        if !problems.isEmpty { throw APIError.validation(problems) }
        let events = try await store.auditEvents(accountID: caller.account.id, page: page)
        return jsonResponse(Render.page(events, path: "/api/v1/audit-events", filters: [], item: Render.auditEvent))
    }

    /// The document in the repository (Sources/HTTPAPI/Resources/openapi.json), served as is.
    static func openAPIResponse() throws -> Response {
        guard let document = OpenAPIDocument.bytes else { throw APIError.internalError }
        return Response(
            status: .ok, headers: [.contentType: "application/json; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: document)))
    }
}

public enum OpenAPIDocument {
    /// Read once from the bundled resource.
    public static let bytes: [UInt8]? = {
        guard let url = Bundle.module.url(forResource: "openapi", withExtension: "json"),
            let data = try? Data(contentsOf: url)
        else { return nil }
        return Array(data)
    }()
}
