import NIOCore

/// Turns received bytes into `ResponseEvent`s and hands them out in batches on request.
///
/// Reading stops while more than `highWatermark` bytes of parsed body data wait for the consumer,
/// so a slow consumer (say, a destination APPEND) throttles the server instead of filling memory.
/// Lives on the channel's event loop only.
final class ResponseHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var parser: ResponseParser
    private var events: [ResponseEvent] = []
    private var eventBytes = 0
    private var waiter: EventLoopPromise<[ResponseEvent]>?
    private var idleTimer: Scheduled<Void>?
    /// The first error of this connection; later ones (a close after a failed handshake) are its echo.
    private(set) var failure: IMAPError?
    private var lastBye: ResponseText?
    private var readHeld = false
    private var context: ChannelHandlerContext?
    /// Whether the server has said anything at all; a port that speaks TLS stays silent.
    private(set) var hasReceivedBytes = false

    private let highWatermark: Int
    private let classifier: ErrorClassifier
    var idleTimeout: TimeAmount
    var timeoutPhase = "a server response"

    init(limits: ParserLimits, idleTimeout: TimeAmount, classifier: ErrorClassifier, highWatermark: Int = 512 * 1024) {
        self.parser = ResponseParser(limits: limits)
        self.idleTimeout = idleTimeout
        self.classifier = classifier
        self.highWatermark = highWatermark
    }

    /// Bytes received but not yet parsed into events: must be zero when STARTTLS switches layers.
    var unparsedBytes: Int { parser.bufferedBytes + eventBytes }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard failure == nil else { return }
        hasReceivedBytes = true
        parser.append(unwrapInboundIn(data))
        do {
            while let event = try parser.next() {
                if case .fetchBodyBytes(let bytes) = event { eventBytes += bytes.readableBytes }
                if case .untagged(.status(.bye, let text)) = event { lastBye = text }
                events.append(event)
            }
        } catch let error as IMAPParseError {
            fail(.protocolError(error.description), context: context)
            return
        } catch {
            fail(.protocolError("\(error)"), context: context)
            return
        }
        deliverIfWaiting()
    }

    func read(context: ChannelHandlerContext) {
        if eventBytes >= highWatermark {
            readHeld = true
        } else {
            context.read()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if failure == nil {
            failure = .connectionClosed(lastBye)
        }
        deliverIfWaiting()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail(classifier.classify(error), context: context)
    }

    /// Completes with every event parsed so far, waiting for at least one.
    func nextEvents(on eventLoop: EventLoop) -> EventLoopFuture<[ResponseEvent]> {
        if !events.isEmpty || failure != nil {
            let promise = eventLoop.makePromise(of: [ResponseEvent].self)
            waiter = promise
            deliverIfWaiting()
            return promise.futureResult
        }
        guard waiter == nil else {
            return eventLoop.makeFailedFuture(IMAPError.usage("two readers on one connection"))
        }
        let promise = eventLoop.makePromise(of: [ResponseEvent].self)
        waiter = promise
        let timeout = idleTimeout
        idleTimer = eventLoop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in
            guard let self, let context = self.context else { return }
            self.fail(.timedOut(phase: self.timeoutPhase), context: context)
        }
        return promise.futureResult
    }

    private func deliverIfWaiting() {
        guard let waiter else { return }
        if !events.isEmpty {
            let batch = events
            events.removeAll(keepingCapacity: true)
            eventBytes = 0
            finishWait()
            waiter.succeed(batch)
            if readHeld, let context {
                readHeld = false
                context.read()
            }
        } else if let failure {
            finishWait()
            waiter.fail(failure)
        }
    }

    private func finishWait() {
        waiter = nil
        idleTimer?.cancel()
        idleTimer = nil
    }

    private func fail(_ error: IMAPError, context: ChannelHandlerContext) {
        if failure == nil { failure = error }
        // Events parsed before the failure are still delivered; the failure follows them.
        deliverIfWaiting()
        context.close(promise: nil)
    }
}
