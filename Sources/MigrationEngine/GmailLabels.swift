import IMAPClient

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
            var returned = Set<UInt32>()
            var labels: [UInt32: [String]] = [:]
            for message in try await session.uidFetch(UIDSet.compact(batch).description, items: "UID X-GM-LABELS") {
                // Unsolicited FETCH data (a flag change) may name the UID without the labels.
                returned.insert(message.uid)
                if let current = message.attributes.compactMap(\.gmailLabels).last { labels[message.uid] = current }
            }
            // Labels that never came are taken as none: a copy too many in Archive beats a message lost.
            result += batch.filter { uid in
                returned.contains(uid) && (labels[uid] ?? []).allSatisfy { views.contains($0.lowercased()) }
            }
        }
        return result
    }
}
