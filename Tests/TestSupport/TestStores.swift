import Foundation
import Store

/// The databases the store runs on; store tests take it as an argument and run on each.
public enum StoreBackend: String, CaseIterable, Sendable, CustomStringConvertible {
    case sqlite
    case postgres

    public var description: String { rawValue }
}

/// One test's database on a backend: a file in a temporary directory for SQLite, a fresh database
/// in the shared test cluster for PostgreSQL. Open as many stores on it as the test needs (they
/// share the key), then `remove()` it.
public struct TestDatabase: Sendable {
    public let backend: StoreBackend
    public let secrets: SecretBox
    private let location: Location

    private enum Location: Sendable {
        case sqlite(directory: String)
        case postgres(server: PostgresServer, database: String)
    }

    public static func make(_ backend: StoreBackend, secrets: SecretBox = .random()) async throws -> TestDatabase {
        switch backend {
        case .sqlite:
            let directory = NSTemporaryDirectory() + "mailporter-store-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            return TestDatabase(backend: backend, secrets: secrets, location: .sqlite(directory: directory))
        case .postgres:
            let server = try await SharedPostgres.shared.server()
            let database = try await server.createDatabase()
            return TestDatabase(
                backend: backend, secrets: secrets, location: .postgres(server: server, database: database))
        }
    }

    /// The `MAILPORTER_DATABASE_URL` a `mailporter` process uses to reach this database.
    public var url: String {
        switch location {
        case .sqlite(let directory): "sqlite:\(directory)/mailporter.sqlite"
        case .postgres(let server, let database): server.url(database: database)
        }
    }

    /// A new store on this database (the schema is applied by the first).
    public func open() async throws -> Store {
        switch location {
        case .sqlite(let directory):
            return try await Store.openSQLite(path: directory + "/mailporter.sqlite", secrets: secrets)
        case .postgres(let server, let database):
            return try await Store.openPostgres(
                url: try PostgresURL.parse(server.url(database: database)), secrets: secrets, maximumConnections: 4)
        }
    }

    /// Runs SQL as the cluster's superuser (PostgreSQL only): checks against the database itself.
    public func psql(_ sql: String) throws -> String? {
        guard case .postgres(let server, let database) = location else { return nil }
        return try server.psql(sql, database: database)
    }

    public func remove() async {
        switch location {
        case .sqlite(let directory): try? FileManager.default.removeItem(atPath: directory)
        case .postgres(let server, let database): await server.dropDatabase(database)
        }
    }
}

/// A fresh test database on `backend` for the body, removed afterwards.
public func withTestDatabase<T>(
    _ backend: StoreBackend, secrets: SecretBox = .random(), _ body: (TestDatabase) async throws -> T
) async throws -> T {
    let database = try await TestDatabase.make(backend, secrets: secrets)
    do {
        let result = try await body(database)
        await database.remove()
        return result
    } catch {
        await database.remove()
        throw error
    }
}

/// A fresh store on `backend` (SQLite: in memory) for the body, closed and removed afterwards.
public func withStore<T>(_ backend: StoreBackend, _ body: (Store) async throws -> T) async throws -> T {
    if backend == .sqlite {
        let store = try await Store.openInMemorySQLite()
        return try await closing(store, body)
    }
    return try await withTestDatabase(backend) { database in
        try await closing(try await database.open(), body)
    }
}

private func closing<T>(_ store: Store, _ body: (Store) async throws -> T) async throws -> T {
    do {
        let result = try await body(store)
        try await store.close()
        return result
    } catch {
        try? await store.close()
        throw error
    }
}
