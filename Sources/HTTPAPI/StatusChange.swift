import Hummingbird
import NIOCore
import Store

/// What every status-change route shares (cancel, retry, resume and delete, of a migration or a
/// batch): idempotency over an empty body, an audit event of the resource, the runner woken when
/// work is queued again, and the changed resource (200) or nothing (204). The routes keep what
/// differs: the scope and id checks, and which store refusal becomes which 404 or 409.
struct StatusChange {
    let environment: APIEnvironment
    /// The audit event's resource type, e.g. `migration`.
    var resourceType: String
    var auditAction: String
    /// Whether the change puts work back in the queue.
    var queues: Bool

    /// `change` answers the resource as rendered, or nil once it is gone.
    /// `body` is the request body where the change takes options (a sync's `sync_deletions`), so an
    /// idempotency key replays only the same options.
    func run(
        _ request: Request, _ context: APIContext, caller: Caller, id: Int64, body: ByteBuffer = ByteBuffer(),
        _ change: () async throws -> JSONValue?
    ) async throws -> Response {
        try await Idempotency(store: environment.store).run(
            request, context: context, caller: caller, body: body
        ) {
            let rendered = try await change()
            try await environment.store.audit(
                auditAction, resourceType, id: String(id), caller: caller, context: context)
            if queues { environment.migrationQueued() }
            guard let rendered else { return WriteResult(status: .noContent, body: nil) }
            return WriteResult(status: .ok, body: .object([("data", rendered)]))
        }
    }
}

extension Store {
    /// An audit event of the caller's request (SPEC.md §6): the token, address and request id.
    func audit(_ action: String, _ resourceType: String, id: String, caller: Caller, context: APIContext)
        async throws
    {
        try await recordAudit(
            accountID: caller.account.id, tokenID: caller.token.id, action: action,
            resourceType: resourceType, resourceID: id, ip: context.clientIP,
            requestID: context.requestID)
    }
}
