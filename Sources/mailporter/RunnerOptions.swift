import ArgumentParser
import Foundation
import IMAPClient
import JobRunner
import Logging
import Metrics
import MigrationEngine
import Notifications
import Prometheus
import Store

/// A setting that stops the start: one line naming the variable and what it must be.
struct SettingsFailure: Error, CustomStringConvertible {
    var description: String
}

/// Reads a setting: the command-line option, else its `MAILPORTER_*` variable, else the default.
/// The one home of that rule for `serve` and `worker`.
struct SettingValues {
    var environment: [String: String]

    /// The option's or the variable's text, trimmed; nil when neither is set (blank counts as unset).
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
                throw SettingsFailure(description: "\(name) must be a number, not \(text)")
            }
            number = parsed
        } else {
            number = fallback
        }
        guard range.contains(number) else {
            throw SettingsFailure(description: "\(name) must be between \(range.lowerBound) and \(range.upperBound)")
        }
        return number
    }

    func flag(_ option: String?, _ name: String, default fallback: Bool = false) throws -> Bool {
        switch value(option, name)?.lowercased() {
        case nil: fallback
        case "false", "0", "no": false
        case "true", "1", "yes": true
        case let other?: throw SettingsFailure(description: "\(name) must be true or false, not \(other)")
        }
    }

    /// `host:port` (`[::1]:8080` for IPv6), port 0 for any free one.
    func listenAddress(_ option: String?, _ name: String, default fallback: String) throws -> (
        host: String, port: Int
    ) {
        let text = value(option, name) ?? fallback
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port), colon != text.startIndex
        else {
            throw SettingsFailure(description: "\(name) must be host:port, e.g. \(fallback) (got \(text))")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }
}

/// What every node that runs jobs or answers the API needs: the destination, the runner, storage
/// pools, notices and logging. `serve` and `worker` both take these options.
struct RunnerOptions: ParsableArguments {
    @OptionGroup var notifications: NotificationOptions

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
        name: .customLong("node-max-jobs"),
        help:
            "Migrations this process runs at once, within the global limit (env MAILPORTER_NODE_MAX_JOBS; default the global limit)."
    )
    var nodeMaxJobs: Int?

    @Option(
        name: .customLong("allow-private-hosts"),
        help:
            "true lets sources be private, loopback or link-local addresses (env MAILPORTER_ALLOW_PRIVATE_HOSTS; default false)."
    )
    var allowPrivateHosts: String?

    @Option(
        name: .customLong("node-id"),
        help:
            "Name this node holds job leases under, unique per process (env MAILPORTER_NODE_ID; default the host name)."
    )
    var nodeID: String?

    @Option(
        name: .customLong("lease-seconds"),
        help: "How long a dead node's jobs wait before another takes them (env MAILPORTER_LEASE_SECONDS; default 30).")
    var leaseSeconds: Int?

    @Option(
        name: .customLong("poll-seconds"),
        help:
            "Longest wait between looks at the queue when nothing wakes the runner (env MAILPORTER_POLL_SECONDS; default 2)."
    )
    var pollSeconds: Int?

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
}

/// `RunnerOptions` resolved and checked up front, so a typo stops the start with one clear line
/// instead of a half-working service.
struct RunnerSettings {
    var runner: JobRunnerConfiguration
    var storage: StorageWatch.Configuration
    /// nil: no relay configured, notices stay in the outbox.
    var notices: NoticeDeliveryConfiguration?
    var allowPrivateHosts: Bool
    var sourceTrustRootsPEM: [String]
    var logLevel: Logger.Level

