import NIOCore
import NIOPosix
import Synchronization

/// A TCP proxy on 127.0.0.1 in front of a real server that breaks the server→client direction on
/// purpose: drops mid-response, garbage, a slow link. For tests of how the client reacts (classified
/// errors, no hang) and of reconnect/resume.
///
/// Each accepted connection gets its own upstream connection; the two are glued on one event loop,
/// with backpressure: a side is read only while the other side can take more.
public final class FaultInjectingProxy: Sendable {
    public enum Fault: Sendable {
        /// Close both sides after this many server→client bytes on the connection (cuts mid-literal when set inside a FETCH body).
        case dropAfterServerBytes(Int)
        /// Close both sides the first time this byte pattern appears in server→client data, after forwarding `extraBytes` more bytes past the end of the pattern.
        case dropAfterPattern([UInt8], extraBytes: Int)
        /// Replace the server's data with these bytes from then on (garbage), once `afterBytes` were forwarded.
        case garbageAfter(Int, [UInt8])
        /// Forward at most this many bytes per second server→client (slow server).
        case throttle(bytesPerSecond: Int)
        /// Go silent (forward nothing more, keep the connection open) once this byte pattern and
        /// `extraBytes` more were forwarded: a server that hangs mid-response.
        case stallAfterPattern([UInt8], extraBytes: Int)
        /// Forward every server→client byte this long after it arrived (a distant server): what the
        /// server has done is known to the client only later.
        case delay(TimeAmount)
        /// Forward every client→server byte this long after it arrived (a slow or distant server):
        /// what the client sent reaches the server only later, even after the client is gone — a
        /// command sent whole before a crash is still carried out afterwards.
        case delayUpstream(TimeAmount)
    }

    public let port: Int
    private let serverChannel: Channel
    private let state: ProxyState

    private init(port: Int, serverChannel: Channel, state: ProxyState) {
        self.port = port
        self.serverChannel = serverChannel
        self.state = state
    }

    /// `faults[i]` applies to the i-th accepted connection (0-based); connections beyond the array are passed through untouched.
    public static func start(upstreamHost: String = "127.0.0.1", upstreamPort: Int, faults: [Fault?]) async throws
        -> FaultInjectingProxy
    {
        let state = ProxyState()
        let serverChannel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { inbound in
                let index = state.accepted()
                let fault = index < faults.count ? faults[index] : nil
                state.track(inbound)
                let connection: NIOLoopBound<ProxyConnection>
                do {
                    let glue = ProxyConnection(fault: fault)
                    try inbound.pipeline.syncOperations.addHandler(GlueHandler(side: .client, connection: glue))
                    connection = NIOLoopBound(glue, eventLoop: inbound.eventLoop)
                } catch {
                    return inbound.eventLoop.makeFailedFuture(error)
                }
                // Same event loop for both channels: the glue is touched from that loop only.
                return ClientBootstrap(group: inbound.eventLoop)
                    .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                    .channelInitializer { outbound in
                        outbound.eventLoop.makeCompletedFuture {
                            try outbound.pipeline.syncOperations.addHandler(
                                GlueHandler(side: .server, connection: connection.value))
                        }
                    }
                    .connect(host: upstreamHost, port: upstreamPort)
                    .map { outbound in state.track(outbound) }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        guard let port = serverChannel.localAddress?.port else {
            try? await serverChannel.close()
            throw ChannelError.unknownLocalAddress
        }
        return FaultInjectingProxy(port: port, serverChannel: serverChannel, state: state)
    }

    /// Connections accepted so far.
    public var connectionCount: Int { state.connectionCount }

    /// Stops listening and closes every connection still open.
    public func stop() async {
        try? await serverChannel.close()
        for channel in state.openChannels() {
            try? await channel.close()
        }
    }
}

/// What the proxy shares across event loops: the accept counter and the open channels.
private final class ProxyState: Sendable {
    private let count = Mutex(0)
    private let channels = Mutex<[ObjectIdentifier: Channel]>([:])

