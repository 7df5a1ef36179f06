import Foundation
import IMAPClient
import Logging
import MigrationEngine
import Store

/// Why a job let go of its migration before the migration ended on its own.
enum JobStop: Sendable, Equatable {
    /// The status left the running ones behind the runner's back: cancelled through the API (or
    /// cancelled and already retried). The status is someone else's to set now.
    case statusChanged(MigrationStatus)
    /// The lease is no longer this node's (it expired and was taken over, or could not be renewed
    /// for a whole lease period): another runner may be working on the migration.
    case leaseLost
}

/// One claimed migration, run from its claim to its release.
///
/// Three child tasks: the engine's run; a consumer that folds its events into the accumulator and
/// walks the status (validating → planning → processing); and a ticker that writes progress and
/// renews the lease every `progressInterval`, stopping the run when the status or the lease says so.
struct MigrationJob: Sendable {
    let record: MigrationRecord
    let store: Store
    let configuration: JobRunnerConfiguration
    let metrics: RunnerMetrics
    let storageWatch: StorageWatch?
    let logger: Logger

    private var id: Int64 { record.id }
    /// What every write of this job is made under: a take-over by another node refuses them.
    private var lease: Lease {
        record.lease ?? Lease(migrationID: record.id, owner: configuration.nodeID, token: record.leaseToken)
    }

    func run() async {
        // Shut down between the claim and the start: hand it straight back.
        if Task.isCancelled {
            await settle(.requeue(progress: nil))
            return
        }
        let request: MigrationRequest
        switch await prepare() {
        case .ready(let ready):
            request = ready
        case .invalid(let error):
            await settle(.failed(error, progress: nil))
            return
        case .retryLater:
            await settle(.requeue(progress: nil))
            return
        case .gone:
            await settle(.release)
            return
        }
        logger.info(
            "migration started",
            metadata: [
                "provider": "\(request.provider.rawValue)",
                "source_host": "\(request.source.server.host)",
            ])

        let progress = ProgressAccumulator()
        let (events, continuation) = AsyncStream.makeStream(of: MigrationEvent.self)
        let checkpoints = JobCheckpoints(store.checkpointStore(migrationID: id, lease: lease))
        let migration = Migration(
            request: request, checkpoints: checkpoints, logger: logger, backoff: configuration.backoff)

        var result: Result<MigrationSummary, ImportFailure>?
        var stop: JobStop?
        await withTaskGroup(of: Part.self) { group in
            group.addTask {
                let outcome: Result<MigrationSummary, ImportFailure>
                do throws(ImportFailure) {
                    outcome = .success(try await migration.run(emit: { _ = continuation.yield($0) }))
                } catch {
                    outcome = .failure(error)
                }
                continuation.finish()
                return .migration(outcome)
            }
            group.addTask {
                // Drained to the end even when the job stops: the counts of a cancelled run are
                // written last (see `stopped`), and they must include what the engine confirmed.
                let drain = Task { await consume(events, into: progress) }
                await drain.value
                return .eventsDrained
            }
            group.addTask { .ticker(await keepLease(progress)) }

            var drained = false
            while let part = await group.next() {
                switch part {
                case .migration(let outcome):
                    result = outcome
                case .eventsDrained:
                    drained = true
                case .ticker(let reason):
                    if let reason, stop == nil {
                        stop = reason
                        group.cancelAll()
                    }
                }
                // The run ended and its last events are counted: only the ticker is left.
                if result != nil, drained { group.cancelAll() }
            }
        }

        if let stop {
            await settle(.stopped(stop, progress: progress))
            return
        }
        switch result {
        case .success(let summary)?:
            await settle(.completed(summary, progress: progress))
        case .failure? where !Task.isCancelled && checkpoints.storeFailure != nil:
            await settle(.storeFailed(checkpoints.storeFailure, progress: progress))
        case .failure(let failure)? where !Task.isCancelled:
            await settle(.failed(MigrationError(failure), progress: progress))
        case .failure?, nil:
            // The runner is stopping (graceful shutdown or its task cancelled): whatever the
            // engine made of the interruption, the migration goes back to the queue and the next
            // start resumes it from its checkpoints.
            await settle(.requeue(progress: progress))
        }
    }

