import ArgumentParser
import Foundation
import HTTPAPI
import Hummingbird
import IMAPClient
import JobRunner
import Logging
import MigrationEngine
import MCPServer
import Metrics
import Notifications
import Prometheus
import ServiceLifecycle
import Store

/// `mailporter serve`: the REST API and the in-process job runner on one store.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Runs the REST API and the job runner.",
        discussion: "Every option falls back to its MAILPORTER_* environment variable (see README.md). "
            + "SIGTERM or SIGINT stops running migrations at a safe point; the next start resumes them.")

    @OptionGroup var storage: DataDirectoryOptions

    @OptionGroup var notifications: NotificationOptions

    @Option(help: "host:port to listen on (env MAILPORTER_LISTEN; default 127.0.0.1:8080).")
    var listen: String?

    @Option(
        name: .customLong("dest-host"), help: "Destination IMAP host (env MAILPORTER_DEST_HOST; default 127.0.0.1).")
    var destHost: String?

    @Option(
        name: .customLong("dest-port"),
        help: "Destination IMAP port (env MAILPORTER_DEST_PORT; default 143, or 993 with ssl).")
    var destPort: Int?

    @Option(name: .customLong("dest-security"), help: "ssl, tls or none (env MAILPORTER_DEST_SECURITY; default none).")
    var destSecurity: String?

    @Option(
        name: .customLong("dest-master-user"),
        help: "Master user for destination logins (env MAILPORTER_DEST_MASTER_USER).")
    var destMasterUser: String?

    @Option(
        name: .customLong("dest-master-password-file"),
        help: "File holding the master password (env MAILPORTER_DEST_MASTER_PASSWORD holds the password itself).")
    var destMasterPasswordFile: String?

    @Option(
        name: .customLong("dest-ca-file"),
        help: "Extra PEM CA to trust for the destination (env MAILPORTER_DEST_CA_FILE).")
    var destCAFile: String?

    @Option(
        name: .customLong("source-ca-file"), help: "Extra PEM CA to trust for sources (env MAILPORTER_SOURCE_CA_FILE).")
    var sourceCAFile: String?

    @Option(
        name: .customLong("max-concurrent-migrations"),
        help: "Migrations running at once, all nodes (env MAILPORTER_MAX_CONCURRENT_MIGRATIONS; default 20).")
    var maxConcurrentMigrations: Int?

    @Option(
        name: .customLong("rate-limit-requests"),
        help: "Requests per token per minute (env MAILPORTER_RATE_LIMIT_REQUESTS; default 120).")
    var rateLimitRequests: Int?

    @Option(
        name: .customLong("rate-limit-writes"),
        help: "Migration writes per token per minute (env MAILPORTER_RATE_LIMIT_WRITES; default 10).")
    var rateLimitWrites: Int?

    @Option(
        name: .customLong("allow-private-hosts"),
        help:
            "true lets sources be private, loopback or link-local addresses (env MAILPORTER_ALLOW_PRIVATE_HOSTS; default false)."
    )
    var allowPrivateHosts: String?

    @Option(
        name: .customLong("node-id"),
        help: "Name this node holds job leases under (env MAILPORTER_NODE_ID; default the host name).")
    var nodeID: String?

    @Option(
        name: .customLong("lease-seconds"),
        help: "How long a dead node's jobs wait before another takes them (env MAILPORTER_LEASE_SECONDS; default 30).")
    var leaseSeconds: Int?

    @Option(
        name: .customLong("batch-size"),
        help:
            "Messages per FETCH/APPEND batch; a cancel, pause or shutdown stops a job between batches (env MAILPORTER_BATCH_SIZE; default 100)."
    )
    var batchSize: Int?

    @Option(
        name: .customLong("storage-pools"),
        help:
            "Storage pool per plan, e.g. starter=15GB,pro=500MB (env MAILPORTER_STORAGE_POOLS; default nano 5GB, starter 15GB, pro 50GB, agency 200GB)."
    )
    var storagePools: String?

    @Option(
        name: .customLong("storage-check-seconds"),
        help:
            "How often accounts with running batches have their storage measured (env MAILPORTER_STORAGE_CHECK_SECONDS; default 30)."
    )
    var storageCheckSeconds: Int?

    @Option(
        name: .customLong("log-level"),
        help: "trace, debug, info, notice, warning, error (env MAILPORTER_LOG_LEVEL; default info).")
    var logLevel: String?

    func run() async throws {
        let settings: ServeSettings
        do {
            settings = try ServeSettings(self, environment: ProcessInfo.processInfo.environment)
        } catch {
            Terminal.printError("error: \(error)")
            throw ExitCode(2)
        }
        let level = settings.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = {
            var logger = Logger(label: "mailporter")
            logger.logLevel = level
            return logger
        }()
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

        let store: Store
        do {
            store = try await settings.dataDirectory.openStore(logger: logger)
        } catch {
            Terminal.printError("error: \(error)")
            throw ExitCode(2)
        }
        let storageWatch = StorageWatch(store: store, configuration: settings.storage, logger: logger)
        let runner = JobRunner(
            store: store, configuration: settings.runner, storageWatch: storageWatch, logger: logger)
        let environment = APIEnvironment(
            store: store, limits: settings.limits,
            hasMasterCredentials: settings.runner.destination.hasMasterCredentials,
            allowPrivateHosts: settings.allowPrivateHosts, sourceTrustRootsPEM: settings.sourceTrustRootsPEM,
            migrationQueued: { runner.wake() }, storagePools: settings.storage.pools,
            storageUsedBytes: { account, reading in
                await storageWatch.usedBytes(accountID: account.id, reading: reading)
            },
            destinationAccepts: { [destination = settings.runner.destination] email in
                guard let credentials = destination.credentials(mailbox: email, targetPassword: nil) else {
                    return false
                }
                let account = MailAccount(server: destination.server, credentials: credentials)
                return (try? await ConnectionCheck.run(account, side: .destination)) != nil
            },
            metrics: registry, logger: logger, mcp: settings.mcp)
        let listen = settings.listen
        var services: [any Service] = [runner, storageWatch]
        if let notices = settings.notices {
            services.append(NoticeDelivery(store: store, configuration: notices, logger: logger))
        }
        let app = Application(
            router: APIRouter.make(environment),
            configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: "mailporter"),
            services: services,
            onServerRunning: { channel in
                let address = channel.localAddress.map { "\($0.ipAddress ?? listen.host):\($0.port ?? listen.port)" }
                logger.info(
                    "mailporter listening",
                    metadata: [
                        "address": "\(address ?? "\(listen.host):\(listen.port)")",
                        "node_id": "\(settings.runner.nodeID)",
                    ])
            },
            logger: logger)
        do {
            try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
        } catch {
            try? await store.close()
            Terminal.printError("error: server_failed: \(error)")
            throw ExitCode(1)
        }
        try? await store.close()
    }
}

