import Foundation
import IMAPClient
import MigrationEngine

/// The service's one destination IMAP server (SPEC.md §2) and how Mailporter logs in to its mailboxes.
public struct DestinationServer: Sendable {
    /// Host, port, security and trust roots.
    public var server: ServerConfiguration
    public var masterUser: String?
    public var masterPassword: String?

    public init(server: ServerConfiguration, masterUser: String? = nil, masterPassword: String? = nil) {
        self.server = server
        self.masterUser = masterUser
        self.masterPassword = masterPassword
    }

    /// Both master values are set and the user is not blank (an empty environment variable means unset).
    public var hasMasterCredentials: Bool {
        guard let masterUser, let masterPassword else { return false }
        return !masterUser.trimmingCharacters(in: .whitespaces).isEmpty && !masterPassword.isEmpty
    }

    /// `.master(user: mailbox, …)` when master credentials are set, else `.password(mailbox, targetPassword)`;
    /// nil when neither.
    public func credentials(mailbox: String, targetPassword: String?) -> Credentials? {
        if hasMasterCredentials, let masterUser, let masterPassword {
            return .master(user: mailbox, masterUsername: masterUser, masterPassword: masterPassword)
        }
        if let targetPassword, !targetPassword.isEmpty {
            return .password(username: mailbox, password: targetPassword)
        }
        return nil
    }
}

public struct JobRunnerConfiguration: Sendable {
    /// The lease owner name: unique per running node, stable across its restarts.
    public var nodeID: String
    /// Migrations running at once over all nodes (passed as `maxRunning` when claiming).
    public var maxConcurrentMigrations: Int
    /// Migrations this node runs at once; nil: as many as the global limit. With several nodes a
    /// smaller cap spreads the work: a node whose job ends claims the next at once, so without one
    /// the first node to fill the global limit keeps it and idle nodes stay idle.
    public var nodeMaxJobs: Int?
    /// What this node runs at once: its own cap within the global one.
    public var jobsOnThisNode: Int { max(1, min(nodeMaxJobs ?? maxConcurrentMigrations, maxConcurrentMigrations)) }
    public var leaseSeconds: Int
    /// Longest wait between claims when nobody calls `wake()`.
    public var pollInterval: Duration
    /// How often progress is written and the lease renewed; also how soon a cancel is noticed.
    public var progressInterval: Duration
    public var destination: DestinationServer
    /// Applies to source connections (user-supplied hosts) only; the operator-configured
    /// destination is trusted.
    public var allowPrivateHosts: Bool
    /// Extra PEM certificates trusted for source connections (a private CA, or test servers);
    /// the system roots stay trusted.
    public var sourceTrustRootsPEM: [String]
    public var parallelFolders: Int
    public var backoff: @Sendable (Int, Bool) -> Double
    /// Messages per FETCH/APPEND batch. The engine notices a stop only between batches, so this
    /// bounds how long a cancelled or shut-down job keeps copying.
    public var batchSize: Int

    public init(
        nodeID: String, maxConcurrentMigrations: Int = 20, leaseSeconds: Int = 30,
        pollInterval: Duration = .seconds(2), progressInterval: Duration = .milliseconds(1500),
        destination: DestinationServer, allowPrivateHosts: Bool = false, sourceTrustRootsPEM: [String] = [],
        parallelFolders: Int = 4,
        backoff: @escaping @Sendable (Int, Bool) -> Double = Migration.defaultBackoff,
        batchSize: Int = 100
    ) {
        self.nodeID = nodeID
        self.maxConcurrentMigrations = maxConcurrentMigrations
        self.leaseSeconds = leaseSeconds
        self.pollInterval = pollInterval
        self.progressInterval = progressInterval
        self.destination = destination
        self.allowPrivateHosts = allowPrivateHosts
        self.sourceTrustRootsPEM = sourceTrustRootsPEM
        self.parallelFolders = parallelFolders
        self.backoff = backoff
        self.batchSize = batchSize
    }
}
