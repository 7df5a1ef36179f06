import Foundation
import Store

/// How objects look on the wire (see Resources/openapi.json).
enum Render {
    /// `2026-03-13T10:00:00+00:00`, as the API reference shows it.
    static func date(_ date: Date) -> JSONValue {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        func two(_ value: Int?) -> String {
            let value = value ?? 0
            return value < 10 ? "0\(value)" : "\(value)"
        }
        let year = String(parts.year ?? 1970)
        return .string(
            "\(year)-\(two(parts.month))-\(two(parts.day))T\(two(parts.hour)):\(two(parts.minute)):\(two(parts.second))+00:00"
        )
    }

    static func date(_ date: Date?) -> JSONValue { date.map { Self.date($0) } ?? .null }

    /// `jane@gmail.com` → `j***e@gmail.com`: enough to recognise, not enough to harvest.
    static func maskedEmail(_ email: String) -> String {
        guard let at = email.lastIndex(of: "@") else {
            return email.isEmpty ? "" : String(email.prefix(1)) + "***"
        }
        let local = email[..<at]
        let domain = email[at...]
        guard let first = local.first else { return "***" + domain }
        if local.count <= 2 { return "\(first)***\(domain)" }
        return "\(first)***\(local.last.map(String.init) ?? "")\(domain)"
    }

    static func migration(_ record: MigrationRecord) -> JSONValue {
        .object([
            ("id", .int(record.id)),
            ("mailbox_id", .int(record.mailboxID)),
            ("mailbox_email", .optional(record.mailboxEmail)),
            ("batch_id", .optional(record.batchID)),
            ("provider", .string(record.provider)),
            ("source_host", .string(record.sourceHost)),
            ("source_port", .int(record.sourcePort)),
            ("source_security", .string(record.sourceSecurity)),
            ("source_email", .string(maskedEmail(record.sourceEmail))),
            ("status", .string(record.status.rawValue)),
            ("status_label", .string(record.status.label)),
            ("progress", .int(record.progress)),
            ("total_messages", .int(record.totalMessages)),
            ("imported_messages", .int(record.importedMessages)),
            ("failed_messages", .int(record.failedMessages)),
            ("skipped_duplicates", .int(record.skippedDuplicates)),
            ("selected_folders", record.selectedFolders.map { .array($0.map(JSONValue.string)) } ?? .null),
            ("import_since", .optional(record.importSince)),
            ("skip_duplicates", .bool(record.skipDuplicates)),
            ("passes", .int(record.passes)),
            ("last_pass_at", date(record.lastPassAt)),
            ("sync_deletions", .bool(record.syncDeletions)),
            ("sync_every_hours", record.syncEveryHours.map { .int($0) } ?? .null),
            ("next_pass_at", date(record.nextPassAt)),
            ("folders", .array(record.folders.map(folder))),
            ("error_code", .optional(record.error?.code)),
            ("error_message", .optional(record.error?.message)),
            ("error_hint", .optional(record.error?.hint)),
            ("poll_hint_seconds", .optional(record.status.pollHintSeconds)),
            ("started_at", date(record.startedAt)),
            ("finished_at", date(record.finishedAt)),
            ("created_at", date(record.createdAt)),
            ("updated_at", date(record.updatedAt)),
        ])
    }

    static func folder(_ folder: FolderProgress) -> JSONValue {
        .object([
            ("name", .string(folder.sourceName)),
            ("destination", .string(folder.destinationName)),
            ("status", .string(folder.status.rawValue)),
            ("expected", .int(folder.expected)),
            ("imported", .int(folder.imported)),
            ("failed", .int(folder.failed)),
            ("skipped", .int(folder.skipped)),
            ("flags_updated", .int(folder.flagsUpdated)),
            ("deleted", .int(folder.deleted)),
        ])
    }

    static func auditEvent(_ event: AuditEvent) -> JSONValue {
        .object([
            ("id", .int(event.id)),
            ("action", .string(event.action)),
            ("resource_type", .string(event.resourceType)),
            ("resource_id", .optional(event.resourceID)),
            ("token_id", .optional(event.tokenID)),
            ("ip", .optional(event.ip)),
            ("request_id", .optional(event.requestID)),
            ("created_at", date(event.createdAt)),
        ])
    }

    /// `{"data":[…],"meta":{…},"links":{…}}`; links keep the listing's filters.
    static func page<Item>(
        _ page: Page<Item>, path: String, filters: [(String, String)],
        item: (Item) -> JSONValue
    ) -> JSONValue {
        func link(_ number: Int) -> JSONValue {
            let query = (filters + [("page", String(number)), ("per_page", String(page.perPage))])
                .map { "\($0.0)=\(percentEncoded($0.1))" }.joined(separator: "&")
            return .string("\(path)?\(query)")
        }
        let last = page.lastPage
        return .object([
            ("data", .array(page.items.map(item))),
            (
                "meta",
                .object([
                    ("current_page", .int(page.page)),
                    ("per_page", .int(page.perPage)),
                    ("total", .int(page.total)),
                    ("last_page", .int(last)),
                ])
            ),
            (
                "links",
                .object([
                    ("first", link(1)),
                    ("last", link(last)),
                    ("prev", page.page > 1 ? link(min(page.page - 1, last)) : .null),
                    ("next", page.page < last ? link(page.page + 1) : .null),
                ])
            ),
        ])
    }

    static func percentEncoded(_ value: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
    }
}
