import IMAPClient

/// What one destination mailbox holds, in bytes, as its server reports it (SPEC.md §5 storage):
/// the `STORAGE` resource of `GETQUOTAROOT INBOX` (RFC 9208, in units of 1024 octets) where the
/// server has QUOTA, else the sum of `STATUS (SIZE)` (RFC 8438) over its folders. Nil when the server
/// offers neither: then nothing can be measured and the caller says so.
public enum MailboxUsage {
    public static func measure(_ account: MailAccount) async throws(ImportFailure) -> Int64? {
        do {
            let session = try await IMAPSession.open(account.server, credentials: account.credentials)
            do {
                let used = try await usedBytes(session)
                await session.logout()
                return used
            } catch {
                await session.close()
                throw error
            }
        } catch {
            throw ImportFailure.classify(error, side: .destination, provider: .genericIMAP, host: account.server.host)
        }
    }

    static func usedBytes(_ session: IMAPSession) async throws -> Int64? {
        if await session.hasCapability("QUOTA") {
            let resources = try await session.quotaRoot(MailboxName(decoded: "INBOX"))
            if let storage = resources.first(where: { $0.name.uppercased() == "STORAGE" }) {
                return storage.usage * 1024
            }
        }
        if await session.hasCapability("STATUS=SIZE") {
            let folders = try await session.listAll(statusItems: [.size])
            return folders.reduce(0) { $0 + ($1.status?.size ?? 0) }
        }
        return nil
    }
}
