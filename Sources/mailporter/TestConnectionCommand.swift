import ArgumentParser
import HTTPAPI
import IMAPClient
import MigrationEngine

struct TestConnectionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test-connection",
        abstract: "Log in to an IMAP account and list its folders with their message counts.",
        discussion: "The password comes from MAILPORTER_PASSWORD or a prompt, never from the command line."
    )

    @Option(help: "IMAP server host name (default: the provider's).") var host: String?
    @Option(help: "IMAP server port (default 993 for ssl, 143 otherwise).") var port: Int?
    @Option(help: "ssl (implicit TLS), tls (STARTTLS) or none (default: the provider's, else ssl).") var security:
        ConnectionSecurity?
    @Option(help: "Login name.") var user: String
    @Option(help: "Log in as --user through this master user (SASL PLAIN authorization identity).") var masterUser:
        String?
    @Option(help: "gmail, outlook, yahoo, icloud or generic_imap: fills host, port and security, and tailors hints.")
    var provider: Provider = .genericIMAP
    @Flag(help: "Print JSON instead of a table.") var json = false
    @OptionGroup var tls: TLSOptions

    func run() async throws {
        var server: ServerConfiguration
        do {
            server = try provider.server(host: host, port: port, security: security)
        } catch {
            throw ValidationError("--host is required for \(provider.rawValue), which has no preset server")
        }
        try tls.apply(to: &server)
        let password = try Terminal.secret(fromEnvironment: "MAILPORTER_PASSWORD", prompt: "Password for \(user): ")
        let credentials: Credentials =
            masterUser.map { .master(user: user, masterUsername: $0, masterPassword: password) }
            ?? .password(username: user, password: password)
        do {
            let folders = try await ConnectionCheck.run(
                MailAccount(server: server, credentials: credentials), provider: provider)
            if json {
                JSONLine.print([
                    ("success", .bool(true)),
                    ("folders", .object(folders.map { ($0.name, .int($0.messages)) })),
                ])
            } else {
                let width = min(60, folders.map(\.name.count).max() ?? 0)
                for folder in folders {
                    let padding = String(repeating: " ", count: max(1, width - folder.name.count + 2))
                    print("\(folder.name)\(padding)\(folder.messages)")
                }
                print("\(folders.count) folders, \(folders.reduce(0) { $0 + $1.messages }) messages")
            }
        } catch {
            Terminal.printError("error: \(error.code.rawValue): \(error.message) Hint: \(error.hint)")
            throw ExitCode(2)
        }
    }
}
