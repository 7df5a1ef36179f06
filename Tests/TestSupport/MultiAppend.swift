import IMAPClient
import NIOCore

extension IMAPSession {
    /// Stores whole messages the way the copy does: in one streamed MULTIAPPEND (all or none) when
    /// the server can take one, else one APPEND each. Returns the UIDs the server reported.
    public func appendAll(
        to mailbox: MailboxName,
        messages: [(flags: [String], internalDate: InternalDate?, message: ByteBuffer)]
    ) async throws -> [UInt32] {
        guard canStreamMultiAppend, messages.count > 1 else {
            var uids: [UInt32] = []
            for message in messages {
                let result = try await append(
                    to: mailbox, flags: message.flags, internalDate: message.internalDate,
                    message: message.message)
                if let uid = result.uid { uids.append(uid) }
            }
            return uids
        }
        let tag = try beginMultiAppend(to: mailbox)
        for message in messages {
            try await appendMessage(
                flags: message.flags, internalDate: message.internalDate, size: message.message.readableBytes)
            if message.message.readableBytes > 0 { try await appendBytes(message.message) }
            try await endAppend()
        }
        try await endMultiAppend()
        return try await appendResult(tag).uids?.values ?? []
    }
}
