/// `create_missing_mailboxes` (SPEC.md §5): the rows whose destination mailbox does not exist yet,
/// narrowed to addresses the service may add for the account: in a domain the account already has
/// mailboxes in (so a typo'd or foreign domain is never created), and accepted by the destination
/// server (a master login succeeds).
public enum MissingMailboxes {
    /// The distinct destination addresses of `invalid_destination` rows whose domain is one of the
    /// domains of `existing`, in row order.
    public static func candidates(_ preview: BulkPreview, existing: Set<String>) -> [String] {
        let domains = Set(existing.compactMap(domain(of:)))
        var seen: Set<String> = []
        var candidates: [String] = []
        for row in preview.rows where row.category == .invalidDestination {
            guard let email = row.destinationEmail?.lowercased(), let domain = domain(of: email),
                domains.contains(domain), seen.insert(email).inserted
            else { continue }
            candidates.append(email)
        }
        return candidates
    }

    /// The candidates `accepts` says yes to, in their order: asked `concurrency` at a time, and
    /// within `deadline` (one not answered by then is left out, never added on a guess).
    public static func accepted(
        _ candidates: [String], concurrency: Int = LoginCheck.defaultConcurrency,
        deadline: Duration = LoginCheck.defaultDeadline,
        accepts: @escaping @Sendable (String) async -> Bool
    ) async -> [String] {
        let end = ContinuousClock.now + deadline
        var yes: Set<String> = []
        await withTaskGroup(of: (String, Bool).self) { group in
            var waiting = candidates[...]
            func next() {
                guard ContinuousClock.now < end, let email = waiting.popFirst() else { return }
                group.addTask {
                    await withTaskGroup(of: Bool?.self) { race in
                        race.addTask { await accepts(email) }
                        race.addTask {
                            try? await Task.sleep(until: end, clock: .continuous)
                            return nil
                        }
                        let first = await race.next() ?? nil
                        race.cancelAll()
                        return (email, first ?? false)
                    }
                }
            }
            for _ in 0..<max(1, concurrency) { next() }
            while let (email, accepted) = await group.next() {
                if accepted { yes.insert(email) }
                next()
            }
        }
        return candidates.filter(yes.contains)
    }

    static func domain(of email: String) -> String? {
        guard let at = email.lastIndex(of: "@") else { return nil }
        let domain = email[email.index(after: at)...].lowercased()
        return domain.isEmpty ? nil : domain
    }
}
