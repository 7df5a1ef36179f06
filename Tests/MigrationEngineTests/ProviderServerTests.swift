import IMAPClient
import MigrationEngine
import Testing

/// One rule for where a source server is, used by the API, the job runner, migrate and test-connection.
@Suite("Provider presets")
struct ProviderServerTests {
    struct Row: Sendable, CustomTestStringConvertible {
        var provider: Provider
        var host: String?
        var port: Int?
        var security: ConnectionSecurity?
        var expected: String
        var testDescription: String {
            "\(provider.rawValue) \(host ?? "-") \(port.map(String.init) ?? "-") \(security?.rawValue ?? "-")"
        }
    }

    static let rows: [Row] = [
        Row(provider: .gmail, expected: "imap.gmail.com:993 ssl"),
        Row(provider: .outlook, expected: "outlook.office365.com:993 ssl"),
        Row(provider: .yahoo, expected: "imap.mail.yahoo.com:993 ssl"),
        Row(provider: .icloud, expected: "imap.mail.me.com:993 ssl"),
        Row(provider: .gmail, host: "", expected: "imap.gmail.com:993 ssl"),
        Row(provider: .gmail, security: .tls, expected: "imap.gmail.com:143 tls"),
        Row(provider: .gmail, host: "imap.example.net", expected: "imap.example.net:993 ssl"),
        Row(provider: .outlook, port: 1993, expected: "outlook.office365.com:1993 ssl"),
        Row(provider: .genericIMAP, host: "imap.example.net", expected: "imap.example.net:993 ssl"),
        Row(
            provider: .genericIMAP, host: "imap.example.net", security: ConnectionSecurity.none,
            expected: "imap.example.net:143 none"),
        Row(
            provider: .genericIMAP, host: "imap.example.net", port: 10143, security: .tls,
            expected: "imap.example.net:10143 tls"),
    ]

    @Test(arguments: rows)
    func fillsWhatWasNotGiven(_ row: Row) throws {
        let server = try row.provider.server(host: row.host, port: row.port, security: row.security)
        #expect("\(server.host):\(server.port) \(server.security.rawValue)" == row.expected)
    }

    @Test(arguments: [nil, ""])
    func noHostAndNoPresetIsAClassifiedFailure(host: String?) {
        #expect {
            _ = try Provider.genericIMAP.server(host: host, port: 993, security: .ssl)
        } throws: { error in
            guard let failure = error as? ImportFailure else { return false }
            return failure.code == .hostUnreachable && failure.hint.contains("gmail")
        }
    }
}
