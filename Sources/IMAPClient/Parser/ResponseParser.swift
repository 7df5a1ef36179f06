import NIOCore

/// An incremental parser for server responses (RFC 3501 / RFC 9051).
///
/// Feed it bytes as they arrive with `append`, then call `next()` until it returns nil. Responses
/// other than FETCH are buffered whole, up to `ParserLimits.maxResponseSize`; FETCH responses come out
/// attribute by attribute, and message bodies as slices of the received buffers, so a body of any size
/// passes through without being held.
public struct ResponseParser {
    private enum Mode: Equatable {
        case response
        case fetchAttributes
        case fetchBody(remaining: Int)
    }

    /// When the last attempt ran out of bytes, what must arrive before another attempt can succeed.
    private struct Wait {
        /// Bytes already searched for a line feed.
        var scanned: Int
        /// A literal's end, when that is what was missing.
        var needed: Int?
    }

    public let limits: ParserLimits
    private var buffer: ByteBuffer
    private var mode: Mode = .response
    private var pending: CircularBuffer<ResponseEvent> = CircularBuffer(initialCapacity: 4)
    private var wait: Wait?

    public init(limits: ParserLimits = ParserLimits()) {
        self.limits = limits
        self.buffer = ByteBuffer()
    }

    /// Bytes received but not yet turned into events.
    public var bufferedBytes: Int { buffer.readableBytes }

    public mutating func append(_ bytes: ByteBuffer) {
        if buffer.readableBytes == 0 {
            buffer = bytes
        } else {
            var bytes = bytes
            buffer.writeBuffer(&bytes)
        }
    }

    /// The next event, or nil when more bytes are needed. A thrown error is final for the connection.
    public mutating func next() throws -> ResponseEvent? {
        if let event = pending.popFirst() { return event }
        switch mode {
        case .fetchBody(let remaining):
            return nextBodySlice(remaining: remaining)
        case .response, .fetchAttributes:
            guard worthAttempting() else { return nil }
            var cursor = ParserCursor(buffer: buffer, limits: limits)
            do {
                let event = try mode == .response ? startResponse(&cursor) : continueFetch(&cursor)
                buffer.moveReaderIndex(to: cursor.buffer.readerIndex)
                wait = nil
                compactIfWorthwhile()
                if let event { return event }
                return try next()
            } catch let incomplete as ParseIncomplete {
                guard buffer.readableBytes <= limits.maxResponseSize else {
                    throw IMAPParseError.responseTooLong(limit: limits.maxResponseSize)
                }
                wait = Wait(scanned: buffer.readableBytes, needed: incomplete.needed)
                return nil
            }
        }
    }

    /// Every complete response ends in a line feed and every literal's end is known, so a retry
    /// before either arrives would fail the same way; skipping it keeps slow senders linear.
    private mutating func worthAttempting() -> Bool {
        guard var wait else { return true }
        let readable = buffer.readableBytes
        guard readable > wait.scanned else { return false }
        if let needed = wait.needed, readable >= needed { return true }
        // Past the limit one more attempt either completes or reports the limit.
        if readable > limits.maxResponseSize { return true }
        if buffer.readableBytesView.dropFirst(wait.scanned).contains(ASCII.lf) { return true }
        wait.scanned = readable
        self.wait = wait
        return false
    }

    private mutating func startResponse(_ cursor: inout ParserCursor) throws -> ResponseEvent? {
        switch try cursor.responseStart() {
        case .complete(let event):
            return event
        case .fetchOpened(let sequence):
            // Read whole while no body section comes; at the first, the response goes on piecewise
            // from there (the attributes before it are queued first). Until then a shortage of
            // bytes retries the response from its start, as for any other response.
            var attributes: [FetchAttribute] = []
            while true {
                switch try cursor.fetchStep() {
                case .attribute(let attribute):
                    attributes.append(attribute)
                case .end:
                    return .fetch(sequence: sequence, attributes: attributes)
                case .body(let body):
                    mode = .fetchAttributes
                    pending.append(contentsOf: attributes.map { .fetchAttribute($0) })
                    pending.append(contentsOf: bodyEvents(body))
                    return .fetchStart(sequence: sequence)
                }
            }
        }
    }

    private mutating func continueFetch(_ cursor: inout ParserCursor) throws -> ResponseEvent? {
        switch try cursor.fetchStep() {
        case .attribute(let attribute):
            return .fetchAttribute(attribute)
        case .end:
            mode = .response
            return .fetchEnd
        case .body(let body):
            pending.append(contentsOf: bodyEvents(body))
            return pending.popFirst()
        }
    }

    /// A body section's start, and its bytes and end when they came inline. A literal's bytes
    /// follow as they arrive.
    private mutating func bodyEvents(_ body: FetchBody) -> [ResponseEvent] {
        switch body {
        case .inline(let section, let origin, let bytes):
            return [
                .fetchBodyStart(section: section, origin: origin, size: bytes?.count ?? 0, isNil: bytes == nil),
                .fetchBodyBytes(ByteBuffer(bytes: bytes ?? [])), .fetchBodyEnd,
            ]
        case .literal(let section, let origin, let size):
            let start = ResponseEvent.fetchBodyStart(section: section, origin: origin, size: size, isNil: false)
            if size == 0 { return [start, .fetchBodyEnd] }
            mode = .fetchBody(remaining: size)
            return [start]
        }
    }

    private mutating func nextBodySlice(remaining: Int) -> ResponseEvent? {
        let available = min(remaining, buffer.readableBytes)
        guard available > 0, let slice = buffer.readSlice(length: available) else { return nil }
        if available == remaining {
            mode = .fetchAttributes
            pending.append(.fetchBodyEnd)
        } else {
            mode = .fetchBody(remaining: remaining - available)
        }
        return .fetchBodyBytes(slice)
    }

    private mutating func compactIfWorthwhile() {
        if buffer.readableBytes == 0 {
            buffer = ByteBuffer()
        } else if buffer.readerIndex > 256 * 1024, buffer.readerIndex > buffer.readableBytes {
            buffer.discardReadBytes()
        }
    }
}
