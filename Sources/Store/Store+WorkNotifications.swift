import Foundation
import Logging
import PostgresKit
import SQLKit

/// Opens a PostgreSQL connection outside the pool for LISTEN: a listening connection is held for
/// as long as the node runs, and would otherwise take one of the pool's connections for good.
struct WorkListenConnector: Sendable {
    var connect: @Sendable () async throws -> PostgresConnection
}

extension Store {
    /// Tells every node listening (`listenForWork`) that work was queued, retried, resumed or
    /// cancelled. Called inside the transaction that makes the change, so the notice goes out at
    /// its commit and never for a rolled-back one. SQLite: nothing (one process; the API's
    /// `migrationQueued` wakes its runner).
    static func announceWork(_ db: any SQLDatabase, _ flavor: SQLFlavor) async throws {
        guard let notify = flavor.notifyWork else { return }
        try await db.raw(SQLQueryString(notify)).run()
    }

    /// Whether `listenForWork` has anything to listen to (PostgreSQL).
    public var announcesWork: Bool { openListenConnection != nil }

    /// Calls `onWork` for every work notice another process (or this one) sent, until the task is
    /// cancelled. A lost connection (the database restarted, the network dropped) is logged once and
    /// opened again with backoff (1 s doubling to 30 s); once back, `onWork` is called at once, since
    /// notices sent meanwhile are lost. The runner's poll covers the gap. SQLite: returns at once.
    public func listenForWork(onWork: @escaping @Sendable () -> Void) async {
        guard let connector = openListenConnection else { return }
        var failures = 0
        while !Task.isCancelled {
            var lost: (any Error)?
            do {
                let connection = try await connector.connect()
                do {
                    try await withTaskCancellationHandler {
                        try await connection.listen(on: SQLFlavor.workChannel) { notices in
                            if failures > 0 {
                                logger.notice("listening for queued work again")
                                failures = 0
                                onWork()
                            }
                            for try await _ in notices { onWork() }
                        }
                    } onCancel: {
                        connection.close().whenComplete { _ in }
                    }
                    // The notices ended without an error: the server closed the connection.
                    if !Task.isCancelled { lost = ListenerClosed() }
                } catch {
                    lost = error
                }
                // Closed on every path: the driver requires it before the connection goes.
                try? await connection.close()
            } catch {
                lost = error
            }
            if Task.isCancelled { return }
            if let lost {
                if failures == 0 {
                    logger.warning(
                        "lost the database's work notices; polling until they are back",
                        metadata: ["error": "\(PostgresOpenFailure.reason(lost))"])
                }
                failures += 1
            }
            try? await Task.sleep(for: .seconds(min(30, 1 << min(max(0, failures - 1), 5))))
        }
    }
}

private struct ListenerClosed: Error, CustomStringConvertible {
    var description: String { "the server closed the connection" }
}
