import BulkImport
import Foundation
import HTTPTypes
import Hummingbird
import IMAPClient
import MigrationEngine
import Store

extension HTTPField.Name {
    static let referrerPolicy = Self("Referrer-Policy")!
    static let frameOptions = Self("X-Frame-Options")!
}

/// The Import page (SPEC.md §1 "Web UI"): the files of `Resources/web` at `/` and `/ui/{file}`, and
/// `/ui/rules.json`, the provider presets and status rules the page follows, written from the types
/// that own them so the page keeps no copy of its own. No authentication: the page holds no data;
/// everything it shows comes from `/api/v1` with the token the user pastes.
enum WebRoutes {
    /// No script, style, image or connection from anywhere but this server, none inline, no frames,
    /// no native form submission (a form that somehow submitted would put fields in a URL).
    static let contentSecurityPolicy =
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        + "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

    static func register(on router: Router<APIContext>) {
        router.get("/") { _, _ in try response(for: "index.html") }
        router.get("ui/rules.json") { _, _ in rulesResponse }
        router.get("ui/{file}") { _, context in
            guard let name = context.parameters.get("file"), name != "index.html" else {
                throw APIError.notFound("file")
            }
            return try response(for: name)
        }
    }

    static func response(for name: String) throws -> Response {
        guard let asset = WebAssets.files[name] else { throw APIError.notFound("file") }
        return page(asset.bytes, contentType: asset.contentType)
    }

    /// Every page response carries the same security headers; `no-cache` so a new build's files
    /// are fetched again (revalidated, not stale), which matters more here than a saved request.
    static func page(_ bytes: [UInt8], contentType: String) -> Response {
        Response(
            status: .ok,
            headers: [
                .contentType: contentType,
                .contentSecurityPolicy: contentSecurityPolicy,
                .xContentTypeOptions: "nosniff",
                .referrerPolicy: "no-referrer",
                .frameOptions: "DENY",
                .cacheControl: "no-cache",
            ],
            body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static var rulesResponse: Response {
        page(Array(rules.serialized.utf8), contentType: "application/json; charset=utf-8")
    }

    /// What the page needs to know about the API's rules.
    static var rules: JSONValue {
        func statuses(_ list: [MigrationStatus]) -> JSONValue { .strings(list.map(\.rawValue)) }
        func batchStatuses(_ list: [BatchStatus]) -> JSONValue { .strings(list.map(\.rawValue)) }
        return .object([
            (
                "providers",
                .array(
                    Provider.allCases.map { provider in
                        let preset = provider.preset
                        return .object([
                            ("id", .string(provider.rawValue)),
                            ("label", .string(label(provider))),
                            ("host", .optional(preset?.host)),
                            ("port", .optional(preset.map { $0.security.defaultPort })),
                            ("security", .optional(preset?.security.rawValue)),
                            ("needs_app_password", .bool(provider.needsAppPassword)),
                            ("login_hint", .string(provider.loginHint)),
                        ])
                    })
            ),
            (
                "security",
                .array(
                    ConnectionSecurity.allCases.map {
                        .object([("id", .string($0.rawValue)), ("default_port", .int($0.defaultPort))])
                    })
            ),
            (
                "migration_statuses",
                .array(
                    MigrationStatus.allCases.map {
                        .object([
                            ("id", .string($0.rawValue)), ("label", .string($0.label)),
                            ("terminal", .bool($0.isTerminal)),
                        ])
                    })
            ),
            (
                "migration_actions",
                .object([
                    ("cancel", statuses(MigrationTransition.cancel.from)),
                    ("retry", statuses(MigrationTransition.retry.from)),
                    ("delete", statuses(MigrationTransition.delete.from)),
                ])
            ),
            (
                "batch_statuses",
                .array(
                    BatchStatus.allCases.map {
                        .object([
                            ("id", .string($0.rawValue)), ("label", .string($0.label)),
                            ("active", .bool($0.isActive)),
                        ])
                    })
            ),
            (
                "batch_actions",
                .object([
                    ("cancel", batchStatuses(BatchTransition.cancel.from)),
                    ("retry", batchStatuses(BatchTransition.retry.from)),
                    ("resume", batchStatuses(BatchTransition.resume.from)),
                    ("delete", batchStatuses(BatchTransition.delete.from)),
                ])
            ),
            ("job_actions", .object([("update_password", statuses(BatchJobChange.updatePassword.from))])),
            ("folder_strategies", .strings(FolderStrategy.allCases.map(\.rawValue))),
            ("row_categories", .strings(RowCategory.allCases.map(\.rawValue))),
            ("max_page_size", .int(PageRequest.maxPerPage)),
        ])
    }

    /// The name a person knows the provider by.
    static func label(_ provider: Provider) -> String {
        switch provider {
        case .gmail: "Gmail / Google Workspace"
        case .outlook: "Outlook / Microsoft 365"
        case .yahoo: "Yahoo Mail"
        case .icloud: "iCloud Mail"
        case .genericIMAP: "Other IMAP server"
        }
    }
}

/// The files of `Resources/web`, read once; only these names are ever served.
enum WebAssets {
    struct Asset: Sendable {
        var bytes: [UInt8]
        var contentType: String
    }

    static let contentTypes = [
        "html": "text/html; charset=utf-8",
        "js": "text/javascript; charset=utf-8",
        "css": "text/css; charset=utf-8",
        "svg": "image/svg+xml",
        "png": "image/png",
        "json": "application/json; charset=utf-8",
    ]

    static let files: [String: Asset] = {
        guard let folder = Bundle.module.url(forResource: "web", withExtension: nil),
            let names = try? FileManager.default.contentsOfDirectory(atPath: folder.path)
        else { return [:] }
        var files: [String: Asset] = [:]
        for name in names {
            let ext = (name as NSString).pathExtension.lowercased()
            guard let type = contentTypes[ext],
                let data = try? Data(contentsOf: folder.appendingPathComponent(name))
            else { continue }
            files[name] = Asset(bytes: Array(data), contentType: type)
        }
        return files
    }()
}
