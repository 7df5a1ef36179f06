import NIOCore
import NIOPosix
import NIOSSL

/// Tells TLS from plaintext by the first bytes a server sends, so a port set up for the other kind
/// of connection is named as such instead of failing as a broken handshake or a missing greeting.
enum TLSRecord {
    /// Whether `bytes` can be the start of a TLS record: a content type (change cipher spec, alert,
    /// handshake, application data) and major version 3. An IMAP greeting starts with `*`.
    static func begins(_ bytes: ByteBuffer) -> Bool {
        guard let type = bytes.getInteger(at: bytes.readerIndex, as: UInt8.self) else { return false }
        guard (0x14...0x17).contains(type) else { return false }
        guard let major = bytes.getInteger(at: bytes.readerIndex + 1, as: UInt8.self) else { return true }
        return major == 0x03
    }
}

/// First in the pipeline of an implicit-TLS connection: if the server's first bytes are not TLS,
/// the port speaks plaintext and that is the error, not whatever the handshake makes of them.
final class ImplicitTLSGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let host: String
    private let port: Int

    init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard TLSRecord.begins(unwrapInboundIn(data)) else {
            context.fireErrorCaught(IMAPError.tls(.portSpeaksPlaintext(host: host, port: port)))
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

/// Asks a port, on a connection of its own, whether it speaks TLS: a TLS port says nothing until
/// the client starts a handshake, so a client expecting a plaintext greeting would otherwise wait
/// for the whole greeting timeout.
enum TLSProbe {
    /// No verification: only the kind of answer matters, and nothing is sent over this connection.
    private static let context: NIOSSLContext? = {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        return try? NIOSSLContext(configuration: configuration)
    }()

    /// True when the first bytes answering a ClientHello are a TLS record; false for plaintext,
    /// silence within `timeout`, a failed connection, or cancellation.
    static func speaksTLS(
        at address: SocketAddress, serverHostname: String?, on eventLoop: any EventLoop,
        timeout: TimeAmount
    ) async -> Bool {
        guard let context else { return false }
        let verdict = eventLoop.makePromise(of: Bool.self)
        let timer = eventLoop.scheduleTask(in: timeout) { verdict.succeed(false) }
        let connected = ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(FirstBytes(verdict: verdict))
                    try channel.pipeline.syncOperations.addHandler(
                        NIOSSLClientHandler(context: context, serverHostname: serverHostname))
                }
            }
            .connect(to: address)
        connected.whenFailure { _ in verdict.succeed(false) }
        let speaksTLS = await withTaskCancellationHandler {
            (try? await verdict.futureResult.get()) ?? false
        } onCancel: {
            verdict.succeed(false)
        }
        timer.cancel()
        connected.whenSuccess { $0.close(promise: nil) }
        return speaksTLS
    }

    /// Completes the verdict with the first bytes received, and keeps them from the handshake.
    private final class FirstBytes: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer

        private let verdict: EventLoopPromise<Bool>

        init(verdict: EventLoopPromise<Bool>) { self.verdict = verdict }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            verdict.succeed(TLSRecord.begins(unwrapInboundIn(data)))
        }

        func channelInactive(context: ChannelHandlerContext) {
            verdict.succeed(false)
            context.fireChannelInactive()
        }
    }
}
