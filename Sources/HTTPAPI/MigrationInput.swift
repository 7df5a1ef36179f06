import Foundation
import IMAPClient
import MigrationEngine
import Store

/// The source fields shared by test-connection and start (SPEC.md §4), checked, with provider
/// presets filling host, port and security (`Provider.server(host:port:security:)`).
struct SourceInput {
    var provider: Provider
    var host: String
    var port: Int
    var security: ConnectionSecurity
    var email: String
    var username: String
    var password: String

    static func read(_ body: inout BodyReader, providerRequired: Bool) -> SourceInput? {
        let providerName = body.string("provider", required: providerRequired, length: 1...32)
        var provider = Provider.genericIMAP
        if let providerName {
            if let known = Provider(rawValue: providerName.lowercased()) {
                provider = known
            } else {
                body.fail("provider", "must be one of \(Provider.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }
        let preset = provider.preset
        var host = body.string("source_host", required: preset == nil)
        if let given = host, !SourceFieldSyntax.isHostName(given) {
            body.fail("source_host", "must be a host name or IP address")
        }
        if let given = host, given.hasPrefix("["), given.hasSuffix("]") { host = String(given.dropFirst().dropLast()) }
        let port = body.int("source_port", required: preset == nil, range: 1...65535)
        var security: ConnectionSecurity?
        if let name = body.string("source_security", required: preset == nil, length: 1...8) {
            security = ConnectionSecurity(rawValue: name.lowercased())
            if security == nil { body.fail("source_security", "must be ssl, tls or none") }
        }
        let email = body.string("source_email", required: true, length: 3...255)
        if let email, !SourceFieldSyntax.isEmailAddress(email) { body.fail("source_email", "must be an email address") }
        let username = body.string("source_username", required: false)
        let password = body.string("source_password", required: true, trim: false)

        guard let email, let password,
            let server = try? provider.server(host: host, port: port.map(Int.init), security: security)
        else { return nil }
        return SourceInput(
            provider: provider, host: server.host, port: server.port, security: server.security,
            email: email, username: username ?? email, password: password)
    }

    func account(allowPrivateHosts: Bool, trustRootsPEM: [String]) -> MailAccount {
        Self.account(
            host: host, port: port, security: security, username: username, password: password,
            allowPrivateHosts: allowPrivateHosts, trustRootsPEM: trustRootsPEM)
    }

    /// A source to log in to on a user's behalf (test-connection, a bulk preview's login check):
    /// the private-host guard and the timeouts are the same for both.
    static func account(
        host: String, port: Int, security: ConnectionSecurity, username: String, password: String,
        allowPrivateHosts: Bool, trustRootsPEM: [String]
    ) -> MailAccount {
        MailAccount(
            server: ServerConfiguration(
                host: host, port: port, security: security,
                additionalTrustRootsPEM: trustRootsPEM,
                connectTimeout: .seconds(10), greetingTimeout: .seconds(15),
                idleTimeout: .seconds(60),
                addressFilter: AddressPolicy.filter(allowPrivateHosts: allowPrivateHosts)),
            credentials: .password(username: username, password: password))
    }
}

/// The start body: the source plus where to, what and how.
struct StartInput {
    var source: SourceInput
    var mailboxID: Int64
    var targetPassword: String?
    var selectedFolders: [String]?
    var importSince: String?
    var skipDuplicates: Bool
    /// Mail the account when the migration ends.
    var notify = false
    /// Delta passes on a schedule until `:finalize`: hours between them.
    var syncEveryHours: Int?

    /// Hours between scheduled passes: at least one, at most a year.
    static let syncIntervalHours: ClosedRange<Int64> = 1...8760

    static func read(_ body: inout BodyReader, hasMasterCredentials: Bool) -> StartInput? {
        let mailboxID = body.int("mailbox_id", required: true, range: 1...Int64(Int32.max))
        let source = SourceInput.read(&body, providerRequired: true)
        let targetPassword = body.string("target_password", required: !hasMasterCredentials, trim: false)
        let folders = body.stringArray("selected_folders", maxItems: 1000)
        if let folders, folders.isEmpty {
            body.fail("selected_folders", "must name at least one folder, or be omitted for all")
        }
        let since = body.string("import_since", required: false, length: 1...32)
        if let since, CalendarDay(since) == nil { body.fail("import_since", CalendarDay.rule) }
        let skipDuplicates = body.bool("skip_duplicates") ?? true
        let notify = body.bool("notify") ?? false
        let syncEveryHours = body.int("sync_every_hours", required: false, range: syncIntervalHours)
        guard let mailboxID, let source, body.problems.isEmpty else { return nil }
        return StartInput(
            source: source, mailboxID: mailboxID, targetPassword: targetPassword,
            selectedFolders: folders, importSince: since, skipDuplicates: skipDuplicates, notify: notify,
            syncEveryHours: syncEveryHours.map { Int($0) })
    }

    func newMigration(accountID: Int64) -> NewMigration {
        var migration = NewMigration(
            accountID: accountID, mailboxID: mailboxID, provider: source.provider.rawValue,
            sourceHost: source.host, sourcePort: source.port, sourceSecurity: source.security.rawValue,
            sourceEmail: source.email, sourceUsername: source.username, sourcePassword: source.password,
            targetPassword: targetPassword, selectedFolders: selectedFolders, importSince: importSince,
            skipDuplicates: skipDuplicates)
        migration.notify = notify
        migration.syncEveryHours = syncEveryHours
        return migration
    }
}
