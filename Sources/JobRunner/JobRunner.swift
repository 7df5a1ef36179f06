import Logging
import MigrationEngine
import ServiceLifecycle
import Store
import Synchronization

/// Runs queued migrations in the background under the global concurrency limit (SPEC.md §6),
/// each under a lease that it renews while it works, so a dead node's migrations are taken over
/// by another node and resumed from their checkpoints.
public final class JobRunner: Service, Sendable {
    /// How often expired audit events, idempotency records and rate-limit windows are purged.
    static let purgeInterval: Duration = .seconds(3600)

    private let store: Store
    private let configuration: JobRunnerConfiguration
    private let logger: Logger
    private let metrics: RunnerMetrics
    private let wakeSignal = WakeSignal()
    /// Told of every message appended, so an account's usage counts what is being imported.
    private let storageWatch: StorageWatch?

    public init(
        store: Store, configuration: JobRunnerConfiguration, storageWatch: StorageWatch? = nil, logger: Logger
    ) {
        self.store = store
        self.configuration = configuration
        self.storageWatch = storageWatch
        var logger = logger
        logger[metadataKey: "node_id"] = "\(configuration.nodeID)"
        self.logger = logger
        self.metrics = RunnerMetrics()
    }

    /// Claims and runs migrations until graceful shutdown (ServiceLifecycle) or task cancellation.
    /// On either, running migrations stop at a safe point and are released with `requeue: true`
    /// (back to pending) so the next start resumes them from their checkpoints; `run()` returns
    /// only after that. Run one `run()` per runner at a time.
    public func run() async throws {
        let stopping = Flag()
        await withTaskCancellationOrGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                // Other nodes' queued work (PostgreSQL NOTIFY) cuts the poll short here too.
                group.addTask { [store, wakeSignal] in await store.listenForWork { wakeSignal.signal() } }
                await runLoop(stopping: stopping)
                group.cancelAll()
            }
        } onCancelOrGracefulShutdown: { [wakeSignal] in
            stopping.set()
            wakeSignal.signal()
        }
    }

    /// A migration was queued (or retried): claim now instead of waiting for the next poll.
    public func wake() {
        wakeSignal.signal()
    }

    private func runLoop(stopping: Flag) async {
        let nodeLock = await releaseLeftoverLeases()
        let clock = ContinuousClock()
        var nextPurge = clock.now
        let running = JobCount()
        let limit = configuration.jobsOnThisNode
        logger.info(
            "job runner started",
            metadata: [
                "max_concurrent_migrations": "\(configuration.maxConcurrentMigrations)",
                "jobs_on_this_node": "\(limit)",
            ])
        await withDiscardingTaskGroup { group in
            while !stopping.isSet {
                if clock.now >= nextPurge {
                    await purgeExpired()
                    nextPurge = clock.now + Self.purgeInterval
                }
                await queueScheduledPasses()
                while !stopping.isSet, running.value < limit, let record = await claim() {
                    running.add(1)
                    let job = self.job(for: record)
                    group.addTask {
                        await job.run()
                        running.add(-1)
                        // A slot is free: claim the next one without waiting for the poll.
                        self.wakeSignal.signal()
                    }
                }
                if stopping.isSet { break }
                await wakeSignal.wait(upTo: configuration.pollInterval)
            }
            // Each job sees the cancellation, stops at a safe point and requeues its migration;
            // the group waits for all of them.
            group.cancelAll()
        }
        await nodeLock?.release()
        logger.info("job runner stopped")
    }

    private func job(for record: MigrationRecord) -> MigrationJob {
        var logger = self.logger
        logger[metadataKey: "migration_id"] = "\(record.id)"
        return MigrationJob(
            record: record, store: store, configuration: configuration, metrics: metrics,
            storageWatch: storageWatch, logger: logger)
    }

    /// Migrations started with `sync_every_hours` whose next pass is due go back to the queue as a
    /// `:sync` would, and are claimed below like any job, under the same limits. Every node looks;
    /// the store's conditional update lets one of them queue each pass.
    private func queueScheduledPasses() async {
        do {
            for record in try await store.queueScheduledPasses() {
                logger.info(
                    "scheduled delta pass queued",
                    metadata: ["migration_id": "\(record.id)", "passes": "\(record.passes)"])
            }
        } catch {
            if Task.isCancelled { return }
            logger.error("could not queue the scheduled delta passes", metadata: ["error": "\(error)"])
        }
    }

    private func claim() async -> MigrationRecord? {
        let started = ContinuousClock.now
        defer { metrics.claimDuration.record(duration: ContinuousClock.now - started) }
        do {
            return try await store.claimPendingMigration(
                owner: configuration.nodeID, leaseSeconds: configuration.leaseSeconds,
                maxRunning: configuration.maxConcurrentMigrations)
        } catch {
            // Stopping: the query was refused because this task is cancelled, not a store problem.
            if Task.isCancelled { return nil }
            logger.error("could not claim a migration", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// Leases still under this node id belong to an earlier process with the same id that was
    /// killed: requeued now rather than after they expire. Only while this process holds the node
    /// lock, which it keeps until it stops: a live process with the same id (two started by mistake
    /// with one `--node-id`) keeps its leases, which then expire or are released as usual.
    private func releaseLeftoverLeases() async -> NodeLock? {
        let lock: NodeLock?
        do {
            lock = try await store.lockNode(configuration.nodeID)
        } catch {
            logger.error(
                "could not take the node lock; leftover leases expire on their own", metadata: ["error": "\(error)"])
            return nil
        }
        guard let lock else {
            logger.warning(
                "another live process runs under this node id: its leases are left alone; give each process its own MAILPORTER_NODE_ID"
            )
            return nil
        }
        do {
            let released = try await store.releaseLeases(owner: configuration.nodeID)
            if !released.isEmpty {
                logger.notice(
                    "requeued migrations an earlier process of this node left behind",
                    metadata: ["migration_ids": "\(released.map(String.init).joined(separator: ","))"])
            }
        } catch {
            logger.error("could not release leftover leases; they expire on their own", metadata: ["error": "\(error)"])
        }
        return lock
    }

    private func purgeExpired() async {
        do {
            if try await store.purgeExpired() == false {
                logger.debug("another node is purging expired records; skipped here")
            }
        } catch {
            logger.warning("could not purge expired records", metadata: ["error": "\(error)"])
        }
    }
}

/// Set once, read from anywhere.
private final class Flag: Sendable {
    private let state = Mutex(false)
    var isSet: Bool { state.withLock { $0 } }
    func set() { state.withLock { $0 = true } }
}

/// Jobs running on this node.
private final class JobCount: Sendable {
    private let count = Mutex(0)
    var value: Int { count.withLock { $0 } }
    func add(_ delta: Int) { count.withLock { $0 += delta } }
}
