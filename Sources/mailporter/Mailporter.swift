import ArgumentParser

@main
struct Mailporter: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mailporter",
        abstract: "Imports email from any IMAP provider into the mailboxes of a hosting platform.",
        subcommands: [
            ServeCommand.self, WorkerCommand.self, TestConnectionCommand.self, MigrateCommand.self,
            AccountsCommand.self,
            MailboxesCommand.self,
            TokensCommand.self,
            MCPCommand.self,
            DatabaseCommand.self,
        ]
    )
}
