import IMAPClient
import MigrationEngine
import NIOCore

/// What a row of a bulk CSV holds (SPEC.md §5): the simple layout, or with `per_row_server` the
/// full one that names each row's source server.
public enum BulkLayout: Sendable, Equatable {
    case simple
    case perRowServer

    public var columns: [String] {
        switch self {
        case .simple: ["source_email", "source_password", "destination_email"]
        case .perRowServer:
            [
                "source_email", "source_password", "destination_email",
                "source_host", "source_port", "source_security",
            ]
        }
    }

    /// The layout a row of `count` fields would be, if any.
    init?(fieldCount count: Int) {
        switch count {
        case Self.simple.columns.count: self = .simple
        case Self.perRowServer.columns.count: self = .perRowServer
        default: return nil
        }
    }

    /// A first record is a header when it names either layout's columns, in order (any case): a
    /// header of the other layout is no row either, and each row then says which layout it is.
    static func isHeader(_ record: CSVRecord) -> Bool {
        let names = record.fields.map { $0.lowercased() }
        return names == simple.columns || names == perRowServer.columns
    }
}

/// The one category a preview gives each row (SPEC.md §5).
public enum RowCategory: String, Sendable, CaseIterable, Codable {
    case valid
    case invalidSourceEmail = "invalid_source_email"
    case invalidDestination = "invalid_destination"
    case missingPassword = "missing_password"
    case invalidServer = "invalid_server"
    case duplicateRow = "duplicate_row"
    case overPlanLimit = "over_plan_limit"
}

/// A source server as a row or the batch names it, resolved.
public struct SourceServer: Sendable, Equatable, Hashable {
    public var host: String
    public var port: Int
    public var security: ConnectionSecurity

    public init(host: String, port: Int, security: ConnectionSecurity) {
        self.host = host
        self.port = port
        self.security = security
    }
}

/// A row that can become a job. Its description never shows the password.
public struct BulkJobRow: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    public var line: Int
    public var sourceEmail: String
    public var sourcePassword: String
    /// Lower-cased, as mailboxes are stored.
    public var destinationEmail: String
    public var server: SourceServer

    public init(line: Int, sourceEmail: String, sourcePassword: String, destinationEmail: String, server: SourceServer)
    {
        self.line = line
        self.sourceEmail = sourceEmail
        self.sourcePassword = sourcePassword
        self.destinationEmail = destinationEmail
        self.server = server
    }

    public var description: String {
        "BulkJobRow(line: \(line), source: \(sourceEmail), destination: \(destinationEmail))"
    }
    public var debugDescription: String { description }
}

/// One row's verdict, as a preview shows it: emails only where they read as addresses (a field in
/// the wrong column may be a password), a message a person can act on, and never the password.
public struct RowVerdict: Sendable, Equatable {
    public var line: Int
    public var sourceEmail: String?
    public var destinationEmail: String?
    public var category: RowCategory
    /// nil for a valid row.
    public var message: String?
    /// The job this row becomes; only for a valid row.
    public var job: BulkJobRow?
}

/// What a preview checks rows against.
public struct BulkRules: Sendable {
    public var layout: BulkLayout
    /// Fills what a per-row server leaves empty (`Provider.server(host:port:security:)`).
    public var provider: Provider
    /// The batch's server, for simple rows (with `perRowServer`, each row names its own).
    public var batchServer: SourceServer?
    /// The account's destination mailboxes, lower-cased.
    public var mailboxes: Set<String>
    /// The plan's name and rows per batch, for `over_plan_limit`.
    public var planName: String
    public var rowsPerBatch: Int
    /// The address rule the service connects under (`AddressPolicy.filter(allowPrivateHosts:)`),
    /// applied here to hosts written as addresses. Names are resolved only when connecting, where
    /// the same rule refuses them again with `private_host_blocked`.
    public var addressAllowed: @Sendable (SocketAddress) -> Bool

    public init(
        layout: BulkLayout, provider: Provider = .genericIMAP, batchServer: SourceServer?, mailboxes: Set<String>,
        planName: String,
        rowsPerBatch: Int, addressAllowed: @escaping @Sendable (SocketAddress) -> Bool
    ) {
        self.layout = layout
        self.provider = provider
        self.batchServer = batchServer
        self.mailboxes = mailboxes
        self.planName = planName
        self.rowsPerBatch = rowsPerBatch
        self.addressAllowed = addressAllowed
    }

    /// Whether `host` is an address (IPv4, IPv6, bracketed or not) the service would refuse to
    /// connect to. A name is not resolved here.
    public func isBlocked(host: String) -> Bool {
        Self.isBlocked(host: host, addressAllowed: addressAllowed)
    }

    /// The same check for a host outside any row (the batch's own server).
    public static func isBlocked(host: String, addressAllowed: (SocketAddress) -> Bool) -> Bool {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        guard let address = try? SocketAddress(ipAddress: bare, port: 0) else { return false }
        return !addressAllowed(address)
    }
}
