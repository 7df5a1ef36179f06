import IMAPClient
import MCP
import MigrationEngine
import Store

/// One MCP tool and the one REST call it makes (SPEC.md §9).
public struct ToolDefinition: Sendable {
    /// Which token scope the tool needs (SPEC.md §3), and so whether it is listed.
    public enum Scope: String, Sendable {
        case read = "migrations:read"
        case write = "migrations:write"
    }

    /// Where a REST field goes.
    enum Placement: Sendable {
        case body
        case query
    }

    struct Field: Sendable {
        var name: String
        var schema: Value
        var required: Bool
        var placement: Placement
    }

    public var name: String
    public var title: String
    public var description: String
    public var scope: Scope
    /// Whether `MAILPORTER_ALLOW_MIGRATION=true` is needed: every write but cancel and resume,
    /// which always work so that a run can be stopped.
    public var needsAllowMigration: Bool
    /// The boolean an agent must set to true on each call (`confirm_start`, …), if any.
    public var confirmation: String?
    var method: String
    /// The path ids, in order (`migration_id`, `batch_id`, `job_id`).
    var ids: [String]
    var path: @Sendable ([Int]) -> String
    var fields: [Field]
    public var annotations: Tool.Annotations
    public var outputSchema: Value
    /// What a 204 becomes, as the API sends no body then.
    var noContent: (@Sendable ([Int]) -> Value)?

    public var isWrite: Bool { method != "GET" }

    /// The schema an agent fills in: ids, the REST fields, the confirmation, and an optional
    /// idempotency key on writes.
    public var inputSchema: Value {
        var properties: [(String, Value)] = ids.map { ($0, Self.idSchema($0)) }
        var required = ids
        for field in fields {
            properties.append((field.name, field.schema))
            if field.required { required.append(field.name) }
        }
        if isWrite && !fields.contains(where: { $0.name == "idempotency_key" }) {
            properties.append(
                (
                    "idempotency_key",
                    Schema.string(
                        "Optional. Reuse the same key when repeating a call whose answer was lost: the API then replays its first answer instead of acting twice."
                    )
                ))
        }
        if let confirmation {
            properties.append(
                (
                    confirmation,
                    Schema.boolean(
                        "Must be true. Set it only after the user has agreed to this action; without it nothing is done."
                    )
                ))
            required.append(confirmation)
        }
        return Schema.object(properties, required: required)
    }

    /// Every argument name the tool accepts.
    var argumentNames: Set<String> {
        var names = Set(ids + fields.map(\.name))
        if isWrite { names.insert("idempotency_key") }
        if let confirmation { names.insert(confirmation) }
        return names
    }

    public var tool: Tool {
        Tool(
            name: name, title: title, description: description, inputSchema: inputSchema,
            annotations: annotations, outputSchema: outputSchema)
    }

    static func idSchema(_ name: String) -> Value {
        switch name {
        case "migration_id": Schema.integer("The migration's id (`id` in its record).")
        case "batch_id": Schema.integer("The bulk migration's id (`id` of the batch).")
        default: Schema.integer("The job's id (`id` of an entry in the batch's `jobs`).")
        }
    }
}

/// The 16 tools of SPEC.md §9, each defined once here.
public enum ToolCatalog {
    public static let all: [ToolDefinition] = [
        testConnection, listMigrations, getMigration, startMigration, cancelMigration, retryMigration,
        deleteMigration, previewBulk, startBulk, listBulk, getBulk, cancelBulk, retryBulk, resumeBulk,
        deleteBulk, updateJobPassword,
    ]

    public static func named(_ name: String) -> ToolDefinition? { all.first { $0.name == name } }

    // MARK: Shared fields

    static let providers = Provider.allCases.map(\.rawValue)
    static let securities = ConnectionSecurity.allCases.map(\.rawValue)

    static func body(_ name: String, _ schema: Value, required: Bool = false) -> ToolDefinition.Field {
        .init(name: name, schema: schema, required: required, placement: .body)
    }

