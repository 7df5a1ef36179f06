import Foundation
import SQLKit

/// A runner's hold on one migration, from its claim: who holds it and the claim's fencing token.
///
/// Every claim (and take-over) increments the migration's `lease_token`, so a runner that lost its
/// lease (paused past its expiry, cut off from the database, then back) holds a token that no
/// longer matches: every write made under a `Lease` (status, progress, failed messages,
/// checkpoints, renewals, the release) checks owner and token in the statement that writes, and
/// is refused once another runner has claimed the migration.
public struct Lease: Sendable, Hashable, CustomStringConvertible {
    public var migrationID: Int64
    public var owner: String
    public var token: Int64

    public init(migrationID: Int64, owner: String, token: Int64) {
        self.migrationID = migrationID
        self.owner = owner
        self.token = token
    }

    public var description: String { "migration \(migrationID) held by \(owner) (claim \(token))" }
}

/// A write made under a lease was refused: another runner has claimed the migration since (or it
/// was released). The runner must stop; the other one carries on from the checkpoints.
public struct LeaseLost: Error, CustomStringConvertible {
    public var lease: Lease

    public var description: String {
        "this node no longer holds migration \(lease.migrationID): another node took it over after its lease expired"
    }
}

extension MigrationRecord {
    /// The lease a claim returned this record with (nil for a record nobody holds).
    public var lease: Lease? {
        leaseOwner.map { Lease(migrationID: id, owner: $0, token: leaseToken) }
    }
}

extension Store {
    /// The condition that `lease` still holds its migration, on the `migrations` row `alias`.
    static func held(_ lease: Lease, alias: String = "migrations") -> SQLQueryString {
        """
        \(unsafeRaw: alias).id = \(bind: lease.migrationID) AND \(unsafeRaw: alias).lease_owner = \(bind: lease.owner)
          AND \(unsafeRaw: alias).lease_token = \(bind: lease.token)
        """
    }

    /// A sub-select that yields a row only while `lease` holds its migration, for writes to other
    /// tables (checkpoints, folders, failed messages). On PostgreSQL it locks the row for share: a
    /// concurrent claim (an UPDATE of that row) waits for the write to commit, or the write waits
    /// for the claim and then sees the new token, so a write can never land after a take-over has
    /// read the checkpoints it would change. SQLite has one writer at a time.
    /// `condition` may add to the WHERE, on alias `f`.
    func fence(_ lease: Lease, and condition: SQLQueryString? = nil) -> SQLQueryString {
        let extra: SQLQueryString = condition.map { " AND \($0)" } ?? ""
        return
            "SELECT 1 FROM migrations f WHERE \(Self.held(lease, alias: "f"))\(extra)\(unsafeRaw: flavor.fenceRowLock)"
    }

    /// The time leases are measured in: the database's clock, so nodes whose clocks disagree still
    /// agree on when a lease has run out. `now` (tests) replaces it with a fixed time.
    func leaseClock(_ now: Date?) -> SQLQueryString {
        if let now { return "\(bind: now.storeMillis)" }
        return SQLQueryString(flavor.nowMillis)
    }
}

extension SQLFlavor {
    /// The database's current time in milliseconds since 1970. PostgreSQL's `clock_timestamp()`
    /// rather than `now()`, which is the start of the transaction (a claim may wait for the claim lock).
    var nowMillis: String {
        switch self {
        case .sqlite: "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
        case .postgres: "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
        }
    }

    /// See `Store.fence(_:)`.
    var fenceRowLock: String {
        switch self {
        case .sqlite: ""
        case .postgres: " FOR SHARE"
        }
    }
}
