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

    func run(source: IMAPSession, destination connectDestination: () async throws -> IMAPSession) async throws -> FolderSummaryCounts {
        let sourceBox = try await source.select(plan.source, readOnly: true)
        guard let uidValidity = sourceBox.uidValidity else {
            throw IMAPError.protocolError("\(plan.sourceName) has no UIDVALIDITY")
        }
        var checkpoint = try await checkpoints.load(folder: folderKey) ?? FolderCheckpoint(sourceUIDValidity: uidValidity)
        if checkpoint.sourceUIDValidity != uidValidity {
            // The source renumbered its messages: start over; duplicate detection keeps it exact.
            checkpoint = FolderCheckpoint(sourceUIDValidity: uidValidity)
        }

        var pending = try await source.uidSearch(searchCriteria(after: checkpoint.lastSourceUID))
            .filter { $0 > checkpoint.lastSourceUID }
        if plan.onlyUnlabelled { pending = try await GmailLabels.unlabelled(pending, on: source) }
        var counts = FolderSummaryCounts(accountedFor: checkpoint)
        counts.expected += pending.count
        emit(.folderBaseline(source: plan.sourceName, counts: counts))
        // Nothing new: done without touching the destination (the fast no-change rerun).
        guard !pending.isEmpty else {
            if checkpoint.inFlight != nil {
                checkpoint.inFlight = nil
                try await checkpoints.save(checkpoint, folder: folderKey)
            }
            return counts
        }

        let destination = try await connectDestination()
        let destinationBox = try await onDestination { try await destination.select(plan.destination) }
        let allowedKeywords = destinationBox.acceptsNewKeywords ? nil : Set((destinationBox.permanentFlags ?? []).map { $0.lowercased() })
        // Without UIDPLUS the destination's UIDNEXT is asked for before each batch.
        let tracksUIDs = await destination.hasCapability("UIDPLUS")

        // Keys already in the destination folder (for skip_duplicates) and those of an interrupted
        // batch that reached it (for exactness with or without skip_duplicates).
        var existing = Set<DuplicateKey>()
        if request.skipDuplicates, destinationBox.exists > 0 {
            for (_, key) in try await onDestination({ try await keys(on: destination, uids: "1:*") }) { existing.insert(key) }
        }
        var arrived: [DuplicateKey: Int] = [:]
        var reconcileUpTo: UInt32 = 0
        if let inFlight = checkpoint.inFlight, inFlight.destinationUIDValidity == destinationBox.uidValidity,
           destinationBox.exists > 0 || inFlight.sent?.ranges.isEmpty == false {
            arrived = try await arrivals(of: inFlight, source: source, destination: destination)
            reconcileUpTo = inFlight.lastSourceUID
        }

        // Recorded before the last bytes of each APPEND command go out; see InFlightBatch.sent.
        // A write that failed did not go out (a cancel closes the connection under it): the command
        // never became whole, so the mark is taken back, or a resume would wait for it in vain.
        func markSent(_ uids: [UInt32], sent: Bool) async throws {
            guard var window = checkpoint.inFlight, !uids.isEmpty else { return }
            let marking = Set(uids)
            let others = (window.sent?.values ?? []).filter { !marking.contains($0) }
            window.sent = UIDSet.compact(sent ? others + uids : others)
            checkpoint.inFlight = window
            try await checkpoints.save(checkpoint, folder: folderKey)
        }
        func markSent(_ uids: [UInt32], around lastWrite: () async throws -> Void) async throws {
            try await markSent(uids, sent: true)
            do {
                try await lastWrite()
            } catch {
                try? await markSent(uids, sent: false)
                throw error
            }
        }

        var destinationUIDNext = destinationBox.uidNext ?? 1
        let batches = stride(from: 0, to: pending.count, by: max(1, request.batchSize)).map {
            Array(pending[$0..<min(pending.count, $0 + request.batchSize)])
        }
        // The next batch's metadata is asked for while this batch's APPEND results come in.
        var metadataTag = try await sendMetadata(on: source, uids: batches[0], reconcileUpTo: reconcileUpTo)
        var nextInfos: [UInt32: MessageInfo]?
        for (index, batch) in batches.enumerated() {
            try Task.checkCancellation()
            guard let batchLast = batch.last else { continue }
            let infos: [UInt32: MessageInfo]
            if let read = nextInfos { infos = read } else { infos = try await collectMetadata(on: source, tag: metadataTag) }
            nextInfos = nil

            var toCopy: [UInt32: MessageInfo] = [:]
            for uid in batch {
                // Expunged or flagged \Deleted since the search: not part of the job.
                guard let info = infos[uid], !info.flags.contains(where: { $0.lowercased() == "\\deleted" }) else {
                    counts.expected -= 1
                    continue
                }
                if uid <= reconcileUpTo, let key = info.key, let count = arrived[key], count > 0 {
                    arrived[key] = count - 1
                    counts.copied += 1
                    counts.bytes += Int64(info.size)
                    emit(.messageCopied(folder: plan.sourceName, bytes: info.size))
                    continue
                }
                if request.skipDuplicates, let key = info.key {
                    guard existing.insert(key).inserted else {
                        counts.skipped += 1
                        emit(.messageSkipped(folder: plan.sourceName))
                        continue
                    }
                }
                toCopy[uid] = info
            }

            var appends: [AppendGroup] = []
            if !toCopy.isEmpty {
                if let validity = destinationBox.uidValidity {
                    if !tracksUIDs { destinationUIDNext = try await onDestination { try await currentUIDNext(destination, fallback: destinationUIDNext) } }
                    var window = InFlightBatch(lastSourceUID: batchLast, destinationUIDValidity: validity,
                                               destinationUIDNext: destinationUIDNext, sent: UIDSet([]))
                    // Still resuming an interrupted batch: what that attempt appended is only reconciled
                    // in memory, so keep its window open, or a second interruption would copy it again.
                    if let earlier = checkpoint.inFlight, earlier.destinationUIDValidity == validity,
                       let first = batch.first, first <= earlier.lastSourceUID {
                        window.destinationUIDNext = min(window.destinationUIDNext, earlier.destinationUIDNext)
                        window.lastSourceUID = max(window.lastSourceUID, earlier.lastSourceUID)
                    }
                    checkpoint.inFlight = window
                    try await checkpoints.save(checkpoint, folder: folderKey)
                }
                appends = try await streamBodies(toCopy, from: source, to: destination, allowedKeywords: allowedKeywords,
                                                 grouped: true, counts: &counts, markSent: markSent(_:around:))
            }
            if index + 1 < batches.count {
                metadataTag = try await sendMetadata(on: source, uids: batches[index + 1], reconcileUpTo: reconcileUpTo)
            }
            var uidNext = destinationUIDNext
            var batchCounts = counts
            let refused = try await onDestination {
                try await collectAppends(appends, from: destination, counts: &batchCounts, destinationUIDNext: &uidNext)
            }
            if !refused.isEmpty {
                // A MULTIAPPEND refused for one of its messages stored none: again one by one, to find
                // which. The next batch's metadata is read first, as FETCH data cannot tell commands apart.
                if index + 1 < batches.count { nextInfos = try await collectMetadata(on: source, tag: metadataTag) }
                let again = try await streamBodies(Dictionary(refused.map { ($0.uid, $0) }, uniquingKeysWith: { first, _ in first }),
                                                   from: source, to: destination, allowedKeywords: allowedKeywords,
                                                   grouped: false, counts: &batchCounts, markSent: markSent(_:around:))
                _ = try await onDestination {
                    try await collectAppends(again, from: destination, counts: &batchCounts, destinationUIDNext: &uidNext)
                }
            }
            counts = batchCounts
            destinationUIDNext = uidNext
            checkpoint.lastSourceUID = batchLast
            checkpoint.inFlight = nil
            checkpoint.copied = counts.copied
            checkpoint.skipped = counts.skipped
            checkpoint.failed = counts.failed
            checkpoint.bytes = counts.bytes
            try await checkpoints.save(checkpoint, folder: folderKey)
        }
        return counts
    }

    /// What an interrupted run's window left in the destination: the keys of messages at or above
    /// its UIDNEXT. This is the fence against a restart racing the dead run's last command: an APPEND
    /// sent whole is stored by the server even after its client died, and it may be stored only after
    /// a run restarted at once has looked. So the keys of every message recorded as sent are awaited
    /// until they show up, polling the destination, and only then is anything missing appended again.
    /// An APPEND that was never sent whole is dropped by the server, so it is not waited for.
    private func arrivals(of window: InFlightBatch, source: IMAPSession, destination: IMAPSession) async throws -> [DuplicateKey: Int] {
        var arrived: [DuplicateKey: Int] = [:]
        var next = window.destinationUIDNext
        func look() async throws {
            // `keys` lists messages without a Message-ID last, out of UID order: filter by the bound
            // of this look, then move it.
            let from = next
            for (uid, key) in try await onDestination({ try await keys(on: destination, uids: "\(from):*") }) where uid >= from {
                arrived[key, default: 0] += 1
                next = max(next, uid &+ 1)
            }
        }
        try await look()
        guard let sent = window.sent, !sent.ranges.isEmpty else { return arrived }
        // A message expunged from the source meanwhile is not appended again, so it needs no wait.
        var awaited: [DuplicateKey: Int] = [:]
        for (_, key) in try await keys(on: source, uids: sent.description) { awaited[key, default: 0] += 1 }
        func missing() -> Int { awaited.reduce(0) { $0 + max(0, $1.value - arrived[$1.key, default: 0]) } }
        let started = ContinuousClock.now
        while missing() > 0 {
            guard ContinuousClock.now - started < request.interruptedAppendWait else {
                // Sent but never stored (refused, or lost with the connection): appended again below.
                emit(.notice(folder: plan.sourceName,
                             message: "\(missing()) messages the interrupted run sent never reached the destination; appending them again"))
                break
            }
            try await Task.sleep(for: .milliseconds(50))
            // NOOP makes the server report what other sessions stored since the last look.
            try await onDestination { try await destination.noop() }
            try await look()
        }
        return arrived
    }

    private func searchCriteria(after lastUID: UInt32) -> String {
        var criteria = "UID \(lastUID &+ 1):* NOT DELETED"
        if let since = request.since { criteria += " SINCE \(since.searchDate)" }
        return criteria
    }

    private func currentUIDNext(_ destination: IMAPSession, fallback: UInt32) async throws -> UInt32 {
        let status = try await destination.status(plan.destination, items: [.uidNext])
        return max(status.uidNext ?? fallback, fallback)
    }

    /// Asks for UID, flags, date, size and (when needed) Message-ID of a batch; `collectMetadata` reads it.
    private func sendMetadata(on source: IMAPSession, uids: [UInt32], reconcileUpTo: UInt32) async throws -> MetadataRequest {
        let withKeys = request.skipDuplicates || uids.first.map { $0 <= reconcileUpTo } == true
        let items = "UID FLAGS INTERNALDATE RFC822.SIZE" + (withKeys ? " BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]" : "")
        return MetadataRequest(tag: try await source.sendUIDFetch(UIDSet.compact(uids), items: items), withKeys: withKeys)
    }

    private struct MetadataRequest {
        var tag: CommandTag
        var withKeys: Bool
    }

    private func collectMetadata(on source: IMAPSession, tag request: MetadataRequest) async throws -> [UInt32: MessageInfo] {
        var infos: [UInt32: MessageInfo] = [:]
        var current: MessageInfo?
        var header = ByteBuffer()
        while let event = try await source.nextEvent(until: request.tag) {
            switch event {
            case .fetchStart(let sequence):
                current = MessageInfo(sequence: sequence)
                header.clear()
            case .fetchAttribute(.uid(let uid)): current?.uid = uid
            case .fetchAttribute(.flags(let flags)): current?.flags = flags
            case .fetchAttribute(.internalDate(let date)): current?.internalDate = date
            case .fetchAttribute(.rfc822Size(let size)): current?.size = size
            case .fetchBodyBytes(var bytes): header.writeBuffer(&bytes)
            case .fetchEnd:
                if var info = current, info.uid != 0 {
                    if request.withKeys { info.key = DuplicateKey.messageID(fromHeaderFields: header) }
                    infos[info.uid] = info
                }
                current = nil
            default: break
            }
        }
        try await source.finish(request.tag)
        if request.withKeys {
            let withoutID = infos.values.filter { $0.key == nil }.map(\.uid)
            if !withoutID.isEmpty {
                for (uid, key) in try await headerKeys(on: source, uids: withoutID) { infos[uid]?.key = key }
            }
        }
        return infos
    }

    /// Keys of destination messages in a UID range (`1:*`, `n:*`).
    private func keys(on session: IMAPSession, uids: String) async throws -> [(UInt32, DuplicateKey)] {
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
    private func fetchSections(on session: IMAPSession, set: String, section: String) async throws -> [(uid: UInt32, bytes: ByteBuffer)] {
        let tag = try await session.send(Command("UID", [.text(" FETCH \(set) (UID BODY.PEEK[\(section)])")]))
        var result: [(uid: UInt32, bytes: ByteBuffer)] = []
        var uid: UInt32 = 0
        var bytes = ByteBuffer()
        while let event = try await session.nextEvent(until: tag) {
            switch event {
            case .fetchStart:
                uid = 0
                bytes = ByteBuffer()
            case .fetchAttribute(.uid(let value)): uid = value
            case .fetchBodyBytes(var chunk): bytes.writeBuffer(&chunk)
            case .fetchEnd where uid != 0: result.append((uid, bytes))
            default: break
            }
        }
        try await session.finish(tag)
        return result
    }

    /// Flags the destination will keep: the four user-visible system flags and accepted keywords.
    private func flagsToCopy(_ flags: [String], allowedKeywords: Set<String>?) -> [String] {
        flags.filter { flag in
            if flag.hasPrefix("\\") {
                return ["\\seen", "\\answered", "\\flagged", "\\draft"].contains(flag.lowercased())
            }
            return allowedKeywords?.contains(flag.lowercased()) ?? true
        }
    }

    /// Streams the bodies of `messages` from a source FETCH into pipelined destination APPENDs:
    /// several messages per MULTIAPPEND when `grouped` and the destination can stream one, else one
    /// APPEND each. Returns the APPENDs sent, whose results `collectAppends` reads.
    private func streamBodies(_ messages: [UInt32: MessageInfo], from source: IMAPSession, to destination: IMAPSession,
                              allowedKeywords: Set<String>?, grouped: Bool, counts: inout FolderSummaryCounts,
                              markSent: MarkSent) async throws -> [AppendGroup] {
        let bySequence = Dictionary(messages.values.map { ($0.sequence, $0.uid) }, uniquingKeysWith: { first, _ in first })
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
                    emit(.messageFailed(folder: plan.sourceName, uid: messageUID, reason: "the source server returned no content"))
                    continue
                }
                info.size = size
                let flags = flagsToCopy(info.flags, allowedKeywords: allowedKeywords)
                if multiAppend {
                    if open == nil { open = AppendGroup(tag: try await destination.beginMultiAppend(to: plan.destination)) }
                    try await onDestination { try await destination.appendMessage(flags: flags, internalDate: info.internalDate, size: size) }
                    open?.messages.append(info)
                    open?.bytes += size
                } else {
                    do {
                        // An empty message's command is whole as soon as it begins.
                        var appendTag: CommandTag?
                        let begin = {
                            appendTag = try await destination.beginAppend(to: plan.destination, flags: flags,
                                                                          internalDate: info.internalDate, size: size)
                        }
                        if size == 0 { try await markSent([messageUID], begin) } else { try await begin() }
                        guard let appendTag else { continue }
                        groups.append(AppendGroup(tag: appendTag, messages: [info], bytes: size))
                    } catch let error as IMAPError {
                        // A synchronising literal refused up front: quota is fatal, anything else is this message's.
                        if error.responseCode == .overQuota { throw error }
                        guard case .commandFailed(_, _, let text) = error else { throw SidedError(side: .destination, underlying: error) }
                        counts.failed += 1
                        emit(.messageFailed(folder: plan.sourceName, uid: messageUID, reason: text.text))
                        continue
                    }
                }
                appending = size > 0
                // An empty body has no bytes to wait for (beginAppend has already ended a single one).
                if size == 0, multiAppend { try await endMessage(on: destination, group: &open, into: &groups, markSent: markSent) }
            case .fetchBodyBytes(let bytes):
                if appending { try await onDestination { try await destination.appendBytes(bytes) } }
            case .fetchBodyEnd:
                if appending {
                    if multiAppend {
                        try await endMessage(on: destination, group: &open, into: &groups, markSent: markSent)
                    } else {
                        let last = groups.last?.messages.last?.uid
                        try await markSent(last.map { [$0] } ?? []) { try await onDestination { try await destination.endAppend() } }
                    }
                }
                appending = false
            default:
                break
            }
        }
        try await source.finish(tag)
        if let group = open {
            try await markSent(group.messages.map(\.uid)) { try await onDestination { try await destination.endMultiAppend() } }
            groups.append(group)
        }
        // Listed by SEARCH but gone by FETCH: expunged meanwhile, so not part of the job.
        counts.expected -= messages.count - handled.count
        return groups
    }

    /// Ends a MULTIAPPEND message; the command goes off once it holds `request.appendGroupBytes`,
    /// so progress and a retry after a refusal stay small whatever the batch holds.
    private func endMessage(on destination: IMAPSession, group: inout AppendGroup?, into groups: inout [AppendGroup],
                            markSent: MarkSent) async throws {
        try await onDestination { try await destination.endAppend() }
        guard let full = group, full.bytes >= request.appendGroupBytes else { return }
        try await markSent(full.messages.map(\.uid)) { try await onDestination { try await destination.endMultiAppend() } }
        groups.append(full)
        group = nil
    }

    /// Reads the results of pipelined APPENDs. A refused single message is counted as failed; a
    /// refused MULTIAPPEND stored none of its messages, which are returned to be appended one by one
    /// so that only the message at fault fails. Quota and availability refusals end the folder
    /// (after all results are read).
    private func collectAppends(_ groups: [AppendGroup], from destination: IMAPSession,
                                counts: inout FolderSummaryCounts, destinationUIDNext: inout UInt32) async throws -> [MessageInfo] {
        var firstFailure: Error?
        var retry: [MessageInfo] = []
        for group in groups {
            do {
                let result = try await destination.appendResult(group.tag)
                if let last = result.uids?.ranges.map(\.upperBound).max() { destinationUIDNext = max(destinationUIDNext, last &+ 1) }
                for info in group.messages {
                    counts.copied += 1
                    counts.bytes += Int64(info.size)
                    emit(.messageCopied(folder: plan.sourceName, bytes: info.size))
                }
            } catch let error as IMAPError {
                guard case .commandFailed(_, _, let text) = error, text.code != .overQuota, text.code != .unavailable else {
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
                emit(.messageFailed(folder: plan.sourceName, uid: info.uid, reason: text.text))
            }
        }
        if let firstFailure { throw firstFailure }
        return retry
    }
}

