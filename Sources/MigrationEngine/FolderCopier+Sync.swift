import IMAPClient

/// The delta part of a pass: after the new messages are copied, the copies this migration made
/// get the source's current flags and keywords again, and (only when asked) lose the copies whose
/// source message is gone. Destination messages the migration did not copy are never touched:
/// everything goes through the checkpoint's source → destination UID map.
extension FolderCopier {
    /// `earlier` is the map as the pass found it: copies made in this pass took the flags the
    /// source had after the pass began, so only earlier ones are compared. `relinked` are copies
    /// linked again after the source renumbered, compared whole.
    func syncPass(
        source: IMAPSession, target known: Target?, connect: () async throws -> IMAPSession,
        checkpoint: inout FolderCheckpoint, counts: inout FolderSummaryCounts, pass: PassStart,
        earlier: UIDMap, relinked: [(source: UInt32, destination: UInt32)] = []
    ) async throws {
        var target = known
        var compareWhole = relinked.map(\.source)
        if checkpoint.unmatched?.source?.ranges.isEmpty == true { checkpoint.unmatched = nil }
        if checkpoint.unmatched != nil {
            if let target {
                compareWhole += try await match(&checkpoint, source: source, target: target).map(\.source)
            } else {
                compareWhole += try await ensureTarget(
                    &target, connect: connect, checkpoint: &checkpoint, source: source
                )
                .map(\.source)
            }
        }
        let syncing = earlier.inserting(relinked)
        var (changed, digests) = try await changedFlags(on: source, map: syncing, checkpoint: checkpoint, pass: pass)
        if !compareWhole.isEmpty { changed.merge(try await flags(of: compareWhole, on: source)) { new, _ in new } }
        if !changed.isEmpty {
            let matched = try await ensureTarget(&target, connect: connect, checkpoint: &checkpoint, source: source)
            if !matched.isEmpty {
                changed.merge(try await flags(of: matched.map(\.source), on: source)) { new, _ in new }
            }
            if let target, let map = checkpoint.copiedMap {
                var desired: [UInt32: [String]] = [:]
                for (uid, flags) in changed {
                    if let copy = map.destination(of: uid) {
                        desired[copy] = flagsToCopy(flags, allowedKeywords: target.allowedKeywords)
                    }
                }
                let stored = try await storeFlags(desired, on: target)
                counts.flagsUpdated += stored.updated
                if !stored.settled { digests = nil }
            }
        }
        if !pass.condstore { checkpoint.flagDigests = digests }
        // Looked for already at this HIGHESTMODSEQ and count: nothing can have gone since. The count
        // too, because a server with CONDSTORE but without QRESYNC need not raise HIGHESTMODSEQ on an
        // expunge (as `Migration.inStep` also checks).
        let looked =
            pass.condstore && checkpoint.deletionsCheckedModSeq == pass.highestModSeq
            && checkpoint.sourceMessages == pass.messages
        var deletionsDone = request.propagateDeletions
        if request.propagateDeletions, !looked, let map = checkpoint.copiedMap, !map.isEmpty {
            let gone = try await Self.expunged(on: source, map: map)
            if !gone.isEmpty {
                _ = try await ensureTarget(&target, connect: connect, checkpoint: &checkpoint, source: source)
                if let target, let current = checkpoint.copiedMap, try await delete(gone, map: current, on: target) {
                    var reduced = current
                    reduced.remove(sources: Set(gone))
                    checkpoint.copiedMap = reduced
                    counts.deleted += gone.count
                } else {
                    // Refused (no UIDPLUS): told again on every pass that asks.
                    deletionsDone = false
                }
            }
        }
        if deletionsDone { checkpoint.deletionsCheckedModSeq = pass.highestModSeq }
        checkpoint.highestModSeq = pass.highestModSeq
        checkpoint.sourceMessages = pass.messages
        try await checkpoints.save(checkpoint, folder: folderKey)
    }

