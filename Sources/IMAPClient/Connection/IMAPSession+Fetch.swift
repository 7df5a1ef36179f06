import NIOCore

/// UID FETCH: streamed event by event (`sendUIDFetch`, `nextEvent(until:)`) for message bodies, or
/// read whole (`uidFetch`, `fetchResult`) for the small FETCHes of flags, sizes, headers and labels.
extension IMAPSession {
    /// Sends `UID FETCH set (items)`; pull its data with `nextEvent(until:)` or `fetchResult(_:)`.
    public func sendUIDFetch(_ uids: UIDSet, items: String) async throws -> CommandTag {
        try await sendUIDFetch(uids.description, items: items)
    }

    /// `UID FETCH set (items)` read whole; `set` may end in `*` (`1:*`, `120:*`).
    public func uidFetch(_ set: String, items: String) async throws -> [FetchedMessage] {
        try await fetchResult(try await sendUIDFetch(set, items: items))
    }

    /// The UID and flags of each message a FETCH of `UID FLAGS` returned, in the order sent, once
    /// the command completes (NO and BAD throw): a flag pass's 100,000 of them without a
    /// `FetchedMessage` each. Responses without both (another session's change) are left out.
    public func flagsResult(_ tag: CommandTag) async throws -> [MessageFlags] {
        var result: [MessageFlags] = []
        try await finish(tag) { event in
            guard case .fetch(_, let attributes) = event else { return }
            var uid: UInt32 = 0
            var flags: [String]?
            for attribute in attributes {
                switch attribute {
                case .uid(let value): uid = value
                case .flags(let value): flags = value
                default: break
                }
            }
            if uid != 0, let flags { result.append(MessageFlags(uid: uid, flags: flags)) }
        }
        return result
    }

    /// The messages of a FETCH sent with `sendUIDFetch`, each whole, once the command completes
    /// (NO and BAD throw). FETCH data without a UID (a flag change another session made) is left out.
    public func fetchResult(_ tag: CommandTag) async throws -> [FetchedMessage] {
        var messages: [FetchedMessage] = []
        var current: FetchedMessage?
        try await finish(tag) { event in
            switch event {
            case .fetch(let sequence, let attributes):
                var message = FetchedMessage(sequence: sequence)
                for attribute in attributes { message.take(attribute) }
                if message.uid != 0 { messages.append(message) }
            case .fetchStart(let sequence): current = FetchedMessage(sequence: sequence)
            case .fetchAttribute(let attribute): current?.take(attribute)
            case .fetchBodyBytes(var bytes): current?.body.writeBuffer(&bytes)
            case .fetchEnd:
                if let message = current, message.uid != 0 { messages.append(message) }
                current = nil
            default: break
            }
        }
        return messages
    }

    private func sendUIDFetch(_ set: String, items: String) async throws -> CommandTag {
        try await send(Command("UID", [.text(" FETCH \(set) (\(items))")]))
    }
}

/// A message's UID and flags, as a FETCH of `UID FLAGS` gave them.
public struct MessageFlags: Sendable, Equatable {
    public var uid: UInt32
    public var flags: [String]

    public init(uid: UInt32, flags: [String]) {
        self.uid = uid
        self.flags = flags
    }
}

/// One message's FETCH response, read whole.
public struct FetchedMessage: Sendable, Equatable {
    public var sequence: UInt32
    public var uid: UInt32 = 0
    /// Empty when not asked for.
    public var flags: [String] = []
    public var internalDate: InternalDate?
    /// RFC822.SIZE.
    public var size: Int?
    /// The attributes not above (e.g. X-GM-LABELS, MODSEQ), in the order sent.
    public var attributes: [FetchAttribute] = []
    /// The bytes of the body sections returned, one after the other: ask for one section.
    public var body = ByteBuffer()

    public init(sequence: UInt32) { self.sequence = sequence }

    mutating func take(_ attribute: FetchAttribute) {
        switch attribute {
        case .uid(let uid): self.uid = uid
        case .flags(let flags): self.flags = flags
        case .internalDate(let date): internalDate = date
        case .rfc822Size(let size): self.size = size
        case .modSeq, .other: attributes.append(attribute)
        }
    }
}
