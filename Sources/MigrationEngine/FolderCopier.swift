import IMAPClient
import NIOCore

/// Copies one folder over a source and a destination session, batch by batch, resuming from and
/// writing checkpoints. Bodies stream from the source FETCH straight into destination APPENDs.
struct FolderCopier {
    let plan: FolderPlan
    let request: MigrationRequest
    let checkpoints: any CheckpointStore
    let emit: @Sendable (MigrationEvent) -> Void

    /// One message's metadata from the first FETCH of a batch.
    private struct MessageInfo {
        var sequence: UInt32
        var uid: UInt32 = 0
        var flags: [String] = []
        var internalDate: InternalDate?
        var size = 0
        var key: DuplicateKey?
    }

    /// One APPEND command sent and the messages it carries, in order.
    private struct AppendGroup {
        var tag: CommandTag
        var messages: [MessageInfo] = []
        var bytes = 0
    }

    var folderKey: String { plan.source.encoded }

    /// Records UIDs as sent whole around the write that completes their APPEND command.
    typealias MarkSent = (_ uids: [UInt32], _ lastWrite: () async throws -> Void) async throws -> Void

    /// Where the folder stood when this attempt began: its checkpoint, the source UIDs still to do
    /// and the counts so far.
    private struct Resumption {
        var checkpoint: FolderCheckpoint
        var pending: [UInt32]
        var counts: FolderSummaryCounts
        var pass: PassStart
    }

    /// The source folder as this pass found it, stored once the pass is done: the next one asks
    /// for flag changes since this HIGHESTMODSEQ.
    struct PassStart {
        var highestModSeq: UInt64?
        var messages: Int
        /// The source keeps modification sequences for this folder (CONDSTORE).
        var condstore: Bool { highestModSeq != nil }
    }

    /// The destination folder as the copy writes to it.
    struct Target {
        let session: IMAPSession
        let uidValidity: UInt32?
        /// Keywords the folder keeps; nil means any.
        let allowedKeywords: Set<String>?
        /// Without UIDPLUS the destination's UIDNEXT is asked for before each batch.
        let tracksUIDs: Bool
        /// STOREs can carry UNCHANGEDSINCE (CONDSTORE), so a change made at the destination
        /// meanwhile is not overwritten blindly.
        let condstore: Bool
    }

    /// What the copy carries from batch to batch, besides the checkpoint.
    private struct CopyState {
        var counts: FolderSummaryCounts
        /// Keys already in the destination folder (for skip_duplicates).
        var existing = Set<DuplicateKey>()
        /// Keys of an interrupted batch's messages that reached the destination, with the
        /// destination UIDs of those still to be matched to source messages up to `reconcileUpTo`.
        var arrived: [DuplicateKey: [UInt32]] = [:]
        /// Keys of the copies an earlier pass made before the source's UIDVALIDITY changed, with
        /// their destination UIDs: a renumbered source message that has one is linked to it again.
        var previous: [DuplicateKey: [UInt32]] = [:]
        /// Those linked again in this pass, whose flags are compared whole afterwards.
        var relinked: [(source: UInt32, destination: UInt32)] = []
        var reconcileUpTo: UInt32 = 0
        var destinationUIDNext: UInt32
    }

    /// The next batch's metadata: asked for (its FETCH still to be read), or read already.
    private enum NextMetadata {
        case requested(MetadataRequest)
        case read([UInt32: MessageInfo])
    }