    /// Opens the destination when it is not open yet; copies matched again on the way (its
    /// UIDVALIDITY changed) are returned.
    private func ensureTarget(
        _ target: inout Target?, connect: () async throws -> IMAPSession, checkpoint: inout FolderCheckpoint,
        source: IMAPSession
    ) async throws -> [(source: UInt32, destination: UInt32)] {
        if target != nil { return [] }
        let opened = try await openTarget(try await connect(), checkpoint: &checkpoint).0
        target = opened
        guard checkpoint.unmatched != nil else { return [] }
        return try await match(&checkpoint, source: source, target: opened)
    }

    /// Current flags of these source messages, in pipelined FETCHes.
    private func flags(of uids: [UInt32], on source: IMAPSession) async throws -> [UInt32: [String]] {
        try await flags(of: UIDSet.compact(uids), on: source)
    }

    private func flags(of uids: UIDSet, on source: IMAPSession) async throws -> [UInt32: [String]] {
        let read = try await flagsByUID(of: uids, on: source)
        return Dictionary(read.map { ($0.uid, $0.flags) }, uniquingKeysWith: { _, last in last })
    }

    /// Current flags of these source messages in pipelined FETCHes, in UID order, one entry per
    /// UID (the last answer for it). The answers of all the FETCHes are gathered before any is
    /// sorted: a server may answer pipelined commands in any order before it completes the first
    /// (Dovecot does), so no response belongs to the tag it came before.
    private func flagsByUID(of uids: UIDSet, on source: IMAPSession) async throws -> [MessageFlags] {
        var tags: [CommandTag] = []
        for chunk in Self.chunks(of: uids, size: request.flagBatchSize) {
            tags.append(try await source.sendUIDFetch(chunk, items: "UID FLAGS"))
        }
        var read: [MessageFlags] = []
        read.reserveCapacity(uids.count)
        for tag in tags { read += try await source.flagsResult(tag) }
        return Self.inUIDOrder(read)
    }

    /// `answers` in UID order, each UID once with its last answer. Servers answer in UID order;
    /// the sort is for those that do not, and the last answer wins as in `flags(of:)`'s map.
    static func inUIDOrder(_ answers: [MessageFlags]) -> [MessageFlags] {
        guard zip(answers, answers.dropFirst()).contains(where: { $0.uid >= $1.uid }) else { return answers }
        let sorted = answers.enumerated().sorted { ($0.element.uid, $0.offset) < ($1.element.uid, $1.offset) }
        return sorted.indices.filter { $0 + 1 == sorted.count || sorted[$0 + 1].element.uid != sorted[$0].element.uid }
            .map { sorted[$0].element }
    }

    /// Source flags of copied messages that may differ from their copy's, by source UID. With
    /// CONDSTORE only those changed since the last pass (nothing when HIGHESTMODSEQ has not moved).
    /// Without, every copied message's flags are read, in pipelined FETCHes of `flagBatchSize` UIDs,
    /// and only the runs whose digest differs from the last pass's are returned, with the digests
    /// to keep once the destination holds them.
    private func changedFlags(
        on source: IMAPSession, map: UIDMap, checkpoint: FolderCheckpoint, pass: PassStart
    ) async throws -> (changed: [UInt32: [String]], digests: FlagDigests?) {
        guard !map.isEmpty else { return ([:], nil) }
        var changed: [UInt32: [String]] = [:]
        if pass.condstore, let since = checkpoint.highestModSeq {
            guard pass.highestModSeq != since else { return ([:], nil) }
            for message in try await source.uidFetch(
                "1:\(max(1, checkpoint.lastSourceUID))", items: "UID FLAGS", changedSince: since)
            where map.destination(of: message.uid) != nil {
                changed[message.uid] = message.flags
            }
            return (changed, nil)
        }
        let current = try await flagsByUID(of: map.sources, on: source)
        let uids = map.sources.values
        // Both in UID order: each run's flags are found by walking the two side by side.
        var position = 0
        func flags(of uid: UInt32) -> [String]? {
            while position < current.count, current[position].uid < uid { position += 1 }
            guard position < current.count, current[position].uid == uid else { return nil }
            return current[position].flags
        }
        let digests = FlagDigests(uids) { flags(of: $0).map { flagsToCopy($0, allowedKeywords: nil) } }
        position = 0
        for (index, run) in FlagDigests.runs(of: uids, segment: digests.segment).enumerated()
        where !digests.matches(checkpoint.flagDigests, at: index) {
            for uid in run { changed[uid] = flags(of: uid) }
        }
        return (changed, digests)
    }

