import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// One TCP (and TLS) connection to an IMAP server: bytes out, parsed events in.
final class Transport: Sendable {
    let channel: Channel
    private let handler: NIOLoopBound<ResponseHandler>
    let configuration: ServerConfiguration
    private let classifier: ErrorClassifier

    private init(
        channel: Channel, handler: NIOLoopBound<ResponseHandler>, configuration: ServerConfiguration,
        classifier: ErrorClassifier
    ) {
        self.channel = channel
        self.handler = handler
        self.configuration = configuration
        self.classifier = classifier
    }

    static func connect(
        _ configuration: ServerConfiguration,
        on chosenLoop: (any EventLoop)? = nil,
        group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "mailporter.imap")
    ) async throws -> Transport {
        let classifier = ErrorClassifier(configuration, logger: logger)
        let address = try await resolve(configuration)
        guard configuration.addressFilter(address) else {
            throw IMAPError.addressNotAllowed(host: configuration.host, address: address.ipAddress ?? "\(address)")
        }
        let sslContext =
            configuration.security == .none ? nil : try makeSSLContext(configuration, classifier: classifier)
        let limits = configuration.limits
        let idleTimeout = configuration.greetingTimeout
        let serverHostname = serverName(configuration)
        let useImplicitTLS = configuration.security == .ssl
        let (host, port) = (configuration.host, configuration.port)
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
                        try channel.pipeline.syncOperations.addHandler(ImplicitTLSGuard(host: host, port: port))
                        let tls = try NIOSSLClientHandler(context: sslContext, serverHostname: serverHostname)
                        try channel.pipeline.syncOperations.addHandler(tls)
                    }
                    let handler = ResponseHandler(limits: limits, idleTimeout: idleTimeout, classifier: classifier)
                    try channel.pipeline.syncOperations.addHandler(handler)
                    handlerPromise.succeed(NIOLoopBound(handler, eventLoop: channel.eventLoop))
                }
            }
        let channel: Channel
        do {
            channel = try await bootstrap.connect(to: address).get()
        } catch {
            handlerPromise.fail(error)
            throw classifier.classify(error, phase: .connecting)
        }
        let handler = try await handlerPromise.futureResult.get()
        return Transport(channel: channel, handler: handler, configuration: configuration, classifier: classifier)
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
    ///
    /// A write that fails because the connection failed reports why it failed: a STARTTLS
    /// handshake refused for the certificate's name fails the CAPABILITY written after it with
    /// "channel closed", but what the user needs to hear is the certificate.
    func write(_ buffers: [ByteBuffer]) async throws {
        let channel = self.channel
        let handler = self.handler
        let classifier = self.classifier
        try await cancellingConnection {
            try await channel.eventLoop.flatSubmit { () -> EventLoopFuture<Void> in
                let written = buffers.map { channel.write($0) }
                channel.flush()
                return (written.last ?? channel.eventLoop.makeSucceededVoidFuture()).flatMapErrorThrowing { error in
                    throw handler.value.failure ?? classifier.classify(error)
                }
            }.get()
        }
    }

    /// Puts TLS under the protocol handler after a successful STARTTLS.
    func startTLS() async throws {
        let sslContext = try Self.makeSSLContext(configuration, classifier: classifier)
        let serverHostname = Self.serverName(configuration)
        let handler = self.handler
        let channel = self.channel
        let classifier = self.classifier
        try await channel.eventLoop.flatSubmit { () -> EventLoopFuture<Void> in
            // Bytes that arrived before the handshake would be unauthenticated plaintext (CVE-2011-0411 style).
            guard handler.value.unparsedBytes == 0 else {
                return channel.eventLoop.makeFailedFuture(IMAPError.tls(.dataBeforeHandshake))
            }
            do {
                let tls = try NIOSSLClientHandler(context: sslContext, serverHostname: serverHostname)
                try channel.pipeline.syncOperations.addHandler(tls, position: .first)
                return channel.eventLoop.makeSucceededVoidFuture()
            } catch {
                return channel.eventLoop.makeFailedFuture(classifier.classify(error))
            }
        }.get()
    }

    func close() async {
        try? await channel.close()
    }

    /// Whether this connection's port answers a TLS handshake, asked over a second connection
    /// (see `TLSProbe`); for a plaintext connection whose greeting is late.
    /// A server that has sent any byte speaks plaintext: no second connection is made then.
    func peerSpeaksTLS(timeout: TimeAmount) async -> Bool {
        let handler = self.handler
        let silent = (try? await channel.eventLoop.submit { !handler.value.hasReceivedBytes }.get()) ?? false
        guard silent, let address = channel.remoteAddress else { return false }
        return await TLSProbe.speaksTLS(
            at: address, serverHostname: Self.serverName(configuration),
            on: channel.eventLoop, timeout: timeout)
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

    static func makeSSLContext(_ configuration: ServerConfiguration, classifier: ErrorClassifier) throws
        -> NIOSSLContext
    {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        if configuration.verifyCertificates {
            if !configuration.additionalTrustRootsPEM.isEmpty {
                var certificates: [NIOSSLCertificate] = []
                for pem in configuration.additionalTrustRootsPEM {
                    do {
                        certificates += try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8))
                    } catch {
                        throw classifier.classify(error)
                    }
                }
                guard !certificates.isEmpty else { throw IMAPError.tls(.invalidTrustRoots) }
                tls.additionalTrustRoots = [.certificates(certificates)]
            }
        } else {
            tls.certificateVerification = .none
        }
        do {
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw classifier.classify(error)
        }
    }

    /// The name sent for SNI and checked against the certificate; an address is checked as one.
    static func serverName(_ configuration: ServerConfiguration) -> String? {
        isIPAddress(configuration.host) ? nil : configuration.host
    }

    static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }
}
