import Hummingbird
import Store

/// Who is calling: set by `AuthMiddleware` on every `/api/v1` request it lets through.
public struct Caller: Sendable {
    public var account: Account
    public var token: APIToken

    /// The token's scopes the account's plan allows.
    public var effectiveScopes: [String] {
        token.scopes.filter { Scope(rawValue: $0).map(account.plan.allows) ?? false }
    }
}

/// The per-request context of every route.
public struct APIContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Echoed or generated; sent back as `X-Request-Id` and in every error envelope.
    public var requestID: String
    public var caller: Caller?
    /// The peer's address, for audit events.
    public var clientIP: String?
    /// Set on an MCP tool's in-process call, already counted as its `/mcp` request.
    var countedAsMCPRequest = false

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.requestID = ""
        self.caller = nil
        self.clientIP = source.channel.remoteAddress?.ipAddress
    }

    /// The caller, or 401: for routes behind `AuthMiddleware`.
    func authenticated() throws(APIError) -> Caller {
        guard let caller else { throw APIError.unauthenticated }
        return caller
    }

    /// The caller, if the token holds `scope` and the plan allows it.
    func require(_ scope: Scope) throws(APIError) -> Caller {
        try require(anyOf: [scope])
    }

    func require(anyOf scopes: [Scope]) throws(APIError) -> Caller {
        let caller = try authenticated()
        guard let held = scopes.first(where: caller.token.hasScope) else {
            throw APIError.insufficientScope(scopes[0])
        }
        if !caller.account.plan.allows(held) {
            throw APIError.blockedByPlan(held, plan: caller.account.plan.rawValue)
        }
        return caller
    }
}
