import BulkImport
import Foundation
import Hummingbird
import IMAPClient
import MigrationEngine
import NIOCore
import Store

/// `/api/v1/migrations/bulk…` (SPEC.md §5): preview a CSV, start a batch of jobs from it, and
/// watch, cancel, retry, resume or delete the batch. Scopes, idempotency, 409s and audit events
/// as `MigrationRoutes` does them for single migrations.
struct BulkRoutes {
    let environment: APIEnvironment
    var store: Store { environment.store }
    var idempotency: Idempotency { Idempotency(store: environment.store) }

    func register(on group: RouterGroup<APIContext>) {
        group.post("migrations/bulk/preview", use: preview)
        group.get("migrations/bulk", use: list)
        group.post("migrations/bulk", use: start)
        group.get("migrations/bulk/{id}", use: get)
        group.post("migrations/bulk/{id}:cancel", use: cancel)
        group.post("migrations/bulk/{id}:retry", use: retry)
        group.post("migrations/bulk/{id}:sync", use: sync)
        group.post("migrations/bulk/{id}:resume", use: resume)
        group.delete("migrations/bulk/{id}", use: delete)
        group.patch("migrations/bulk/{id}/jobs/{job}/password", use: updatePassword)
    }

    // MARK: Preview and start

    @Sendable func preview(_ request: Request, context: APIContext) async throws -> Response {
        let caller = try context.require(.migrationsWrite)
        var (body, raw) = try await BodyReader.read(
            request, context: context, limit: environment.limits.maxBulkBodyBytes)
        return try await idempotency.run(request, context: context, caller: caller, body: raw) {
            let (input, preview, toCreate) = try await read(&body, start: false, caller: caller)
            var data = try await previewBody(preview, input: input, caller: caller)
            if input.createMissingMailboxes { data = data.adding(("mailboxes_to_create", .strings(toCreate))) }
            return WriteResult(status: .ok, body: .object([("data", data)]))
        }
    }

    @Sendable func start(_ request: Request, context: APIContext) async throws -> Response {
        let caller = try context.require(.migrationsWrite)
        var (body, raw) = try await BodyReader.read(
            request, context: context, limit: environment.limits.maxBulkBodyBytes)
        return try await idempotency.run(
            request, context: context, caller: caller, body: raw,
            bodyKey: BulkInput.idempotencyKey(body)
        ) {
            let (input, preview, toCreate) = try await read(&body, start: true, caller: caller)
            guard environment.hasMasterCredentials else {
                throw APIError(
                    .unprocessableContent, code: .masterCredentialsRequired,
                    message:
                        "Bulk imports log in to the destination mailboxes with the service's master credentials, and none are configured.",
                    hint:
                        "Ask the operator to configure master credentials, or import each mailbox as a single migration with its target_password."
                )
            }
            let jobs = preview.jobs
            guard !jobs.isEmpty else {
                throw APIError.validation([("data", "no row is valid; preview the CSV to see what each row needs")])
            }
            var created: [String] = []
            for addition in try await store.addMailboxes(accountID: caller.account.id, emails: toCreate) {
                guard case .added(let mailbox) = addition else { continue }
                created.append(mailbox.email)
                try await store.audit(
                    "mailbox_added", "mailbox", id: String(mailbox.id), caller: caller, context: context)
            }
            let mailboxIDs = Dictionary(
                try await store.mailboxes(accountID: caller.account.id).map { ($0.email, $0.id) },
                uniquingKeysWith: { first, _ in first })
            let newJobs = try jobs.map { job -> NewBatchJob in
                guard let mailboxID = mailboxIDs[job.destinationEmail] else {
                    throw APIError.conflict(
                        "A destination mailbox was removed while the batch was being started.",
                        hint: "Preview the CSV again.")
                }
                return NewBatchJob(
                    line: job.line, mailboxID: mailboxID, provider: input.provider.rawValue,
                    sourceHost: job.server.host, sourcePort: job.server.port,
                    sourceSecurity: job.server.security.rawValue, sourceEmail: job.sourceEmail,
                    sourcePassword: job.sourcePassword)
            }
            let name = input.name ?? Self.defaultName(jobs: jobs.count, now: Date())
            let detail: BatchDetail
            do {
                detail = try await store.createBatch(
                    NewBatch(
                        accountID: caller.account.id, name: name, folderStrategy: input.folderStrategy,
                        perRowServer: input.layout == .perRowServer, importSince: input.importSince,
                        skipDuplicates: input.skipDuplicates),
                    jobs: newJobs)
            } catch StoreError.notFound {
                throw APIError.conflict(
                    "A destination mailbox was removed while the batch was being started.",
                    hint: "Preview the CSV again.")
            }
            try await store.audit(
                "bulk_migration_started", "bulk_migration", id: String(detail.batch.id), caller: caller,
                context: context)
            environment.migrationQueued()
            var data = Render.batchDetail(detail)
            data = data.adding(("skipped_rows", .array(preview.rows.filter { $0.category != .valid }.map(Render.row))))
            if input.createMissingMailboxes { data = data.adding(("mailboxes_created", .strings(created))) }
            return WriteResult(status: .created, body: .object([("data", data)]))
        }
    }

