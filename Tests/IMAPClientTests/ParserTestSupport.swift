import NIOCore
@testable import IMAPClient

/// Parses `input` fed in pieces of `chunkSize` bytes (or whole), merging body slices so results
/// compare the same whatever the chunking.
func parse(_ input: String, chunkSize: Int? = nil, limits: ParserLimits = ParserLimits()) throws -> [ResponseEvent] {
    try parse(bytes: Array(input.utf8), chunkSize: chunkSize, limits: limits)
}

func parse(bytes: [UInt8], chunkSize: Int? = nil, limits: ParserLimits = ParserLimits()) throws -> [ResponseEvent] {
    var parser = ResponseParser(limits: limits)
    var events: [ResponseEvent] = []
    let size = max(1, chunkSize ?? bytes.count)
    var offset = 0
    repeat {
        let end = min(bytes.count, offset + size)
        parser.append(ByteBuffer(bytes: bytes[offset..<end]))
        offset = end
        while let event = try parser.next() { append(event, to: &events) }
    } while offset < bytes.count
    return events
}

private func append(_ event: ResponseEvent, to events: inout [ResponseEvent]) {
    if case .fetchBodyBytes(var new) = event, case .fetchBodyBytes(var old)? = events.last {
        old.writeBuffer(&new)
        events[events.count - 1] = .fetchBodyBytes(old)
    } else {
        events.append(event)
    }
}

func body(_ text: String) -> ResponseEvent { .fetchBodyBytes(ByteBuffer(string: text)) }
