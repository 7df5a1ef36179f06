import IMAPClient
import Logging

/// The outcome of a finished migration.
public struct MigrationSummary: Sendable {
    public var folders: [(plan: FolderPlan, counts: FolderSummaryCounts)]
    public var totals: FolderSummaryCounts { FolderSummaryCounts(sum: folders.map(\.counts)) }
}

/// Runs one migration: validate both logins, plan and count folders, create destination folders,
/// copy folders in parallel (each with reconnect and backoff), report events.
public struct Migration: Sendable {
    public let request: MigrationRequest
    let checkpoints: any CheckpointStore
    let logger: Logger
    /// Waits between reconnect attempts; tests shorten it.
    let backoff: @Sendable (_ attempt: Int, _ throttled: Bool) -> Double

    public init(
        request: MigrationRequest, checkpoints: any CheckpointStore,
        logger: Logger = Logger(label: "mailporter.migration"),
        backoff: @escaping @Sendable (_ attempt: Int, _ throttled: Bool) -> Double = Migration.defaultBackoff
    ) {
        self.request = request
        self.checkpoints = checkpoints
        self.logger = logger
        self.backoff = backoff
    }

    /// 1, 2, 4, 8, 16 s (capped at 60); throttling waits five times longer.
    public static func defaultBackoff(attempt: Int, throttled: Bool) -> Double {
        let base = min(60.0, Double(1 << min(attempt - 1, 6)))
        return throttled ? min(300, base * 5) : base
    }

    /// Logs in to both sides and plans the folders with their counts; changes nothing.
    public func plan(emit: @escaping @Sendable (MigrationEvent) -> Void = { _ in }) async throws(ImportFailure)
        -> [FolderPlan]
    {
        let (source, destination) = try await openBoth()
        emit(.validated)
        do {
            var finished: [String: FolderSummaryCounts] = [:]
            let plans = try await countedPlans(
                source: source, destination: destination, finished: &finished, emit: emit)
            await source.logout()
            await destination.logout()
            emit(.planned(plans))
            return plans
        } catch {
            await source.close()
            await destination.close()
            throw classify(error)
        }
    }