    static func query(_ name: String, _ schema: Value) -> ToolDefinition.Field {
        .init(name: name, schema: schema, required: false, placement: .query)
    }

    static let source: [ToolDefinition.Field] = [
        body(
            "provider",
            Schema.string(
                "The old provider. gmail, outlook, yahoo and icloud fill host, port 993 and ssl; generic_imap needs source_host, source_port and source_security.",
                enum: providers)),
        body("source_host", Schema.string("The source IMAP server's host name or IP address (generic_imap).")),
        body("source_port", Schema.integer("The source IMAP port, e.g. 993 with ssl, 143 with tls.", maximum: 65535)),
        body(
            "source_security",
            Schema.string("ssl = implicit TLS (993), tls = STARTTLS (143), none = plaintext.", enum: securities)),
        body("source_email", Schema.string("The source account's email address."), required: true),
        body("source_username", Schema.string("The login name at the source, when it is not the email address.")),
        body(
            "source_password",
            Schema.password(
                "The source account's password; an app password for gmail, yahoo and icloud. Never shown in any answer."
            ),
            required: true),
    ]

    static let csv: [ToolDefinition.Field] = [
        body(
            "data",
            Schema.string(
                "The CSV text (UTF-8, at most 2 MB): rows source_email,source_password,destination_email; with per_row_server also source_host,source_port,source_security. Header line optional; # comments and blank lines skipped.",
                maxLength: nil),
            required: true),
        body("per_row_server", Schema.boolean("Each row names its own server (6 columns).")),
        body("provider", Schema.string("The provider of every row; a preset fills the server.", enum: providers)),
        body(
            "source_host", Schema.string("The server of every row, unless the provider has a preset or per_row_server.")
        ),
        body("source_port", Schema.integer("The port of every row's server.", maximum: 65535)),
        body("source_security", Schema.string("ssl, tls (STARTTLS) or none.", enum: securities)),
    ]

    static let page: [ToolDefinition.Field] = [
        query("page", Schema.integer("Page number, from 1.", maximum: 1_000_000)),
        query("per_page", Schema.integer("Items per page (default 20).", maximum: PageRequest.maxPerPage)),
    ]

    // MARK: Output schemas

    static let migrationRecord = Schema.output(
        [
            ("id", ["type": "integer"]),
            (
                "status",
                .object(["type": "string", "enum": .array(MigrationStatus.allCases.map { .string($0.rawValue) })])
            ),
            ("progress", ["type": "integer"]),
            ("poll_hint_seconds", Schema.types("integer", "null")),
            ("folders", ["type": "array"]),
            ("error_code", Schema.types("string", "null")),
            ("error_hint", Schema.types("string", "null")),
        ], required: ["id", "status"])
    static let batchRecord = Schema.output(
        [
            ("id", ["type": "integer"]),
            ("status", .object(["type": "string", "enum": .array(BatchStatus.allCases.map { .string($0.rawValue) })])),
            ("counts", ["type": "object"]),
            ("poll_hint_seconds", Schema.types("integer", "null")),
            ("jobs", ["type": "array"]),
        ], required: ["id", "status"])
    static func envelope(_ data: Value) -> Value { Schema.output([("data", data)], required: ["data"]) }
    static let pageOutput = Schema.output(
        [
            ("data", ["type": "array", "items": ["type": "object"]]), ("meta", ["type": "object"]),
            ("links", ["type": "object"]),
        ],
        required: ["data", "meta"])
    static func deleted(_ id: String) -> Value {
        Schema.output(
            [("deleted", ["type": "boolean", "const": true]), (id, ["type": "integer"])], required: ["deleted", id])
    }

    static let readOnly = Tool.Annotations(readOnlyHint: true, idempotentHint: true, openWorldHint: false)

    // MARK: Single migrations