    var connectionCount: Int { count.withLock { $0 } }

    /// Counts an accepted connection and returns its 0-based index.
    func accepted() -> Int {
        count.withLock { value in
            defer { value += 1 }
            return value
        }
    }

    func track(_ channel: Channel) {
        let key = ObjectIdentifier(channel)
        channels.withLock { $0[key] = channel }
        channel.closeFuture.whenComplete { [self] _ in
            _ = channels.withLock { $0.removeValue(forKey: key) }
        }
    }

    func openChannels() -> [Channel] { channels.withLock { Array($0.values) } }
}

private enum Side {
    /// The accepted connection, from the IMAP client.
    case client
    /// The upstream connection, to the real server.
    case server

    var other: Side { self == .client ? .server : .client }
}

/// Decides what becomes of the server's bytes; pure bookkeeping, no I/O.
private struct ServerDataFilter {
    enum Mode {
        case passThrough
        /// Forward up to `limit` bytes in total, then close.
        case dropAt(limit: Int)
        /// Look for `pattern`; `window` holds the last bytes of the stream that could start it. Then
        /// close (or, with `stall`, go silent) `extraBytes` after it.
        case awaitPattern(pattern: [UInt8], extraBytes: Int, window: [UInt8], stall: Bool)
        /// Forward up to `limit` bytes in total, then swallow the rest without closing.
        case stallAt(limit: Int)
        /// Forward up to `after` bytes in total, then send `garbage` once and swallow the rest.
        case garbageAt(after: Int, garbage: [UInt8])
        /// The garbage went out; the server's data is swallowed.
        case swallowing
    }

    struct Output {
        var forward: [UInt8] = []
        var close = false
    }

    var mode: Mode
    /// Server bytes seen so far (forwarded or not).
    private(set) var seen = 0

    init(_ fault: FaultInjectingProxy.Fault?) {
        switch fault {
        case .dropAfterServerBytes(let count)?: mode = .dropAt(limit: max(0, count))
        case .dropAfterPattern(let pattern, let extraBytes)?:
            mode = .awaitPattern(pattern: pattern, extraBytes: max(0, extraBytes), window: [], stall: false)
        case .stallAfterPattern(let pattern, let extraBytes)?:
            mode = .awaitPattern(pattern: pattern, extraBytes: max(0, extraBytes), window: [], stall: true)
        case .garbageAfter(let count, let garbage)?: mode = .garbageAt(after: max(0, count), garbage: garbage)
        case .throttle?, .delay?, .delayUpstream?, nil: mode = .passThrough
        }
    }

    /// What to do before any server byte arrived (a limit of zero acts at once).
    mutating func atStart() -> Output { process([]) }

    mutating func process(_ bytes: [UInt8]) -> Output {
        let start = seen
        seen += bytes.count
        switch mode {
        case .passThrough:
            return Output(forward: bytes)
        case .swallowing:
            return Output()
        case .dropAt(let limit):
            let allowed = max(0, limit - start)
            if bytes.count < allowed { return Output(forward: bytes) }
            return Output(forward: Array(bytes.prefix(allowed)), close: true)
        case .garbageAt(let after, let garbage):
            let allowed = max(0, after - start)
            if bytes.count < allowed { return Output(forward: bytes) }
            mode = .swallowing
            return Output(forward: Array(bytes.prefix(allowed)) + garbage)
        case .stallAt(let limit):
            return Output(forward: Array(bytes.prefix(max(0, limit - start))))
        case .awaitPattern(let pattern, let extraBytes, let window, let stall):
            let combined = window + bytes
            if let index = Self.firstIndex(of: pattern, in: combined) {
                let patternEnd = start - window.count + index + pattern.count
                mode = stall ? .stallAt(limit: patternEnd + extraBytes) : .dropAt(limit: patternEnd + extraBytes)
                seen = start
                return process(bytes)
            }
            let keep = max(0, pattern.count - 1)
            mode = .awaitPattern(
                pattern: pattern, extraBytes: extraBytes, window: Array(combined.suffix(keep)), stall: stall)
            return Output(forward: bytes)
        }
    }

