import HTTPTypes

/// The methods each path answers, for a 405 with `Allow` instead of a 404 when only the method is wrong.
/// Kept beside the registrations in `APIRouter` and `MigrationRoutes`; a route test holds them together.
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
    static func methods(for path: String) -> [HTTPRequest.Method] {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        var methods: [HTTPRequest.Method] = []
        for route in routes where route.pattern.count == segments.count {
            if zip(route.pattern, segments).allSatisfy({ $0.matches($1) }) {
                methods += route.methods.filter { !methods.contains($0) }
            }
        }
        return methods
    }
}
