import Logging
import NIOCore
import NIOPosix
import SQLKit
import SQLiteKit

/// A few read-only connections to the store's SQLite file, for the statements `Store.reader` runs.
///
/// The writer (`ExclusiveSessionDatabase`) is one connection: its statements and transactions go one
/// session at a time, and a read sent there queued behind the runner's progress writes and
/// checkpoint transactions (an API GET during a batch: p99 29–77 ms). In WAL mode a reader on another
/// connection never waits for the writer, and it sees every transaction committed before its
/// statement began.
///
/// That holds per statement only while a statement has its connection to itself: two statements
/// interleaved on one connection share one read transaction, so the second would see the snapshot
/// the first began with, and could miss a write its caller had just committed. So each statement
/// leases a whole connection, and there are a few of them. They run on a thread pool of their own:
/// on the shared one (as many threads as cores) a read would wait for the writer's statements.
final class SQLiteReadConnections: AsyncSQLDatabase, Sendable {
    /// Enough for the API's reads to run beside each other on a small machine; more only add
    /// connections holding WAL snapshots.
    static let count = 2

    private let connections: [SQLiteConnection]
    private let databases: [any SQLDatabase]
    private let threadPool: NIOThreadPool
    private let idle: IdleConnections

    private init(connections: [SQLiteConnection], threadPool: NIOThreadPool) {
        self.connections = connections
        // No query logging: binds hold ciphertexts, token hashes and addresses.
        self.databases = connections.map { $0.sql(queryLogLevel: nil) }
        self.threadPool = threadPool
        self.idle = IdleConnections(count: connections.count)
    }

    /// Opens `count` connections to the SQLite file at `path`, which must already be in WAL mode
    /// (the writer sets it when it opens the file; it is a property of the file).
    static func open(path: String, logger: Logger) async throws -> SQLiteReadConnections {
        let threadPool = NIOThreadPool(numberOfThreads: Self.count)
        threadPool.start()
        var connections: [SQLiteConnection] = []
        do {
            for _ in 0..<Self.count {
                let connection = try await SQLiteConnection.open(
                    storage: .file(path: path), threadPool: threadPool, logger: logger,
                    on: MultiThreadedEventLoopGroup.singleton.any())
                connections.append(connection)
                let database = connection.sql(queryLogLevel: nil)
                // A write sent here by mistake fails instead of racing the writer for the file's lock.
                try await database.raw("PRAGMA query_only = ON").run()
                // Opening a read transaction can meet a checkpoint resetting the WAL: wait, not fail.
                try await database.raw("PRAGMA busy_timeout = 15000").run()
            }
        } catch {
            for connection in connections { try? await connection.close() }
            try? await threadPool.shutdownGracefully()
            throw error
        }
        return SQLiteReadConnections(connections: connections, threadPool: threadPool)
    }

    func close() async throws {
        for connection in connections { try await connection.close() }
        try await threadPool.shutdownGracefully()
    }

    var logger: Logger { databases[0].logger }
    var eventLoop: any EventLoop { databases[0].eventLoop }
    var version: (any SQLDatabaseReportedVersion)? { databases[0].version }
    var dialect: any SQLDialect { databases[0].dialect }
    var queryLogLevel: Logger.Level? { nil }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> ()) async throws {
        try await withSession { try await $0.execute(sql: query, onRow) }
    }

    /// `closure` has one connection to itself for its statements (each still its own snapshot,
    /// unless `closure` begins a transaction).
    func withSession<R>(_ closure: @escaping @Sendable (any SQLDatabase) async throws -> R) async throws -> R {
        let index = await idle.take()
        let result: R
        do {
            result = try await closure(databases[index])
        } catch {
            await idle.give(back: index)
            throw error
        }
        await idle.give(back: index)
        return result
    }
}

/// Which read connections are free; a statement waits, first come first served, when none is.
actor IdleConnections {
    private var free: [Int]
    private var waiting: [CheckedContinuation<Int, Never>] = []

    init(count: Int) {
        free = Array(0..<count)
    }

    func take() async -> Int {
        if waiting.isEmpty, let index = free.popLast() { return index }
        // `give(back:)` hands it a connection directly.
        return await withCheckedContinuation { waiting.append($0) }
    }

    func give(back index: Int) {
        if waiting.isEmpty {
            free.append(index)
        } else {
            waiting.removeFirst().resume(returning: index)
        }
    }
}