    func run(source: IMAPSession, destination connectDestination: () async throws -> IMAPSession) async throws
        -> FolderSummaryCounts
    {
        let resumption = try await resume(on: source)
        var checkpoint = resumption.checkpoint
        let pending = resumption.pending
        emit(.folderBaseline(source: plan.sourceName, counts: resumption.counts))
        guard !pending.isEmpty else {
            if checkpoint.inFlight != nil {
                checkpoint.inFlight = nil
                try await checkpoints.save(checkpoint, folder: folderKey)
            }
            // Nothing new: only the flags of earlier copies (the destination is opened only when
            // one of them needs a change).
            var counts = resumption.counts
            try await syncPass(
                source: source, target: nil, connect: connectDestination, checkpoint: &checkpoint,
                counts: &counts, pass: resumption.pass, earlier: checkpoint.copiedMap ?? UIDMap())
            return counts
        }

        let (target, box) = try await openTarget(try await connectDestination(), checkpoint: &checkpoint)
        let earlier = checkpoint.copiedMap ?? UIDMap()
        var state = try await reconcile(
            resumption, checkpoint: checkpoint, box: box, source: source, destination: target.session)
        let batches = stride(from: 0, to: pending.count, by: max(1, request.batchSize)).map {
            Array(pending[$0..<min(pending.count, $0 + request.batchSize)])
        }
        // The next batch's metadata is asked for while this batch's APPEND results come in.
        var next: NextMetadata? = .requested(
            try await sendMetadata(
                on: source, uids: batches[0], reconcileUpTo: state.reconcileUpTo, relinking: !state.previous.isEmpty))
        for (index, batch) in batches.enumerated() {
            try Task.checkCancellation()
            guard let last = batch.last, let metadata = next else { continue }
            let infos: [UInt32: MessageInfo]
            switch metadata {
            case .requested(let request): infos = try await collectMetadata(on: source, tag: request)
            case .read(let read): infos = read
            }
            let following = index + 1 < batches.count ? batches[index + 1] : nil
            next = try await copyBatch(
                batch, last: last, infos: infos, following: following, from: source, to: target,
                checkpoint: &checkpoint, state: &state)
        }
        var counts = state.counts
        try await syncPass(
            source: source, target: target, connect: connectDestination, checkpoint: &checkpoint,
            counts: &counts, pass: resumption.pass, earlier: earlier, relinked: state.relinked)
        return counts
    }

    // MARK: Steps

    /// Opens the source folder and loads its checkpoint: what is left to copy is what the search
    /// finds above the last UID done.
    private func resume(on source: IMAPSession) async throws -> Resumption {
        let sourceBox = try await source.select(plan.source, readOnly: true, condstore: true)
        guard let uidValidity = sourceBox.uidValidity else {
            throw IMAPError.protocolError("\(plan.sourceName) has no UIDVALIDITY")
        }
        var checkpoint = try await checkpoints.load(folder: folderKey) ?? Self.fresh(uidValidity)
        if checkpoint.copiedMap == nil {
            if checkpoint.lastSourceUID > 0 || checkpoint.copied > 0 {
                checkpoint.unmatched = UnmatchedCopies()
                emit(
                    .notice(
                        folder: plan.sourceName,
                        message:
                            "the checkpoint was written by an earlier version and does not say which destination message each copy is: this pass matches them by Message-ID (or header hash) within the folder, once, and keeps their flags in step from then on"
                    ))
            }
            checkpoint.copiedMap = UIDMap()
        }
        if checkpoint.sourceUIDValidity != uidValidity {
            // The source renumbered its messages: every one is looked at again, and one already
            // copied is linked to its copy by Message-ID instead of being copied twice.
            let earlier = checkpoint.copiedMap?.destinations ?? UIDSet([])
            emit(
                .notice(
                    folder: plan.sourceName,
                    message:
                        "the source folder's UIDVALIDITY changed (\(checkpoint.sourceUIDValidity) → \(uidValidity)): its messages were renumbered, so every one is compared again by Message-ID (or header hash); the \(earlier.count) earlier copies are recognised, not copied twice"
                ))
            checkpoint = Self.fresh(uidValidity)
            checkpoint.unmatched = UnmatchedCopies(source: UIDSet([]), destination: earlier)
        }
        let lastUID = checkpoint.lastSourceUID
        var pending = try await source.uidSearch("UID \(lastUID &+ 1):* " + request.searchCriteria).filter {
            $0 > lastUID
        }
        if plan.onlyUnlabelled { pending = try await GmailLabels.unlabelled(pending, on: source) }
        var counts = FolderSummaryCounts(accountedFor: checkpoint)
        counts.expected += pending.count
        return Resumption(
            checkpoint: checkpoint, pending: pending, counts: counts,
            pass: PassStart(
                highestModSeq: await source.hasCapability("CONDSTORE") ? sourceBox.highestModSeq : nil,
                messages: sourceBox.exists))
    }