    /// The body read and the CSV classified against the account's mailboxes and plan. With
    /// `create_missing_mailboxes`, rows whose mailbox the service may add are classified as if it
    /// existed, and `toCreate` names those mailboxes (nothing is added here).
    private func read(_ body: inout BodyReader, start: Bool, caller: Caller) async throws -> (
        BulkInput, BulkPreview, toCreate: [String]
    ) {
        let addressAllowed = AddressPolicy.filter(allowPrivateHosts: environment.allowPrivateHosts)
        let input = BulkInput.read(&body, start: start) {
            BulkRules.isBlocked(host: $0, addressAllowed: addressAllowed)
        }
        try body.finish()
        guard let input else { throw APIError.validation([("data", "is required")]) }
        if input.createMissingMailboxes, !environment.hasMasterCredentials {
            throw APIError.validation([
                (
                    "create_missing_mailboxes",
                    "needs the service's master credentials, to check that the destination server accepts each address; none are configured"
                )
            ])
        }
        let plan = caller.account.plan
        let existing = Set(try await store.mailboxes(accountID: caller.account.id).map(\.email))
        var rules = BulkRules(
            layout: input.layout, provider: input.provider, batchServer: input.batchServer,
            mailboxes: existing, planName: plan.rawValue, rowsPerBatch: plan.maxBulkRowsPerBatch,
            addressAllowed: addressAllowed)
        do {
            let preview = try BulkPreview(csv: input.csv, rules: rules)
            guard input.createMissingMailboxes else { return (input, preview, []) }
            let candidates = MissingMailboxes.candidates(preview, existing: existing)
            let toCreate = await MissingMailboxes.accepted(candidates, accepts: environment.destinationAccepts)
            guard !toCreate.isEmpty else { return (input, preview, []) }
            rules.mailboxes.formUnion(toCreate)
            return (input, try BulkPreview(csv: input.csv, rules: rules), toCreate)
        } catch {
            throw APIError.validation([("data", error.message)])
        }
    }

    /// With `check_logins`: each valid row's source logged in to, a few at a time, within a deadline.
    private func loginResults(_ preview: BulkPreview, input: BulkInput) async -> [Int: LoginResult]? {
        guard input.checkLogins else { return nil }
        let allowPrivateHosts = environment.allowPrivateHosts
        let trustRoots = environment.sourceTrustRootsPEM
        let provider = input.provider
        return await LoginCheck.run(preview.jobs) { row throws(ImportFailure) in
            let account = SourceInput.account(
                host: row.server.host, port: row.server.port, security: row.server.security,
                username: row.sourceEmail, password: row.sourcePassword,
                allowPrivateHosts: allowPrivateHosts, trustRootsPEM: trustRoots)
            _ = try await ConnectionCheck.run(account, side: .source, provider: provider)
        }
    }

