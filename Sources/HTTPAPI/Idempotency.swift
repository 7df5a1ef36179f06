import HTTPTypes
import Hummingbird
import Store

/// What a write handler produced, in a form that can be stored and replayed byte for byte.
struct WriteResult {
    var status: HTTPResponse.Status
    var body: JSONValue?
}

/// `Idempotency-Key` (SPEC.md §6): the same key and body within 24 h replays the stored response,
/// another body is 422 `idempotency_key_reused`, a request still in flight is 409.
struct Idempotency {
    let store: Store

    /// `bodyKey`: the key a bulk start may give as its `idempotency_key` field instead of (or, the
    /// same, as well as) the header.
    func run(
        _ request: Request, context: APIContext, caller: Caller, body: ByteBuffer, bodyKey: String? = nil,
        _ handle: () async throws -> WriteResult
    ) async throws -> Response {
        let headerKey = request.headers[.idempotencyKey]
        if let headerKey, let bodyKey, headerKey != bodyKey {
            throw APIError.validation([
                ("idempotency_key", "must be the same as the Idempotency-Key header when both are sent")
            ])
        }
        guard let key = headerKey ?? bodyKey else {
            return try await respond(handle)
        }
        guard (1...255).contains(key.utf8.count), key.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            throw APIError.validation([
                (
                    headerKey != nil ? "Idempotency-Key" : "idempotency_key",
                    "must be 1 to 255 printable ASCII characters without spaces"
                )
            ])
        }
        let accountID = caller.account.id
        let hash = Store.requestHash(
            method: request.method.rawValue, path: request.uri.path,
            body: body.readableBytesView)
        switch try await store.beginIdempotency(accountID: accountID, key: key, requestHash: hash) {
        case .replay(let status, let stored):
            var response =
                stored.isEmpty
                ? Response(status: HTTPResponse.Status(code: status))
                : Response(
                    status: HTTPResponse.Status(code: status),
                    headers: [.contentType: "application/json; charset=utf-8"],
                    body: .init(byteBuffer: ByteBuffer(string: stored)))
            response.headers[HTTPField.Name("Idempotent-Replayed")!] = "true"
            return response
        case .keyReused:
            throw APIError(
                .unprocessableContent, code: .idempotencyKeyReused,
                message: "This Idempotency-Key was used with a different request.",
                hint: "Use a new key for a new request.")
        case .inFlight:
            throw APIError(
                .conflict, code: .idempotencyKeyInUse,
                message: "A request with this Idempotency-Key is still being handled.",
                hint: "Wait for it to finish, then send the request again to get its response.",
                retryable: true)
        case .proceed:
            break
        }
        let result: WriteResult
        do {
            result = try await handle()
        } catch let error as APIError where error.status.code < 500 {
            // A refusal is an answer too: the same request gets the same refusal.
            let body = error.body(requestID: context.requestID).serialized
            try await store.completeIdempotency(
                accountID: accountID, key: key, statusCode: error.status.code, body: body)
            throw error
        } catch {
            try? await store.abandonIdempotency(accountID: accountID, key: key)
            throw error
        }
        try await store.completeIdempotency(
            accountID: accountID, key: key, statusCode: result.status.code,
            body: result.body?.serialized ?? "")
        return Self.response(result)
    }

    private func respond(_ handle: () async throws -> WriteResult) async throws -> Response {
        Self.response(try await handle())
    }

    static func response(_ result: WriteResult) -> Response {
        guard let body = result.body else { return Response(status: result.status) }
        return jsonResponse(body, status: result.status)
    }
}
