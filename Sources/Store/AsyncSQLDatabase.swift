import NIOCore
import SQLKit

/// The store's own `SQLDatabase` wrappers (one SQLite writer with exclusive sessions, the SQLite
/// read connections, the PostgreSQL pool) implement the async `execute`; SQLKit's future-based
/// one is derived from it here, once.
protocol AsyncSQLDatabase: SQLDatabase {
    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> ()) async throws
}

extension AsyncSQLDatabase {
    func execute(
        sql query: any SQLExpression,
        _ onRow: @escaping @Sendable (any SQLRow) -> ()
    ) -> EventLoopFuture<Void> {
        eventLoop.makeFutureWithTask { try await self.execute(sql: query, onRow) }
    }
}