    private func previewBody(_ preview: BulkPreview, input: BulkInput, caller: Caller) async throws -> JSONValue {
        let plan = caller.account.plan
        let counts = preview.counts
        let logins = await loginResults(preview, input: input)
        var loginSummary: JSONValue = .null
        if let logins {
            let values = Array(logins.values)
            loginSummary = .object([
                ("checked", .int(values.filter { $0 != .notChecked }.count)),
                ("ok", .int(values.filter { $0 == .ok }.count)),
                ("failed", .int(values.filter { if case .failed = $0 { true } else { false } }.count)),
                ("not_checked", .int(values.filter { $0 == .notChecked }.count)),
                ("at_once", .int(LoginCheck.defaultConcurrency)),
                ("deadline_seconds", .int(Int(LoginCheck.defaultDeadline.components.seconds))),
            ])
        }
        let estimate = TimeEstimate(
            jobs: counts[.valid] ?? 0, planJobsAtOnce: plan.maxConcurrentBulkJobs,
            globalLimit: environment.limits.maxConcurrentMigrations)
        return .object([
            ("per_row_server", .bool(input.layout == .perRowServer)),
            ("header", .bool(preview.hadHeader)),
            (
                "counts",
                .object(
                    [("total", .int(preview.rows.count))]
                        + RowCategory.allCases.map { ($0.rawValue, .int(counts[$0] ?? 0)) })
            ),
            (
                "rows",
                .array(
                    preview.rows.map { row in
                        Render.row(row).adding(("login_check", logins.map { Render.login($0[row.line]) } ?? .null))
                    })
            ),
            ("login_checks", loginSummary),
            (
                "plan",
                .object([
                    ("name", .string(plan.rawValue)),
                    ("rows_per_batch", .int(plan.maxBulkRowsPerBatch)),
                    ("jobs_at_once", .int(plan.maxConcurrentBulkJobs)),
                    ("service_jobs_at_once", .int(environment.limits.maxConcurrentMigrations)),
                ])
            ),
            ("storage", Render.storage(await storage(caller.account, .recent))),
            (
                "estimate",
                .object([
                    ("seconds", .int(estimate.seconds)),
                    ("jobs", .int(estimate.jobs)),
                    ("jobs_at_once", .int(estimate.jobsAtOnce)),
                    ("messages_per_mailbox", .int(estimate.messagesPerMailbox)),
                    ("messages_per_second_per_job", .double(estimate.messagesPerSecondPerJob)),
                    ("assumptions", .strings(estimate.assumptions)),
                ])
            ),
        ])
    }

    private func storage(_ account: Account, _ reading: StorageReading) async -> StorageFigures {
        let used = await environment.storageUsedBytes(account, reading)
        return StorageFigures(
            poolBytes: environment.storagePools.bytes(for: account.plan), usedBytes: used ?? 0, measured: used != nil)
    }

    static func defaultName(jobs: Int, now: Date) -> String {
        let stamp = string(Render.date(now)) ?? ""
        let minute = stamp.prefix(16).replacingOccurrences(of: "T", with: " ")
        return "Bulk import of \(jobs) mailbox\(jobs == 1 ? "" : "es"), \(minute) UTC"
    }

    private static func string(_ value: JSONValue) -> String? {
        if case .string(let text) = value { return text }
        return nil
    }

    // MARK: Reads

    @Sendable func list(_ request: Request, context: APIContext) async throws -> Response {
        let caller = try context.require(.migrationsRead)
        let query = request.uri.queryParameters
        var problems: [(String, String)] = []
        var filters: [(String, String)] = []
        var status: BatchStatus?
        if let value = query["status"].map(String.init) {
            status = BatchStatus(rawValue: value)
            if status == nil {
                problems.append(
                    ("status", "must be one of \(BatchStatus.allCases.map(\.rawValue).joined(separator: ", "))"))
            } else {
                filters.append(("status", value))
            }
        }
        let page = MigrationRoutes.pageRequest(query, problems: &problems)
        if !problems.isEmpty { throw APIError.validation(problems) }
        let result = try await store.listBatches(accountID: caller.account.id, status: status, page: page)
        return jsonResponse(Render.page(result, path: "/api/v1/migrations/bulk", filters: filters, item: Render.batch))
    }

    @Sendable func get(_ request: Request, context: APIContext) async throws -> Response {
        let caller = try context.require(.migrationsRead)
        let id = try Self.batchID(context)
        guard let detail = try await store.batchDetail(id: id, accountID: caller.account.id) else {
            throw APIError.notFound("bulk migration")
        }
        // Polled while the batch runs: the watch's last reading, never a measurement here.
        let storage = Render.storage(await storage(caller.account, .cached))
        return jsonResponse(.object([("data", Render.batchDetail(detail).adding(("storage", storage)))]))
    }

    // MARK: Status changes

    @Sendable func cancel(_ request: Request, context: APIContext) async throws -> Response {
        try await changeStatus(request, context, .cancel, audit: "bulk_migration_cancelled") { store, id, account in
            .ok(try await store.cancelBatch(id: id, accountID: account))
        }
    }

