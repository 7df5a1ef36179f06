import Foundation
import IMAPClient
import Logging
import MigrationEngine
import ServiceLifecycle
import Store
import Synchronization

/// Keeps each importing account under its storage pool (SPEC.md §5): every `interval` it measures
/// what the destination mailboxes of each account with a queued or processing batch hold, and at
/// `StorageFigures.pauseThresholdPercent` of the pool it pauses the account's batches. Their running
/// jobs go back to the queue at a safe point with their checkpoints, and queued ones wait, until a
/// resume that storage allows.
///
/// An account's usage is what its server last reported (`MailboxUsage`: quota, else STATUS SIZE)
/// plus what this node's runner appended for it since that measurement began, so a fast import
/// does not run past the threshold between two measurements.
public final class StorageWatch: Service, Sendable {
    public struct Configuration: Sendable {
        public var destination: DestinationServer
        public var pools: StoragePools
        /// How often the accounts with running batches are measured; also how long a measurement
        /// answers the API before it is taken again.
        public var interval: Duration
        /// Mailboxes measured at once for one account.
        public var parallelMailboxes: Int
        /// For a node that answers the API but does not run the watch's rounds (`serve --no-runner`):
        /// a `.cached` read whose measurement is missing or older than two intervals starts one in
        /// the background. The read still answers at once with what is known; the next has it.
        public var measuresOnCachedReads: Bool

        public init(
            destination: DestinationServer, pools: StoragePools = StoragePools(), interval: Duration = .seconds(30),
            parallelMailboxes: Int = 4, measuresOnCachedReads: Bool = false
        ) {
            self.destination = destination
            self.pools = pools
            self.interval = interval
            self.parallelMailboxes = max(1, parallelMailboxes)
            self.measuresOnCachedReads = measuresOnCachedReads
        }
    }

    private struct Measurement {
        var usedBytes: Int64
        var at: ContinuousClock.Instant
    }

    private struct State {
        var measurements: [Int64: Measurement] = [:]
        /// Bytes appended per account since its last measurement began.
        var appendedSince: [Int64: Int64] = [:]
        /// The measurement running per account: one at a time, since each restarts `appendedSince`
        /// and a second would drop what was appended during the first.
        var inFlight: [Int64: Task<Int64?, Never>] = [:]
    }

    private let store: Store
    private let configuration: Configuration
    private let logger: Logger
    private let state = Mutex(State())

    public init(store: Store, configuration: Configuration, logger: Logger) {
        self.store = store
        self.configuration = configuration
        self.logger = logger
    }

    public var pools: StoragePools { configuration.pools }

    /// The runner reports each message it appended for an account.
    public func recordAppended(accountID: Int64, bytes: Int) {
        state.withLock { $0.appendedSince[accountID, default: 0] += Int64(bytes) }
    }

    /// What the account's mailboxes hold (nil when the destination cannot be measured), as current
    /// as `reading` asks: `.recent` takes the last measurement while it is younger than two
    /// intervals (the watch's own rounds renew it first, so reads while a batch runs never measure).
    public func usedBytes(accountID: Int64, reading: StorageReading) async -> Int64? {
        let clock = ContinuousClock()
        let (cached, stale): (Int64?, Bool) = state.withLock { state in
            guard reading != .fresh, let last = state.measurements[accountID] else { return (nil, true) }
            let stale = clock.now - last.at >= configuration.interval * 2
            if reading == .recent, stale { return (nil, true) }
            return (last.usedBytes + (state.appendedSince[accountID] ?? 0), stale)
        }
        if reading == .cached, stale, configuration.measuresOnCachedReads {
            // `measure` runs one at a time per account, so polling GETs start at most one.
            Task { _ = await self.measure(accountID: accountID) }
        }
        if let cached { return cached }
        guard reading != .cached else { return nil }
        if let measured = await measure(accountID: accountID) { return measured }
        // Not every mailbox could be measured now (a timeout, a failed login): the last complete
        // measurement stands, so a resume is not let through on a partial sum.
        return state.withLock { state in
            state.measurements[accountID].map { $0.usedBytes + (state.appendedSince[accountID] ?? 0) }
        }
    }

