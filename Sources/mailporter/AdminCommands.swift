import HTTPAPI
import ArgumentParser
import Foundation
import MigrationEngine
import Store

// Admin commands: accounts, mailboxes and tokens in the service's store. Each prints the object it
// created (or each object listed) as one JSON line, and fails with one `error: code: message` line on
// standard error and exit status 2.

struct AccountsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "accounts",
        abstract: "Create and list customer accounts.",
        subcommands: [Create.self, List.self, SetEmail.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create", abstract: "Create an account; prints it as one JSON line.")

        @Option(help: "nano, starter, pro or agency.") var plan: String
        @Option(help: "Notification email address of the account.") var email: String
        @OptionGroup var storage: DataDirectoryOptions

        func run() async throws {
            try await Admin.run(storage) { store in
                guard let plan = Plan(rawValue: self.plan.trimmingCharacters(in: .whitespaces).lowercased()) else {
                    throw Admin.Failure.validation(
                        "--plan must be one of \(Plan.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                let email = try Admin.validEmail(self.email, option: "--email")
                let account = try await store.createAccount(plan: plan, notificationEmail: email)
                Admin.printLine(Admin.json(account))
            }
        }
    }

    struct SetEmail: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-email", abstract: "Change where an account's notices go; prints the account.")

        @Option(help: "Account id.") var account: Int64
        @Option(help: "Notification email address of the account.") var email: String
        @OptionGroup var storage: DataDirectoryOptions

        func run() async throws {
            try await Admin.run(storage) { store in
                let email = try Admin.validEmail(self.email, option: "--email")
                do {
                    Admin.printLine(
                        Admin.json(try await store.setNotificationEmail(accountID: account, email: email)))
                } catch StoreError.notFound {
                    throw Admin.Failure.unknownAccount(account)
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list", abstract: "Print every account, one JSON line each.")

        @OptionGroup var storage: DataDirectoryOptions

        func run() async throws {
            try await Admin.run(storage) { store in
                for account in try await store.accounts() { Admin.printLine(Admin.json(account)) }
            }
        }
    }
}

struct MailboxesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mailboxes",
        abstract: "Add and list the destination mailboxes of an account.",
        subcommands: [Add.self, List.self]
    )

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add",
            abstract: "Add a destination mailbox (prints it as one JSON line), or every address of a file.",
            discussion: """
                With --from-file: one address per line (blank lines and lines starting with # skipped), \
                one JSON line per address with its line number and whether it was added, a duplicate or \
                invalid (and why); exit status 1 if any address was not added.
                """
        )

        @Option(help: "Account id.") var account: Int64
        @Argument(help: "The mailbox address on the destination server.") var email: String?
        @Option(name: .customLong("from-file"), help: "A file of addresses, one per line.") var fromFile: String?
        @OptionGroup var storage: DataDirectoryOptions

        func validate() throws {
            if (email == nil) == (fromFile == nil) {
                throw ValidationError("Give either an EMAIL or --from-file, not both.")
            }
        }

        func run() async throws {
            if let fromFile {
                try await addFromFile(fromFile)
                return
            }
            try await Admin.run(storage) { store in
                let email = try Admin.validEmail(self.email ?? "", option: "EMAIL")
                do {
                    Admin.printLine(Admin.json(try await store.addMailbox(accountID: account, email: email)))
                } catch StoreError.notFound {
                    throw Admin.Failure.unknownAccount(account)
                } catch StoreError.duplicate {
                    throw Admin.Failure(
                        code: "conflict", message: "account \(account) already has mailbox \(email.lowercased())")
                }
            }
        }

        private func addFromFile(_ path: String) async throws {
            var failed = false
            try await Admin.run(storage) { store in
                let lines = try MailboxFile.read(path)
                let results: [MailboxAddition]
                do {
                    results = try await store.addMailboxes(accountID: account, emails: lines.map(\.address))
                } catch StoreError.notFound {
                    throw Admin.Failure.unknownAccount(account)
                }
                for (line, result) in zip(lines, results) {
                    var fields: Admin.Fields = [("line", .int(Int64(line.number)))]
                    switch result {
                    case .added(let mailbox):
                        fields += [
                            ("email", .string(mailbox.email)), ("status", .string("added")), ("id", .int(mailbox.id)),
                        ]
                    case .duplicate(let email):
                        failed = true
                        fields += [
                            ("email", .string(email)), ("status", .string("duplicate")),
                            ("message", .string("account \(account) already has this mailbox")),
                        ]
                    case .invalid(let email, let reason):
                        failed = true
                        fields += [
                            ("email", .string(email)), ("status", .string("invalid")),
                            ("message", .string("the address \(reason)")),
                        ]
                    }
                    Admin.printLine(fields)
                }
            }
            if failed { throw ExitCode(1) }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list", abstract: "Print an account's mailboxes, one JSON line each.")

        @Option(help: "Account id.") var account: Int64
        @OptionGroup var storage: DataDirectoryOptions

        func run() async throws {
            try await Admin.run(storage) { store in
                guard try await store.account(id: account) != nil else { throw Admin.Failure.unknownAccount(account) }
                for mailbox in try await store.mailboxes(accountID: account) { Admin.printLine(Admin.json(mailbox)) }
            }
        }
    }
}