    /// A delta pass over every completed job of an ended batch; `sync_deletions` as for one migration.
    @Sendable func sync(_ request: Request, context: APIContext) async throws -> Response {
        var (body, raw) = try await BodyReader.readOptional(
            request, context: context, limit: environment.limits.maxBodyBytes)
        let deletions = body.bool("sync_deletions") ?? false
        try body.finish()
        return try await changeStatus(
            request, context, .sync, audit: "bulk_migration_synced", queues: true, body: raw
        ) { store, id, account in
            .ok(try await store.syncBatch(id: id, accountID: account, syncDeletions: deletions))
        }
    }

    @Sendable func retry(_ request: Request, context: APIContext) async throws -> Response {
        try await changeStatus(request, context, .retry, audit: "bulk_migration_retried", queues: true) {
            store, id, account in
            .ok(try await store.retryBatch(id: id, accountID: account))
        }
    }

    @Sendable func resume(_ request: Request, context: APIContext) async throws -> Response {
        let caller = try context.require(.migrationsWrite)
        return try await changeStatus(request, context, .resume, audit: "bulk_migration_resumed", queues: true) {
            store, id, account in
            // The status rule first (a batch that is not paused gets that 409), then storage.
            guard let current = try await store.batch(id: id, accountID: account) else { throw StoreError.notFound }
            guard BatchTransition.resume.allows(from: current.status) else {
                throw StoreError.invalidBatchStatus(current.status)
            }
            let figures = await storage(caller.account, .fresh)
            if figures.isAtPauseThreshold {
                throw APIError.conflict(
                    "Storage is at \(figures.usedPercent)% of the pool, at or above the \(StorageFigures.pauseThresholdPercent)% at which batches pause.",
                    hint: "Free up space in the account's mailboxes or upgrade the plan, then resume.")
            }
            return .ok(try await store.resumeBatch(id: id, accountID: account))
        }
    }

    @Sendable func delete(_ request: Request, context: APIContext) async throws -> Response {
        try await changeStatus(request, context, .delete, audit: "bulk_migration_deleted") { store, id, account in
            try await store.deleteBatch(id: id, accountID: account)
            return .gone
        }
    }

    enum Outcome {
        case ok(BatchDetail)
        case gone
    }

    /// cancel, retry, resume and delete: the write scope, an id of the caller's account,
    /// idempotency, the store's refusals as 404/409 (the 409 saying the rule of `transition`), an
    /// audit event, and the runner woken when jobs are queued again.
    private func changeStatus(
        _ request: Request, _ context: APIContext, _ transition: BatchTransition,
        audit action: String, queues: Bool = false, body: ByteBuffer = ByteBuffer(),
        _ change: @escaping (Store, Int64, Int64) async throws -> Outcome
    ) async throws -> Response {
        let caller = try context.require(.migrationsWrite)
        let id = try Self.batchID(context)
        let step = StatusChange(
            environment: environment, resourceType: "bulk_migration", auditAction: action, queues: queues)
        return try await step.run(request, context, caller: caller, id: id, body: body) {
            do {
                switch try await change(store, id, caller.account.id) {
                case .ok(let detail): return Render.batchDetail(detail)
                case .gone: return nil
                }
            } catch StoreError.notFound {
                throw APIError.notFound("bulk migration")
            } catch StoreError.invalidBatchStatus(let status) {
                throw APIError.conflict("The batch is \(status.rawValue); \(transition.refusal).")
            } catch StoreError.noFailedJobs {
                throw APIError.conflict(
                    "The batch has no failed jobs to retry.",
                    hint: "Retry a cancelled job on its own at /api/v1/migrations/{id}:retry.")
            }
        }
    }

    @Sendable func updatePassword(_ request: Request, context: APIContext) async throws -> Response {
        let caller = try context.require(.migrationsWrite)
        let batchID = try Self.batchID(context)
        guard let text = context.parameters.get("job"), let jobID = Int64(text), jobID >= 1 else {
            throw APIError.notFound("job")
        }
        var (body, raw) = try await BodyReader.read(request, context: context, limit: environment.limits.maxBodyBytes)
        return try await idempotency.run(request, context: context, caller: caller, body: raw) {
            let password = body.string("source_password", required: true, trim: false)
            try body.finish()
            guard let password else { throw APIError.validation([("source_password", "is required")]) }
            let job: BatchJob
            do {
                job = try await store.updateBatchJobPassword(
                    batchID: batchID, jobID: jobID, accountID: caller.account.id,
                    password: password)
            } catch StoreError.notFound {
                throw APIError.notFound("job in this bulk migration")
            } catch StoreError.invalidStatus(let status) {
                throw APIError.conflict("The job is \(status.rawValue); \(BatchJobChange.updatePassword.refusal).")
            }
            try await store.audit(
                "bulk_migration_job_password_updated", "bulk_migration_job", id: String(jobID), caller: caller,
                context: context)
            return WriteResult(status: .ok, body: .object([("data", Render.job(job))]))
        }
    }

