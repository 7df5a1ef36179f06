import ArgumentParser
import Foundation
import HTTPAPI
import Hummingbird
import JobRunner
import Logging
import ServiceLifecycle
import Store

/// `mailporter worker`: the job runner with the storage watch and notice delivery, without the
/// API; a small listener answers `/healthz` and `/metrics` for the supervisor and Prometheus.
/// Any number of workers (and `serve` nodes) share one PostgreSQL database.
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Runs the job runner without the API (GET /healthz and /metrics only).",
        discussion: "Takes serve's runner, destination, storage and notice options, each falling back to its "
            + "MAILPORTER_* environment variable (see README.md). SIGTERM or SIGINT stops running migrations "
            + "at a safe point and hands them back to the queue.")

    @OptionGroup var storage: DataDirectoryOptions

    @OptionGroup var node: RunnerOptions

    @Option(
        help: "host:port for /healthz and /metrics (env MAILPORTER_WORKER_LISTEN; default 127.0.0.1:8081).")
    var listen: String?

    func run() async throws {
        let settings = try await Terminal.orExit {
            try WorkerSettings(self, environment: ProcessInfo.processInfo.environment)
        }
        let (logger, registry) = settings.node.bootstrap()
        let store = try await Terminal.orExit { try await settings.dataDirectory.openStore(logger: logger) }
        let storageWatch = StorageWatch(store: store, configuration: settings.node.storage, logger: logger)
        let runner = JobRunner(
            store: store, configuration: settings.node.runner, storageWatch: storageWatch, logger: logger)
        let listen = settings.listen
        let nodeID = settings.node.runner.nodeID
        let app = Application(
            router: APIRouter.makeOperations(
                store: store, metrics: registry, logger: logger, status: [("role", "worker"), ("node_id", nodeID)]),
            configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: "mailporter-worker"),
            services: runner.servicesWithIt(
                storageWatch: storageWatch, settings: settings.node, store: store, logger: logger),
            onServerRunning: { channel in
                let address = channel.localAddress.map { "\($0.ipAddress ?? listen.host):\($0.port ?? listen.port)" }
                logger.info(
                    "mailporter worker listening",
                    metadata: [
                        "address": "\(address ?? "\(listen.host):\(listen.port)")", "node_id": "\(nodeID)",
                        "work_notices": "\(store.announcesWork)",
                    ])
            },
            logger: logger)
        do {
            try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
        } catch {
            try? await store.close()
            Terminal.printError("error: worker_failed: \(error)")
            throw ExitCode(1)
        }
        try? await store.close()
    }
}

/// `worker`'s settings: the node's (`RunnerSettings`, as `serve` reads them) and its listener.
struct WorkerSettings {
    var dataDirectory: DataDirectory
    var node: RunnerSettings
    var listen: (host: String, port: Int)

    init(_ command: WorkerCommand, environment: [String: String]) throws {
        dataDirectory = try command.storage.resolve(environment: environment)
        listen = try SettingValues(environment: environment).listenAddress(
            command.listen, "MAILPORTER_WORKER_LISTEN", default: "127.0.0.1:8081")
        node = try RunnerSettings(command.node, environment: environment)
    }
}
