import IMAPClient

/// A mailbox account to connect to: where, and how to log in.
public struct MailAccount: Sendable {
    public var server: ServerConfiguration
    public var credentials: Credentials

    public init(server: ServerConfiguration, credentials: Credentials) {
        self.server = server
        self.credentials = credentials
    }
}

/// One folder of a source account, as test-connection reports it.
public struct FolderSummary: Sendable, Equatable {
    /// Unicode name as the user knows it (hierarchy separator as the server has it).
    public var name: String
    public var messages: Int
    public var specialUse: String?
}

/// Logs in and lists every folder with its message count (the REST and CLI test-connection).
public enum ConnectionCheck {
    public static func run(_ account: MailAccount, side: ImportSide = .source, provider: Provider = .genericIMAP)
        async throws(ImportFailure) -> [FolderSummary]
    {
        do {
            let session = try await IMAPSession.open(account.server, credentials: account.credentials)
            let listed: [ListedMailbox]
            do {
                listed = try await session.listAll(statusItems: [.messages])
            } catch {
                await session.close()
                throw error
            }
            await session.logout()
            return listed.filter(\.isSelectable).map {
                FolderSummary(name: $0.name.decoded, messages: $0.status?.messages ?? 0, specialUse: $0.specialUse)
            }
        } catch {
            throw ImportFailure.classify(error, side: side, provider: provider, host: account.server.host)
        }
    }
}
