import Foundation

/// One REST request, as a tool sends it: the path already holds its ids and query.
public struct APIRequest: Sendable, Equatable {
    public var method: String
    /// `/api/v1/...`, with the query string if any.
    public var path: String
    /// The JSON body, nil for GET and for the status-change routes.
    public var body: [UInt8]?
    /// Sent as `Idempotency-Key` on every write, so a retried request replays instead of repeating.
    public var idempotencyKey: String?

    public init(method: String, path: String, body: [UInt8]? = nil, idempotencyKey: String? = nil) {
        self.method = method
        self.path = path
        self.body = body
        self.idempotencyKey = idempotencyKey
    }
}

/// What the API answered.
public struct APIResponse: Sendable, Equatable {
    public var status: Int
    /// Header names in lower case.
    public var headers: [String: String]
    public var body: [UInt8]

    public init(status: Int, headers: [String: String] = [:], body: [UInt8] = []) {
        self.status = status
        self.headers = Dictionary(headers.map { ($0.key.lowercased(), $0.value) }, uniquingKeysWith: { $1 })
        self.body = body
    }
}

/// Sends a request to the Mailporter REST API with the caller's token: over HTTP for
/// `mailporter mcp`, in process for `/mcp` in `serve`. Tools know nothing else of the transport.
public protocol APICaller: Sendable {
    /// Throws only when no answer came at all (connection refused, timeout); an HTTP error status is
    /// an answer.
    func call(_ request: APIRequest) async throws -> APIResponse
}

/// Why a call got no answer, in words an agent can act on (never a library type or the token).
public struct APIUnreachable: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var hint: String

    public init(message: String, hint: String) {
        self.message = message
        self.hint = hint
    }

    public var description: String { "\(message) \(hint)" }
}

/// How long to wait after a 429 or 503 before asking again, and how often: `Retry-After` is
/// honoured, but never beyond `maxWaitSeconds` per wait nor `maxAttempts` in all, so a tool call
/// cannot hang an agent for minutes. The same request (and idempotency key) is sent again.
public struct RetryPolicy: Sendable, Equatable {
    public var maxAttempts: Int
    public var maxWaitSeconds: Int
    /// The wait when the answer names none.
    public var defaultWaitSeconds: Int

    public init(maxAttempts: Int = 3, maxWaitSeconds: Int = 10, defaultWaitSeconds: Int = 1) {
        self.maxAttempts = maxAttempts
        self.maxWaitSeconds = maxWaitSeconds
        self.defaultWaitSeconds = defaultWaitSeconds
    }

    /// The seconds to wait before attempt `attempt + 1` after `response`, or nil to give up and
    /// answer with `response`.
    public func wait(after response: APIResponse, attempt: Int) -> Int? {
        guard response.status == 429 || response.status == 503, attempt < maxAttempts else { return nil }
        let asked = response.headers["retry-after"].flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        return min(max(asked ?? defaultWaitSeconds, 0), maxWaitSeconds)
    }
}

extension APICaller {
    /// `call`, retried after 429 and 503 as `policy` allows.
    func call(_ request: APIRequest, retrying policy: RetryPolicy, sleep: @Sendable (Int) async throws -> Void)
        async throws -> APIResponse
    {
        var attempt = 1
        while true {
            let response = try await call(request)
            guard let seconds = policy.wait(after: response, attempt: attempt) else { return response }
            try await sleep(seconds)
            attempt += 1
        }
    }
}