    init(_ options: RunnerOptions, environment: [String: String]) throws {
        let values = SettingValues(environment: environment)

        let levelName = values.value(options.logLevel, "MAILPORTER_LOG_LEVEL")?.lowercased() ?? "info"
        guard let level = Logger.Level(rawValue: levelName) else {
            throw SettingsFailure(
                description: "MAILPORTER_LOG_LEVEL must be one of trace, debug, info, notice, warning, error, critical")
        }
        logLevel = level
        allowPrivateHosts = try values.flag(options.allowPrivateHosts, "MAILPORTER_ALLOW_PRIVATE_HOSTS")

        let securityName = values.value(options.destSecurity, "MAILPORTER_DEST_SECURITY")?.lowercased() ?? "none"
        guard let security = ConnectionSecurity(rawValue: securityName) else {
            throw SettingsFailure(description: "MAILPORTER_DEST_SECURITY must be ssl, tls or none, not \(securityName)")
        }
        var destination = ServerConfiguration(
            host: values.value(options.destHost, "MAILPORTER_DEST_HOST") ?? "127.0.0.1",
            port: try values.number(
                options.destPort, "MAILPORTER_DEST_PORT", default: security.defaultPort, range: 1...65535),
            security: security)
        if let path = values.value(options.destCAFile, "MAILPORTER_DEST_CA_FILE") {
            destination.additionalTrustRootsPEM = [try readTextFile(path)]
        }
        sourceTrustRootsPEM =
            try values.value(options.sourceCAFile, "MAILPORTER_SOURCE_CA_FILE").map { [try readTextFile($0)] } ?? []

        let masterUser = values.value(options.destMasterUser, "MAILPORTER_DEST_MASTER_USER")
        var masterPassword = environment["MAILPORTER_DEST_MASTER_PASSWORD"].flatMap { $0.isEmpty ? nil : $0 }
        if let path = options.destMasterPasswordFile {
            masterPassword = try readTextFile(path).trimmingCharacters(in: .newlines)
        }
        if (masterUser == nil) != (masterPassword == nil) {
            throw SettingsFailure(
                description:
                    "MAILPORTER_DEST_MASTER_USER and MAILPORTER_DEST_MASTER_PASSWORD go together; set both or neither")
        }

        let nodeID = values.value(options.nodeID, "MAILPORTER_NODE_ID") ?? ProcessInfo.processInfo.hostName
        var runner = JobRunnerConfiguration(
            nodeID: nodeID,
            destination: DestinationServer(server: destination, masterUser: masterUser, masterPassword: masterPassword))
        runner.maxConcurrentMigrations = try values.number(
            options.maxConcurrentMigrations, "MAILPORTER_MAX_CONCURRENT_MIGRATIONS", default: 20, range: 1...10_000)
        if options.nodeMaxJobs != nil || values.value(nil, "MAILPORTER_NODE_MAX_JOBS") != nil {
            runner.nodeMaxJobs = try values.number(
                options.nodeMaxJobs, "MAILPORTER_NODE_MAX_JOBS", default: runner.maxConcurrentMigrations,
                range: 1...10_000)
        }
        runner.leaseSeconds = try values.number(
            options.leaseSeconds, "MAILPORTER_LEASE_SECONDS", default: 30, range: 3...3600)
        runner.pollInterval = .seconds(
            try values.number(options.pollSeconds, "MAILPORTER_POLL_SECONDS", default: 2, range: 1...3600))
        runner.batchSize = try values.number(options.batchSize, "MAILPORTER_BATCH_SIZE", default: 100, range: 1...1000)
        runner.allowPrivateHosts = allowPrivateHosts
        runner.sourceTrustRootsPEM = sourceTrustRootsPEM
        self.runner = runner

        var pools = StoragePools()
        if let text = values.value(options.storagePools, "MAILPORTER_STORAGE_POOLS") {
            do {
                pools = try StoragePools(parsing: text)
            } catch {
                throw SettingsFailure(description: "MAILPORTER_STORAGE_POOLS: \(error)")
            }
        }
        storage = StorageWatch.Configuration(
            destination: runner.destination, pools: pools,
            interval: .seconds(
                try values.number(
                    options.storageCheckSeconds, "MAILPORTER_STORAGE_CHECK_SECONDS", default: 30, range: 1...3600)))

        notices = try options.notifications.resolve(environment: environment, nodeID: nodeID)
    }

    /// Logs to standard error at the configured level and collects metrics in a Prometheus registry
    /// (`/metrics`). Once per process, before anything logs.
    func bootstrap() -> (Logger, PrometheusCollectorRegistry) {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "mailporter")
        logger.logLevel = level
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return (logger, registry)
    }
}