/// Gmail's labels (X-GM-EXT-1): which messages of All Mail are in no other folder.
enum GmailLabels {
    /// Labels that put a message in a view, not in a folder of its own.
    static let views: Set<String> = ["\\important", "\\starred"]
    /// UIDs per `UID FETCH`, keeping command lines short.
    static let batchSize = 1000

    /// The UIDs among `uids` (of the selected mailbox) whose message has no label but views. A UID
    /// the server returns nothing for was expunged meanwhile and is left out.
    static func unlabelled(_ uids: [UInt32], on session: IMAPSession) async throws -> [UInt32] {
        var result: [UInt32] = []
        for start in stride(from: 0, to: uids.count, by: batchSize) {
            let batch = Array(uids[start..<min(uids.count, start + batchSize)])
            let tag = try await session.sendUIDFetch(UIDSet.compact(batch), items: "UID X-GM-LABELS")
            var returned = Set<UInt32>()
            var labels: [UInt32: [String]] = [:]
            var uid: UInt32 = 0
            var current: [String]?
            while let event = try await session.nextEvent(until: tag) {
                switch event {
                case .fetchStart:
                    uid = 0
                    current = nil
                case .fetchAttribute(.uid(let value)): uid = value
                case .fetchAttribute(let attribute):
                    if let value = attribute.gmailLabels { current = value }
                case .fetchEnd where uid != 0:
                    // Unsolicited FETCH data (a flag change) may name the UID without the labels.
                    returned.insert(uid)
                    if let current { labels[uid] = current }
                default: break
                }
            }
            try await session.finish(tag)
            // Labels that never came are taken as none: a copy too many in Archive beats a message lost.
            result += batch.filter { uid in
                returned.contains(uid) && (labels[uid] ?? []).allSatisfy { views.contains($0.lowercased()) }
            }
        }
        return result
    }
}

/// Runs a destination operation, tagging its errors so they are classified as the destination's
/// (`destination_unavailable` rather than a source timeout).
private func onDestination<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as IMAPError {
        throw SidedError(side: .destination, underlying: error)
    }
}

extension UIDSet {
    /// The shortest set for these UIDs: runs become ranges.
    static func compact(_ uids: [UInt32]) -> UIDSet {
        var ranges: [ClosedRange<UInt32>] = []
        for uid in uids.sorted() {
            if let last = ranges.last, last.upperBound &+ 1 == uid {
                ranges[ranges.count - 1] = last.lowerBound...uid
            } else if ranges.last?.contains(uid) != true {
                ranges.append(uid...uid)
            }
        }
        return UIDSet(ranges)
    }
}