    private static func firstIndex(of pattern: [UInt8], in bytes: [UInt8]) -> Int? {
        guard !pattern.isEmpty else { return 0 }
        guard bytes.count >= pattern.count else { return nil }
        let first = pattern[0]
        var index = 0
        while index <= bytes.count - pattern.count {
            if bytes[index] == first, bytes[index..<(index + pattern.count)].elementsEqual(pattern) { return index }
            index += 1
        }
        return nil
    }
}

/// One proxied connection: both channels' contexts, the fault, the throttle queue. Event loop only.
private final class ProxyConnection {
    private var contexts: [Side: ChannelHandlerContext] = [:]
    private var active: Set<Side> = []
    private var heldReads: Set<Side> = []
    private var filter: ServerDataFilter
    private var started = false
    private var closing = false

    // Throttling (server→client).
    private let throttleChunk: Int
    private let throttleInterval: TimeAmount?
    private var throttleQueue: [UInt8] = []
    private var throttleTimer: Scheduled<Void>?
    private var nextSend = NIODeadline.uptimeNanoseconds(0)
    private var serverFinished = false

    // Latency (server→client): writes scheduled but not yet made.
    private let latency: TimeAmount?
    private var delayedWrites = 0

    // Latency (client→server), and whether the client closed while some of its bytes were held.
    private let upstreamLatency: TimeAmount?
    private var delayedUpstreamWrites = 0
    private var clientFinished = false

    init(fault: FaultInjectingProxy.Fault?) {
        filter = ServerDataFilter(fault)
        if case .delay(let amount)? = fault { latency = amount } else { latency = nil }
        if case .delayUpstream(let amount)? = fault { upstreamLatency = amount } else { upstreamLatency = nil }
        if case .throttle(let rate)? = fault {
            let rate = max(1, rate)
            // About ten sends a second, each as large as the rate allows.
            throttleChunk = max(1, rate / 10)
            throttleInterval = .nanoseconds(Int64(throttleChunk) * 1_000_000_000 / Int64(rate))
        } else {
            throttleChunk = 0
            throttleInterval = nil
        }
    }

    // MARK: Events from the glue handlers

    func attach(_ side: Side, _ context: ChannelHandlerContext) {
        contexts[side] = context
        if context.channel.isActive { active.insert(side) }
        startIfReady()
    }

    func detach(_ side: Side) {
        contexts[side] = nil
        if contexts.isEmpty {
            throttleTimer?.cancel()
            throttleTimer = nil
        }
    }

    func becameActive(_ side: Side) {
        active.insert(side)
        startIfReady()
    }

    func readRequested(_ side: Side) {
        heldReads.insert(side)
        resumeReads()
    }

    func received(_ buffer: ByteBuffer, from side: Side) {
        guard !closing else { return }
        switch side {
        case .client:
            let bytes = Array(buffer.readableBytesView)
            guard let upstreamLatency, let context = contexts[.server] else {
                write(bytes, to: .server, thenClose: false)
                return
            }
            delayedUpstreamWrites += 1
            context.eventLoop.assumeIsolated().scheduleTask(in: upstreamLatency) { [self] in
                delayedUpstreamWrites -= 1
                guard !closing else { return }
                write(bytes, to: .server, thenClose: delayedUpstreamWrites == 0 && clientFinished)
            }
        case .server:
            let output = filter.process(Array(buffer.readableBytesView))
            if throttleInterval != nil {
                throttleQueue += output.forward
                scheduleThrottledSend()
            } else if let latency, let context = contexts[.client] {
                // Scheduled tasks with one delay run in the order they were scheduled: bytes stay in order.
                delayedWrites += 1
                context.eventLoop.assumeIsolated().scheduleTask(in: latency) { [self] in
                    delayedWrites -= 1
                    guard !closing else { return }
                    write(
                        output.forward, to: .client, thenClose: output.close || (delayedWrites == 0 && serverFinished))
                }
            } else {
                write(output.forward, to: .client, thenClose: output.close)
            }
        }
    }

