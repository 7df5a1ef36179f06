import NIOCore
import NIOPosix
import NIOSSL

/// One TCP (and TLS) connection to an IMAP server: bytes out, parsed events in.
final class Transport: Sendable {
    let channel: Channel
    private let handler: NIOLoopBound<ResponseHandler>
    let configuration: ServerConfiguration

    private init(channel: Channel, handler: NIOLoopBound<ResponseHandler>, configuration: ServerConfiguration) {
        self.channel = channel
        self.handler = handler
        self.configuration = configuration
    }

    static func connect(
        _ configuration: ServerConfiguration,
        on chosenLoop: (any EventLoop)? = nil,
        group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> Transport {
        let address = try await resolve(configuration)
        guard configuration.addressFilter(address) else {
            throw IMAPError.addressNotAllowed(host: configuration.host, address: address.ipAddress ?? "\(address)")
        }
        let sslContext = configuration.security == .none ? nil : try makeSSLContext(configuration)
        let limits = configuration.limits
        let idleTimeout = configuration.greetingTimeout
        let serverHostname = isIPAddress(configuration.host) ? nil : configuration.host
        let useImplicitTLS = configuration.security == .ssl
        // The handler is handed out by the initializer itself: a server that closes at once (or sends
        // garbage, which closes the channel) may have emptied the pipeline before a lookup could run.
        let eventLoop = chosenLoop ?? group.next()
        let handlerPromise = eventLoop.makePromise(of: NIOLoopBound<ResponseHandler>.self)
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(configuration.connectTimeout)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if useImplicitTLS, let sslContext {
                        let tls = try NIOSSLClientHandler(context: sslContext, serverHostname: serverHostname)
                        try channel.pipeline.syncOperations.addHandler(tls)
                    }
                    let handler = ResponseHandler(limits: limits, idleTimeout: idleTimeout)
                    try channel.pipeline.syncOperations.addHandler(handler)
                    handlerPromise.succeed(NIOLoopBound(handler, eventLoop: channel.eventLoop))
                }
            }
        let channel: Channel
        do {
            channel = try await bootstrap.connect(to: address).get()
        } catch {
            handlerPromise.fail(error)
            throw classifyConnectError(error, configuration: configuration)
        }
        let handler = try await handlerPromise.futureResult.get()
        return Transport(channel: channel, handler: handler, configuration: configuration)
    }

    /// Waits for at least one event and returns all that are parsed.
    func nextEvents() async throws -> [ResponseEvent] {
        let handler = self.handler
        let eventLoop = channel.eventLoop
        return try await cancellingConnection {
            try await eventLoop.flatSubmit { handler.value.nextEvents(on: eventLoop) }.get()
        }
    }

    /// Runs a wait on the server; cancelling the task closes the connection, so a stop never waits
    /// for a slow or silent server (up to the idle timeout) and surfaces as `CancellationError`.
    /// The session is unusable afterwards, which is what a cancelled copy wants: its resume
    /// reconciles whatever APPEND was cut off.
    private func cancellingConnection<T: Sendable>(_ operation: () async throws -> T) async throws -> T {
        try Task.checkCancellation()
        let channel = self.channel
        do {
            return try await withTaskCancellationHandler {
                try await operation()
            } onCancel: {
                channel.close(promise: nil)
            }
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw error
        }
    }

    func setTimeout(_ timeout: TimeAmount, phase: String) async throws {
        let handler = self.handler
        try await channel.eventLoop.submit {
            handler.value.idleTimeout = timeout
            handler.value.timeoutPhase = phase
        }.get()
    }

    func write(_ buffer: ByteBuffer) async throws {
        try await write([buffer])
    }

    /// Writes the buffers in order with one flush, in one task on the event loop.
    func write(_ buffers: [ByteBuffer]) async throws {
        let channel = self.channel
        try await cancellingConnection {
            do {
                try await channel.eventLoop.flatSubmit { () -> EventLoopFuture<Void> in
                    let written = buffers.map { channel.write($0) }
                    channel.flush()
                    return written.last ?? channel.eventLoop.makeSucceededVoidFuture()
                }.get()
            } catch {
                throw ResponseHandler.classify(error)
            }
        }
    }

    /// Puts TLS under the protocol handler after a successful STARTTLS.
    func startTLS() async throws {
        let sslContext = try Self.makeSSLContext(configuration)
        let serverHostname = Self.isIPAddress(configuration.host) ? nil : configuration.host
        let handler = self.handler
        let channel = self.channel
        try await channel.eventLoop.flatSubmit { () -> EventLoopFuture<Void> in
            // Bytes that arrived before the handshake would be unauthenticated plaintext (CVE-2011-0411 style).
            guard handler.value.unparsedBytes == 0 else {
                return channel.eventLoop.makeFailedFuture(IMAPError.tls("server sent data before the TLS handshake"))
            }
            do {
                let tls = try NIOSSLClientHandler(context: sslContext, serverHostname: serverHostname)
                try channel.pipeline.syncOperations.addHandler(tls, position: .first)
                return channel.eventLoop.makeSucceededVoidFuture()
            } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
        }.get()
    }

    func close() async {
        try? await channel.close()
    }

    // MARK: Helpers

    private static func resolve(_ configuration: ServerConfiguration) async throws -> SocketAddress {
        let host = configuration.host
        let port = configuration.port
        guard (1...65535).contains(port) else { throw IMAPError.usage("port \(port) out of range") }
        // An address needs no resolver (getaddrinfo still asks the network configuration).
        if let address = try? SocketAddress(ipAddress: host, port: port) { return address }
        do {
            return try await NIOThreadPool.singleton.runIfActive {
                try SocketAddress.makeAddressResolvingHost(host, port: port)
            }
        } catch {
            throw IMAPError.hostUnreachable(host: host, detail: "the name could not be resolved")
        }
    }

    static func makeSSLContext(_ configuration: ServerConfiguration) throws -> NIOSSLContext {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        if configuration.verifyCertificates {
            if !configuration.additionalTrustRootsPEM.isEmpty {
                var certificates: [NIOSSLCertificate] = []
                for pem in configuration.additionalTrustRootsPEM {
                    certificates += try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8))
                }
                tls.additionalTrustRoots = [.certificates(certificates)]
            }
        } else {
            tls.certificateVerification = .none
        }
        do {
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw IMAPError.tls("cannot set up TLS: \(error)")
        }
    }

    static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }

    private static func classifyConnectError(_ error: Error, configuration: ServerConfiguration) -> IMAPError {
        if let error = error as? ChannelError, case .connectTimeout = error {
            return .timedOut(phase: "the connection to \(configuration.host):\(configuration.port)")
        }
        if let error = error as? IOError {
            switch error.errnoCode {
            case 111: return .connectionRefused(host: configuration.host, port: configuration.port)
            case 113, 101, 99: return .hostUnreachable(host: configuration.host, detail: "no route to host")
            case 110: return .timedOut(phase: "the connection to \(configuration.host):\(configuration.port)")
            default: return .hostUnreachable(host: configuration.host, detail: "\(error)")
            }
        }
        return ResponseHandler.classify(error)
    }
}