    static func fresh(_ uidValidity: UInt32) -> FolderCheckpoint {
        var checkpoint = FolderCheckpoint(sourceUIDValidity: uidValidity)
        checkpoint.copiedMap = UIDMap()
        return checkpoint
    }

    /// Opens the destination folder read-write. A changed UIDVALIDITY there makes the copies'
    /// destination UIDs meaningless: they are matched again by Message-ID.
    func openTarget(_ destination: IMAPSession, checkpoint: inout FolderCheckpoint) async throws
        -> (Target, SelectedMailbox)
    {
        let box = try await onDestination { try await destination.select(plan.destination, condstore: true) }
        let condstore = await destination.hasCapability("CONDSTORE")
        let target = Target(
            session: destination, uidValidity: box.uidValidity,
            allowedKeywords: box.acceptsNewKeywords ? nil : Set((box.permanentFlags ?? []).map { $0.lowercased() }),
            tracksUIDs: await destination.hasCapability("UIDPLUS"),
            condstore: condstore && box.highestModSeq != nil)
        if let known = checkpoint.destinationUIDValidity, let now = box.uidValidity, known != now,
            let map = checkpoint.copiedMap, !map.isEmpty
        {
            emit(
                .notice(
                    folder: plan.sourceName,
                    message:
                        "the destination folder's UIDVALIDITY changed (\(known) → \(now)): its \(map.count) copies are matched to the source again by Message-ID (or header hash)"
                ))
            let earlier = checkpoint.unmatched
            let sources =
                earlier.map { $0.source.map { UIDSet.compact($0.values + map.sources.values) } } ?? map.sources
            checkpoint.unmatched = UnmatchedCopies(source: sources, destination: nil)
            checkpoint.copiedMap = UIDMap()
        }
        checkpoint.destinationUIDValidity = box.uidValidity
        return (target, box)
    }

    /// Opens the destination folder and learns what must not be appended again: the keys already
    /// there (for skip_duplicates) and those of an interrupted batch that reached it (for exactness
    /// with or without skip_duplicates).
    private func reconcile(
        _ resumption: Resumption, checkpoint: FolderCheckpoint, box: SelectedMailbox, source: IMAPSession,
        destination: IMAPSession
    ) async throws -> CopyState {
        var state = CopyState(counts: resumption.counts, destinationUIDNext: box.uidNext ?? 1)
        if let unmatched = checkpoint.unmatched, unmatched.source?.ranges.isEmpty == true,
            let earlier = unmatched.destination, !earlier.ranges.isEmpty, box.exists > 0
        {
            for (uid, key) in try await onDestination({ try await keys(on: destination, uids: earlier.description) })
            where earlier.ranges.contains(where: { $0.contains(uid) }) {
                state.previous[key, default: []].append(uid)
            }
            for key in state.previous.keys { state.previous[key]?.sort() }
        }
        if request.skipDuplicates, box.exists > 0 {
            for (_, key) in try await onDestination({ try await keys(on: destination, uids: "1:*") }) {
                state.existing.insert(key)
            }
        }
        if let inFlight = resumption.checkpoint.inFlight, inFlight.destinationUIDValidity == box.uidValidity,
            box.exists > 0 || inFlight.sent?.ranges.isEmpty == false
        {
            state.arrived = try await arrivals(of: inFlight, source: source, destination: destination)
            state.reconcileUpTo = inFlight.lastSourceUID
        }
        return state
    }