    public func run() async throws {
        let clock = ContinuousClock()
        logger.info(
            "storage watch started", metadata: ["interval_seconds": "\(configuration.interval.components.seconds)"])
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            await checkOnce()
            try? await gracefulSleep(until: clock.now + configuration.interval)
        }
    }

    private func gracefulSleep(until deadline: ContinuousClock.Instant) async throws {
        try await cancelWhenGracefulShutdown {
            try await Task.sleep(until: deadline, clock: ContinuousClock())
        }
    }

    /// One round: measure every account with a queued or processing batch and pause those at the
    /// threshold. Returns the batches it paused.
    @discardableResult
    public func checkOnce() async -> [Int64] {
        var paused: [Int64] = []
        do {
            for accountID in try await store.accountIDsWithClaimableBatches() {
                guard let account = try await store.account(id: accountID),
                    let used = await measure(accountID: accountID)
                else { continue }
                let figures = StorageFigures(
                    poolBytes: configuration.pools.bytes(for: account.plan), usedBytes: used, measured: true)
                guard figures.isAtPauseThreshold else { continue }
                for batchID in try await store.activeBatchIDs(accountID: accountID)
                where try await store.pauseBatch(
                    id: batchID, reason: BatchPauseReason.storage, usedBytes: figures.usedBytes,
                    poolBytes: figures.poolBytes)
                {
                    paused.append(batchID)
                    logger.warning(
                        "bulk migration paused for storage",
                        metadata: [
                            "batch_id": "\(batchID)", "account_id": "\(accountID)",
                            "used_percent": "\(figures.usedPercent)", "used_bytes": "\(figures.usedBytes)",
                            "pool_bytes": "\(figures.poolBytes)",
                        ])
                }
            }
        } catch {
            logger.error("storage watch could not read the store", metadata: ["error": "\(error)"])
        }
        return paused
    }

    /// Measures every mailbox of the account, a few at a time. Nil unless every one was measured
    /// (a mailbox gone at the server, a failed login or a timeout is logged): a partial sum would
    /// understate the usage, and the pause rule must never act on less than the whole.
    private func measure(accountID: Int64) async -> Int64? {
        let task: Task<Int64?, Never> = state.withLock { state in
            if let running = state.inFlight[accountID] { return running }
            let task = Task { await self.measureEveryMailbox(accountID: accountID) }
            state.inFlight[accountID] = task
            return task
        }
        let used = await task.value
        state.withLock { state in
            if state.inFlight[accountID] == task { state.inFlight[accountID] = nil }
        }
        return used
    }

    private func measureEveryMailbox(accountID: Int64) async -> Int64? {
        let destination = configuration.destination
        guard destination.hasMasterCredentials else { return nil }
        let emails: [String]
        do {
            emails = try await store.mailboxEmails(accountID: accountID)
        } catch {
            logger.error("storage watch could not read the mailboxes", metadata: ["error": "\(error)"])
            return nil
        }
        let began = ContinuousClock.now
        // What is appended from here on counts on top of this measurement.
        let appendedBefore = state.withLock { state in
            let before = state.appendedSince[accountID] ?? 0
            state.appendedSince[accountID] = 0
            return before
        }
        var total: Int64 = 0
        var measured = 0
        var unmeasurable = 0
        await withTaskGroup(of: Int64?.self) { group in
            var pending = emails[...]
            func addNext() {
                guard let email = pending.popFirst() else { return }
                group.addTask { [logger] in
                    guard let credentials = destination.credentials(mailbox: email, targetPassword: nil) else {
                        return nil
                    }
                    do throws(ImportFailure) {
                        return try await MailboxUsage.measure(
                            MailAccount(server: destination.server, credentials: credentials))
                    } catch {
                        logger.warning(
                            "storage of a mailbox could not be measured",
                            metadata: ["mailbox": "\(email)", "error_code": "\(error.code.rawValue)"])
                        return nil
                    }
                }
            }
            for _ in 0..<configuration.parallelMailboxes { addNext() }
            for await used in group {
                if let used {
                    total += used
                    measured += 1
                } else {
                    unmeasurable += 1
                }
                addNext()
            }
        }
        guard measured > 0, unmeasurable == 0 else {
            // Nothing was measured: keep counting what is appended.
            state.withLock { $0.appendedSince[accountID, default: 0] += appendedBefore }
            return nil
        }
        let appendedDuring = state.withLock { $0.appendedSince[accountID] ?? 0 }
        state.withLock { $0.measurements[accountID] = Measurement(usedBytes: total, at: began) }
        return total + appendedDuring
    }
}
