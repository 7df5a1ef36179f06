import Foundation
import Hummingbird
import Store

/// `/api/v1/mailboxes…`: the destination mailboxes a migration or a batch row targets (SPEC.md §2),
/// behind `mailboxes:read` / `mailboxes:write`. Idempotency and audit events as `MigrationRoutes`
/// does them; these writes count against the standard rate limit, not the migration-write one.
struct MailboxRoutes {
    let environment: APIEnvironment
    var store: Store { environment.store }
    var idempotency: Idempotency { Idempotency(store: environment.store) }

    func register(on group: RouterGroup<APIContext>) {
        group.get("mailboxes", use: list)
        group.post("mailboxes", use: add)
        group.delete("mailboxes/{id}", use: delete)
    }

    @Sendable func list(_ request: Request, context: APIContext) async throws -> Response {
        let caller = try context.require(.mailboxesRead)
        var problems: [(String, String)] = []
        let page = MigrationRoutes.pageRequest(request.uri.queryParameters, problems: &problems)
        if !problems.isEmpty { throw APIError.validation(problems) }
        let result = try await store.listMailboxes(accountID: caller.account.id, page: page)
        return jsonResponse(Render.page(result, path: "/api/v1/mailboxes", filters: [], item: Render.mailbox))
    }

    /// `{"email": …}` or `{"emails": […]}`: each address added, or said to be a duplicate or
    /// invalid, in the order sent. 201 when at least one was added, else 200.
    @Sendable func add(_ request: Request, context: APIContext) async throws -> Response {
        let caller = try context.require(.mailboxesWrite)
        var (body, raw) = try await BodyReader.read(request, context: context, limit: environment.limits.maxBodyBytes)
        return try await idempotency.run(request, context: context, caller: caller, body: raw) {
            let many = body.strings("emails", maxItems: Store.maxMailboxesPerAdd)
            let one = body.text("email", required: false)
            try body.finish()
            let emails: [String]
            switch (one, many) {
            case (let one?, nil): emails = [one]
            case (nil, let many?): emails = many
            case (.some, .some): throw APIError.validation([("emails", "send either email or emails, not both")])
            case (nil, nil): throw APIError.validation([("emails", "is required (or email for one address)")])
            }
            let results = try await store.addMailboxes(accountID: caller.account.id, emails: emails)
            var added = 0, duplicates = 0, invalid = 0
            var items: [JSONValue] = []
            for (index, result) in results.enumerated() {
                switch result {
                case .added(let mailbox):
                    added += 1
                    try await store.audit(
                        "mailbox_added", "mailbox", id: String(mailbox.id), caller: caller, context: context)
                    items.append(
                        Render.addition(
                            index: index, email: mailbox.email, status: "added",
                            mailbox: Render.mailbox(mailbox), message: nil))
                case .duplicate(let email):
                    duplicates += 1
                    items.append(
                        Render.addition(
                            index: index, email: email, status: "duplicate", mailbox: .null,
                            message: "The account already has this mailbox."))
                case .invalid(let email, let reason):
                    invalid += 1
                    items.append(
                        Render.addition(
                            index: index, email: email, status: "invalid", mailbox: .null,
                            message: "The address \(reason)."))
                }
            }
            return WriteResult(
                status: added > 0 ? .created : .ok,
                body: .object([
                    (
                        "data",
                        .object([
                            (
                                "counts",
                                .object([
                                    ("added", .int(added)), ("duplicate", .int(duplicates)), ("invalid", .int(invalid)),
                                ])
                            ),
                            ("results", .array(items)),
                        ])
                    )
                ]))
        }
    }

    /// 204. 409 while a migration that is not final targets the mailbox; its finished migrations go with it.
    @Sendable func delete(_ request: Request, context: APIContext) async throws -> Response {
        let caller = try context.require(.mailboxesWrite)
        guard let text = context.parameters.get("id"), let id = Int64(text), id >= 1 else {
            throw APIError.notFound("mailbox")
        }
        return try await idempotency.run(request, context: context, caller: caller, body: ByteBuffer()) {
            do {
                try await store.deleteMailbox(id: id, accountID: caller.account.id)
            } catch StoreError.notFound {
                throw APIError.notFound("mailbox")
            } catch StoreError.mailboxInUse {
                throw APIError.conflict(
                    "A migration that has not finished targets this mailbox.",
                    hint: "Wait for it to finish, or cancel it (or its batch), then delete the mailbox.")
            }
            try await store.audit("mailbox_deleted", "mailbox", id: String(id), caller: caller, context: context)
            return WriteResult(status: .noContent, body: nil)
        }
    }
}

extension Render {
    static func mailbox(_ mailbox: Mailbox) -> JSONValue {
        .object([
            ("id", .int(mailbox.id)),
            ("email", .string(mailbox.email)),
            ("created_at", date(mailbox.createdAt)),
        ])
    }

    static func addition(index: Int, email: String?, status: String, mailbox: JSONValue, message: String?) -> JSONValue
    {
        .object([
            ("index", .int(index)),
            ("email", .optional(email)),
            ("status", .string(status)),
            ("mailbox", mailbox),
            ("message", .optional(message)),
        ])
    }
}