    /// Copies one batch and checkpoints it. Asks for the `following` batch's metadata while the
    /// APPEND results come in, and returns that request (or its result, when it had to be read
    /// early); nil when there is no following batch.
    private func copyBatch(
        _ batch: [UInt32], last: UInt32, infos: [UInt32: MessageInfo], following: [UInt32]?,
        from source: IMAPSession, to target: Target,
        checkpoint: inout FolderCheckpoint, state: inout CopyState
    ) async throws -> NextMetadata? {
        var links = Links()
        let toCopy = messagesToCopy(batch, infos: infos, state: &state, links: &links)
        let destination = target.session
        var appends: [AppendGroup] = []
        if !toCopy.isEmpty {
            try await openWindow(
                first: batch.first, last: last, on: target, checkpoint: &checkpoint,
                destinationUIDNext: &state.destinationUIDNext)
            appends = try await streamBodies(
                toCopy, from: source, to: destination, allowedKeywords: target.allowedKeywords,
                grouped: true, counts: &state.counts,
                markSent: { try await markSent($0, around: $1, in: &checkpoint) })
        }
        var next: NextMetadata?
        if let following {
            next = .requested(
                try await sendMetadata(
                    on: source, uids: following, reconcileUpTo: state.reconcileUpTo,
                    relinking: !state.previous.isEmpty))
        }
        var uidNext = state.destinationUIDNext
        var batchCounts = state.counts
        let refused = try await onDestination {
            try await collectAppends(
                appends, from: destination, target: target, counts: &batchCounts, destinationUIDNext: &uidNext,
                links: &links)
        }
        if !refused.isEmpty {
            // A MULTIAPPEND refused for one of its messages stored none: again one by one, to find
            // which. The next batch's metadata is read first, as FETCH data cannot tell commands apart.
            if case .requested(let metadata)? = next {
                next = .read(try await collectMetadata(on: source, tag: metadata))
            }
            let again = try await streamBodies(
                Dictionary(refused.map { ($0.uid, $0) }, uniquingKeysWith: { first, _ in first }),
                from: source, to: destination, allowedKeywords: target.allowedKeywords,
                grouped: false, counts: &batchCounts,
                markSent: { try await markSent($0, around: $1, in: &checkpoint) })
            _ = try await onDestination {
                try await collectAppends(
                    again, from: destination, target: target, counts: &batchCounts, destinationUIDNext: &uidNext,
                    links: &links)
            }
        }
        state.counts = batchCounts
        state.destinationUIDNext = uidNext
        checkpoint.lastSourceUID = last
        checkpoint.inFlight = nil
        checkpoint.copied = state.counts.copied
        checkpoint.skipped = state.counts.skipped
        checkpoint.failed = state.counts.failed
        checkpoint.bytes = state.counts.bytes
        checkpoint.copiedMap = (checkpoint.copiedMap ?? UIDMap()).inserting(links.mapped)
        if !links.unmapped.isEmpty {
            // Matched by Message-ID at the end of this pass; an unmatched list of "all" covers them already.
            var unmatched = checkpoint.unmatched ?? UnmatchedCopies(source: UIDSet([]), destination: nil)
            if let known = unmatched.source { unmatched.source = UIDSet.compact(known.values + links.unmapped) }
            unmatched.destination = nil
            checkpoint.unmatched = unmatched
        }
        try await checkpoints.save(checkpoint, folder: folderKey)
        return next
    }

    /// Which destination message each source message of a batch became.
    private struct Links {
        var mapped: [(source: UInt32, destination: UInt32)] = []
        /// Appended, but the destination did not say under which UID (no APPENDUID).
        var unmapped: [UInt32] = []
    }

    /// The batch's messages to append. Those expunged or flagged \Deleted since the search are not
    /// part of the job; those an interrupted run stored are counted as copied; duplicates are skipped.
    private func messagesToCopy(
        _ batch: [UInt32], infos: [UInt32: MessageInfo], state: inout CopyState, links: inout Links
    ) -> [UInt32: MessageInfo] {
        var toCopy: [UInt32: MessageInfo] = [:]
        for uid in batch {
            guard let info = infos[uid], !info.flags.contains(where: { $0.lowercased() == "\\deleted" }) else {
                state.counts.expected -= 1
                continue
            }
            if let key = info.key, let earlier = state.previous[key]?.first {
                // Copied by an earlier pass before the source renumbered: that copy is this one's.
                state.previous[key]?.removeFirst()
                if state.previous[key]?.isEmpty == true { state.previous[key] = nil }
                links.mapped.append((uid, earlier))
                state.relinked.append((uid, earlier))
                if request.skipDuplicates { state.existing.insert(key) }
                state.counts.copied += 1
                state.counts.bytes += Int64(info.size)
                emit(.messageCopied(folder: plan.sourceName, bytes: info.size))
                continue
            }
            if uid <= state.reconcileUpTo, let key = info.key, let arrivedUID = state.arrived[key]?.first {
                state.arrived[key]?.removeFirst()
                if state.arrived[key]?.isEmpty == true { state.arrived[key] = nil }
                links.mapped.append((uid, arrivedUID))
                // It is in the destination now, though it may have arrived after `existing` was read
                // (or the folder looked empty then): a later duplicate of it is skipped.
                if request.skipDuplicates { state.existing.insert(key) }
                state.counts.copied += 1
                state.counts.bytes += Int64(info.size)
                emit(.messageCopied(folder: plan.sourceName, bytes: info.size))
                continue
            }
            if request.skipDuplicates, let key = info.key {
                guard state.existing.insert(key).inserted else {
                    state.counts.skipped += 1
                    emit(.messageSkipped(folder: plan.sourceName))
                    continue
                }
            }
            toCopy[uid] = info
        }
        return toCopy
    }

