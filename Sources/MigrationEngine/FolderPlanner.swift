import IMAPClient

/// One source folder and where its messages go.
public struct FolderPlan: Sendable, Equatable {
    /// Source name as the server spells it (modified UTF-7).
    public var source: MailboxName
    public var destination: MailboxName
    public var specialUse: SpecialUse?
    /// Messages to consider after the date filter (known after counting).
    public var expected: Int
    /// Gmail's All Mail: only its messages without a label are copied, the ones archived into no
    /// other folder; every other message of it is copied from its label's folder.
    public var onlyUnlabelled = false
    /// The source folder's MESSAGES, UIDNEXT and UIDVALIDITY as listed (LIST-STATUS, or STATUS),
    /// so a folder a checkpoint already covers needs no EXAMINE or SEARCH.
    public var sourceStatus: MailboxStatus?

    /// Unicode names for display.
    public var sourceName: String { source.decoded }
    public var destinationName: String { destination.decoded }
}

/// A source folder a plan leaves out, and why (shown by the dry run and as a notice).
public struct SkippedFolder: Sendable, Equatable {
    /// Unicode name.
    public var name: String
    public var reason: String
}

/// Lists both sides and decides which folders are copied where; creates what is missing.
struct FolderPlanner {
    let request: MigrationRequest

    func namingScheme(of session: IMAPSession, mailboxes: [ListedMailbox]) async throws -> NamingScheme {
        if let personal = try await session.namespace()?.personal.first {
            return NamingScheme(separator: personal.separator, personalPrefix: personal.prefix)
        }
        let separator = mailboxes.first { $0.entry.separator != nil }?.entry.separator
        let prefixed = mailboxes.contains {
            $0.name.encoded.uppercased().hasPrefix("INBOX\(separator.map { String($0) } ?? "")")
        }
        let everyOtherPrefixed = mailboxes.filter { !$0.name.isInbox }.allSatisfy {
            $0.name.encoded.uppercased().hasPrefix("INBOX\(separator.map { String($0) } ?? "")")
        }
        return NamingScheme(
            separator: separator,
            personalPrefix: prefixed && everyOtherPrefixed ? "INBOX\(separator.map { String($0) } ?? "")" : "")
    }

    private func listing(of session: IMAPSession, statusItems: [StatusItem]) async throws -> (
        [ListedMailbox], NamingScheme
    ) {
        let mailboxes = try await session.listAll(statusItems: statusItems)
        return (mailboxes, try await namingScheme(of: session, mailboxes: mailboxes))
    }

    /// Folders to copy, in a stable order (INBOX first), with their destination names; and the
    /// views the strategy would have taken but that are not copied, with why.
    func plan(source: IMAPSession, destination: IMAPSession) async throws -> ([FolderPlan], [SkippedFolder]) {
        // Both sides at once: the plan waits for one side's round trips, not both in turn.
        async let destinationListing = listing(of: destination, statusItems: [])
        // HIGHESTMODSEQ tells a folder whose flags nobody changed since the last pass from the list.
        let modSeq: [StatusItem] = await source.hasCapability("CONDSTORE") ? [.highestModSeq] : []
        let (sourceMailboxes, sourceScheme) = try await listing(
            of: source, statusItems: [.messages, .uidNext, .uidValidity] + modSeq)
        let (destinationMailboxes, destinationScheme) = try await destinationListing

        var destinationSpecial: [SpecialUse: [String]] = [:]
        for mailbox in destinationMailboxes where mailbox.isSelectable {
            for use in mailbox.entry.attributes.compactMap(SpecialUse.init(attribute:))
            where destinationSpecial[use] == nil {
                destinationSpecial[use] = destinationScheme.components(of: mailbox.name.decoded)
            }
        }

        // Gmail is known by its extension, whatever the request names: with its labels, the
        // messages of All Mail that are in no other folder can be found and go to Archive.
        let readsGmailLabels = await source.hasCapability("X-GM-EXT-1")
        let gmailNames = readsGmailLabels || request.provider == .gmail
        let selected = request.selectedFolders.map { names in Set(names.map { $0.lowercased() }) }
        var plans: [FolderPlan] = []
        var skipped: [SkippedFolder] = []
        for mailbox in sourceMailboxes where mailbox.isSelectable {
            let components = sourceScheme.components(of: mailbox.name.decoded)
            var use = FolderMapping.specialUse(of: mailbox, components: components)
            var onlyUnlabelled = false
            let view = FolderMapping.view(of: mailbox, components: components, gmailNames: gmailNames)
            // All Mail is a view too, but also the one home of messages archived without a label:
            // those, and only those, go to Archive, named or not, so nothing is lost or doubled.
            let gmailArchive = view == .all && readsGmailLabels
            if gmailArchive {
                use = .archive
                onlyUnlabelled = true
            }
            if let selected {
                let decoded = mailbox.name.decoded.lowercased()
                let unprefixed = components.joined(separator: sourceScheme.separator.map { String($0) } ?? "/")
                    .lowercased()
                guard selected.contains(decoded) || selected.contains(unprefixed) else { continue }
                // A view the user names is copied as the plain folder it looks like.
                if view != nil, !gmailArchive { use = nil }
            } else {
                if let view, !gmailArchive {
                    // Said only where the strategy would otherwise have copied it as a folder.
                    if FolderMapping.isIncluded(request.strategy, components: components, specialUse: nil) {
                        skipped.append(
                            SkippedFolder(name: mailbox.name.decoded, reason: FolderMapping.skipReason(view)))
                    }
                    continue
                }
                guard FolderMapping.isIncluded(request.strategy, components: components, specialUse: use) else {
                    continue
                }
            }
            let target = FolderMapping.destinationComponents(
                sourceComponents: components, specialUse: use,
                destinationSpecial: destinationSpecial)
            plans.append(
                FolderPlan(
                    source: mailbox.name, destination: MailboxName(decoded: destinationScheme.name(of: target)),
                    specialUse: use, expected: 0, onlyUnlabelled: onlyUnlabelled,
                    sourceStatus: mailbox.status))
        }
        let ordered = plans.sorted { lhs, rhs in
            if lhs.source.isInbox != rhs.source.isInbox { return lhs.source.isInbox }
            return lhs.source.encoded < rhs.source.encoded
        }
        return (ordered, skipped)
    }

    /// Creates destination folders and their parents that do not exist yet.
    func createDestinations(_ plans: [FolderPlan], on destination: IMAPSession) async throws {
        let listed = try await destination.listAll(statusItems: [])
        let existing = Set(listed.filter(\.isSelectable).map { $0.name.encoded.lowercased() })
        let scheme = try await namingScheme(of: destination, mailboxes: listed)
        var created = existing
        for plan in plans {
            let components = scheme.components(of: plan.destination.decoded)
            for depth in 1...components.count {
                let name = MailboxName(decoded: scheme.name(of: Array(components.prefix(depth))))
                guard !created.contains(name.encoded.lowercased()), !name.isInbox else { continue }
                let use = depth == components.count ? plan.specialUse?.rawValue : nil
                try await destination.create(name, specialUse: use)
                created.insert(name.encoded.lowercased())
            }
        }
    }
}
