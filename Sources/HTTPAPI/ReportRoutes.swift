import BulkImport
import Foundation
import Hummingbird
import Store

/// The reports an operator downloads (RFC 4180 CSV with a header line) and the notification
/// outbox (SPEC.md §6). Read routes: `migrations:read`, like the records they are made of.
struct ReportRoutes {
    let environment: APIEnvironment
    var store: Store { environment.store }

    func register(on group: RouterGroup<APIContext>) {
        group.get("migrations/bulk/{id}/report.csv", use: batchReport)
        group.get("migrations/{id}/report.csv", use: migrationReport)
        group.get("notifications", use: notifications)
    }

    static let batchHeader = [
        "line", "destination", "source", "status", "expected", "imported", "skipped", "failed", "bytes",
        "started_at", "finished_at", "error_code", "error_hint",
    ]

    /// One CSV, every record the same width (RFC 4180): `kind` says what a row is. `folder` rows
    /// fill the count columns, `failed_message` rows (after them) the message columns.
    static let migrationHeader = [
        "kind", "folder", "destination_folder", "status", "expected", "imported", "skipped", "failed", "uid", "size",
        "internal_date", "reason",
    ]

    /// One row per job, in the CSV's order; the source address masked as everywhere in the API.
    @Sendable func batchReport(_ request: Request, context: APIContext) async throws -> Response {
        let caller = try context.require(.migrationsRead)
        let id = try BulkRoutes.batchID(context)
        guard let detail = try await store.batchDetail(id: id, accountID: caller.account.id) else {
            throw APIError.notFound("bulk migration")
        }
        var csv = CSVWriter(header: Self.batchHeader)
        for job in detail.jobs {
            let record = job.migration
            csv.append([
                job.line.map { .number(Int64($0)) } ?? .empty,
                .text(record.mailboxEmail ?? ""),
                .text(Render.maskedEmail(record.sourceEmail)),
                .text(record.status.rawValue),
                .number(Int64(record.totalMessages)), .number(Int64(record.importedMessages)),
                .number(Int64(record.skippedDuplicates)), .number(Int64(record.failedMessages)),
                .number(record.bytesCopied),
                Self.time(record.startedAt), Self.time(record.finishedAt),
                record.error.map { .text($0.code) } ?? .empty,
                record.error?.hint.map { .text($0) } ?? .empty,
            ])
        }
        return Self.csvResponse(csv, filename: "bulk-\(id)-report.csv")
    }

    /// One row per folder, then one per message that failed in the latest run (at most
    /// `Store.failedMessageLimit`; the folder rows count them all): where it was, its size, date
    /// and the server's reason, never its content.
    @Sendable func migrationReport(_ request: Request, context: APIContext) async throws -> Response {
        let caller = try context.require(.migrationsRead)
        let id = try MigrationRoutes.migrationID(context)
        guard let record = try await store.migration(id: id, accountID: caller.account.id) else {
            throw APIError.notFound("migration")
        }
        let failed = try await store.failedMessages(migrationID: id)
        var csv = CSVWriter(header: Self.migrationHeader)
        let noMessage = [CSVWriter.Field](repeating: .empty, count: 4)
        for folder in record.folders {
            let counts: [CSVWriter.Field] = [
                .text("folder"), .text(folder.sourceName), .text(folder.destinationName),
                .text(folder.status.rawValue), .number(Int64(folder.expected)), .number(Int64(folder.imported)),
                .number(Int64(folder.skipped)), .number(Int64(folder.failed)),
            ]
            csv.append(counts + noMessage)
        }
        // In the folder rows' order, then by UID.
        let position = Dictionary(
            record.folders.enumerated().map { ($1.sourceName, $0) }, uniquingKeysWith: { first, _ in first })
        let destination = Dictionary(
            record.folders.map { ($0.sourceName, $0.destinationName) }, uniquingKeysWith: { first, _ in first })
        let ordered = failed.sorted {
            (position[$0.folder] ?? Int.max, $0.uid) < (position[$1.folder] ?? Int.max, $1.uid)
        }
        let noCounts = [CSVWriter.Field](repeating: .empty, count: 5)
        for message in ordered {
            let place: [CSVWriter.Field] = [
                .text("failed_message"), .text(message.folder),
                destination[message.folder].map(CSVWriter.Field.text) ?? .empty,
            ]
            let detail: [CSVWriter.Field] = [
                .number(Int64(message.uid)), message.size.map(CSVWriter.Field.number) ?? .empty,
                Self.time(message.internalDate), .text(message.reason),
            ]
            csv.append(place + noCounts + detail)
        }
        return Self.csvResponse(csv, filename: "migration-\(id)-report.csv")
    }

    /// The account's outbox, newest first: what was sent, what waits, what failed and why.
    @Sendable func notifications(_ request: Request, context: APIContext) async throws -> Response {
        let caller = try context.require(.migrationsRead)
        var problems: [(String, String)] = []
        let page = MigrationRoutes.pageRequest(request.uri.queryParameters, problems: &problems)
        if !problems.isEmpty { throw APIError.validation(problems) }
        let notices = try await store.listNotices(accountID: caller.account.id, page: page)
        return jsonResponse(
            Render.page(notices, path: "/api/v1/notifications", filters: [], item: Self.notice))
    }

    static func notice(_ notice: Notice) -> JSONValue {
        .object([
            ("id", .int(notice.id)),
            ("event", .string(notice.event.rawValue)),
            ("batch_id", notice.batchID.map(JSONValue.int) ?? .null),
            ("migration_id", notice.migrationID.map(JSONValue.int) ?? .null),
            ("recipient", .string(notice.recipient)),
            ("status", .string(notice.status.rawValue)),
            ("attempts", .int(Int64(notice.attempts))),
            ("next_attempt_at", notice.status == .pending ? Render.date(notice.nextAttemptAt) : .null),
            ("last_error_code", notice.lastErrorCode.map(JSONValue.string) ?? .null),
            ("last_error", notice.lastError.map(JSONValue.string) ?? .null),
            ("sent_at", Render.date(notice.sentAt)),
            ("created_at", Render.date(notice.createdAt)),
        ])
    }

    static func time(_ date: Date?) -> CSVWriter.Field {
        guard case .string(let text) = Render.date(date) else { return .empty }
        return .text(text)
    }

    static func csvResponse(_ csv: CSVWriter, filename: String) -> Response {
        Response(
            status: .ok,
            headers: [
                .contentType: "text/csv; charset=utf-8; header=present",
                .contentDisposition: "attachment; filename=\"\(filename)\"",
            ],
            body: .init(byteBuffer: ByteBuffer(string: csv.text)))
    }
}