    /// Checkpoints the batch as in flight before any of it is appended (see `InFlightBatch`).
    private func openWindow(
        first: UInt32?, last: UInt32, on target: Target, checkpoint: inout FolderCheckpoint,
        destinationUIDNext: inout UInt32
    ) async throws {
        guard let validity = target.uidValidity else { return }
        if !target.tracksUIDs {
            let known = destinationUIDNext
            destinationUIDNext = try await onDestination { try await currentUIDNext(target.session, fallback: known) }
        }
        var window = InFlightBatch(
            lastSourceUID: last, destinationUIDValidity: validity,
            destinationUIDNext: destinationUIDNext, sent: UIDSet([]))
        // Still resuming an interrupted batch: what that attempt appended is only reconciled
        // in memory, so keep its window open, or a second interruption would copy it again.
        if let earlier = checkpoint.inFlight, earlier.destinationUIDValidity == validity,
            let first, first <= earlier.lastSourceUID
        {
            window.destinationUIDNext = min(window.destinationUIDNext, earlier.destinationUIDNext)
            window.lastSourceUID = max(window.lastSourceUID, earlier.lastSourceUID)
        }
        checkpoint.inFlight = window
        try await checkpoints.save(checkpoint, folder: folderKey)
    }

    /// Records UIDs as sent whole just before the write that completes their APPEND command; see
    /// `InFlightBatch.sent`. A write that failed did not go out (a cancel closes the connection under
    /// it): the command never became whole, so the mark is taken back, or a resume would wait for it
    /// in vain.
    private func markSent(
        _ uids: [UInt32], around lastWrite: () async throws -> Void,
        in checkpoint: inout FolderCheckpoint
    ) async throws {
        try await markSent(uids, sent: true, in: &checkpoint)
        do {
            try await lastWrite()
        } catch {
            try? await markSent(uids, sent: false, in: &checkpoint)
            throw error
        }
    }

    private func markSent(_ uids: [UInt32], sent: Bool, in checkpoint: inout FolderCheckpoint) async throws {
        guard var window = checkpoint.inFlight, !uids.isEmpty else { return }
        let marking = Set(uids)
        let others = (window.sent?.values ?? []).filter { !marking.contains($0) }
        window.sent = UIDSet.compact(sent ? others + uids : others)
        checkpoint.inFlight = window
        try await checkpoints.save(checkpoint, folder: folderKey)
    }

