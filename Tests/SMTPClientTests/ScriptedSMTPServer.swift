import NIOCore
import NIOPosix
import Synchronization

/// A fake relay for faults a real server will not make: it greets (or not), and answers each
/// line the client sends with whatever `answer` returns for it (nil: silence).
final class ScriptedSMTPServer: Sendable {
    let port: Int
    private let channel: Channel
    private let log: LineLog

    /// Every line the client sent, in order (the message body included).
    var received: [String] { log.lines.withLock { $0 } }

    init(greeting: String?, answer: @escaping @Sendable (String) -> String?) async throws {
        let log = LineLog()
        self.log = log
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        LineHandler(greeting: greeting, answer: answer) { line in log.lines.withLock { $0.append(line) }
                        })
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        self.channel = channel
        self.port = channel.localAddress?.port ?? 0
    }

    func stop() async {
        try? await channel.close()
    }

    private final class LineLog: Sendable {
        let lines = Mutex<[String]>([])
    }

    private final class LineHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let greeting: String?
        let answer: @Sendable (String) -> String?
        let record: @Sendable (String) -> Void
        var buffer: [UInt8] = []

        init(
            greeting: String?, answer: @escaping @Sendable (String) -> String?,
            record: @escaping @Sendable (String) -> Void
        ) {
            self.greeting = greeting
            self.answer = answer
            self.record = record
        }

        func channelActive(context: ChannelHandlerContext) {
            if let greeting { send(greeting, context: context) }
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            buffer += unwrapInboundIn(data).readableBytesView
            while let newline = buffer.firstIndex(of: 0x0A) {
                var line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                if line.last == 0x0D { line.removeLast() }
                let text = String(decoding: line, as: UTF8.self)
                record(text)
                if let reply = answer(text) { send(reply, context: context) }
            }
        }

        private func send(_ text: String, context: ChannelHandlerContext) {
            context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: text)), promise: nil)
        }
    }
}