    public func run(emit: @escaping @Sendable (MigrationEvent) -> Void) async throws(ImportFailure) -> MigrationSummary
    {
        // The planning sessions become the first worker's, on the first worker's event loop.
        let firstAffinity = SessionAffinity.next()
        let (source, destination) = try await openBoth(affinity: firstAffinity)
        emit(.validated)
        let plans: [FolderPlan]
        var finishedAlready: [String: FolderSummaryCounts] = [:]
        do {
            plans = try await countedPlans(
                source: source, destination: destination, finished: &finishedAlready, emit: emit)
            if finishedAlready.count < plans.count {
                try await FolderPlanner(request: request).createDestinations(plans, on: destination)
            }
        } catch {
            await source.close()
            await destination.close()
            throw classify(error)
        }
        emit(.planned(plans))
        do {
            try await reportVanished(plans, emit: emit)
        } catch {
            await source.close()
            await destination.close()
            throw classify(error)
        }
        for plan in plans {
            guard let counts = finishedAlready[plan.source.encoded] else { continue }
            emit(.folderBaseline(source: plan.sourceName, counts: counts))
            emit(.folderFinished(source: plan.sourceName, summary: counts))
        }

        let queue = FolderQueue(plans.filter { finishedAlready[$0.source.encoded] == nil })
        let results = ResultCollector()
        for (folder, counts) in finishedAlready { await results.record(folder, counts) }
        // The planning sessions become the first worker's, saving two logins.
        let handOver = SessionHandOver(source: source, destination: destination)
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index
                    in 0..<min(
                        request.effectiveParallelism,
                        max(1, Set(plans.map { $0.destination.encoded.lowercased() }).count))
                {
                    let affinity = index == 0 ? firstAffinity : SessionAffinity.next()
                    group.addTask(executorPreference: affinity.taskExecutor) {
                        let sessions = index == 0 ? await handOver.take() : nil
                        let worker = FolderWorker(
                            migration: self, emit: emit, affinity: affinity,
                            source: sessions?.source, destination: sessions?.destination)
                        defer { worker.closeLater() }
                        while let group = await queue.next() {
                            for plan in group {
                                let counts = try await worker.copy(plan)
                                await results.record(plan.source.encoded, counts)
                            }
                        }
                        await worker.close()
                    }
                }
                try await group.waitForAll()
            }
        } catch {
            if let sessions = await handOver.take() {
                await sessions.source.close()
                await sessions.destination.close()
            }
            throw classify(error)
        }
        if let sessions = await handOver.take() {
            async let sourceLogout: Void = sessions.source.logout()
            await sessions.destination.logout()
            await sourceLogout
        }
        let finished = await results.all()
        return MigrationSummary(
            folders: plans.map { plan in
                (plan, finished[plan.source.encoded] ?? FolderSummaryCounts(expected: plan.expected))
            })
    }

    // MARK: Steps

    /// Logs in to both sides at once (two connection set-ups cost one). A source failure is the
    /// one reported when both fail.
    private func openBoth(affinity: SessionAffinity? = nil) async throws(ImportFailure) -> (IMAPSession, IMAPSession) {
        async let destinationResult = openResult(.destination, affinity: affinity)
        let sourceResult = await openResult(.source, affinity: affinity)
        let destination = await destinationResult
        switch (sourceResult, destination) {
        case (.success(let source), .success(let destination)):
            return (source, destination)
        case (.failure(let failure), let other):
            if case .success(let session) = other { await session.close() }
            throw failure
        case (.success(let source), .failure(let failure)):
            await source.close()
            throw failure
        }
    }

    private func openResult(_ side: ImportSide, affinity: SessionAffinity?) async -> Result<IMAPSession, ImportFailure>
    {
        do {
            return .success(try await open(side, affinity: affinity))
        } catch {
            return .failure(error)
        }
    }

    func open(_ side: ImportSide, affinity: SessionAffinity? = nil) async throws(ImportFailure) -> IMAPSession {
        let account = side == .source ? request.source : request.destination
        do {
            let session = try await IMAPSession.open(
                account.server, credentials: account.credentials, affinity: affinity)
            if side == .source { try? await session.announce(["name": "Mailporter", "vendor": "Mailporter"]) }
            return session
        } catch {
            throw ImportFailure.classify(error, side: side, provider: request.provider, host: account.server.host)
        }
    }

    /// Plans with their counts; `finished` gets the folders whose checkpoint already covers every
    /// selected message, which then need no worker, no destination and no second look. Views left
    /// out of the plan are told as notices.
    private func countedPlans(
        source: IMAPSession, destination: IMAPSession, finished: inout [String: FolderSummaryCounts],
        emit: @Sendable (MigrationEvent) -> Void
    ) async throws -> [FolderPlan] {
        let (planned, skipped) = try await FolderPlanner(request: request).plan(
            source: source, destination: destination)
        var plans = planned
        for folder in skipped { emit(.notice(folder: folder.name, message: folder.reason)) }
        for index in plans.indices {
            let checkpoint = try await checkpoints.load(folder: plans[index].source.encoded)
            if let counts = Self.finishedByStatus(
                plans[index].sourceStatus, checkpoint: checkpoint, propagateDeletions: request.propagateDeletions)
            {
                plans[index].expected = counts.expected
                finished[plans[index].source.encoded] = counts
                continue
            }
            let selected = try await source.select(plans[index].source, readOnly: true)
            var uids = try await source.uidSearch(request.searchCriteria)
            if plans[index].onlyUnlabelled {
                if let checkpoint, checkpoint.sourceUIDValidity == selected.uidValidity, checkpoint.inFlight == nil {
                    // Labels cost a FETCH per thousand messages: count what the checkpoint covers
                    // from it and ask only about the rest, as the copy itself will.
                    let done = FolderSummaryCounts(accountedFor: checkpoint)
                    let newer = try await GmailLabels.unlabelled(
                        uids.filter { $0 > checkpoint.lastSourceUID }, on: source)
                    plans[index].expected = done.expected + newer.count
                    if newer.isEmpty,
                        Self.inStep(
                            plans[index].sourceStatus, checkpoint: checkpoint,
                            propagateDeletions: request.propagateDeletions)
                    {
                        finished[plans[index].source.encoded] = done
                    }
                    continue
                }
                uids = try await GmailLabels.unlabelled(uids, on: source)
            }
            plans[index].expected = uids.count
            if uids.isEmpty, checkpoint?.inFlight == nil, checkpoint?.copiedMap?.isEmpty ?? true,
                checkpoint?.unmatched == nil
            {
                // Nothing selected: done, whatever an earlier run counted.
                finished[plans[index].source.encoded] = FolderSummaryCounts(accountedFor: checkpoint)
            } else if let checkpoint, checkpoint.sourceUIDValidity == selected.uidValidity, checkpoint.inFlight == nil,
                uids.allSatisfy({ $0 <= checkpoint.lastSourceUID }),
                Self.inStep(
                    plans[index].sourceStatus, checkpoint: checkpoint, propagateDeletions: request.propagateDeletions)
            {
                finished[plans[index].source.encoded] = FolderSummaryCounts(accountedFor: checkpoint)
            }
        }
        return plans
    }

    /// A folder is done without looking inside when the listed status shows nothing its checkpoint
    /// has not covered: the same UIDVALIDITY, no UID at or above the last one done, no batch in
    /// flight (or no message at all). This makes a run with nothing new one LIST per side.
    static func finishedByStatus(
        _ status: MailboxStatus?, checkpoint: FolderCheckpoint?, propagateDeletions: Bool = false
    ) -> FolderSummaryCounts? {
        guard let status, checkpoint?.inFlight == nil,
            inStep(status, checkpoint: checkpoint, propagateDeletions: propagateDeletions)
        else { return nil }
        let done = FolderSummaryCounts(accountedFor: checkpoint)
        if status.messages == 0 { return done }
        guard let checkpoint, let uidValidity = status.uidValidity, let uidNext = status.uidNext,
            checkpoint.sourceUIDValidity == uidValidity, uidNext > 0, uidNext - 1 <= checkpoint.lastSourceUID
        else {
            return nil
        }
        return done
    }

    /// Whether the copies a checkpoint records can have nothing to carry over: none made, or the
    /// source's HIGHESTMODSEQ and message count as the last pass left them (no flag changed, none
    /// expunged). Without CONDSTORE the flags have to be compared, and a checkpoint without a UID
    /// map has its copies matched first.
    static func inStep(_ status: MailboxStatus?, checkpoint: FolderCheckpoint?, propagateDeletions: Bool) -> Bool {
        guard let checkpoint else { return true }
        guard checkpoint.unmatched == nil else { return false }
        guard let map = checkpoint.copiedMap else { return checkpoint.lastSourceUID == 0 && checkpoint.copied == 0 }
        if map.isEmpty { return true }
        guard let status, let modSeq = status.highestModSeq, modSeq == checkpoint.highestModSeq,
            let messages = status.messages, messages == checkpoint.sourceMessages
        else { return false }
        return !propagateDeletions || checkpoint.deletionsCheckedModSeq == modSeq
    }

    /// For a dry run with deletions asked for: per folder, the copies a pass would delete (source
    /// UID → destination UID) because their source message was expunged. Changes nothing.
    public func pendingDeletions(_ plans: [FolderPlan]) async throws(ImportFailure) -> [(
        folder: String, pairs: [(source: UInt32, destination: UInt32)]
    )] {
        let source = try await open(.source)
        do {
            var result: [(folder: String, pairs: [(source: UInt32, destination: UInt32)])] = []
            for plan in plans {
                guard let checkpoint = try await checkpoints.load(folder: plan.source.encoded),
                    let map = checkpoint.copiedMap, !map.isEmpty
                else { continue }
                let box = try await source.select(plan.source, readOnly: true)
                // Renumbered: the map's UIDs name other messages now, so nothing is listed.
                guard box.uidValidity == checkpoint.sourceUIDValidity else { continue }
                let gone = try await FolderCopier.expunged(on: source, map: map)
                if !gone.isEmpty {
                    result.append(
                        (plan.sourceName, gone.compactMap { uid in map.destination(of: uid).map { (uid, $0) } }))
                }
            }
            await source.logout()
            return result
        } catch {
            await source.close()
            throw classify(error)
        }
    }

    /// Folders an earlier pass copied that this plan no longer has (renamed or deleted at the
    /// source, or no longer selected): told, and their copies left as they are.
    private func reportVanished(_ plans: [FolderPlan], emit: @Sendable (MigrationEvent) -> Void) async throws {
        let planned = Set(plans.map(\.source.encoded))
        for folder in try await checkpoints.checkpointedFolders().sorted() where !planned.contains(folder) {
            guard let checkpoint = try await checkpoints.load(folder: folder), checkpoint.copied > 0 else { continue }
            let name = MailboxName(encoded: folder).decoded
            emit(
                .notice(
                    folder: name,
                    message:
                        "\(name) was copied by an earlier pass (\(checkpoint.copied) messages) but is no longer at the source or no longer selected (renamed or deleted there?): its copies at the destination are left as they are; a renamed folder is copied under its new name"
                ))
        }
    }

    func classify(_ error: Error) -> ImportFailure {
        if let failure = error as? ImportFailure { return failure }
        if let sided = error as? SidedError {
            let account = sided.side == .source ? request.source : request.destination
            return ImportFailure.classify(
                sided.underlying, side: sided.side, provider: request.provider, host: account.server.host)
        }
        return ImportFailure.classify(
            error, side: .source, provider: request.provider, host: request.source.server.host)
    }
}

