import IMAPClient

/// One pair of connections working through folders; reconnects with backoff after drops and
/// throttling, resuming each folder from its checkpoint.
final class FolderWorker {
    let migration: Migration
    let emit: @Sendable (MigrationEvent) -> Void
    private var source: IMAPSession?
    private var destination: IMAPSession?
    /// The event loop this worker's connections live on; the worker's task runs there too.
    let affinity: SessionAffinity

    /// `source` and `destination` may be sessions already logged in (those of the planning step).
    init(
        migration: Migration, emit: @escaping @Sendable (MigrationEvent) -> Void, affinity: SessionAffinity,
        source: IMAPSession? = nil, destination: IMAPSession? = nil
    ) {
        self.affinity = affinity
        self.migration = migration
        self.emit = emit
        self.source = source
        self.destination = destination
    }

    func copy(_ plan: FolderPlan) async throws -> FolderSummaryCounts {
        emit(.folderStarted(source: plan.sourceName, destination: plan.destinationName))
        let copier = FolderCopier(
            plan: plan, request: migration.request, checkpoints: migration.checkpoints, emit: emit)
        var attempt = 0
        while true {
            attempt += 1
            do {
                try Task.checkCancellation()
                let source = try await connected(.source)
                // The destination is logged in to only when the folder has something new.
                let counts = try await copier.run(
                    source: source, destination: { try await self.connected(.destination) })
                emit(.folderFinished(source: plan.sourceName, summary: counts))
                return counts
            } catch {
                abandonConnections()
                if error is CancellationError { throw error }
                let failure = migration.classify(error)
                let throttled = failure.code == .sourceThrottled
                guard Self.isTransient(error, attempt: attempt), attempt < migration.request.maxAttempts else {
                    emit(.folderFailed(source: plan.sourceName, failure: failure))
                    throw failure
                }
                let delay = migration.backoff(attempt, throttled)
                emit(.retrying(folder: plan.sourceName, attempt: attempt, delaySeconds: delay, reason: failure.message))
                try await Task.sleep(for: .milliseconds(Int(delay * 1000)))
            }
        }
    }

    /// Drops, timeouts, garbage, throttling and server bugs are worth a reconnect; refusals and
    /// quota are not. A folder the server refuses to open is looked at once more over fresh
    /// connections: Dovecot, when a brand-new account's first sessions arrive together, can refuse a
    /// SELECT of a folder that exists ("Mailbox already exists") while its index is being created.
    static func isTransient(_ error: Error, attempt: Int = 1) -> Bool {
        let imapError = (error as? SidedError)?.underlying as? IMAPError ?? error as? IMAPError
        guard let imapError else { return false }
        switch imapError.responseCode {
        case .overQuota?: return false
        case .throttled?, .unavailable?, .limit?, .inUse?, .serverBug?: return true
        default: break
        }
        switch imapError {
        case .connectionClosed, .timedOut, .protocolError, .connectionRefused, .hostUnreachable: return true
        case .commandFailed(let command, .no, _):
            let opening = ["SELECT", "EXAMINE"].contains(command.uppercased())
            return opening && attempt == 1
        default: return false
        }
    }

    private func connected(_ side: ImportSide) async throws -> IMAPSession {
        if side == .source, let source { return source }
        if side == .destination, let destination { return destination }
        let account = side == .source ? migration.request.source : migration.request.destination
        let session: IMAPSession
        do {
            session = try await IMAPSession.open(account.server, credentials: account.credentials, affinity: affinity)
        } catch {
            throw SidedError(side: side, underlying: error)
        }
        if side == .source { source = session } else { destination = session }
        return session
    }

    func close() async {
        if let source { await source.logout() }
        if let destination { await destination.logout() }
        source = nil
        destination = nil
    }

    /// After a failure the connections may be broken: drop them without a LOGOUT that could wait.
    func abandonConnections() {
        closeLater()
        source = nil
        destination = nil
    }

    /// For paths that leave by throwing: close without waiting.
    func closeLater() {
        let sessions = [source, destination].compactMap { $0 }
        guard !sessions.isEmpty else { return }
        Task { for session in sessions { await session.close() } }
    }
}