struct TokensCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokens",
        abstract: "Create, list and revoke API tokens.",
        subcommands: [Create.self, List.self, Revoke.self]
    )

    /// Scopes a token may carry (SPEC.md §3).
    static let knownScopes = Scope.allCases.map(\.rawValue)

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create",
            abstract: "Create a token; prints it, with the secret `token`, as one JSON line.",
            discussion: "The token (mp_live_…) is shown only here; the store keeps only its hash."
        )

        @Option(help: "Account id.") var account: Int64
        @Option(help: "A name to recognise the token by.") var name: String
        @Option(help: "Comma-separated: \(TokensCommand.knownScopes.joined(separator: ", ")).") var scopes: String
        @Option(help: "Lifetime such as 30d, 12h or 90m (default: never expires).") var expires: String?
        @OptionGroup var storage: DataDirectoryOptions

        func run() async throws {
            try await Admin.run(storage) { store in
                let name = self.name.trimmingCharacters(in: .whitespacesAndNewlines)
                guard !name.isEmpty, name.count <= 200 else {
                    throw Admin.Failure.validation("--name must be 1 to 200 characters")
                }
                let scopes = try TokensCommand.parseScopes(self.scopes)
                let lifetime = try expires.map(TokensCommand.parseLifetime)
                guard let owner = try await store.account(id: account) else {
                    throw Admin.Failure.unknownAccount(account)
                }
                let expiresAt = lifetime.map { Date().addingTimeInterval($0) }
                let created: (token: String, record: APIToken)
                do {
                    created = try await store.createToken(
                        accountID: account, name: name, scopes: scopes, expiresAt: expiresAt)
                } catch StoreError.notFound {
                    throw Admin.Failure.unknownAccount(account)
                }
                var fields = Admin.json(created.record)
                fields.append(("token", .string(created.token)))
                Admin.printLine(fields)
                let blocked = scopes.filter { !owner.plan.allows($0) }
                if !blocked.isEmpty {
                    Terminal.printError(
                        "warning: the \(owner.plan.rawValue) plan does not allow \(blocked.map(\.rawValue).joined(separator: ", ")); "
                            + "requests needing them get 403 token_scope_blocked_by_plan")
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list", abstract: "Print an account's tokens (never their secrets), one JSON line each.")

        @Option(help: "Account id.") var account: Int64
        @OptionGroup var storage: DataDirectoryOptions

        func run() async throws {
            try await Admin.run(storage) { store in
                guard try await store.account(id: account) != nil else { throw Admin.Failure.unknownAccount(account) }
                for token in try await store.tokens(accountID: account) { Admin.printLine(Admin.json(token)) }
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "revoke", abstract: "Delete a token; prints {\"id\":…,\"revoked\":true}.")

        @Option(help: "Account id.") var account: Int64
        @Argument(help: "Token id.") var id: Int64
        @OptionGroup var storage: DataDirectoryOptions

        func run() async throws {
            try await Admin.run(storage) { store in
                guard try await store.revokeToken(id: id, accountID: account) else {
                    throw Admin.Failure(code: "not_found", message: "account \(account) has no token \(id)")
                }
                Admin.printLine([("id", .int(id)), ("revoked", .bool(true))])
            }
        }
    }

    /// Comma-separated scope names: known ones only, at least one, duplicates dropped (order kept).
    static func parseScopes(_ text: String) throws(Admin.Failure) -> [Scope] {
        var scopes: [Scope] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: true) {
            let scope = part.trimmingCharacters(in: .whitespaces)
            if scope.isEmpty { continue }
            guard let scope = Scope(rawValue: scope) else {
                throw Admin.Failure.validation(
                    "unknown scope \(scope); valid scopes: \(knownScopes.joined(separator: ", "))")
            }
            if !scopes.contains(scope) { scopes.append(scope) }
        }
        guard !scopes.isEmpty else {
            throw Admin.Failure.validation("--scopes needs at least one of \(knownScopes.joined(separator: ", "))")
        }
        return scopes
    }

    /// `30d`, `12h`, `90m` (a positive whole number and a unit) as seconds.
    static func parseLifetime(_ text: String) throws(Admin.Failure) -> TimeInterval {
        let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [Character: Int] = ["d": 86_400, "h": 3_600, "m": 60]
        guard let unit = trimmed.last, let seconds = units[unit], let count = Int(trimmed.dropLast()), count > 0,
            count <= 3_650 * 86_400 / seconds
        else {
            throw Admin.Failure.validation(
                "--expires must be a positive number of days, hours or minutes, e.g. 30d, 12h or 90m")
        }
        return TimeInterval(count * seconds)
    }
}

/// A file of mailbox addresses: one per line, blank lines and `#` comments skipped, each kept with
/// its line number for the report.
enum MailboxFile {
    struct Line {
        var number: Int
        var address: String
    }

    static func read(_ path: String) throws(Admin.Failure) -> [Line] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Admin.Failure(code: "not_found", message: "cannot read \(path)")
        }
        guard data.count <= 4 << 20 else { throw Admin.Failure.validation("\(path) is larger than 4 MiB") }
        guard let text = String(data: data, encoding: .utf8) else {
            throw Admin.Failure.validation("\(path) is not UTF-8 text")
        }
        var lines: [Line] = []
        for (index, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
            .enumerated()
        {
            let address = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if address.isEmpty || address.hasPrefix("#") { continue }
            lines.append(Line(number: index + 1, address: address))
        }
        guard lines.count <= Store.maxMailboxesPerAdd else {
            throw Admin.Failure.validation(
                "\(path) has \(lines.count) addresses; at most \(Store.maxMailboxesPerAdd) at a time")
        }
        return lines
    }
}