/// An error tagged with the end it came from, so classification can tell them apart.
struct SidedError: Error {
    var side: ImportSide
    var underlying: Error
}

/// Hands folders to workers in plan order. Folders that map onto the same destination folder
/// (Sent and Sent Items, say) go to one worker one after the other, so duplicate detection and
/// in-flight reconciliation never see another worker's appends.
actor FolderQueue {
    private var groups: [[FolderPlan]]

    init(_ plans: [FolderPlan]) {
        var order: [String] = []
        var byDestination: [String: [FolderPlan]] = [:]
        for plan in plans {
            let key = plan.destination.encoded.lowercased()
            if byDestination[key] == nil { order.append(key) }
            byDestination[key, default: []].append(plan)
        }
        groups = order.compactMap { byDestination[$0] }.reversed()
    }

    func next() -> [FolderPlan]? { groups.popLast() }
}

/// Gives the planning step's sessions to exactly one worker.
actor SessionHandOver {
    private var sessions: (source: IMAPSession, destination: IMAPSession)?
    init(source: IMAPSession, destination: IMAPSession) { sessions = (source, destination) }
    func take() -> (source: IMAPSession, destination: IMAPSession)? {
        defer { sessions = nil }
        return sessions
    }
}

actor ResultCollector {
    private var counts: [String: FolderSummaryCounts] = [:]
    func record(_ folder: String, _ value: FolderSummaryCounts) { counts[folder] = value }
    func all() -> [String: FolderSummaryCounts] { counts }
}
