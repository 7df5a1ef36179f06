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

/// `mailporter serve`: the REST API and the in-process job runner on one store; with
/// `--no-runner`, the API alone (the jobs it queues are run by `mailporter worker` nodes).
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Runs the REST API and the job runner.",
        discussion: "Every option falls back to its MAILPORTER_* environment variable (see README.md). "
            + "SIGTERM or SIGINT stops running migrations at a safe point; the next start resumes them.")

    @OptionGroup var storage: DataDirectoryOptions

    @OptionGroup var node: RunnerOptions

    @Option(help: "host:port to listen on (env MAILPORTER_LISTEN; default 127.0.0.1:8080).")
    var listen: String?

    @Flag(
        name: .customLong("no-runner"),
        help:
            "Serve the API only: no job runner, storage watch or notice delivery; `mailporter worker` nodes on the same PostgreSQL database run the jobs (env MAILPORTER_NO_RUNNER=true)."
    )
    var noRunner = false

    @Option(
        name: .customLong("rate-limit-requests"),
        help: "Requests per token per minute (env MAILPORTER_RATE_LIMIT_REQUESTS; default 120).")
    var rateLimitRequests: Int?

    @Option(
        name: .customLong("rate-limit-writes"),
        help: "Migration writes per token per minute (env MAILPORTER_RATE_LIMIT_WRITES; default 10).")
    var rateLimitWrites: Int?

    func run() async throws {
        let settings = try await Terminal.orExit {
            try ServeSettings(self, environment: ProcessInfo.processInfo.environment)
        }
        let (logger, registry) = settings.node.bootstrap()

        let store = try await Terminal.orExit { try await settings.dataDirectory.openStore(logger: logger) }
        var storageConfiguration = settings.node.storage
        // Without the runner nothing renews the watch's measurements: a batch's GET starts one.
        storageConfiguration.measuresOnCachedReads = settings.noRunner
        let storageWatch = StorageWatch(store: store, configuration: storageConfiguration, logger: logger)
        let runner =
            settings.noRunner
            ? nil
            : JobRunner(store: store, configuration: settings.node.runner, storageWatch: storageWatch, logger: logger)
        let environment = APIEnvironment(
            store: store, limits: settings.limits,
            hasMasterCredentials: settings.node.runner.destination.hasMasterCredentials,
            allowPrivateHosts: settings.node.allowPrivateHosts, sourceTrustRootsPEM: settings.node.sourceTrustRootsPEM,
            // With no runner here the workers hear of it from the store (PostgreSQL NOTIFY).
            migrationQueued: { runner?.wake() }, storagePools: settings.node.storage.pools,
            storageUsedBytes: { account, reading in
                await storageWatch.usedBytes(accountID: account.id, reading: reading)
            },
            destinationAccepts: { [destination = settings.node.runner.destination] email in
                guard let credentials = destination.credentials(mailbox: email, targetPassword: nil) else {
                    return false
                }
                let account = MailAccount(server: destination.server, credentials: credentials)
                return (try? await ConnectionCheck.run(account, side: .destination)) != nil
            },
            metrics: registry, logger: logger, mcp: settings.mcp)
        let listen = settings.listen
        var services: [any Service] = []
        if let runner {
            services = runner.servicesWithIt(
                storageWatch: storageWatch, settings: settings.node, store: store, logger: logger)
        } else if case .sqlite = settings.dataDirectory.database {
            logger.warning(
                "no job runner here, and SQLite sends no work notices: a worker on this data directory starts queued jobs at its next poll"
            )
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
                        "node_id": "\(settings.node.runner.nodeID)",
                        "runner": "\(runner != nil)",
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

extension JobRunner {
    /// The runner with the services that go with it on a node that runs jobs (`serve`, `worker`):
    /// the storage watch, and notice delivery when a relay is configured.
    func servicesWithIt(
        storageWatch: StorageWatch, settings: RunnerSettings, store: Store, logger: Logger
    ) -> [any Service] {
        var services: [any Service] = [self, storageWatch]
        if let notices = settings.notices {
            services.append(NoticeDelivery(store: store, configuration: notices, logger: logger))
        }
        return services
    }
}

/// `serve`'s settings: the node's (`RunnerSettings`, shared with `worker`) and the API's.
struct ServeSettings {
    var dataDirectory: DataDirectory
    var node: RunnerSettings
    var listen: (host: String, port: Int)
    var limits: APILimits
    /// `--no-runner`: the API only.
    var noRunner: Bool
    /// `/mcp`: allowed origins, sessions, and the MAILPORTER_ALLOW_MIGRATION gate.
    var mcp: MCPHTTPSettings

    init(_ command: ServeCommand, environment: [String: String]) throws {
        let values = SettingValues(environment: environment)
        dataDirectory = try command.storage.resolve(environment: environment)
        listen = try values.listenAddress(command.listen, "MAILPORTER_LISTEN", default: "127.0.0.1:8080")
        node = try RunnerSettings(command.node, environment: environment)
        noRunner = try command.noRunner || values.flag(nil, "MAILPORTER_NO_RUNNER")
        limits = APILimits(
            requestsPerMinute: try values.number(
                command.rateLimitRequests, "MAILPORTER_RATE_LIMIT_REQUESTS", default: 120, range: 1...10_000_000),
            writesPerMinute: try values.number(
                command.rateLimitWrites, "MAILPORTER_RATE_LIMIT_WRITES", default: 10, range: 1...10_000_000),
            maxConcurrentMigrations: node.runner.maxConcurrentMigrations)
        do {
            mcp = try MCPHTTPSettings(environment: environment)
        } catch {
            throw SettingsFailure(description: error.description)
        }
    }
}
