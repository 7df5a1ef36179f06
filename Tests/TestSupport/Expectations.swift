/// What a migration of a corpus must leave in the destination, and how a snapshot differs from it:
/// shared by the engine, runner and end-to-end tests.
extension Corpus {
    /// Where the engine puts a folder of the dot-layout source on the slash-layout destination.
    public static func destinationPath(_ folder: String) -> String {
        folder == "Sent Items" ? "Sent" : folder
    }

    /// The destination's content after migrating this corpus: per destination folder, the messages.
    /// Folders the migration covers are keys even when empty (they must exist afterwards).
    public func expectedDestination(
        skipDuplicates: Bool, since: Int64? = nil,
        folders selected: Set<String>? = nil
    ) -> [String: [StoredMessage]] {
        var result: [String: [StoredMessage]] = [:]
        for folder in folderOrder where selected?.contains(folder) ?? true {
            result[Self.destinationPath(folder), default: []] += (folders[folder] ?? []).filter { message in
                !message.isDeleted && !(skipDuplicates && message.isDuplicate) && message.seconds >= (since ?? .min)
            }.map(StoredMessage.init)
        }
        return result
    }
}

extension AccountSnapshot {
    /// Every way this snapshot differs from `expected`: a missing folder, messages missing or doubled
    /// (bytes, flags, date), messages in a folder that should be empty. Empty when exact.
    public func differences(from expected: [String: [StoredMessage]]) -> [String] {
        var problems: [String] = []
        for (folder, messages) in expected.sorted(by: { $0.key < $1.key }) {
            guard let stored = folders[folder] else {
                problems.append("the destination has no folder \(folder)")
                continue
            }
            var balance: [StoredMessage: Int] = [:]
            for message in messages { balance[message, default: 0] += 1 }
            for message in stored { balance[message, default: 0] -= 1 }
            let missing = balance.filter { $0.value > 0 }
            let extra = balance.filter { $0.value < 0 }
            if !missing.isEmpty || !extra.isEmpty {
                func list(_ entries: [StoredMessage: Int]) -> String {
                    entries.prefix(6).map { "\($0.value > 0 ? $0.value : -$0.value)× \($0.key)" }.joined(
                        separator: "; ")
                }
                problems.append(
                    """
                    \(folder) holds \(stored.count) messages, expected \(messages.count); \
                    missing \(missing.values.reduce(0, +)): \(list(missing)) — unexpected or doubled \
                    \(extra.values.reduce(0) { $0 - $1 }): \(list(extra))
                    """)
            }
        }
        for (folder, stored) in folders.sorted(by: { $0.key < $1.key }) where expected[folder] == nil && !stored.isEmpty
        {
            problems.append("\(folder) should be empty but holds \(stored.count) messages, e.g. \(stored[0])")
        }
        return problems
    }
}