    // MARK: Helpers

    static func batchID(_ context: APIContext) throws(APIError) -> Int64 {
        guard let text = context.parameters.get("id"), let id = Int64(text), id >= 1 else {
            throw APIError.notFound("bulk migration")
        }
        return id
    }

}

extension JSONValue {
    /// This object with `member` appended (anything else unchanged).
    func adding(_ member: (String, JSONValue)) -> JSONValue {
        guard case .object(let members) = self else { return self }
        return .object(members + [member])
    }
}

extension Render {
    static func row(_ row: RowVerdict) -> JSONValue {
        .object([
            ("line", .int(row.line)),
            ("source_email", .optional(row.sourceEmail)),
            ("destination_email", .optional(row.destinationEmail)),
            ("category", .string(row.category.rawValue)),
            ("message", .optional(row.message)),
        ])
    }

    /// A row's login check: nil for a row that was not valid (and so not checked at all).
    static func login(_ result: LoginResult?) -> JSONValue {
        switch result {
        case nil: .null
        case .ok?: .object([("status", .string("ok")), ("error_code", .null), ("message", .null), ("hint", .null)])
        case .notChecked?:
            .object([
                ("status", .string("not_checked")), ("error_code", .null),
                ("message", .string("The check's deadline passed before this row's login ended.")),
                ("hint", .string("Preview again, or start the batch: the job reports its own login.")),
            ])
        case .failed(let failure)?:
            .object([
                ("status", .string("failed")), ("error_code", .string(failure.code.rawValue)),
                ("message", .string(failure.message)), ("hint", .string(failure.hint)),
            ])
        }
    }

    static func storage(_ figures: StorageFigures) -> JSONValue {
        .object([
            ("pool_bytes", .int(figures.poolBytes)),
            ("used_bytes", .int(figures.usedBytes)),
            ("free_bytes", .int(figures.freeBytes)),
            ("used_percent", .int(figures.usedPercent)),
            ("pause_threshold_percent", .int(StorageFigures.pauseThresholdPercent)),
            ("pause_threshold_bytes", .int(figures.pauseThresholdBytes)),
            ("measured", .bool(figures.measured)),
        ])
    }

    static func batch(_ batch: BatchRecord) -> JSONValue {
        let counts = batch.counts
        return .object([
            ("id", .int(batch.id)),
            ("name", .string(batch.name)),
            ("status", .string(batch.status.rawValue)),
            ("status_label", .string(batch.status.label)),
            ("folder_strategy", .string(batch.folderStrategy.rawValue)),
            ("per_row_server", .bool(batch.perRowServer)),
            ("import_since", .optional(batch.importSince)),
            ("skip_duplicates", .bool(batch.skipDuplicates)),
            ("pause_reason", .optional(batch.pauseReason)),
            ("progress", .int(counts.progress)),
            (
                "counts",
                .object([
                    ("jobs", .int(counts.jobs)),
                    ("pending", .int(counts.pending)),
                    ("running", .int(counts.running)),
                    ("completed", .int(counts.completed)),
                    ("failed", .int(counts.failed)),
                    ("cancelled", .int(counts.cancelled)),
                ])
            ),
            ("total_messages", .int(counts.totalMessages)),
            ("imported_messages", .int(counts.importedMessages)),
            ("failed_messages", .int(counts.failedMessages)),
            ("skipped_duplicates", .int(counts.skippedDuplicates)),
            ("poll_hint_seconds", batch.status.isActive ? .int(10) : .null),
            ("finished_at", date(batch.finishedAt)),
            ("created_at", date(batch.createdAt)),
            ("updated_at", date(batch.updatedAt)),
        ])
    }

    static func batchDetail(_ detail: BatchDetail) -> JSONValue {
        batch(detail.batch).adding(("jobs", .array(detail.jobs.map(job))))
    }

    /// A job: the migration record of SPEC.md §4 (source address masked, no password) and its CSV line.
    static func job(_ job: BatchJob) -> JSONValue {
        migration(job.migration).adding(("line", .optional(job.line)))
    }
}
