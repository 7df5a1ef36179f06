import BulkImport
import Foundation
import IMAPClient
import Logging
import MCPServer
import MigrationEngine
import Prometheus
import Store

/// Limits the API enforces (SPEC.md §6).
public struct APILimits: Sendable {
    /// Requests per token per minute, all routes.
    public var requestsPerMinute: Int
    /// Migration writes (start, cancel, retry, delete, test-connection) per token per minute.
    public var writesPerMinute: Int
    /// Migrations running at once across the service; a single start beyond it gets 503.
    public var maxConcurrentMigrations: Int
    /// Largest request body accepted.
    public var maxBodyBytes: Int
    /// Largest body of a bulk preview or start: room for a CSV of `CSVReader.maxBytes` written as a
    /// JSON string (quotes and line breaks escaped); the CSV's own limit is checked on the text.
    public var maxBulkBodyBytes: Int

    public init(
        requestsPerMinute: Int = 120, writesPerMinute: Int = 10, maxConcurrentMigrations: Int = 20,
        maxBodyBytes: Int = 1 << 20, maxBulkBodyBytes: Int = 3 * CSVReader.maxBytes + 65536
    ) {
        self.requestsPerMinute = requestsPerMinute
        self.writesPerMinute = writesPerMinute
        self.maxConcurrentMigrations = maxConcurrentMigrations
        self.maxBodyBytes = maxBodyBytes
        self.maxBulkBodyBytes = maxBulkBodyBytes
    }
}

/// Everything the routes need; the server command builds it, tests build their own.
public struct APIEnvironment: Sendable {
    public var store: Store
    public var limits: APILimits
    /// Whether the destination is reached with master credentials (then `target_password` is optional).
    public var hasMasterCredentials: Bool
    /// The SPEC.md §8 private-host guard for user-supplied source hosts.
    public var allowPrivateHosts: Bool
    /// Extra certificates trusted for source connections (a private CA in tests).
    public var sourceTrustRootsPEM: [String]
    /// Called after a migration is queued or retried, so the runner claims it at once.
    public var migrationQueued: @Sendable () -> Void
    /// The storage pool of each plan, as configured.
    public var storagePools: StoragePools
    /// Bytes an account's destination mailboxes hold, for the bulk preview, a batch's figures and
    /// resume, as current as the `StorageReading` asks; nil while nothing measures it (then the
    /// figures say `measured: false` and count 0 bytes used).
    public var storageUsedBytes: @Sendable (_ account: Account, _ reading: StorageReading) async -> Int64?
    /// Whether the destination server accepts a mailbox address (a master login succeeds), for
    /// `create_missing_mailboxes`; false without master credentials.
    public var destinationAccepts: @Sendable (String) async -> Bool
    /// Counters of the runner and the API, written out at `/metrics`.
    public var metrics: PrometheusCollectorRegistry
    public var logger: Logger
    /// Streamable HTTP at `/mcp`; nil leaves it unmounted.
    public var mcp: MCPHTTPSettings?

    public init(
        store: Store, limits: APILimits = APILimits(), hasMasterCredentials: Bool = false,
        allowPrivateHosts: Bool = false, sourceTrustRootsPEM: [String] = [],
        migrationQueued: @escaping @Sendable () -> Void = {},
        storagePools: StoragePools = StoragePools(),
        storageUsedBytes: @escaping @Sendable (Account, StorageReading) async -> Int64? = { _, _ in nil },
        destinationAccepts: @escaping @Sendable (String) async -> Bool = { _ in false },
        metrics: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
        logger: Logger = Logger(label: "mailporter.api"),
        mcp: MCPHTTPSettings? = nil
    ) {
        self.store = store
        self.limits = limits
        self.hasMasterCredentials = hasMasterCredentials
        self.allowPrivateHosts = allowPrivateHosts
        self.sourceTrustRootsPEM = sourceTrustRootsPEM
        self.migrationQueued = migrationQueued
        self.storagePools = storagePools
        self.storageUsedBytes = storageUsedBytes
        self.destinationAccepts = destinationAccepts
        self.metrics = metrics
        self.logger = logger
        self.mcp = mcp
    }
}
