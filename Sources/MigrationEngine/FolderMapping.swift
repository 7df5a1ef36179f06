import IMAPClient

/// RFC 6154 special uses the engine maps between providers.
public enum SpecialUse: String, Sendable, Codable, CaseIterable {
    case sent = "\\Sent"
    case drafts = "\\Drafts"
    case trash = "\\Trash"
    case junk = "\\Junk"
    case archive = "\\Archive"
    case all = "\\All"
    case flagged = "\\Flagged"
    case important = "\\Important"

    init?(attribute: String) {
        guard let match = SpecialUse.allCases.first(where: { $0.rawValue.lowercased() == attribute.lowercased() })
        else { return nil }
        self = match
    }

    /// Well-known folder names of providers and clients, compared case-insensitively.
    static let wellKnownNames: [SpecialUse: [String]] = [
        .sent: [
            "sent", "sent items", "sent messages", "sent mail", "sent-mail", "gesendet", "gesendete objekte", "envoyés",
            "enviados",
        ],
        .drafts: ["drafts", "draft", "entwürfe", "brouillons", "borradores"],
        .trash: [
            "trash", "deleted items", "deleted messages", "deleted", "bin", "papierkorb", "corbeille", "papelera",
        ],
        .junk: ["junk", "junk e-mail", "junk email", "junk mail", "spam", "bulk mail", "bulk", "spamverdacht"],
        .archive: ["archive", "archives", "archiv"],
    ]

    /// The name a destination gets when it has no folder for this use yet.
    var defaultName: String {
        switch self {
        case .sent: "Sent"
        case .drafts: "Drafts"
        case .trash: "Trash"
        case .junk: "Junk"
        case .archive: "Archive"
        case .all: "All Mail"
        case .flagged: "Starred"
        case .important: "Important"
        }
    }
}

/// How a server names folders: its hierarchy separator and personal-namespace prefix.
public struct NamingScheme: Sendable, Equatable {
    public var separator: Character?
    /// e.g. `INBOX.` on Courier/cPanel servers, empty on most others.
    public var personalPrefix: String

    public init(separator: Character?, personalPrefix: String) {
        self.separator = separator
        self.personalPrefix = personalPrefix
    }

    /// Splits a decoded name into path components without the personal prefix; INBOX stays `["INBOX"]`.
    func components(of decodedName: String) -> [String] {
        if decodedName.uppercased() == "INBOX" { return ["INBOX"] }
        var name = decodedName
        if !personalPrefix.isEmpty, name.lowercased().hasPrefix(personalPrefix.lowercased()) {
            name = String(name.dropFirst(personalPrefix.count))
        }
        guard let separator else { return [name] }
        return name.split(separator: separator, omittingEmptySubsequences: false).map(String.init)
    }

    /// The decoded name of a path on this server; a separator inside a component becomes `_`.
    func name(of components: [String]) -> String {
        if components.count == 1, components[0].uppercased() == "INBOX" { return "INBOX" }
        let cleaned = components.map { component -> String in
            guard let separator else { return component }
            return String(component.map { $0 == separator ? "_" : $0 })
        }
        return personalPrefix + cleaned.joined(separator: separator.map { String($0) } ?? "")
    }
}

/// Pure folder-name logic: which source folders to copy and where each goes.
public enum FolderMapping {
    /// The view a folder is, if it is one: `\All`, `\Flagged` (RFC 6154) or `\Important` (RFC 8457)
    /// hold messages that live in other folders, on any server. `gmailNames` also knows Gmail's
    /// views by name, for servers that list them without attributes.
    static func view(of mailbox: ListedMailbox, components: [String], gmailNames: Bool) -> SpecialUse? {
        let views: [SpecialUse] = [.all, .flagged, .important]
        if let use = mailbox.entry.attributes.lazy.compactMap(SpecialUse.init(attribute:)).first(where: views.contains)
        {
            return use
        }
        guard gmailNames, components.count == 2, isGmailParent(components[0]) else { return nil }
        switch components[1].lowercased() {
        case "all mail", "alle nachrichten": return .all
        case "starred", "markiert": return .flagged
        case "important", "wichtig": return .important
        default: return nil
        }
    }

    /// Why a view is left out of a plan, for the dry run and the progress notices.
    static func skipReason(_ view: SpecialUse) -> String {
        let what =
            switch view {
            case .all: "a view of every message, which the other folders already hold"
            case .flagged: "a view of the flagged messages of other folders"
            default: "a view of messages marked important in other folders"
            }
        return "not copied: \(what) (\(view.rawValue)); name it in the selected folders to copy it anyway"
    }

    static func isGmailParent(_ component: String) -> Bool {
        let lower = component.lowercased()
        return lower == "[gmail]" || lower == "[google mail]"
    }

    /// The special use of a source folder: its attribute, else a well-known top-level name.
    static func specialUse(of mailbox: ListedMailbox, components: [String]) -> SpecialUse? {
        if let use = mailbox.entry.attributes.lazy.compactMap(SpecialUse.init(attribute:)).first { return use }
        var path = components
        if path.count == 2, isGmailParent(path[0]) { path.removeFirst() }
        guard path.count == 1 else { return nil }
        let lower = path[0].lowercased()
        return SpecialUse.wellKnownNames.first { $0.value.contains(lower) }?.key
    }

    /// Whether the strategy includes the folder.
    static func isIncluded(_ strategy: FolderStrategy, components: [String], specialUse: SpecialUse?) -> Bool {
        switch strategy {
        case .all: true
        case .inboxOnly: components == ["INBOX"]
        case .standard: components == ["INBOX"] || [.sent, .drafts, .trash, .junk, .archive].contains(specialUse)
        }
    }

    /// Destination path for a source folder. Special-use folders go to the destination's own folder
    /// of that use; `[Gmail]/X` loses its parent; everything else keeps its path.
    static func destinationComponents(
        sourceComponents: [String], specialUse: SpecialUse?,
        destinationSpecial: [SpecialUse: [String]]
    ) -> [String] {
        if let specialUse, [.sent, .drafts, .trash, .junk, .archive].contains(specialUse) {
            return destinationSpecial[specialUse] ?? [specialUse.defaultName]
        }
        if sourceComponents.count > 1, isGmailParent(sourceComponents[0]) {
            return Array(sourceComponents.dropFirst())
        }
        return sourceComponents
    }
}
