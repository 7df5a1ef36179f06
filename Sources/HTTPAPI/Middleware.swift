import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Store

extension HTTPField.Name {
    static let requestID = Self("X-Request-Id")!
    static let idempotencyKey = Self("Idempotency-Key")!
    static let rateLimitLimit = Self("X-RateLimit-Limit")!
    static let rateLimitRemaining = Self("X-RateLimit-Remaining")!
}

/// Outermost: gives every request an id, turns every error into the JSON envelope, and puts
/// `X-Request-Id` on every response.
struct ResponseEnvelopeMiddleware: RouterMiddleware {
    let logger: Logger
    /// The configured body limit, named in a 413 from outside `BodyReader`.
    let maxBodyBytes: Int
    /// Whether this server has the API's routes (`RouteTable`), so a known path with the wrong
    /// method is a 405; a worker's listener has only `/healthz` and `/metrics`, anything else is 404.
    var servesAPI = true

    func handle(
        _ request: Request, context: APIContext,
        next: (Request, APIContext) async throws -> Response
    ) async throws -> Response {
        var context = context
        context.requestID = Self.requestID(from: request.headers[.requestID])
        let started = ContinuousClock.now
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as HTTPError
            where error.status == .notFound && servesAPI && !RouteTable.methods(for: request.uri.path).isEmpty
        {
            // The path exists; only the method is wrong.
            let allowed = RouteTable.methods(for: request.uri.path)
            response = Self.response(
                for: APIError(
                    .methodNotAllowed, code: .methodNotAllowed,
                    message: "\(request.method.rawValue) is not allowed here.",
                    hint: "Use \(allowed.map(\.rawValue).joined(separator: " or "))."), requestID: context.requestID)
            response.headers[.allow] = allowed.map(\.rawValue).joined(separator: ", ")
        } catch {
            let apiError = Self.apiError(for: error, maxBodyBytes: maxBodyBytes)
            if !(error is APIError) && apiError.status.code >= 500 {
                logger.error(
                    "request failed",
                    metadata: [
                        "request_id": "\(context.requestID)", "path": "\(request.uri.path)",
                        "error": "\(String(reflecting: type(of: error)))",
                    ])
            }
            response = Self.response(for: apiError, requestID: context.requestID)
        }
        response.headers[.requestID] = context.requestID
        // One access line per request: never headers or bodies, which hold tokens and passwords.
        let elapsed = ContinuousClock.now - started
        logger.info(
            "request",
            metadata: [
                "request_id": "\(context.requestID)", "method": "\(request.method.rawValue)",
                "path": "\(request.uri.path)", "status": "\(response.status.code)",
                "ms": "\(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)",
            ])
        return response
    }

    /// A caller's own id is kept when it is short and plain; otherwise one is made.
    static func requestID(from header: String?) -> String {
        if let header, (1...128).contains(header.utf8.count),
            header.utf8.allSatisfy({
                isAlnum($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".")
            })
        {
            return header
        }
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<12).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return "req_" + bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    private static func isAlnum(_ byte: UInt8) -> Bool {
        (48...57).contains(byte) || (65...90).contains(byte) || (97...122).contains(byte)
    }

    static func apiError(for error: any Error, maxBodyBytes: Int) -> APIError {
        if let apiError = error as? APIError { return apiError }
        if let failure = error as? DatabaseFailure, failure.isUnavailable { return .databaseUnavailable }
        if let httpError = error as? HTTPError {
            switch httpError.status {
            case .notFound:
                return .notFound("route")
            case .contentTooLarge:
                return .payloadTooLarge(maxBodyBytes)
            case .methodNotAllowed:
                return APIError(.methodNotAllowed, code: .methodNotAllowed, message: "Method not allowed.")
            case let status where status.code < 500:
                return APIError(status, code: .badRequest, message: httpError.body ?? status.reasonPhrase)
            default:
                return .internalError
            }
        }
        return .internalError
    }

    static func response(for error: APIError, requestID: String) -> Response {
        var response = jsonResponse(error.body(requestID: requestID), status: error.status)
        if let retryAfter = error.retryAfter {
            response.headers[.retryAfter] = String(retryAfter)
        }
        return response
    }
}

/// Resolves the bearer token, checks it and counts the request against the token's rate limits.
/// Scope checks are the routes' own (`APIContext.require`).
struct AuthMiddleware: RouterMiddleware {
    let store: Store
    let limits: APILimits

    func handle(
        _ request: Request, context: APIContext,
        next: (Request, APIContext) async throws -> Response
    ) async throws -> Response {
        guard let header = request.headers[.authorization],
            let token = Self.bearerToken(header), Tokens.isWellFormed(token),
            let apiToken = try await store.verifyToken(token, ip: context.clientIP),
            let account = try await store.account(id: apiToken.accountID)
        else {
            throw APIError.unauthenticated
        }
        var context = context
        context.caller = Caller(account: account, token: apiToken)

        let now = Date()
        // An MCP tool's in-process call was counted as the `/mcp` request it came in; its
        // migration writes count below like any other.
        let all =
            context.countedAsMCPRequest
            ? nil : try await store.incrementRateLimit(key: "requests:\(apiToken.id)", now: now)
        var limit = limits.requestsPerMinute
        var used = all
        if let all, all.count > limits.requestsPerMinute {
            throw Self.rateLimited(all, limit: limits.requestsPerMinute, what: "requests", now: now)
        }
        if Self.isMigrationWrite(request) {
            let writes = try await store.incrementRateLimit(key: "writes:\(apiToken.id)", now: now)
            if writes.count > limits.writesPerMinute {
                throw Self.rateLimited(writes, limit: limits.writesPerMinute, what: "migration writes", now: now)
            }
            if limits.writesPerMinute - writes.count < limits.requestsPerMinute - (all?.count ?? 0) {
                limit = limits.writesPerMinute
                used = writes
            }
        }
        var response = try await next(request, context)
        if let used {
            response.headers[.rateLimitLimit] = String(limit)
            response.headers[.rateLimitRemaining] = String(max(0, limit - used.count))
        }
        return response
    }

    static func bearerToken(_ header: String) -> String? {
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        return parts[1].trimmingCharacters(in: .whitespaces)
    }

    static func isMigrationWrite(_ request: Request) -> Bool {
        request.method != .get && request.method != .head && request.uri.path.hasPrefix("/api/v1/migrations")
    }

    static func rateLimited(_ count: RateLimitCount, limit: Int, what: String, now: Date) -> APIError {
        let wait = count.retryAfterSeconds(now: now)
        return APIError(
            .tooManyRequests, code: .rateLimited,
            message: "More than \(limit) \(what) per minute for this token.",
            hint: "Wait \(wait) seconds before sending more.", retryable: true, retryAfter: wait)
    }
}

func jsonResponse(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
    Response(
        status: status, headers: [.contentType: "application/json; charset=utf-8"],
        body: .init(byteBuffer: ByteBuffer(bytes: value.serializedUTF8)))
}
