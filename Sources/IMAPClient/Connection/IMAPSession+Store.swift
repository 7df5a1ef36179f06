/// Flag updates and removals on the selected mailbox: UID STORE (with CONDSTORE's UNCHANGEDSINCE,
/// RFC 7162) and UID EXPUNGE (UIDPLUS, RFC 4315), pipelined like FETCH.
extension IMAPSession {
    /// How a STORE changes the flags it names.
    public enum FlagOperation: String, Sendable {
        case add = "+FLAGS.SILENT"
        case remove = "-FLAGS.SILENT"
        case replace = "FLAGS.SILENT"
    }

    /// Sends `UID STORE set [(UNCHANGEDSINCE n)] op (flags)`; `storeResult` reads its outcome.
    /// `unchangedSince` is used only where the server offers CONDSTORE.
    public func sendUIDStore(_ uids: UIDSet, _ operation: FlagOperation, flags: [String], unchangedSince: UInt64?)
        async throws -> CommandTag
    {
        var text = " STORE \(uids.description)"
        if let unchangedSince, hasCapability("CONDSTORE") { text += " (UNCHANGEDSINCE \(unchangedSince))" }
        text += " \(operation.rawValue) (\(flags.joined(separator: " ")))"
        return try await send(Command("UID", [.text(text)]))
    }

    /// The UIDs a STORE left alone because they changed after `unchangedSince` (the MODIFIED
    /// response code); empty when every message was stored. NO and BAD throw.
    public func storeResult(_ tag: CommandTag) async throws -> UIDSet {
        let response = try await finish(tag)
        guard case .other(let name, let argument)? = response.text.code, name.uppercased() == "MODIFIED",
            let argument
        else { return UIDSet([]) }
        return UIDSet(parsing: argument) ?? UIDSet([])
    }

    /// `UID EXPUNGE set`: removes only these messages (flagged \Deleted), never another's.
    public func uidExpunge(_ uids: UIDSet) async throws {
        guard hasCapability("UIDPLUS") else { throw IMAPError.capabilityMissing("UIDPLUS") }
        try await finish(try await send(Command("UID", [.text(" EXPUNGE \(uids.description)")])))
    }

    /// `UID FETCH set (items) (CHANGEDSINCE n)` read whole: only messages whose flags changed after
    /// modification sequence `n` (CONDSTORE).
    public func uidFetch(_ set: String, items: String, changedSince: UInt64) async throws -> [FetchedMessage] {
        try await fetchResult(
            try await send(Command("UID", [.text(" FETCH \(set) (\(items)) (CHANGEDSINCE \(changedSince))")])))
    }
}

extension UIDSet {
    /// Reads `1:3,7,9:12` (the form of MODIFIED, APPENDUID and COPYUID); nil when it is not one.
    public init?(parsing text: String) {
        var ranges: [ClosedRange<UInt32>] = []
        for part in text.split(separator: ",") {
            let bounds = part.split(separator: ":", maxSplits: 1).map { UInt32($0) }
            guard let first = bounds.first ?? nil else { return nil }
            let last = bounds.count == 2 ? bounds[1] : first
            guard let last else { return nil }
            ranges.append(min(first, last)...max(first, last))
        }
        guard !ranges.isEmpty else { return nil }
        self.init(ranges)
    }
}

extension FetchedMessage {
    /// MODSEQ (CONDSTORE), when the FETCH asked for it.
    public var modSeq: UInt64? {
        for case .modSeq(let value) in attributes { return value }
        return nil
    }
}