    /// Makes the copies' managed flags `desired` (by destination UID): their current flags are
    /// read, and each distinct change goes out as one UID STORE over all the copies that need it,
    /// pipelined. With CONDSTORE at the destination each STORE carries UNCHANGEDSINCE; a copy
    /// changed there meanwhile is read and decided again (twice at most). Returns how many changed,
    /// and whether every copy now holds its desired flags.
    func storeFlags(_ desired: [UInt32: [String]], on target: Target) async throws -> (updated: Int, settled: Bool) {
        let destination = target.session
        var remaining = desired
        var updated = 0
        for attempt in 1...3 where !remaining.isEmpty {
            var current: [UInt32: [String]] = [:]
            var modSeqs: [UInt32: UInt64] = [:]
            let items = target.condstore ? "UID FLAGS MODSEQ" : "UID FLAGS"
            var tags: [CommandTag] = []
            for chunk in Self.chunks(of: UIDSet.compact(Array(remaining.keys)), size: request.flagBatchSize) {
                tags.append(try await onDestination { try await destination.sendUIDFetch(chunk, items: items) })
            }
            for tag in tags {
                for message in try await onDestination({ try await destination.fetchResult(tag) }) {
                    current[message.uid] = message.flags
                    if let modSeq = message.modSeq { modSeqs[message.uid] = modSeq }
                }
            }
            let updates = FlagUpdates.plan(desired: remaining, current: current)
            var sent: [(CommandTag, UIDSet)] = []
            for (update, uids) in updates {
                let since = target.condstore ? uids.values.compactMap { modSeqs[$0] }.max() : nil
                let tag = try await onDestination {
                    try await destination.sendUIDStore(
                        uids, update.operation, flags: update.flags, unchangedSince: since)
                }
                sent.append((tag, uids))
            }
            var modified = Set<UInt32>()
            for (tag, uids) in sent {
                let refused = Set(try await onDestination { try await destination.storeResult(tag) }.values)
                modified.formUnion(refused)
                updated += uids.values.filter { !refused.contains($0) }.count
            }
            remaining = remaining.filter { modified.contains($0.key) }
            if attempt == 3, !remaining.isEmpty {
                emit(
                    .notice(
                        folder: plan.sourceName,
                        message:
                            "\(remaining.count) copies kept changing at the destination while their flags were set; the next pass sets them"
                    ))
            }
        }
        return (updated, remaining.isEmpty)
    }

    /// Source UIDs of copies whose source message is gone (expunged) since they were copied.
    static func expunged(on source: IMAPSession, map: UIDMap) async throws -> [UInt32] {
        let present = Set(try await source.uidSearch("UID \(map.sources.description)"))
        return map.sources.values.filter { !present.contains($0) }
    }