    static let testConnection = ToolDefinition(
        name: "test_migration_connection", title: "Test a source login",
        description:
            "Logs in to the old mailbox and lists its folders with message counts, changing nothing. Use it before start_migration to check the server settings and password; a failure names the cause (authentication_failed, tls_failed, host_unreachable, …) and a hint such as using an app password.",
        scope: .write, needsAllowMigration: true, confirmation: nil, method: "POST", ids: [],
        path: { _ in "/api/v1/migrations/test-connection" }, fields: source,
        annotations: .init(readOnlyHint: true, idempotentHint: true, openWorldHint: true),
        outputSchema: Schema.output(
            [
                ("success", ["type": "boolean"]),
                ("folders", ["type": "object", "additionalProperties": ["type": "integer"]]),
            ], required: ["success", "folders"]))

    static let listMigrations = ToolDefinition(
        name: "list_migrations", title: "List migrations",
        description:
            "Lists the account's single migrations (and bulk jobs), newest first, 20 a page. Filter by status or destination mailbox_id. Use it to find a migration's id.",
        scope: .read, needsAllowMigration: false, confirmation: nil, method: "GET", ids: [],
        path: { _ in "/api/v1/migrations" },
        fields: [
            query(
                "status",
                Schema.string("Only migrations in this status.", enum: MigrationStatus.allCases.map(\.rawValue))),
            query("mailbox_id", Schema.integer("Only migrations into this destination mailbox.")),
        ] + page,
        annotations: readOnly, outputSchema: pageOutput)

    static let getMigration = ToolDefinition(
        name: "get_migration", title: "Get a migration's progress",
        description:
            "Reads one migration: status (pending, validating, planning, processing, completed, failed, cancelled), progress 0-100, message counts, per-folder progress and, on failure, error_code, error_message and error_hint. While it runs, call it again every poll_hint_seconds (5 or 10); poll_hint_seconds is null once it has ended.",
        scope: .read, needsAllowMigration: false, confirmation: nil, method: "GET", ids: ["migration_id"],
        path: { "/api/v1/migrations/\($0[0])" }, fields: [],
        annotations: readOnly, outputSchema: envelope(migrationRecord))

    static let startMigration = ToolDefinition(
        name: "start_migration", title: "Start a migration",
        description:
            "Starts importing one old mailbox into a destination mailbox of the account (mailbox_id). Every message arrives once, with flags, date and folder; duplicates are skipped. Run test_migration_connection first. Answers the new record; then poll get_migration every poll_hint_seconds until completed or failed. One single migration per account runs at a time (else a conflict error).",
        scope: .write, needsAllowMigration: true, confirmation: "confirm_start", method: "POST", ids: [],
        path: { _ in "/api/v1/migrations" },
        fields: [
            body(
                "mailbox_id", Schema.integer("The destination mailbox of this account.", maximum: Int(Int32.max)),
                required: true)
        ] + source.map { $0.name == "provider" ? body($0.name, $0.schema, required: true) : $0 } + [
            body(
                "target_password",
                Schema.password(
                    "The destination mailbox's password; needed only when the service has no master credentials.")),
            body("selected_folders", Schema.strings("Source folders to import; omit for all.", maxItems: 1000)),
            body("import_since", Schema.date("Only messages received on or after this day (YYYY-MM-DD).")),
            body("skip_duplicates", Schema.boolean("Skip messages already in the destination (default true).")),
        ],
        annotations: .init(readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true),
        outputSchema: envelope(migrationRecord))

    static let cancelMigration = ToolDefinition(
        name: "cancel_migration", title: "Cancel a migration",
        description:
            "Stops a pending or running migration at a safe point; what was copied stays. Works even when MAILPORTER_ALLOW_MIGRATION is false, so a run can always be stopped. A migration that has ended gives a conflict error.",
        scope: .write, needsAllowMigration: false, confirmation: "confirm_cancel", method: "POST",
        ids: ["migration_id"],
        path: { "/api/v1/migrations/\($0[0]):cancel" }, fields: [],
        annotations: .init(readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false),
        outputSchema: envelope(migrationRecord))