    private enum Part: Sendable {
        case migration(Result<MigrationSummary, ImportFailure>)
        case eventsDrained
        case ticker(JobStop?)
    }

    /// How a job lets go of its migration.
    private enum Ending: Sendable {
        case completed(MigrationSummary, progress: ProgressAccumulator)
        case failed(MigrationError, progress: ProgressAccumulator?)
        case stopped(JobStop, progress: ProgressAccumulator)
        /// The run failed because the store refused or could not take its checkpoints.
        case storeFailed((any Error)?, progress: ProgressAccumulator)
        /// Back to pending for the next start (shutdown), with the progress so far.
        case requeue(progress: ProgressAccumulator?)
        /// Released as it is (the migration was deleted meanwhile).
        case release
    }

    /// The last writes run in a task of their own, out of reach of this one's cancellation: after
    /// a shutdown cancelled the job, the store's queries would be refused too (SQLite's thread pool
    /// drops work submitted from a cancelled task) and the migration would stay leased, and
    /// unclaimable, until its lease ran out.
    private func settle(_ ending: Ending) async {
        await Task {
            switch ending {
            case .completed(let summary, let progress):
                await complete(summary, progress: progress)
            case .failed(let error, let progress):
                await fail(error, progress: progress)
            case .stopped(let reason, let progress):
                await stopped(reason, progress: progress)
            case .storeFailed(is LeaseLost, let progress):
                await stopped(.leaseLost, progress: progress)
            case .storeFailed(let error, let progress):
                // Not the import's failure: back to the queue, to resume from the checkpoints that
                // were written; if the store is still out of reach, the lease runs out instead and
                // a node takes the migration over once the database is back.
                logger.error(
                    "migration interrupted: its checkpoints could not be written; requeued",
                    metadata: ["error": "\(error.map { "\($0)" } ?? "unknown")"])
                await writeProgress(progress, interrupted: true)
                await release(requeue: true)
            case .requeue(let progress):
                if let progress { await writeProgress(progress, interrupted: true) }
                await release(requeue: true)
                logger.info("migration requeued: the runner is stopping")
            case .release:
                await release(requeue: false)
            }
        }.value
    }

    // MARK: Events and ticks

    private func consume(_ events: AsyncStream<MigrationEvent>, into progress: ProgressAccumulator) async {
        for await event in events {
            metrics.record(event)
            await progress.handle(event)
            switch event {
            case .validated:
                await advance(to: .planning)
            case .planned:
                await advance(to: .processing)
                // The folder rows appear at once, not a tick later.
                await writeProgress(progress)
            case .messageCopied(_, let bytes):
                storageWatch?.recordAppended(accountID: record.accountID, bytes: bytes)
            case .messageFailed(let folder, let uid, let size, let internalDate, let reason):
                await recordFailed(
                    FailedMessage(
                        folder: folder, uid: uid, size: size.map(Int64.init),
                        internalDate: internalDate.map { Date(timeIntervalSince1970: Double($0.secondsSince1970)) },
                        reason: reason))
            default:
                break
            }
        }
    }

    /// Renews the lease and writes progress every `progressInterval` until cancelled (nil) or
    /// until the migration must stop (the reason).
    private func keepLease(_ progress: ProgressAccumulator) async -> JobStop? {
        let clock = ContinuousClock()
        var lastRenewal = clock.now
        // What the last tick wrote: an idle tick (a slow server, a long FETCH) writes nothing.
        var written: (totals: MigrationTotals, folders: [FolderProgress])?
        while true {
            do {
                try await Task.sleep(for: configuration.progressInterval)
            } catch {
                return nil
            }
            do {
                // Renewed before progress is written: after a cancel (and a quick retry that
                // reset the counts) this run's counts must not be written over them.
                guard
                    let status = try await store.renewLease(lease, leaseSeconds: configuration.leaseSeconds)
                else {
                    return .leaseLost
                }
                lastRenewal = clock.now
                guard status.isRunning else { return .statusChanged(status) }
            } catch {
                if Task.isCancelled { return nil }
                logger.warning("could not renew the lease", metadata: ["error": "\(error)"])
                // Past the lease period another runner may claim it: stop before both copy.
                if clock.now - lastRenewal >= .seconds(configuration.leaseSeconds) { return .leaseLost }
                continue
            }
            guard await progress.isPlanned else { continue }
            let snapshot = await progress.snapshot()
            if let written, written.totals == snapshot.totals, written.folders == snapshot.folders { continue }
            if await writeProgress(snapshot) { written = snapshot }
        }
    }

