import HTTPTypes

/// The methods each path answers, for a 405 with `Allow` instead of a 404 when only the method is wrong.
/// Kept beside the registrations in `APIRouter`, `MigrationRoutes`, `BulkRoutes` and `MailboxRoutes`; a route test holds them together.
enum RouteTable {
    private static let routes: [(pattern: [Segment], methods: [HTTPRequest.Method])] = [
        (["healthz"], [.get]),
        (["metrics"], [.get]),
        (["api", "v1", "openapi.json"], [.get]),
        (["api", "v1", "me"], [.get]),
        (["api", "v1", "audit-events"], [.get]),
        (["api", "v1", "migrations"], [.get, .post]),
        (["api", "v1", "migrations", "test-connection"], [.post]),
        (["api", "v1", "migrations", .id("")], [.get, .delete]),
        (["api", "v1", "migrations", .id(":cancel")], [.post]),
        (["api", "v1", "migrations", .id(":retry")], [.post]),
        (["api", "v1", "migrations", .id(":sync")], [.post]),
        (["api", "v1", "migrations", .id(":finalize")], [.post]),
        (["api", "v1", "migrations", "bulk"], [.get, .post]),
        (["api", "v1", "migrations", "bulk", "preview"], [.post]),
        (["api", "v1", "migrations", "bulk", .id("")], [.get, .delete]),
        (["api", "v1", "migrations", "bulk", .id(":cancel")], [.post]),
        (["api", "v1", "migrations", "bulk", .id(":retry")], [.post]),
        (["api", "v1", "migrations", "bulk", .id(":sync")], [.post]),
        (["api", "v1", "migrations", "bulk", .id(":resume")], [.post]),
        (["api", "v1", "migrations", "bulk", .id(""), "jobs", .id(""), "password"], [.patch]),
        (["api", "v1", "mailboxes"], [.get, .post]),
        (["api", "v1", "mailboxes", .id("")], [.delete]),
        (["api", "v1", "migrations", .id(""), "report.csv"], [.get]),
        (["api", "v1", "migrations", "bulk", .id(""), "report.csv"], [.get]),
        (["api", "v1", "notifications"], [.get]),
        // The Import page (WebRoutes).
        ([], [.get]),
        (["ui", .id("")], [.get]),
        (["mcp"], [.get, .post, .delete]),
    ]

    enum Segment: ExpressibleByStringLiteral, Equatable {
        case literal(String)
        /// Any segment ending in this suffix (a migration id, possibly with `:cancel`).
        case id(String)

        init(stringLiteral value: String) { self = .literal(value) }

        func matches(_ segment: Substring) -> Bool {
            switch self {
            case .literal(let text): return segment == text
            case .id(let suffix):
                guard segment.hasSuffix(suffix), segment.count > suffix.count else { return false }
                return suffix.isEmpty ? !segment.contains(":") : true
            }
        }
    }

    /// The methods routed for `path`, empty when no route has that path.
    /// As the router resolves a path, a literal segment wins over an id (`/migrations/bulk` is the
    /// bulk listing, not migration "bulk"): only the matching routes with the most literals count.
    static func methods(for path: String) -> [HTTPRequest.Method] {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        let matching = routes.filter { route in
            route.pattern.count == segments.count && zip(route.pattern, segments).allSatisfy { $0.matches($1) }
        }
        let literals = { (route: (pattern: [Segment], methods: [HTTPRequest.Method])) in
            route.pattern.filter { if case .literal = $0 { true } else { false } }.count
        }
        let most = matching.map(literals).max() ?? 0
        var methods: [HTTPRequest.Method] = []
        for route in matching where literals(route) == most {
            methods += route.methods.filter { !methods.contains($0) }
        }
        return methods
    }
}
