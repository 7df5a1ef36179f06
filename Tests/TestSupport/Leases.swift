import Store

extension Store {
    /// The lease `owner` would write under on migration `id`, with the migration's current claim
    /// token: tests write as the runner holding it would (or, with another owner, as one that does not).
    public func lease(_ id: Int64, heldBy owner: String) async throws -> Lease {
        Lease(migrationID: id, owner: owner, token: try await migration(id: id)?.leaseToken ?? 0)
    }
}