    // MARK: Endings

    private func complete(_ summary: MigrationSummary, progress: ProgressAccumulator) async {
        await writeProgress(progress)
        let totals = summary.totals
        if await setStatus(.completed) {
            metrics.finished(.completed)
            logger.info(
                "migration completed",
                metadata: [
                    "copied": "\(totals.copied)", "skipped": "\(totals.skipped)",
                    "failed": "\(totals.failed)", "bytes": "\(totals.bytes)",
                ])
        } else {
            logger.info("migration finished copying, but its status had already changed (cancelled)")
        }
        await release(requeue: false)
    }

    private func fail(_ error: MigrationError, progress: ProgressAccumulator?) async {
        if let progress { await writeProgress(progress, interrupted: true) }
        if await setStatus(.failed, error: error) {
            metrics.finished(.failed)
            metrics.failure(code: error.code)
            logger.notice(
                "migration failed", metadata: ["error_code": "\(error.code)", "error_message": "\(error.message)"])
        }
        await release(requeue: false)
    }

    private func stopped(_ reason: JobStop, progress: ProgressAccumulator) async {
        switch reason {
        case .statusChanged(let status):
            if status == .cancelled {
                metrics.finished(.cancelled)
                // What this run copied up to the cancel, so the record says what the mailbox holds;
                // only while it is still cancelled: a retry meanwhile has reset the counts, and they
                // are its run's now.
                await writeProgress(progress, interrupted: true, whileStatus: .cancelled)
            }
            logger.info("migration stopped: its status changed", metadata: ["status": "\(status.rawValue)"])
            await release(requeue: false)
        case .leaseLost:
            logger.warning("migration stopped: this node lost its lease")
        }
    }

    // MARK: Store writes (failures are logged; the lease expiring is the fallback)

    private func advance(to status: MigrationStatus) async {
        _ = await setStatus(status)
    }

    private func setStatus(_ status: MigrationStatus, error: MigrationError? = nil) async -> Bool {
        do {
            return try await store.updateStatus(lease, to: status, error: error)
        } catch {
            logger.error(
                "could not update the migration's status",
                metadata: [
                    "status": "\(status.rawValue)",
                    "error": "\(error)",
                ])
            return false
        }
    }

    /// For the report's list. Awaited, so the list follows the engine's order, but never fatal:
    /// a message the store could not list is still counted in its folder's row.
    private func recordFailed(_ message: FailedMessage) async {
        do {
            try await store.recordFailedMessage(lease, message)
        } catch {
            logger.warning(
                "could not record a failed message", metadata: ["uid": "\(message.uid)", "error": "\(error)"])
        }
    }

    private func writeProgress(
        _ progress: ProgressAccumulator, interrupted: Bool = false,
        whileStatus status: MigrationStatus? = nil
    ) async {
        guard await progress.isPlanned else { return }
        await writeProgress(await progress.snapshot(interrupted: interrupted), whileStatus: status)
    }

    /// Returns whether the store took it.
    @discardableResult
    private func writeProgress(
        _ snapshot: (totals: MigrationTotals, folders: [FolderProgress]), whileStatus status: MigrationStatus? = nil
    ) async -> Bool {
        do {
            return try await store.updateProgress(
                lease, whileStatus: status, totals: snapshot.totals, folders: snapshot.folders)
        } catch {
            // A cancelled ticker's last write is refused; the final write follows anyway.
            if Task.isCancelled { return false }
            logger.warning("could not write progress", metadata: ["error": "\(error)"])
            return false
        }
    }

    private func release(requeue: Bool) async {
        do {
            try await store.releaseLease(lease, requeue: requeue)
        } catch {
            logger.error("could not release the lease; it expires on its own", metadata: ["error": "\(error)"])
        }
    }

    // MARK: The request

