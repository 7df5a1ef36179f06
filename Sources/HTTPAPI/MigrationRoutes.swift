import Foundation
import Hummingbird
import IMAPClient
import MigrationEngine
import NIOCore
import Store

/// `/api/v1/migrations…` (SPEC.md §4).
struct MigrationRoutes {
    let environment: APIEnvironment
    var store: Store { environment.store }
    var idempotency: Idempotency { Idempotency(store: environment.store) }

    func register(on group: RouterGroup<APIContext>) {
        group.post("migrations/test-connection", use: testConnection)
        group.get("migrations", use: list)
        group.post("migrations", use: start)
        group.get("migrations/{id}", use: get)
        group.post("migrations/{id}:cancel", use: cancel)
        group.post("migrations/{id}:retry", use: retry)
        group.post("migrations/{id}:sync", use: sync)
        group.post("migrations/{id}:finalize", use: finalize)
        group.delete("migrations/{id}", use: delete)
    }

    // MARK: Handlers

    @Sendable func testConnection(_ request: Request, context: APIContext) async throws -> Response {
        let caller = try context.require(.migrationsWrite)
        var (body, raw) = try await BodyReader.read(request, context: context, limit: environment.limits.maxBodyBytes)
        return try await idempotency.run(request, context: context, caller: caller, body: raw) {
            let source = SourceInput.read(&body, providerRequired: false)
            try body.finish()
            guard let source else { throw APIError.validation([("source_host", "is required")]) }
            let account = source.account(
                allowPrivateHosts: environment.allowPrivateHosts,
                trustRootsPEM: environment.sourceTrustRootsPEM)
            do {
                let folders = try await ConnectionCheck.run(account, side: .source, provider: source.provider)
                return WriteResult(
                    status: .ok,
                    body: .object([
                        ("success", .bool(true)),
                        ("folders", .object(folders.map { ($0.name, .int($0.messages)) })),
                    ]))
            } catch let error as ImportFailure {
                throw APIError(
                    .unprocessableContent, code: .connectionFailed, message: error.message,
                    hint: error.hint, retryable: error.isRetryable, reason: error.code.rawValue)
            }
        }
    }

    @Sendable func list(_ request: Request, context: APIContext) async throws -> Response {
        let caller = try context.require(.migrationsRead)
        let query = request.uri.queryParameters
        var problems: [(String, String)] = []
        var filters: [(String, String)] = []
        var status: MigrationStatus?
        if let value = query["status"].map(String.init) {
            status = MigrationStatus(rawValue: value)
            if status == nil {
                problems.append(
                    ("status", "must be one of \(MigrationStatus.allCases.map(\.rawValue).joined(separator: ", "))"))
            } else {
                filters.append(("status", value))
            }
        }
        var mailboxID: Int64?
        if let value = query["mailbox_id"].map(String.init) {
            mailboxID = Int64(value)
            if let mailboxID, mailboxID >= 1 {
                filters.append(("mailbox_id", value))
            } else {
                problems.append(("mailbox_id", "must be a positive integer"))
            }
        }
        let page = Self.pageRequest(query, problems: &problems)
        if !problems.isEmpty { throw APIError.validation(problems) }
        let result = try await store.listMigrations(
            accountID: caller.account.id, status: status,
            mailboxID: mailboxID, page: page)
        return jsonResponse(Render.page(result, path: "/api/v1/migrations", filters: filters, item: Render.migration))
    }

    @Sendable func get(_ request: Request, context: APIContext) async throws -> Response {
        let caller = try context.require(.migrationsRead)
        let id = try Self.migrationID(context)
        guard let record = try await store.migration(id: id, accountID: caller.account.id) else {
            throw APIError.notFound("migration")
        }
        return jsonResponse(.object([("data", Render.migration(record))]))
    }

    @Sendable func start(_ request: Request, context: APIContext) async throws -> Response {
        let caller = try context.require(.migrationsWrite)
        var (body, raw) = try await BodyReader.read(request, context: context, limit: environment.limits.maxBodyBytes)
        return try await idempotency.run(request, context: context, caller: caller, body: raw) {
            let input = StartInput.read(&body, hasMasterCredentials: environment.hasMasterCredentials)
            try body.finish()
            guard let input else { throw APIError.validation([("mailbox_id", "is required")]) }
            guard try await store.mailbox(id: input.mailboxID, accountID: caller.account.id) != nil else {
                throw APIError.validation([("mailbox_id", "no such mailbox in this account")])
            }
            if try await store.activeSingleMigrationCount(accountID: caller.account.id) > 0 {
                throw Self.activeConflict
            }
            if try await store.runningCount() >= environment.limits.maxConcurrentMigrations {
                throw APIError(
                    .serviceUnavailable, code: .migrationCapacityReached,
                    message: "The service is running as many migrations as it can.",
                    hint: "Try again in a few minutes.", retryable: true)
            }
            let record: MigrationRecord
            do {
                record = try await store.createMigration(input.newMigration(accountID: caller.account.id))
            } catch StoreError.activeMigrationExists {
                throw Self.activeConflict
            } catch StoreError.notFound {
                throw APIError.validation([("mailbox_id", "no such mailbox in this account")])
            }
            try await store.audit(
                "migration_started", "migration", id: String(record.id), caller: caller, context: context)
            environment.migrationQueued()
            return WriteResult(status: .created, body: .object([("data", Render.migration(record))]))
        }
    }