    /// What an interrupted run's window left in the destination: the keys of messages at or above
    /// its UIDNEXT. This is the fence against a restart racing the dead run's last command: an APPEND
    /// sent whole is stored by the server even after its client died, and it may be stored only after
    /// a run restarted at once has looked. So the keys of every message recorded as sent are awaited
    /// until they show up, polling the destination, and only then is anything missing appended again.
    /// An APPEND that was never sent whole is dropped by the server, so it is not waited for.
    private func arrivals(of window: InFlightBatch, source: IMAPSession, destination: IMAPSession) async throws
        -> [DuplicateKey: [UInt32]]
    {
        var arrived: [DuplicateKey: [UInt32]] = [:]
        var next = window.destinationUIDNext
        func look() async throws {
            // `keys` lists messages without a Message-ID last, out of UID order: filter by the bound
            // of this look, then move it.
            let from = next
            for (uid, key) in try await onDestination({ try await keys(on: destination, uids: "\(from):*") })
            where uid >= from {
                arrived[key, default: []].append(uid)
                next = max(next, uid &+ 1)
            }
        }
        try await look()
        defer { for key in arrived.keys { arrived[key]?.sort() } }
        guard let sent = window.sent, !sent.ranges.isEmpty else { return arrived }
        // A message expunged from the source meanwhile is not appended again, so it needs no wait.
        var awaited: [DuplicateKey: Int] = [:]
        for (_, key) in try await keys(on: source, uids: sent.description) { awaited[key, default: 0] += 1 }
        func missing() -> Int { awaited.reduce(0) { $0 + max(0, $1.value - (arrived[$1.key]?.count ?? 0)) } }
        let started = ContinuousClock.now
        while missing() > 0 {
            guard ContinuousClock.now - started < request.interruptedAppendWait else {
                // Sent but never stored (refused, or lost with the connection): appended again below.
                emit(
                    .notice(
                        folder: plan.sourceName,
                        message:
                            "\(missing()) messages the interrupted run sent never reached the destination; appending them again"
                    ))
                break
            }
            try await Task.sleep(for: .milliseconds(50))
            // NOOP makes the server report what other sessions stored since the last look.
            try await onDestination { try await destination.noop() }
            try await look()
        }
        return arrived
    }

    private func currentUIDNext(_ destination: IMAPSession, fallback: UInt32) async throws -> UInt32 {
        let status = try await destination.status(plan.destination, items: [.uidNext])
        return max(status.uidNext ?? fallback, fallback)
    }

    /// Asks for UID, flags, date, size and (when needed) Message-ID of a batch; `collectMetadata` reads it.
    private func sendMetadata(
        on source: IMAPSession, uids: [UInt32], reconcileUpTo: UInt32, relinking: Bool = false
    ) async throws -> MetadataRequest {
        let withKeys = request.skipDuplicates || relinking || uids.first.map { $0 <= reconcileUpTo } == true
        let items = "UID FLAGS INTERNALDATE RFC822.SIZE" + (withKeys ? " BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]" : "")
        return MetadataRequest(
            tag: try await source.sendUIDFetch(UIDSet.compact(uids), items: items), withKeys: withKeys)
    }

    private struct MetadataRequest {
        var tag: CommandTag
        var withKeys: Bool
    }

    private func collectMetadata(on source: IMAPSession, tag request: MetadataRequest) async throws -> [UInt32:
        MessageInfo]
    {
        var infos: [UInt32: MessageInfo] = [:]
        for message in try await source.fetchResult(request.tag) {
            infos[message.uid] = MessageInfo(
                sequence: message.sequence, uid: message.uid, flags: message.flags,
                internalDate: message.internalDate, size: message.size ?? 0,
                key: request.withKeys ? DuplicateKey.messageID(fromHeaderFields: message.body) : nil)
        }
        if request.withKeys {
            let withoutID = infos.values.filter { $0.key == nil }.map(\.uid)
            if !withoutID.isEmpty {
                for (uid, key) in try await headerKeys(on: source, uids: withoutID) { infos[uid]?.key = key }
            }
        }
        return infos
    }

    /// Keys of destination messages in a UID range (`1:*`, `n:*`).
    func keys(on session: IMAPSession, uids: String) async throws -> [(UInt32, DuplicateKey)] {
        let headers = try await fetchSections(on: session, set: uids, section: "HEADER.FIELDS (MESSAGE-ID)")
        var result: [(UInt32, DuplicateKey)] = []
        var withoutID: [UInt32] = []
        for (uid, header) in headers {
            if let key = DuplicateKey.messageID(fromHeaderFields: header) {
                result.append((uid, key))
            } else {
                withoutID.append(uid)
            }
        }
        if !withoutID.isEmpty { result += try await headerKeys(on: session, uids: withoutID) }
        return result
    }

    /// Header-block hashes for messages without a Message-ID.
    private func headerKeys(on session: IMAPSession, uids: [UInt32]) async throws -> [(UInt32, DuplicateKey)] {
        try await fetchSections(on: session, set: UIDSet.compact(uids).description, section: "HEADER")
            .map { ($0.uid, DuplicateKey.headerBlock($0.bytes)) }
    }