/// `serve`'s settings: each option, else its environment variable, else the default; checked up front
/// so a typo stops the start with one clear line instead of a half-working service.
struct ServeSettings {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    var dataDirectory: DataDirectory
    var listen: (host: String, port: Int)
    var limits: APILimits
    var allowPrivateHosts: Bool
    var sourceTrustRootsPEM: [String]
    var runner: JobRunnerConfiguration
    var storage: StorageWatch.Configuration
    var logLevel: Logger.Level
    /// nil: no relay configured, notices stay in the outbox.
    var notices: NoticeDeliveryConfiguration?
    /// `/mcp`: allowed origins, sessions, and the MAILPORTER_ALLOW_MIGRATION gate.
    var mcp: MCPHTTPSettings

    init(_ command: ServeCommand, environment: [String: String]) throws {
        func value(_ option: String?, _ name: String) -> String? {
            let text = (option ?? environment[name])?.trimmingCharacters(in: .whitespacesAndNewlines)
            return text?.isEmpty == false ? text : nil
        }
        func number(_ option: Int?, _ name: String, default fallback: Int, range: ClosedRange<Int>) throws -> Int {
            let number: Int
            if let option {
                number = option
            } else if let text = value(nil, name) {
                guard let parsed = Int(text) else {
                    throw Failure(description: "\(name) must be a number, not \(text)")
                }
                number = parsed
            } else {
                number = fallback
            }
            guard range.contains(number) else {
                throw Failure(description: "\(name) must be between \(range.lowerBound) and \(range.upperBound)")
            }
            return number
        }

        dataDirectory = try command.storage.resolve(environment: environment)

        let listenText = value(command.listen, "MAILPORTER_LISTEN") ?? "127.0.0.1:8080"
        guard let colon = listenText.lastIndex(of: ":"), let port = Int(listenText[listenText.index(after: colon)...]),
            (0...65535).contains(port), colon != listenText.startIndex
        else {
            throw Failure(description: "MAILPORTER_LISTEN must be host:port, e.g. 127.0.0.1:8080 (got \(listenText))")
        }
        var host = String(listenText[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        listen = (host, port)

        let maxConcurrent = try number(
            command.maxConcurrentMigrations, "MAILPORTER_MAX_CONCURRENT_MIGRATIONS",
            default: 20, range: 1...10_000)
        limits = APILimits(
            requestsPerMinute: try number(
                command.rateLimitRequests, "MAILPORTER_RATE_LIMIT_REQUESTS", default: 120, range: 1...10_000_000),
            writesPerMinute: try number(
                command.rateLimitWrites, "MAILPORTER_RATE_LIMIT_WRITES", default: 10, range: 1...10_000_000),
            maxConcurrentMigrations: maxConcurrent)

        switch value(command.allowPrivateHosts, "MAILPORTER_ALLOW_PRIVATE_HOSTS")?.lowercased() {
        case nil, "false", "0", "no": allowPrivateHosts = false
        case "true", "1", "yes": allowPrivateHosts = true
        case let other?:
            throw Failure(description: "MAILPORTER_ALLOW_PRIVATE_HOSTS must be true or false, not \(other)")
        }

        let levelName = value(command.logLevel, "MAILPORTER_LOG_LEVEL")?.lowercased() ?? "info"
        guard let level = Logger.Level(rawValue: levelName) else {
            throw Failure(
                description: "MAILPORTER_LOG_LEVEL must be one of trace, debug, info, notice, warning, error, critical")
        }
        logLevel = level

        do {
            mcp = try MCPHTTPSettings(environment: environment)
        } catch {
            throw Failure(description: error.description)
        }

        let securityName = value(command.destSecurity, "MAILPORTER_DEST_SECURITY")?.lowercased() ?? "none"
        guard let security = ConnectionSecurity(rawValue: securityName) else {
            throw Failure(description: "MAILPORTER_DEST_SECURITY must be ssl, tls or none, not \(securityName)")
        }
        var destination = ServerConfiguration(
            host: value(command.destHost, "MAILPORTER_DEST_HOST") ?? "127.0.0.1",
            port: try number(command.destPort, "MAILPORTER_DEST_PORT", default: security.defaultPort, range: 1...65535),
            security: security)
        if let path = value(command.destCAFile, "MAILPORTER_DEST_CA_FILE") {
            destination.additionalTrustRootsPEM = [try readTextFile(path)]
        }
        sourceTrustRootsPEM =
            try value(command.sourceCAFile, "MAILPORTER_SOURCE_CA_FILE").map { [try readTextFile($0)] } ?? []

        let masterUser = value(command.destMasterUser, "MAILPORTER_DEST_MASTER_USER")
        var masterPassword = environment["MAILPORTER_DEST_MASTER_PASSWORD"].flatMap { $0.isEmpty ? nil : $0 }
        if let path = command.destMasterPasswordFile {
            masterPassword = try readTextFile(path).trimmingCharacters(in: .newlines)
        }
        if (masterUser == nil) != (masterPassword == nil) {
            throw Failure(
                description:
                    "MAILPORTER_DEST_MASTER_USER and MAILPORTER_DEST_MASTER_PASSWORD go together; set both or neither")
        }

        let nodeID = value(command.nodeID, "MAILPORTER_NODE_ID") ?? ProcessInfo.processInfo.hostName
        var runner = JobRunnerConfiguration(
            nodeID: nodeID,
            destination: DestinationServer(server: destination, masterUser: masterUser, masterPassword: masterPassword))
        runner.maxConcurrentMigrations = maxConcurrent
        runner.leaseSeconds = try number(command.leaseSeconds, "MAILPORTER_LEASE_SECONDS", default: 30, range: 3...3600)
        runner.batchSize = try number(command.batchSize, "MAILPORTER_BATCH_SIZE", default: 100, range: 1...1000)
        runner.allowPrivateHosts = allowPrivateHosts
        runner.sourceTrustRootsPEM = sourceTrustRootsPEM
        self.runner = runner

        var pools = StoragePools()
        if let text = value(command.storagePools, "MAILPORTER_STORAGE_POOLS") {
            do {
                pools = try StoragePools(parsing: text)
            } catch {
                throw Failure(description: "MAILPORTER_STORAGE_POOLS: \(error)")
            }
        }
        storage = StorageWatch.Configuration(
            destination: runner.destination, pools: pools,
            interval: .seconds(
                try number(
                    command.storageCheckSeconds, "MAILPORTER_STORAGE_CHECK_SECONDS", default: 30, range: 1...3600)))

        notices = try command.notifications.resolve(environment: environment, nodeID: nodeID)
    }
}