    private enum Preparation {
        case ready(MigrationRequest)
        /// Cannot run as stored: fails with this error.
        case invalid(MigrationError)
        /// The store could not be read: back to the queue.
        case retryLater
        /// The migration was deleted meanwhile.
        case gone
    }

    private func prepare() async -> Preparation {
        let secrets: MigrationCredentials?
        do {
            secrets = try await store.credentials(forMigration: id)
        } catch is SecretBox.Failure {
            return .invalid(
                MigrationError(
                    code: ImportFailure.Code.authenticationFailed.rawValue,
                    message:
                        "The stored passwords of this import cannot be decrypted: the service's secret key changed.",
                    hint: "Start the import again with its passwords, or restore the previous MAILPORTER_SECRET_KEY."))
        } catch {
            if !Task.isCancelled {
                logger.error("could not load the migration's credentials", metadata: ["error": "\(error)"])
            }
            return .retryLater
        }
        guard let secrets else { return .gone }

        guard let mailbox = record.mailboxEmail else {
            return .invalid(
                MigrationError(
                    code: ImportFailure.Code.destinationUnavailable.rawValue,
                    message: "The destination mailbox of this import no longer exists.",
                    hint: "Create the mailbox again, then start a new import."))
        }
        guard
            let destinationCredentials = configuration.destination.credentials(
                mailbox: mailbox, targetPassword: secrets.targetPassword)
        else {
            return .invalid(
                MigrationError(
                    code: ImportFailure.Code.destinationUnavailable.rawValue,
                    message:
                        "No way to log in to the destination mailbox \(mailbox): no master user is configured and the import has no target password.",
                    hint:
                        "Configure MAILPORTER_DEST_MASTER_USER and MAILPORTER_DEST_MASTER_PASSWORD, or pass target_password when starting the import."
                ))
        }

        let provider = Provider(rawValue: record.provider) ?? .genericIMAP
        // Stored values were validated by the API; the preset's fallbacks only keep an odd row from
        // connecting in the clear.
        let server: ServerConfiguration
        do {
            server = try provider.server(
                host: record.sourceHost, port: (1...65535).contains(record.sourcePort) ? record.sourcePort : nil,
                security: ConnectionSecurity(rawValue: record.sourceSecurity))
        } catch {
            return .invalid(MigrationError(code: error.code.rawValue, message: error.message, hint: error.hint))
        }
        let (host, port, security) = (server.host, server.port, server.security)

        var since: InternalDate?
        if let day = record.importSince {
            guard let parsed = CalendarDay(day) else {
                return .invalid(
                    MigrationError(
                        code: "validation_error", message: "import_since \(CalendarDay.rule).",
                        hint: "Start the import again with a valid import_since."))
            }
            since = parsed.start
        }

        // A batch's job copies the folders of the batch's strategy (inbox_only is also stored as the
        // job's selected folders; standard needs the source's folder list, so only the engine can apply it).
        var strategy = FolderStrategy.all
        if let batchID = record.batchID {
            do {
                guard let batch = try await store.batch(id: batchID) else { return .gone }
                strategy = batch.folderStrategy
            } catch {
                if !Task.isCancelled {
                    logger.error("could not load the migration's batch", metadata: ["error": "\(error)"])
                }
                return .retryLater
            }
        }

        let source = ServerConfiguration(
            host: host, port: port, security: security,
            additionalTrustRootsPEM: configuration.sourceTrustRootsPEM,
            addressFilter: AddressPolicy.filter(allowPrivateHosts: configuration.allowPrivateHosts))
        var request = MigrationRequest(
            source: MailAccount(
                server: source,
                credentials: .password(username: record.sourceUsername, password: secrets.sourcePassword)),
            destination: MailAccount(server: configuration.destination.server, credentials: destinationCredentials),
            provider: provider,
            selectedFolders: record.selectedFolders,
            strategy: strategy,
            since: since,
            skipDuplicates: record.skipDuplicates,
            parallelFolders: configuration.parallelFolders,
            batchSize: configuration.batchSize)
        request.propagateDeletions = record.syncDeletions
        return .ready(request)
    }
}

extension MigrationError {
    init(_ failure: ImportFailure) {
        self.init(code: failure.code.rawValue, message: failure.message, hint: failure.hint)
    }
}
