import IMAPClient
import MigrationEngine

/// A bulk CSV read and checked row by row (SPEC.md §5): nothing is started, nothing is connected to.
public struct BulkPreview: Sendable {
    /// One per data row, in input order (the header, blank and comment lines are not rows).
    public var rows: [RowVerdict]
    /// Whether the first record was taken for a header.
    public var hadHeader: Bool

    /// How many rows fell in each category; every category is present, zeros included.
    public var counts: [RowCategory: Int] {
        var counts = Dictionary(uniqueKeysWithValues: RowCategory.allCases.map { ($0, 0) })
        for row in rows { counts[row.category, default: 0] += 1 }
        return counts
    }

    /// The rows that become jobs.
    public var jobs: [BulkJobRow] { rows.compactMap(\.job) }

    /// Reads `csv` and classifies its rows. Throws only for a document that cannot be read at all
    /// (too large, not UTF-8, a broken quote): then no row can be trusted.
    public init(csv: String, rules: BulkRules) throws(CSVError) {
        self.init(records: try CSVReader.read(csv), rules: rules)
    }

    public init(records: [CSVRecord], rules: BulkRules) {
        var records = records[...]
        hadHeader = records.first.map(BulkLayout.isHeader) ?? false
        if hadHeader { records = records.dropFirst() }
        var classifier = RowClassifier(rules: rules)
        rows = records.map { classifier.classify($0) }
    }
}

/// The checks of one row, in the order a person would fix them; the first failing one names the
/// row's category. Remembers earlier rows for `duplicate_row` and `over_plan_limit`.
struct RowClassifier {
    let rules: BulkRules
    /// (source, destination) of each row that passed the field checks, and its line.
    private var seen: [String: Int] = [:]
    private var validCount = 0

    init(rules: BulkRules) {
        self.rules = rules
    }

    static let maxFieldLength = 255

    mutating func classify(_ record: CSVRecord) -> RowVerdict {
        let columns = rules.layout.columns
        let fields = record.fields
        guard fields.count == columns.count else {
            // Most often an unquoted comma in a password splits it: the row has no readable
            // password, and no field can be trusted to be what its position says, so none is shown.
            let expected =
                "The row has \(fields.count) field\(fields.count == 1 ? "" : "s"), expected \(columns.count) "
                + "(\(columns.joined(separator: ", "))). "
            let message =
                switch BulkLayout(fieldCount: fields.count) {
                case .perRowServer?:
                    expected + "Set per_row_server to true to give each row its own server, "
                        + "or remove the last three fields."
                case .simple?:
                    expected + "Set per_row_server to false to use the batch's server, or add source_host, "
                        + "source_port and source_security."
                case nil:
                    expected + "If the password holds a comma or a quote, put it in double quotes and double each "
                        + "quote inside it."
                }
            return RowVerdict(
                line: record.line, sourceEmail: nil, destinationEmail: nil, category: .missingPassword,
                message: message, job: nil)
        }
        let source = fields[0]
        let password = fields[1]
        let destination = fields[2].lowercased()
        let sourceShown = Self.isEmail(source) ? source : nil
        let destinationShown = Self.isEmail(destination) ? destination : nil
        func verdict(_ category: RowCategory, _ message: String?, job: BulkJobRow? = nil) -> RowVerdict {
            RowVerdict(
                line: record.line, sourceEmail: sourceShown, destinationEmail: destinationShown,
                category: category, message: message, job: job)
        }

        if source.isEmpty { return verdict(.invalidSourceEmail, "The source email is empty.") }
        if sourceShown == nil {
            return verdict(
                .invalidSourceEmail,
                "The source email is not an email address (name@domain.tld) of at most 255 characters.")
        }
        if password.isEmpty { return verdict(.missingPassword, "The source password is empty.") }
        if password.count > Self.maxFieldLength {
            return verdict(.missingPassword, "The source password is longer than \(Self.maxFieldLength) characters.")
        }
        if password.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            return verdict(.missingPassword, "The source password holds a line break or another control character.")
        }
        if destination.isEmpty { return verdict(.invalidDestination, "The destination email is empty.") }
        if destinationShown == nil {
            return verdict(.invalidDestination, "The destination email is not an email address (name@domain.tld).")
        }
        if !rules.mailboxes.contains(destination) {
            return verdict(
                .invalidDestination,
                "The account has no mailbox with this address; "
                    + "add the mailbox first, or correct the address.")
        }
        let server: SourceServer
        switch resolveServer(fields) {
        case .success(let resolved): server = resolved
        case .failure(let problem): return verdict(.invalidServer, problem.message)
        }
        // One source account into one mailbox, whichever server a row names for it.
        let key = "\(source.lowercased())\u{0}\(destination)"
        if let first = seen[key] {
            return verdict(
                .duplicateRow, "The same source and destination as line \(first); only that row is imported.")
        }
        seen[key] = record.line
        validCount += 1
        if validCount > rules.rowsPerBatch {
            return verdict(
                .overPlanLimit,
                "The \(rules.planName) plan allows \(rules.rowsPerBatch) rows per batch "
                    + "and this is valid row \(validCount); import the rest as another batch.")
        }
        let job = BulkJobRow(
            line: record.line, sourceEmail: source, sourcePassword: password,
            destinationEmail: destination, server: server)
        return verdict(.valid, nil, job: job)
    }

    static func isEmail(_ value: String) -> Bool {
        (3...maxFieldLength).contains(value.count) && SourceFieldSyntax.isEmailAddress(value)
    }

    struct Problem: Error {
        var message: String
    }

    private func resolveServer(_ fields: [String]) -> Result<SourceServer, Problem> {
        guard rules.layout == .perRowServer else {
            guard let server = rules.batchServer else {
                return .failure(
                    Problem(
                        message: "The batch names no source server; give source_host, source_port "
                            + "and source_security, or a provider with a preset."))
            }
            return .success(server)
        }
        let host = fields[3]
        let portText = fields[4]
        let securityText = fields[5].lowercased()
        if !host.isEmpty && !SourceFieldSyntax.isHostName(host) {
            return .failure(Problem(message: "The source host is not a host name or IP address."))
        }
        var port: Int?
        if !portText.isEmpty {
            guard let number = Int(portText), (1...65535).contains(number) else {
                return .failure(Problem(message: "The source port must be a number from 1 to 65535."))
            }
            port = number
        }
        var security: ConnectionSecurity?
        if !securityText.isEmpty {
            guard let known = ConnectionSecurity(rawValue: securityText) else {
                return .failure(Problem(message: "The source security must be ssl, tls or none."))
            }
            security = known
        }
        let bareHost = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        guard let resolved = try? rules.provider.server(host: bareHost, port: port, security: security) else {
            return .failure(Problem(message: "The source host is empty; give the IMAP server's host name."))
        }
        if rules.isBlocked(host: resolved.host) {
            return .failure(
                Problem(
                    message: "The source host is a private, loopback or link-local address, "
                        + "which this service does not connect to; give the server's public name."))
        }
        return .success(SourceServer(host: resolved.host, port: resolved.port, security: resolved.security))
    }
}
