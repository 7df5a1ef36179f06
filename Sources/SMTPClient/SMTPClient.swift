import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// How to reach the relay and what to send as.
public struct SMTPConfiguration: Sendable {
    public var endpoint: SMTPEndpoint
    public var credentials: SMTPCredentials?
    /// Extra PEM certificates to trust (a private relay's CA); the system roots stay trusted.
    public var additionalTrustRootsPEM: [String]
    /// The name given in EHLO.
    public var clientName: String
    public var connectTimeout: TimeAmount
    /// Longest wait for any one reply (RFC 5321 §4.5.3.2 suggests minutes; a notice can wait).
    public var replyTimeout: TimeAmount
    /// The wait for the reply to the message itself, which the server may scan first.
    public var messageTimeout: TimeAmount

    /// The longest one delivery can take under these timeouts (connect, up to ten replies, the
    /// message), in whole seconds: a delivery lease must outlast it, or another node sends again.
    public var longestSessionSeconds: Int {
        Int((connectTimeout.nanoseconds + 10 * replyTimeout.nanoseconds + messageTimeout.nanoseconds) / 1_000_000_000)
    }

    public init(
        endpoint: SMTPEndpoint, credentials: SMTPCredentials? = nil, additionalTrustRootsPEM: [String] = [],
        clientName: String = "mailporter.localdomain", connectTimeout: TimeAmount = .seconds(15),
        replyTimeout: TimeAmount = .seconds(60), messageTimeout: TimeAmount = .seconds(120)
    ) {
        self.endpoint = endpoint
        self.credentials = credentials
        self.additionalTrustRootsPEM = additionalTrustRootsPEM
        self.clientName = clientName
        self.connectTimeout = connectTimeout
        self.replyTimeout = replyTimeout
        self.messageTimeout = messageTimeout
    }
}

/// Sends one mail per connection through the configured relay. The conversation's rules live in
/// `SMTPSessionMachine`; this type only moves bytes and waits, with a timeout on every wait.
public struct SMTPClient: Sendable {
    public let configuration: SMTPConfiguration
    private let logger: Logger

    public init(configuration: SMTPConfiguration, logger: Logger = Logger(label: "mailporter.smtp")) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Delivers `message` to its `to` recipients, from `envelopeSender`. Throws `SMTPError`.
    public func send(_ message: MailMessage, envelopeSender: String) async throws(SMTPError) {
        let envelope = try SMTPEnvelope(sender: envelopeSender, recipients: message.to)
        let data = try MessageData.encode(message.rendered())
        var machine = SMTPSessionMachine(
            security: configuration.endpoint.security, credentials: configuration.credentials,
            clientName: configuration.clientName, envelope: envelope, message: data)
        let connection: SMTPConnection
        do {
            connection = try await SMTPConnection.connect(configuration)
        } catch {
            throw TLSErrorWording.classify(
                error, host: configuration.endpoint.host, port: configuration.endpoint.port)
        }
        do {
            try await converse(&machine, over: connection)
            await connection.close()
        } catch {
            await connection.close()
            throw TLSErrorWording.classify(error, host: configuration.endpoint.host, port: configuration.endpoint.port)
        }
    }

    private func converse(_ machine: inout SMTPSessionMachine, over connection: SMTPConnection) async throws {
        var timeout = configuration.replyTimeout
        while true {
            let (reply, more) = try await connection.nextReply(step: machine.step, timeout: timeout)
            var action = machine.replyReceived(reply, moreBytesBuffered: more)
            timeout = configuration.replyTimeout
            if case .startTLS = action {
                try await connection.startTLS(configuration)
                action = machine.tlsEstablished()
            }
            switch action {
            case .send(let line):
                if case .plain(let text) = line {
                    logger.trace("smtp command", metadata: ["command": "\(text)"])
                }
                try await connection.write(Array((line.text + "\r\n").utf8))
            case .sendMessage(let bytes):
                timeout = configuration.messageTimeout
                try await connection.write(bytes)
            case .delivered:
                // The mail is the server's now; QUIT is a courtesy whose answer is not awaited.
                try? await connection.write(Array("QUIT\r\n".utf8))
                return
            case .fail(let error):
                throw error
            case .startTLS:
                throw SMTPError.protocolError("the server asked for TLS twice")
            }
        }
    }
}