/// What the admin commands share: opening the store, errors, JSON lines.
enum Admin {
    struct Failure: Error, CustomStringConvertible {
        var code: String
        var message: String

        var description: String { "\(code): \(message)" }

        static func validation(_ message: String) -> Failure { Failure(code: "validation_error", message: message) }
        static func unknownAccount(_ id: Int64) -> Failure {
            Failure(code: "not_found", message: "account \(id) does not exist")
        }
    }

    /// Opens the store, runs `body`, closes the store. Any failure becomes one `error:` line and exit status 2.
    static func run(_ options: DataDirectoryOptions, _ body: (Store) async throws -> Void) async throws {
        let store = try await Terminal.orExit { try await options.resolve().openStore() }
        var failure: (any Error)?
        do {
            try await body(store)
        } catch {
            failure = error
        }
        try? await store.close()
        guard let failure else { return }
        switch failure {
        case let failure as Failure: Terminal.printError("error: \(failure)")
        case let failure as StoreError: Terminal.printError("error: store_error: \(failure)")
        default:
            Terminal.printError(
                "error: internal_error: \(String(describing: failure).split(separator: "\n").first ?? "")")
        }
        throw ExitCode(2)
    }

    /// A plausible address (`SourceFieldSyntax.isEmailAddress`, the rule the API applies too). Returned trimmed.
    static func validEmail(_ text: String, option: String) throws(Failure) -> String {
        let email = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard SourceFieldSyntax.isEmailAddress(email) else {
            throw Failure.validation("\(option) is not a valid email address: \(email)")
        }
        return email
    }

    typealias Value = JSONValue
    typealias Fields = [(String, Value)]

    static func printLine(_ fields: Fields) { JSONLine.print(fields) }

    static func date(_ date: Date?) -> Value {
        date.map { .string($0.ISO8601Format()) } ?? .null
    }

    static func json(_ account: Account) -> Fields {
        [
            ("id", .int(account.id)), ("plan", .string(account.plan.rawValue)),
            ("notification_email", .string(account.notificationEmail)), ("created_at", date(account.createdAt)),
        ]
    }

    static func json(_ mailbox: Mailbox) -> Fields {
        [
            ("id", .int(mailbox.id)), ("account_id", .int(mailbox.accountID)), ("email", .string(mailbox.email)),
            ("created_at", date(mailbox.createdAt)),
        ]
    }

    /// A token's row; never its secret (only the display prefix).
    static func json(_ token: APIToken) -> Fields {
        [
            ("id", .int(token.id)), ("account_id", .int(token.accountID)), ("name", .string(token.name)),
            ("scopes", .strings(token.scopes)), ("prefix", .string(token.prefix)),
            ("expires_at", date(token.expiresAt)),
            ("last_used_at", date(token.lastUsedAt)), ("last_used_ip", token.lastUsedIP.map(Value.string) ?? .null),
            ("created_at", date(token.createdAt)),
        ]
    }
}