    /// `UID FETCH set (UID BODY.PEEK[section])`, each message's section bytes by UID.
    private func fetchSections(on session: IMAPSession, set: String, section: String) async throws -> [(
        uid: UInt32, bytes: ByteBuffer
    )] {
        try await session.uidFetch(set, items: "UID BODY.PEEK[\(section)]").map { ($0.uid, $0.body) }
    }

    /// Flags the destination will keep: the four user-visible system flags and accepted keywords.
    func flagsToCopy(_ flags: [String], allowedKeywords: Set<String>?) -> [String] {
        func kept(_ flag: String) -> Bool {
            guard FlagUpdates.isManaged(flag) else { return false }
            return flag.hasPrefix("\\") || allowedKeywords?.contains(flag.lowercased()) ?? true
        }
        // Usually every flag is kept: the same array then, not a filtered copy of it.
        return flags.allSatisfy(kept) ? flags : flags.filter(kept)
    }

    /// Streams the bodies of `messages` from a source FETCH into pipelined destination APPENDs:
    /// several messages per MULTIAPPEND when `grouped` and the destination can stream one, else one
    /// APPEND each. Returns the APPENDs sent, whose results `collectAppends` reads.
    private func streamBodies(
        _ messages: [UInt32: MessageInfo], from source: IMAPSession, to destination: IMAPSession,
        allowedKeywords: Set<String>?, grouped: Bool, counts: inout FolderSummaryCounts,
        markSent: MarkSent
    ) async throws -> [AppendGroup] {
        let bySequence = Dictionary(
            messages.values.map { ($0.sequence, $0.uid) }, uniquingKeysWith: { first, _ in first })
        let tag = try await source.sendUIDFetch(UIDSet.compact(Array(messages.keys)), items: "UID BODY.PEEK[]")
        let multiAppend = grouped && messages.count > 1 ? await destination.canStreamMultiAppend : false
        var groups: [AppendGroup] = []
        var open: AppendGroup?
        var handled = Set<UInt32>()
        var sequence: UInt32 = 0
        var uid: UInt32 = 0
        var appending = false
        while let event = try await source.nextEvent(until: tag) {
            switch event {
            case .fetchStart(let value):
                sequence = value
                uid = 0
            case .fetchAttribute(.uid(let value)):
                uid = value
            case .fetchBodyStart(let section, _, let size, let isNil):
                let messageUID = uid != 0 ? uid : bySequence[sequence] ?? 0
                guard section.isEmpty, var info = messages[messageUID], !handled.contains(messageUID) else { continue }
                handled.insert(messageUID)
                if isNil {
                    counts.failed += 1
                    emit(
                        .messageFailed(
                            folder: plan.sourceName, uid: messageUID, size: info.size, internalDate: info.internalDate,
                            reason: "the source server returned no content"))
                    continue
                }
                info.size = size
                let flags = flagsToCopy(info.flags, allowedKeywords: allowedKeywords)
                if multiAppend {
                    if open == nil {
                        open = AppendGroup(tag: try await destination.beginMultiAppend(to: plan.destination))
                    }
                    try await onDestination {
                        try await destination.appendMessage(flags: flags, internalDate: info.internalDate, size: size)
                    }
                    open?.messages.append(info)
                    open?.bytes += size
                } else {
                    do {
                        // An empty message's command is whole as soon as it begins.
                        var appendTag: CommandTag?
                        let begin = {
                            appendTag = try await destination.beginAppend(
                                to: plan.destination, flags: flags,
                                internalDate: info.internalDate, size: size)
                        }
                        if size == 0 { try await markSent([messageUID], begin) } else { try await begin() }
                        guard let appendTag else { continue }
                        groups.append(AppendGroup(tag: appendTag, messages: [info], bytes: size))
                    } catch let error as IMAPError {
                        // A synchronising literal refused up front: quota is fatal, anything else is this message's.
                        if error.responseCode == .overQuota { throw error }
                        guard case .commandFailed(_, _, let text) = error else {
                            throw SidedError(side: .destination, underlying: error)
                        }
                        counts.failed += 1
                        emit(
                            .messageFailed(
                                folder: plan.sourceName, uid: messageUID, size: size, internalDate: info.internalDate,
                                reason: text.text))
                        continue
                    }
                }
                appending = size > 0
                // An empty body has no bytes to wait for (beginAppend has already ended a single one).
                if size == 0, multiAppend {
                    try await endMessage(on: destination, group: &open, into: &groups, markSent: markSent)
                }
            case .fetchBodyBytes(let bytes):
                if appending { try await onDestination { try await destination.appendBytes(bytes) } }
            case .fetchBodyEnd:
                if appending {
                    if multiAppend {
                        try await endMessage(on: destination, group: &open, into: &groups, markSent: markSent)
                    } else {
                        let last = groups.last?.messages.last?.uid
                        try await markSent(last.map { [$0] } ?? []) {
                            try await onDestination { try await destination.endAppend() }
                        }
                    }
                }
                appending = false
            default:
                break
            }
        }
        try await source.finish(tag)
        if let group = open {
            try await markSent(group.messages.map(\.uid)) {
                try await onDestination { try await destination.endMultiAppend() }
            }
            groups.append(group)
        }
        // Listed by SEARCH but gone by FETCH: expunged meanwhile, so not part of the job.
        counts.expected -= messages.count - handled.count
        return groups
    }