/// One TCP (and TLS) connection to the relay.
final class SMTPConnection: Sendable {
    private let channel: Channel
    private let handler: NIOLoopBound<ReplyHandler>
    private let host: String

    private init(channel: Channel, handler: NIOLoopBound<ReplyHandler>, host: String) {
        self.channel = channel
        self.handler = handler
        self.host = host
    }

    static func connect(_ configuration: SMTPConfiguration) async throws -> SMTPConnection {
        let endpoint = configuration.endpoint
        let sslContext = endpoint.security == .implicitTLS ? try makeSSLContext(configuration) : nil
        let serverName = serverName(endpoint.host)
        let eventLoop = MultiThreadedEventLoopGroup.singleton.next()
        let handlerPromise = eventLoop.makePromise(of: NIOLoopBound<ReplyHandler>.self)
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(configuration.connectTimeout)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        let tls = try NIOSSLClientHandler(context: sslContext, serverHostname: serverName)
                        try channel.pipeline.syncOperations.addHandler(tls)
                    }
                    let handler = ReplyHandler(
                        host: configuration.endpoint.host, port: configuration.endpoint.port)
                    try channel.pipeline.syncOperations.addHandler(handler)
                    handlerPromise.succeed(NIOLoopBound(handler, eventLoop: channel.eventLoop))
                }
            }
        let channel: Channel
        do {
            channel = try await bootstrap.connect(host: endpoint.host, port: endpoint.port).get()
        } catch {
            handlerPromise.fail(error)
            throw error
        }
        let handler = try await handlerPromise.futureResult.get()
        return SMTPConnection(channel: channel, handler: handler, host: endpoint.host)
    }

    /// The next reply, and whether more bytes than that reply are already in.
    func nextReply(step: String, timeout: TimeAmount) async throws -> (SMTPReply, Bool) {
        let handler = self.handler
        let eventLoop = channel.eventLoop
        return try await eventLoop.flatSubmit { () -> EventLoopFuture<(SMTPReply, Bool)> in
            handler.value.step = step
            return handler.value.nextReply(on: eventLoop, timeout: timeout).map { ($0, handler.value.hasUnreadBytes) }
        }.get()
    }

    func write(_ bytes: [UInt8]) async throws {
        let channel = self.channel
        let handler = self.handler
        try await channel.eventLoop.flatSubmit {
            channel.writeAndFlush(channel.allocator.buffer(bytes: bytes)).flatMapErrorThrowing { error in
                throw handler.value.failure ?? error
            }
        }.get()
    }

    /// Puts TLS under the reply handler after the server's go-ahead to STARTTLS.
    func startTLS(_ configuration: SMTPConfiguration) async throws {
        let sslContext = try Self.makeSSLContext(configuration)
        let serverName = Self.serverName(host)
        let channel = self.channel
        let handler = self.handler
        try await channel.eventLoop.flatSubmit { () -> EventLoopFuture<Void> in
            // Checked again at the switch itself: bytes may have come in since the go-ahead was read.
            guard !handler.value.hasUnreadBytes else {
                return channel.eventLoop.makeFailedFuture(
                    SMTPError.tls("the server sent data before the TLS handshake (a possible injection); refusing"))
            }
            do {
                let tls = try NIOSSLClientHandler(context: sslContext, serverHostname: serverName)
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

    static func makeSSLContext(_ configuration: SMTPConfiguration) throws -> NIOSSLContext {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        if !configuration.additionalTrustRootsPEM.isEmpty {
            var certificates: [NIOSSLCertificate] = []
            for pem in configuration.additionalTrustRootsPEM {
                certificates += try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8))
            }
            guard !certificates.isEmpty else {
                throw SMTPError.tls("the CA file holds no PEM certificate")
            }
            tls.additionalTrustRoots = [.certificates(certificates)]
        }
        return try NIOSSLContext(configuration: tls)
    }

    /// The name sent for SNI and checked against the certificate; an address is checked as one.
    static func serverName(_ host: String) -> String? {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil ? nil : host
    }
}