    func writabilityChanged(_ side: Side) {
        resumeReads()
    }

    func becameInactive(_ side: Side) {
        active.remove(side)
        guard !closing else { return }
        if side == .server, !throttleQueue.isEmpty || delayedWrites > 0 {
            serverFinished = true  // the queued bytes go out first
            return
        }
        if side == .client, delayedUpstreamWrites > 0 {
            clientFinished = true  // what the client sent still reaches the server, then it is closed
            return
        }
        // Whatever was already written still reaches the other side before it is closed.
        write([], to: side.other, thenClose: true)
    }

    func failed() {
        closeAll()
    }

    // MARK: Forwarding

    private func startIfReady() {
        guard !started, contexts.count == 2, active.count == 2 else { return }
        started = true
        let output = filter.atStart()
        if !output.forward.isEmpty || output.close {
            write(output.forward, to: .client, thenClose: output.close)
        }
        resumeReads()
    }

    /// Reads a side only when the other side takes more and no throttled bytes wait.
    private func resumeReads() {
        guard started, !closing else { return }
        for side in heldReads {
            guard let context = contexts[side], let other = contexts[side.other], other.channel.isWritable else {
                continue
            }
            if side == .server, !throttleQueue.isEmpty || delayedWrites > 0 { continue }
            heldReads.remove(side)
            context.read()
        }
    }

    private func write(_ bytes: [UInt8], to side: Side, thenClose: Bool) {
        guard let context = contexts[side] else {
            if thenClose { closeAll() }
            return
        }
        if thenClose { closing = true }
        let buffer = context.channel.allocator.buffer(bytes: bytes)
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(NIOAny(buffer), promise: promise)
        if thenClose {
            // Writes complete in order: once this one is done, everything before it went out.
            promise.futureResult.assumeIsolated().whenComplete { [self] _ in closeAll() }
        }
    }

    private func closeAll() {
        closing = true
        throttleTimer?.cancel()
        throttleTimer = nil
        for context in contexts.values {
            context.close(promise: nil)
        }
    }

    private func scheduleThrottledSend() {
        guard throttleTimer == nil, !throttleQueue.isEmpty, let context = contexts[.client] else { return }
        let deadline = max(nextSend, .now())
        throttleTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            throttleTimer = nil
            sendThrottledChunk()
        }
    }

    private func sendThrottledChunk() {
        guard !closing, let interval = throttleInterval else { return }
        let count = min(throttleChunk, throttleQueue.count)
        let chunk = Array(throttleQueue.prefix(count))
        throttleQueue.removeFirst(count)
        nextSend = .now() + interval
        let closeNow = throttleQueue.isEmpty && serverFinished
        write(chunk, to: .client, thenClose: closeNow)
        if throttleQueue.isEmpty {
            resumeReads()
        } else {
            scheduleThrottledSend()
        }
    }
}

/// Puts one channel of the pair in touch with its `ProxyConnection`.
private final class GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let side: Side
    private let connection: ProxyConnection

    init(side: Side, connection: ProxyConnection) {
        self.side = side
        self.connection = connection
    }

    func handlerAdded(context: ChannelHandlerContext) { connection.attach(side, context) }

    func handlerRemoved(context: ChannelHandlerContext) { connection.detach(side) }

    func channelActive(context: ChannelHandlerContext) {
        connection.becameActive(side)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.received(unwrapInboundIn(data), from: side)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        connection.writabilityChanged(side)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.becameInactive(side)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        connection.failed()
    }

    func read(context: ChannelHandlerContext) {
        connection.readRequested(side)
    }
}