    @Sendable func cancel(_ request: Request, context: APIContext) async throws -> Response {
        try await changeStatus(request, context, .cancel, audit: "migration_cancelled") { store, id, account in
            .ok(try await store.cancelMigration(id: id, accountID: account))
        }
    }

    @Sendable func retry(_ request: Request, context: APIContext) async throws -> Response {
        try await changeStatus(request, context, .retry, audit: "migration_retried", queues: true) {
            store, id, account in
            .ok(try await store.retryMigration(id: id, accountID: account))
        }
    }

    /// A delta pass of a completed migration: queued like a retry; it copies what is new, makes the
    /// flags of its copies equal to the source's, and with `sync_deletions: true` deletes the copies of
    /// messages expunged at the source (the choice is kept for later passes until given again).
    @Sendable func sync(_ request: Request, context: APIContext) async throws -> Response {
        var (body, raw) = try await BodyReader.readOptional(
            request, context: context, limit: environment.limits.maxBodyBytes)
        let deletions = body.bool("sync_deletions") ?? false
        try body.finish()
        return try await changeStatus(request, context, .sync, audit: "migration_synced", queues: true, body: raw) {
            store, id, account in
            .ok(try await store.syncMigration(id: id, accountID: account, syncDeletions: deletions))
        }
    }

    /// Ends a migration's scheduled passes (`sync_every_hours`), at cutover: none is queued after
    /// this; a pass queued or running goes on. 409 when none are scheduled.
    @Sendable func finalize(_ request: Request, context: APIContext) async throws -> Response {
        let caller = try context.require(.migrationsWrite)
        let id = try Self.migrationID(context)
        let step = StatusChange(
            environment: environment, resourceType: "migration", auditAction: "migration_finalized", queues: false)
        return try await step.run(request, context, caller: caller, id: id, body: ByteBuffer()) {
            do {
                return Render.migration(try await store.finalizeMigration(id: id, accountID: caller.account.id))
            } catch StoreError.notFound {
                throw APIError.notFound("migration")
            } catch StoreError.notScheduled {
                throw APIError.conflict(
                    "The migration has no scheduled passes to end.",
                    hint: "Passes are scheduled by starting a migration with sync_every_hours.")
            }
        }
    }

    @Sendable func delete(_ request: Request, context: APIContext) async throws -> Response {
        try await changeStatus(request, context, .delete, audit: "migration_deleted") { store, id, account in
            try await store.deleteMigration(id: id, accountID: account)
            return .gone
        }
    }

    /// What a status change left: the record to answer with, or nothing (204).
    enum Outcome {
        case ok(MigrationRecord)
        case gone
    }

    /// cancel, retry and delete: the write scope, an id of the caller's account, idempotency, the
    /// store's refusals as 404/409 (the 409 saying the rule of `transition`), an audit event, and the
    /// runner woken when a migration is queued again.
    private func changeStatus(
        _ request: Request, _ context: APIContext, _ transition: MigrationTransition,
        audit action: String, queues: Bool = false, body: ByteBuffer = ByteBuffer(),
        _ change: @escaping (Store, Int64, Int64) async throws -> Outcome
    ) async throws -> Response {
        let caller = try context.require(.migrationsWrite)
        let id = try Self.migrationID(context)
        let step = StatusChange(
            environment: environment, resourceType: "migration", auditAction: action, queues: queues)
        return try await step.run(request, context, caller: caller, id: id, body: body) {
            do {
                switch try await change(store, id, caller.account.id) {
                case .ok(let record): return Render.migration(record)
                case .gone: return nil
                }
            } catch StoreError.notFound {
                throw APIError.notFound("migration")
            } catch StoreError.invalidStatus(let status) {
                throw APIError.conflict("The migration is \(status.rawValue); \(transition.refusal).")
            } catch StoreError.activeMigrationExists {
                throw Self.activeConflict
            }
        }
    }

    // MARK: Helpers

    static let activeConflict = APIError.conflict(
        "The account already has an active migration.",
        hint: "Wait for it to finish or cancel it first.")

    static func migrationID(_ context: APIContext) throws(APIError) -> Int64 {
        guard let text = context.parameters.get("id"), let id = Int64(text), id >= 1 else {
            throw APIError.notFound("migration")
        }
        return id
    }

    static func pageRequest(_ query: Parameters, problems: inout [(String, String)]) -> PageRequest {
        var page: Int?
        var perPage: Int?
        if let value = query["page"].map(String.init) {
            if let number = Int(value), (1...1_000_000).contains(number) {
                page = number
            } else {
                problems.append(("page", "must be an integer from 1 to 1000000"))
            }
        }
        if let value = query["per_page"].map(String.init) {
            if let number = Int(value), (1...PageRequest.maxPerPage).contains(number) {
                perPage = number
            } else {
                problems.append(("per_page", "must be an integer from 1 to \(PageRequest.maxPerPage)"))
            }
        }
        return PageRequest(page: page, perPage: perPage)
    }

}