    static let retryMigration = ToolDefinition(
        name: "retry_migration", title: "Retry a migration",
        description:
            "Runs a failed or cancelled migration again, copying only what is missing (nothing is doubled). Fix the cause named by error_hint first. Then poll get_migration every poll_hint_seconds.",
        scope: .write, needsAllowMigration: true, confirmation: "confirm_retry", method: "POST", ids: ["migration_id"],
        path: { "/api/v1/migrations/\($0[0]):retry" }, fields: [],
        annotations: .init(readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true),
        outputSchema: envelope(migrationRecord))

    static let deleteMigration = ToolDefinition(
        name: "delete_migration", title: "Delete a migration",
        description:
            "Deletes a migration that has ended, and wipes its stored passwords. Imported messages stay in the destination. A running migration gives a conflict error: cancel it first.",
        scope: .write, needsAllowMigration: true, confirmation: "confirm_delete", method: "DELETE",
        ids: ["migration_id"],
        path: { "/api/v1/migrations/\($0[0])" }, fields: [],
        annotations: .init(readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false),
        outputSchema: deleted("migration_id"), noContent: { ["deleted": true, "migration_id": .int($0[0])] })

    // MARK: Bulk migrations

    static let createMissingHint =
        "Treat invalid_destination rows as valid where the mailbox can be added: its domain is one the account already has mailboxes in and the destination server accepts it."

    static let previewBulk = ToolDefinition(
        name: "preview_bulk_migration", title: "Preview a bulk CSV",
        description:
            "Checks a CSV of accounts without starting anything: each row gets a category (valid, invalid_source_email, invalid_destination, missing_password, invalid_server, duplicate_row, over_plan_limit), with counts, plan limits, storage and a time estimate. check_logins also tries each valid row's login. Use it before start_bulk_migration and show the user the problems.",
        scope: .write, needsAllowMigration: true, confirmation: nil, method: "POST", ids: [],
        path: { _ in "/api/v1/migrations/bulk/preview" },
        fields: csv + [
            body("check_logins", Schema.boolean("Also log in to each valid row's source (4 at a time, 30 s in all).")),
            body(
                "create_missing_mailboxes",
                Schema.boolean(createMissingHint + " Here they are only listed, in mailboxes_to_create.")),
        ],
        annotations: .init(readOnlyHint: true, idempotentHint: true, openWorldHint: true),
        outputSchema: envelope(
            Schema.output([("counts", ["type": "object"]), ("rows", ["type": "array"])], required: ["counts", "rows"])))

    static let startBulk = ToolDefinition(
        name: "start_bulk_migration", title: "Start a bulk migration",
        description:
            "Starts one job per valid CSV row (the same fields as preview_bulk_migration plus the batch settings); invalid rows are listed in skipped_rows. Preview first. Then poll get_bulk_migration every poll_hint_seconds until the batch is completed or completed_with_errors.",
        scope: .write, needsAllowMigration: true, confirmation: "confirm_start", method: "POST", ids: [],
        path: { _ in "/api/v1/migrations/bulk" },
        fields: csv + [
            body("name", Schema.string("A name for the batch; generated when omitted.")),
            body(
                "folder_strategy",
                Schema.string(
                    "all (default), standard = INBOX and the special-use folders, inbox_only.",
                    enum: FolderStrategy.allCases.map(\.rawValue))),
            body("import_since", Schema.date("Only messages received on or after this day (YYYY-MM-DD).")),
            body("skip_duplicates", Schema.boolean("Skip messages already in the destination (default true).")),
            body(
                "create_missing_mailboxes",
                Schema.boolean(createMissingHint + " Here they are added, listed in mailboxes_created.")),
            body(
                "idempotency_key",
                Schema.string(
                    "Optional. The same key again replays the first answer instead of starting a second batch.")),
        ],
        annotations: .init(readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true),
        outputSchema: envelope(batchRecord))

    static let listBulk = ToolDefinition(
        name: "list_bulk_migrations", title: "List bulk migrations",
        description: "Lists the account's bulk migrations (batches), newest first, 20 a page; filter by status.",
        scope: .read, needsAllowMigration: false, confirmation: nil, method: "GET", ids: [],
        path: { _ in "/api/v1/migrations/bulk" },
        fields: [
            query("status", Schema.string("Only batches in this status.", enum: BatchStatus.allCases.map(\.rawValue)))
        ] + page,
        annotations: readOnly, outputSchema: pageOutput)