    /// Removes the copies of expunged source messages, only with UID EXPUNGE (UIDPLUS) so that no
    /// other message flagged \Deleted goes with them. Without UIDPLUS nothing is removed and the
    /// refusal is told; returns whether they were removed.
    private func delete(_ gone: [UInt32], map: UIDMap, on target: Target) async throws -> Bool {
        let copies = UIDSet.compact(gone.compactMap { map.destination(of: $0) })
        guard !copies.ranges.isEmpty else { return true }
        guard target.tracksUIDs else {
            emit(
                .notice(
                    folder: plan.sourceName,
                    message:
                        "\(copies.count) copies of messages expunged at the source were not deleted: the destination lacks UIDPLUS (UID EXPUNGE), and a plain EXPUNGE could remove other messages flagged \\Deleted"
                ))
            return false
        }
        let destination = target.session
        try await onDestination {
            let tag = try await destination.sendUIDStore(copies, .add, flags: ["\\Deleted"], unchangedSince: nil)
            _ = try await destination.storeResult(tag)
            try await destination.uidExpunge(copies)
        }
        emit(
            .notice(
                folder: plan.sourceName,
                message: "deleted \(copies.count) copies whose source message was expunged (destination UIDs \(copies))"
            ))
        return true
    }

    /// Links copies the map does not know to their destination message by Message-ID (or header
    /// hash), pairing equal keys in UID order, once: what stays unmatched is told and left alone.
    private func match(_ checkpoint: inout FolderCheckpoint, source: IMAPSession, target: Target) async throws
        -> [(source: UInt32, destination: UInt32)]
    {
        guard let unmatched = checkpoint.unmatched else { return [] }
        var map = checkpoint.copiedMap ?? UIDMap()
        let lastUID = checkpoint.lastSourceUID
        checkpoint.unmatched = nil
        guard lastUID > 0 else { return [] }
        let mappedSources = Set(map.sources.values)
        let mappedCopies = Set(map.destinations.values)
        let sourceSet = unmatched.source?.description ?? "1:\(lastUID)"
        var sourceByKey: [DuplicateKey: [UInt32]] = [:]
        for (uid, key) in try await keys(on: source, uids: sourceSet)
        where uid <= lastUID && !mappedSources.contains(uid) {
            sourceByKey[key, default: []].append(uid)
        }
        let candidates = sourceByKey.values.reduce(0) { $0 + $1.count }
        guard candidates > 0 else { return [] }
        var copyByKey: [DuplicateKey: [UInt32]] = [:]
        let destinationSet = unmatched.destination?.description ?? "1:*"
        for (uid, key) in try await onDestination({ try await keys(on: target.session, uids: destinationSet) })
        where !mappedCopies.contains(uid) {
            copyByKey[key, default: []].append(uid)
        }
        var pairs: [(source: UInt32, destination: UInt32)] = []
        for (key, uids) in sourceByKey {
            guard let copies = copyByKey[key] else { continue }
            pairs += zip(uids.sorted(), copies.sorted()).map { ($0, $1) }
        }
        map.insert(pairs)
        checkpoint.copiedMap = map
        emit(
            .notice(
                folder: plan.sourceName,
                message:
                    "matched \(pairs.count) of \(candidates) copies to the source by Message-ID (or header hash) within the folder, as the destination gave no APPENDUID for them or an earlier version kept no UID map; their flags are kept in step from now on"
                    + (pairs.count < candidates
                        ? "; the other \(candidates - pairs.count) have no copy there and are left alone" : "")
            ))
        return pairs
    }

    /// A set cut into sets of at most `size` UIDs, for pipelined commands of bounded length.
    static func chunks(of set: UIDSet, size: Int) -> [UIDSet] {
        var result: [UIDSet] = []
        var ranges: [ClosedRange<UInt32>] = []
        var count = 0
        let limit = max(1, size)
        for range in set.ranges {
            var lower = range.lowerBound
            while lower <= range.upperBound {
                let room = UInt32(limit - count)
                let upper = range.upperBound - lower < room ? range.upperBound : lower + room - 1
                ranges.append(lower...upper)
                count += Int(upper - lower) + 1
                if count >= limit {
                    result.append(UIDSet(ranges))
                    ranges = []
                    count = 0
                }
                if upper == UInt32.max { break }
                lower = upper + 1
            }
        }
        if !ranges.isEmpty { result.append(UIDSet(ranges)) }
        return result
    }
}
