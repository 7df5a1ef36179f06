import NIOCore

/// Turns received bytes into `SMTPReply`s and hands them out one at a time, with a timeout on
/// each wait. Lives on the channel's event loop only.
final class ReplyHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private var parser = ReplyParser()
    private var replies: [SMTPReply] = []
    private var waiter: (promise: EventLoopPromise<SMTPReply>, timer: Scheduled<Void>?)?
    /// The first error of this connection; what follows it (the close) is its echo.
    private(set) var failure: SMTPError?
    private var context: ChannelHandlerContext?
    /// Names the step of a failure the handler notices by itself (a close, a TLS error).
    var step = "the greeting"
    /// The server, for the wording of a network or TLS error met mid-session.
    private let host: String
    private let port: Int

    init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Whether bytes arrived that no returned reply accounts for (must be none when TLS starts).
    var hasUnreadBytes: Bool { !replies.isEmpty || parser.hasBufferedBytes }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard failure == nil else { return }
        let buffer = unwrapInboundIn(data)
        parser.append(buffer.readableBytesView)
        do {
            while let reply = try parser.next() { replies.append(reply) }
        } catch {
            fail(error, context: context)
            return
        }
        deliver()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if failure == nil { failure = .connectionClosed(step: step) }
        deliver()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail(TLSErrorWording.classify(error, host: host, port: port), context: context)
    }

    /// The next reply, waiting up to `timeout` for it.
    func nextReply(on eventLoop: EventLoop, timeout: TimeAmount) -> EventLoopFuture<SMTPReply> {
        guard waiter == nil else {
            return eventLoop.makeFailedFuture(SMTPError.protocolError("two readers on one connection"))
        }
        let promise = eventLoop.makePromise(of: SMTPReply.self)
        waiter = (promise, nil)
        deliver()
        if waiter != nil {
            let step = self.step
            waiter?.timer = eventLoop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in
                guard let self, let context = self.context else { return }
                self.fail(.timedOut(step: step), context: context)
            }
        }
        return promise.futureResult
    }

    private func deliver() {
        guard let waiter else { return }
        if !replies.isEmpty {
            self.waiter = nil
            waiter.timer?.cancel()
            waiter.promise.succeed(replies.removeFirst())
        } else if let failure {
            self.waiter = nil
            waiter.timer?.cancel()
            waiter.promise.fail(failure)
        }
    }

    private func fail(_ error: SMTPError, context: ChannelHandlerContext) {
        if failure == nil { failure = error }
        deliver()
        context.close(promise: nil)
    }
}
