import SQLKit
import SQLiteKit

/// The store's one SQLite connection, shared by every task, with sessions that have it to
/// themselves. A transaction is a state of the connection, so a statement another task sent
/// between its `BEGIN` and `COMMIT` would be committed or rolled back with it; here statements wait
/// while a session (`withSession`: a transaction, a schema migration) runs, and a session waits for
/// the statements under way.
struct ExclusiveSessionDatabase: AsyncSQLDatabase {
    let base: any SQLDatabase
    private let gate = SessionGate()

    init(_ base: any SQLDatabase) {
        self.base = base
    }

    var logger: Logger { base.logger }
    var eventLoop: any EventLoop { base.eventLoop }
    var version: (any SQLDatabaseReportedVersion)? { base.version }
    var dialect: any SQLDialect { base.dialect }
    var queryLogLevel: Logger.Level? { base.queryLogLevel }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> ()) async throws {
        await gate.enter(exclusive: false)
        do {
            try await base.execute(sql: query, onRow)
        } catch {
            await gate.leave(exclusive: false)
            throw error
        }
        await gate.leave(exclusive: false)
    }

    /// `closure` gets the connection itself: running a statement through this database instead
    /// would wait for the session to end, which waits for `closure`.
    func withSession<R>(_ closure: @escaping @Sendable (any SQLDatabase) async throws -> R) async throws -> R {
        await gate.enter(exclusive: true)
        let result: R
        do {
            result = try await base.withSession(closure)
        } catch {
            await gate.leave(exclusive: true)
            throw error
        }
        await gate.leave(exclusive: true)
        return result
    }
}

/// Shared entries (statements) run together, an exclusive one (a session) alone. First come, first
/// served: once a session waits, statements that come after it wait behind it, so it is never starved.
actor SessionGate {
    private var shared = 0
    private var exclusive = false
    private var waiting: [(exclusive: Bool, continuation: CheckedContinuation<Void, Never>)] = []

    func enter(exclusive wantsExclusive: Bool) async {
        if waiting.isEmpty && canEnter(exclusive: wantsExclusive) {
            admit(exclusive: wantsExclusive)
            return
        }
        // `leave` admits it before resuming it.
        await withCheckedContinuation { waiting.append((wantsExclusive, $0)) }
    }

    func leave(exclusive wasExclusive: Bool) {
        if wasExclusive { exclusive = false } else { shared -= 1 }
        while let next = waiting.first, canEnter(exclusive: next.exclusive) {
            waiting.removeFirst()
            admit(exclusive: next.exclusive)
            next.continuation.resume()
        }
    }

    private func canEnter(exclusive wantsExclusive: Bool) -> Bool {
        !exclusive && (!wantsExclusive || shared == 0)
    }

    private func admit(exclusive wantsExclusive: Bool) {
        if wantsExclusive { exclusive = true } else { shared += 1 }
    }
}