    static let getBulk = ToolDefinition(
        name: "get_bulk_migration", title: "Get a bulk migration's progress",
        description:
            "Reads one batch: status (queued, processing, paused, completed, completed_with_errors, cancelled), counts, progress and every job with its status and error. While it is active, call it again every poll_hint_seconds. A failed job with authentication_failed can get a new password with update_bulk_migration_job_password, then retry_bulk_migration.",
        scope: .read, needsAllowMigration: false, confirmation: nil, method: "GET", ids: ["batch_id"],
        path: { "/api/v1/migrations/bulk/\($0[0])" }, fields: [],
        annotations: readOnly, outputSchema: envelope(batchRecord))

    static let cancelBulk = ToolDefinition(
        name: "cancel_bulk_migration", title: "Cancel a bulk migration",
        description:
            "Cancels a batch's queued and running jobs (running ones stop at a safe point). Works even when MAILPORTER_ALLOW_MIGRATION is false.",
        scope: .write, needsAllowMigration: false, confirmation: "confirm_cancel", method: "POST", ids: ["batch_id"],
        path: { "/api/v1/migrations/bulk/\($0[0]):cancel" }, fields: [],
        annotations: .init(readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false),
        outputSchema: envelope(batchRecord))

    static let retryBulk = ToolDefinition(
        name: "retry_bulk_migration", title: "Retry a bulk migration's failed jobs",
        description:
            "Queues a batch's failed jobs again; each copies only what is missing. Fix passwords first with update_bulk_migration_job_password. Then poll get_bulk_migration.",
        scope: .write, needsAllowMigration: true, confirmation: "confirm_retry", method: "POST", ids: ["batch_id"],
        path: { "/api/v1/migrations/bulk/\($0[0]):retry" }, fields: [],
        annotations: .init(readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true),
        outputSchema: envelope(batchRecord))

    static let resumeBulk = ToolDefinition(
        name: "resume_bulk_migration", title: "Resume a paused bulk migration",
        description:
            "Resumes a batch paused because the account's storage reached 90% of its pool (a conflict error while it still is). Works even when MAILPORTER_ALLOW_MIGRATION is false.",
        scope: .write, needsAllowMigration: false, confirmation: "confirm_resume", method: "POST", ids: ["batch_id"],
        path: { "/api/v1/migrations/bulk/\($0[0]):resume" }, fields: [],
        annotations: .init(readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true),
        outputSchema: envelope(batchRecord))

    static let deleteBulk = ToolDefinition(
        name: "delete_bulk_migration", title: "Delete a bulk migration",
        description:
            "Deletes a batch that has ended, with its jobs and their stored passwords; imported messages stay. An active batch gives a conflict error: cancel it first.",
        scope: .write, needsAllowMigration: true, confirmation: "confirm_delete", method: "DELETE", ids: ["batch_id"],
        path: { "/api/v1/migrations/bulk/\($0[0])" }, fields: [],
        annotations: .init(readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false),
        outputSchema: deleted("batch_id"), noContent: { ["deleted": true, "batch_id": .int($0[0])] })

    static let updateJobPassword = ToolDefinition(
        name: "update_bulk_migration_job_password", title: "Replace a failed job's source password",
        description:
            "Stores a new source password for one failed job of a batch (e.g. after authentication_failed). It does not run the job: call retry_bulk_migration afterwards.",
        scope: .write, needsAllowMigration: true, confirmation: nil, method: "PATCH", ids: ["batch_id", "job_id"],
        path: { "/api/v1/migrations/bulk/\($0[0])/jobs/\($0[1])/password" },
        fields: [body("source_password", Schema.password("The corrected source password."), required: true)],
        annotations: .init(readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false),
        outputSchema: envelope(migrationRecord))
}