    /// Ends a MULTIAPPEND message; the command goes off once it holds `request.appendGroupBytes`,
    /// so progress and a retry after a refusal stay small whatever the batch holds.
    private func endMessage(
        on destination: IMAPSession, group: inout AppendGroup?, into groups: inout [AppendGroup],
        markSent: MarkSent
    ) async throws {
        try await onDestination { try await destination.endAppend() }
        guard let full = group, full.bytes >= request.appendGroupBytes else { return }
        try await markSent(full.messages.map(\.uid)) {
            try await onDestination { try await destination.endMultiAppend() }
        }
        groups.append(full)
        group = nil
    }

    /// Reads the results of pipelined APPENDs. A refused single message is counted as failed; a
    /// refused MULTIAPPEND stored none of its messages, which are returned to be appended one by one
    /// so that only the message at fault fails. Quota and availability refusals end the folder
    /// (after all results are read).
    private func collectAppends(
        _ groups: [AppendGroup], from destination: IMAPSession, target: Target,
        counts: inout FolderSummaryCounts, destinationUIDNext: inout UInt32, links: inout Links
    ) async throws -> [MessageInfo] {
        var firstFailure: Error?
        var retry: [MessageInfo] = []
        for group in groups {
            do {
                let result = try await destination.appendResult(group.tag)
                if let last = result.uids?.ranges.map(\.upperBound).max() {
                    destinationUIDNext = max(destinationUIDNext, last &+ 1)
                }
                // APPENDUID lists the new UIDs in the order the messages were sent.
                if let uids = result.uids?.values, uids.count == group.messages.count,
                    result.uidValidity == nil || result.uidValidity == target.uidValidity
                {
                    links.mapped += zip(group.messages.map(\.uid), uids).map { ($0, $1) }
                } else {
                    links.unmapped += group.messages.map(\.uid)
                }
                for info in group.messages {
                    counts.copied += 1
                    counts.bytes += Int64(info.size)
                    emit(.messageCopied(folder: plan.sourceName, bytes: info.size))
                }
            } catch let error as IMAPError {
                guard case .commandFailed(_, _, let text) = error, text.code != .overQuota, text.code != .unavailable
                else {
                    if firstFailure == nil { firstFailure = error }
                    continue
                }
                // A limit may be the command's size: one by one tells (a mailbox limit comes back then).
                guard group.messages.count == 1, let info = group.messages.first else {
                    retry += group.messages
                    continue
                }
                guard text.code != .limit else {
                    if firstFailure == nil { firstFailure = error }
                    continue
                }
                counts.failed += 1
                emit(
                    .messageFailed(
                        folder: plan.sourceName, uid: info.uid, size: info.size, internalDate: info.internalDate,
                        reason: text.text))
            }
        }
        if let firstFailure { throw firstFailure }
        return retry
    }
}

/// Runs a destination operation, tagging its errors so they are classified as the destination's
/// (`destination_unavailable` rather than a source timeout).
func onDestination<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as IMAPError {
        throw SidedError(side: .destination, underlying: error)
    }
}
