import IMAPClient

/// One change of flags that a set of destination messages all need, sent as one UID STORE.
enum FlagUpdate: Hashable, Sendable {
    case add([String])
    case remove([String])
    /// Some flags to add and others to remove: the whole list, so one STORE does it (two would
    /// trip over each other's UNCHANGEDSINCE).
    case replace([String])

    var operation: IMAPSession.FlagOperation {
        switch self {
        case .add: .add
        case .remove: .remove
        case .replace: .replace
        }
    }

    var flags: [String] {
        switch self {
        case .add(let flags), .remove(let flags), .replace(let flags): flags
        }
    }
}

enum FlagUpdates {
    static let systemFlags = ["\\seen", "\\answered", "\\flagged", "\\draft"]
    /// The same, spelled as servers send them: a flag pass asks 100,000 times, and most are found
    /// here without lower-casing.
    private static let systemFlagsAsSent = ["\\Seen", "\\Answered", "\\Flagged", "\\Draft"]

    /// The flags a copy keeps equal to its source's: the four user-visible system flags and keywords.
    static func isManaged(_ flag: String) -> Bool {
        guard flag.hasPrefix("\\") else { return true }
        return systemFlagsAsSent.contains(flag) || systemFlags.contains(flag.lowercased())
    }

    /// The STOREs that make each destination message's managed flags `desired` (keyed by destination
    /// UID) from `current`, messages that need the same change grouped into one UID set. Flags are
    /// compared without case, as IMAP does; flags outside the managed ones (\Deleted) are kept.
    static func plan(desired: [UInt32: [String]], current: [UInt32: [String]]) -> [(FlagUpdate, UIDSet)] {
        var groups: [FlagUpdate: [UInt32]] = [:]
        for (uid, wanted) in desired {
            guard let present = current[uid] else { continue }
            guard let update = update(from: present, to: wanted) else { continue }
            groups[update, default: []].append(uid)
        }
        return groups.map { ($0.key, UIDSet.compact($0.value)) }
            .sorted { ($0.1.ranges.first?.lowerBound ?? 0) < ($1.1.ranges.first?.lowerBound ?? 0) }
    }

    static func update(from present: [String], to wanted: [String]) -> FlagUpdate? {
        let want = spelled(wanted.filter(isManaged))
        let have = spelled(present.filter(isManaged))
        let add = want.filter { have[$0.key] == nil }.map(\.value).sorted()
        let remove = have.filter { want[$0.key] == nil }.map(\.value).sorted()
        switch (add.isEmpty, remove.isEmpty) {
        case (true, true): return nil
        case (false, true): return .add(add)
        case (true, false): return .remove(remove)
        case (false, false):
            let kept = present.filter { !isManaged($0) && $0.lowercased() != "\\recent" }
            return .replace((want.values + kept).sorted())
        }
    }

    /// Lower-cased flag → its first spelling.
    private static func spelled(_ flags: [String]) -> [String: String] {
        Dictionary(flags.map { ($0.lowercased(), $0) }, uniquingKeysWith: { first, _ in first })
    }
}
