import HTTPTypes
import Hummingbird
import Store

/// An error answered with the envelope of SPEC.md §7:
/// `{"error":{"code","message","hint","request_id","retryable"}}` plus `fields`, `reason` or `retry_after`.
public struct APIError: Error, Sendable {
    /// Every code the API answers with (SPEC.md §3, §4, §6, §7); a client can switch over them.
    public enum Code: String, Sendable, CaseIterable {
        case unauthenticated
        case insufficientScope = "insufficient_scope"
        case tokenScopeBlockedByPlan = "token_scope_blocked_by_plan"
        case notFound = "not_found"
        case conflict
        case validationError = "validation_error"
        case invalidJSON = "invalid_json"
        case payloadTooLarge = "payload_too_large"
        case methodNotAllowed = "method_not_allowed"
        case badRequest = "bad_request"
        case connectionFailed = "connection_failed"
        case migrationCapacityReached = "migration_capacity_reached"
        case masterCredentialsRequired = "master_credentials_required"
        case idempotencyKeyReused = "idempotency_key_reused"
        case idempotencyKeyInUse = "idempotency_key_in_use"
        case rateLimited = "rate_limited"
        case unavailable
        case internalError = "internal_error"
    }

    public var status: HTTPResponse.Status
    public var code: Code
    public var message: String
    public var hint: String?
    public var retryable: Bool
    /// Per-field messages, for `validation_error`.
    public var fields: [(String, String)]
    /// The classified import failure behind `connection_failed`.
    public var reason: String?
    /// Seconds to wait, for `rate_limited` (also sent as `Retry-After`).
    public var retryAfter: Int?

    public init(
        _ status: HTTPResponse.Status, code: Code, message: String, hint: String? = nil,
        retryable: Bool = false, fields: [(String, String)] = [], reason: String? = nil,
        retryAfter: Int? = nil
    ) {
        self.status = status
        self.code = code
        self.message = message
        self.hint = hint
        self.retryable = retryable
        self.fields = fields
        self.reason = reason
        self.retryAfter = retryAfter
    }

    func body(requestID: String) -> JSONValue {
        var error: [(String, JSONValue)] = [
            ("code", .string(code.rawValue)),
            ("message", .string(message)),
            ("hint", .optional(hint)),
            ("request_id", .string(requestID)),
            ("retryable", .bool(retryable)),
        ]
        if code == .validationError {
            error.append(("fields", .object(fields.map { ($0.0, .string($0.1)) })))
        }
        if let reason { error.append(("reason", .string(reason))) }
        if let retryAfter { error.append(("retry_after", .int(retryAfter))) }
        return .object([("error", .object(error))])
    }
}

extension APIError {
    static let unauthenticated = APIError(
        .unauthorized, code: .unauthenticated, message: "A valid API token is required.",
        hint: "Send `Authorization: Bearer mp_live_…` with a token that exists and has not expired.")

    static func notFound(_ what: String = "resource") -> APIError {
        APIError(
            .notFound, code: .notFound, message: "No such \(what).",
            hint: "Check the id; objects of other accounts are not visible.")
    }

    static func insufficientScope(_ scope: Scope) -> APIError {
        APIError(
            .forbidden, code: .insufficientScope, message: "This token lacks the \(scope.rawValue) scope.",
            hint: "Create a token with the \(scope.rawValue) scope.")
    }

    static func blockedByPlan(_ scope: Scope, plan: String) -> APIError {
        APIError(
            .forbidden, code: .tokenScopeBlockedByPlan,
            message: "The \(plan) plan does not include \(scope.rawValue).",
            hint: "Upgrade to the Starter plan or higher to use migrations.")
    }

    static func conflict(_ message: String, hint: String? = nil) -> APIError {
        APIError(.conflict, code: .conflict, message: message, hint: hint)
    }

    static func validation(_ fields: [(String, String)]) -> APIError {
        let first = fields.first.map { "\($0.0): \($0.1)" } ?? "invalid request"
        return APIError(
            .unprocessableContent, code: .validationError,
            message: fields.count > 1 ? "\(first) (and \(fields.count - 1) more)" : first,
            hint: "Fix the fields listed in `fields` and send the request again.", fields: fields)
    }

    static let invalidJSON = APIError(
        .badRequest, code: .invalidJSON, message: "The request body is not a JSON object.",
        hint: "Send a JSON object with `Content-Type: application/json`.")

    static func payloadTooLarge(_ limit: Int) -> APIError {
        APIError(
            .contentTooLarge, code: .payloadTooLarge,
            message: "The request body is larger than \(limit) bytes.", hint: nil)
    }

    /// The store's database went away (a restart, a failover): nothing was done, or what was is kept.
    static let databaseUnavailable = APIError(
        .serviceUnavailable, code: .unavailable, message: "The service's database cannot be reached right now.",
        hint: "Try again in a few seconds.", retryable: true, retryAfter: 5)

    static let internalError = APIError(
        .internalServerError, code: .internalError, message: "The server failed to handle the request.",
        hint: "Try again; if it keeps failing, report the request id.", retryable: true)
}
