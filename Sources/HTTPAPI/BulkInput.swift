import BulkImport
import Foundation
import IMAPClient
import MigrationEngine
import Store

/// The body of a bulk preview, and of a bulk start (SPEC.md §5): the CSV and the batch's server,
/// checked; with `start`, the batch's settings too.
struct BulkInput {
    var csv: String
    var provider: Provider
    var layout: BulkLayout
    /// The server simple rows use (nil with `per_row_server`).
    var batchServer: SourceServer?
    var name: String?
    var folderStrategy: FolderStrategy
    var importSince: String?
    var skipDuplicates: Bool
    var idempotencyKey: String?
    /// Preview only: log in to each valid row's source first (`LoginCheck`).
    var checkLogins: Bool
    /// Add the missing destination mailboxes the service may add (`MissingMailboxes`): listed by
    /// a preview, added by a start.
    var createMissingMailboxes: Bool

    static func read(_ body: inout BodyReader, start: Bool, isBlocked: (String) -> Bool) -> BulkInput? {
        let csv = body.text("data", required: true)
        let perRowServer = body.bool("per_row_server") ?? false
        var provider = Provider.genericIMAP
        if let name = body.string("provider", required: false, length: 1...32) {
            if let known = Provider(rawValue: name.lowercased()) {
                provider = known
            } else {
                body.fail("provider", "must be one of \(Provider.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }
        var host = body.string("source_host", required: false)
        if let given = host, !SourceFieldSyntax.isHostName(given) {
            body.fail("source_host", "must be a host name or IP address")
        }
        if let given = host, given.hasPrefix("["), given.hasSuffix("]") { host = String(given.dropFirst().dropLast()) }
        let port = body.int("source_port", required: false, range: 1...65535)
        var security: ConnectionSecurity?
        if let name = body.string("source_security", required: false, length: 1...8) {
            security = ConnectionSecurity(rawValue: name.lowercased())
            if security == nil { body.fail("source_security", "must be ssl, tls or none") }
        }
        var batchServer: SourceServer?
        if !perRowServer {
            if let server = try? provider.server(host: host, port: port.map(Int.init), security: security) {
                batchServer = SourceServer(host: server.host, port: server.port, security: server.security)
                if isBlocked(server.host) {
                    body.fail(
                        "source_host",
                        "is a private, loopback or link-local address, which this service does not connect to")
                }
            } else if body.problems.isEmpty {
                body.fail("source_host", "is required unless the provider has a preset or per_row_server is true")
            }
        }
        var name: String?
        var strategy = FolderStrategy.all
        var since: String?
        var skipDuplicates = true
        var key: String?
        let checkLogins = start ? false : body.bool("check_logins") ?? false
        let createMissing = body.bool("create_missing_mailboxes") ?? false
        if start {
            name = body.string("name", required: false, length: 0...255)
            if let value = body.string("folder_strategy", required: false, length: 1...32) {
                if let known = FolderStrategy(rawValue: value.lowercased()) {
                    strategy = known
                } else {
                    body.fail(
                        "folder_strategy",
                        "must be one of \(FolderStrategy.allCases.map(\.rawValue).joined(separator: ", "))")
                }
            }
            since = body.string("import_since", required: false, length: 10...10)
            if let value = since, CalendarDay(value) == nil { body.fail("import_since", CalendarDay.rule) }
            skipDuplicates = body.bool("skip_duplicates") ?? true
            key = body.string("idempotency_key", required: false, length: 1...255)
        }
        guard let csv, body.problems.isEmpty else { return nil }
        return BulkInput(
            csv: csv, provider: provider, layout: perRowServer ? .perRowServer : .simple,
            batchServer: batchServer, name: name.flatMap { $0.isEmpty ? nil : $0 },
            folderStrategy: strategy, importSince: since, skipDuplicates: skipDuplicates,
            idempotencyKey: key, checkLogins: checkLogins, createMissingMailboxes: createMissing)
    }

    /// The field an idempotency key may come in, read before the handler runs (the key decides
    /// whether it runs at all).
    static func idempotencyKey(_ body: BodyReader) -> String? {
        var copy = body
        return copy.string("idempotency_key", required: false, length: 1...255)
    }
}
