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

    /// The messages of a FETCH sent with `sendUIDFetch`, each whole, once the command completes
    /// (NO and BAD throw). FETCH data without a UID (a flag change another session made) is left out.
    public func fetchResult(_ tag: CommandTag) async throws -> [FetchedMessage] {
        var messages: [FetchedMessage] = []
        var current: FetchedMessage?
        try await finish(tag) { event in
            switch event {
            case .fetchStart(let sequence): current = FetchedMessage(sequence: sequence)
            case .fetchAttribute(.uid(let uid)): current?.uid = uid
            case .fetchAttribute(.flags(let flags)): current?.flags = flags
            case .fetchAttribute(.internalDate(let date)): current?.internalDate = date
            case .fetchAttribute(.rfc822Size(let size)): current?.size = size
            case .fetchAttribute(let attribute): current?.attributes.append(attribute)
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
}
