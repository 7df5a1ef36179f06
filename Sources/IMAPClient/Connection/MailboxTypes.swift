/// Items STATUS can report.
public enum StatusItem: String, Sendable, CaseIterable {
    case messages = "MESSAGES"
    case uidNext = "UIDNEXT"
    case uidValidity = "UIDVALIDITY"
    case unseen = "UNSEEN"
    case size = "SIZE"
    /// CONDSTORE (RFC 7162): changes whenever a flag changes or a message comes or goes.
    case highestModSeq = "HIGHESTMODSEQ"
}

public struct MailboxStatus: Sendable, Equatable {
    public var messages: Int?
    public var uidNext: UInt32?
    public var uidValidity: UInt32?
    public var unseen: Int?
    public var size: Int64?
    public var highestModSeq: UInt64?

    public init(_ items: [MailboxStatusItem]) {
        for item in items {
            switch item {
            case .messages(let value): messages = value
            case .uidNext(let value): uidNext = value
            case .uidValidity(let value): uidValidity = value
            case .unseen(let value): unseen = value
            case .size(let value): size = value
            case .highestModSeq(let value): highestModSeq = value
            default: break
            }
        }
    }
}

public struct ListedMailbox: Sendable, Equatable {
    public var entry: ListEntry
    public var status: MailboxStatus?

    public init(entry: ListEntry, status: MailboxStatus?) {
        self.entry = entry
        self.status = status
    }

    public var name: MailboxName { entry.name }
    public var isSelectable: Bool { !entry.hasAttribute("\\Noselect") && !entry.hasAttribute("\\NonExistent") }

    /// The RFC 6154 attribute, if any (`\Sent`, `\Drafts`, …).
    public var specialUse: String? {
        let known = ["\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash", "\\Important"]
        return known.first { entry.hasAttribute($0) }
    }
}

public struct SelectedMailbox: Sendable, Equatable {
    public var name: MailboxName
    public var exists = 0
    public var uidValidity: UInt32?
    public var uidNext: UInt32?
    public var flags: [String] = []
    public var permanentFlags: [String]?
    public var isReadOnly = false
    /// HIGHESTMODSEQ (CONDSTORE), when the server keeps modification sequences for the mailbox.
    public var highestModSeq: UInt64?

    public init(name: MailboxName) { self.name = name }

    /// Whether new keywords may be stored (PERMANENTFLAGS holds `\*`); unknown means yes.
    public var acceptsNewKeywords: Bool { permanentFlags?.contains("\\*") ?? true }
}

public struct AppendResult: Sendable, Equatable {
    public var uidValidity: UInt32?
    /// The UIDs the messages got, in order (APPENDUID), when the server reports them.
    public var uids: UIDSet?

    /// The new message's UID, for an APPEND of one message.
    public var uid: UInt32? { uids.flatMap { $0.count == 1 ? $0.ranges.first?.lowerBound : nil } }
}
