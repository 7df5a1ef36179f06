import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresKit
import SQLKit

extension Store {
    /// Connections in a node's pool unless configured (`MAILPORTER_DATABASE_POOL_SIZE`).
    public static let defaultPoolSize = 10

    /// Opens a pooled PostgreSQL database and brings its schema up to date (under an advisory lock,
    /// so nodes starting together are safe). Fails early with a `PostgresOpenFailure` saying what
    /// is wrong (unreachable, refused login, no such database) without the password.
    ///
    /// The pool is postgres-nio's `PostgresClient` rather than async-kit's `EventLoopGroupConnectionPool`:
    /// async-kit is deprecated upstream, and `PostgresClient` is the pool postgres-kit recommends,
    /// with keep-alives, idle timeouts and one lease per `withConnection`, which is what
    /// `withSession` needs to pin a transaction to one connection (`PooledPostgresDatabase`).
    public static func openPostgres(
        url: PostgresURL, secrets: SecretBox,
        logger: Logger = Logger(label: "mailporter.store"),
        maximumConnections: Int = Store.defaultPoolSize
    ) async throws -> Store {
        try await openPostgres(
            url: url, secrets: secrets, logger: logger, maximumConnections: maximumConnections,
            poolLogLevel: .critical)
    }

    /// `openPostgres`, with the level of the pool's own log lines (tests raise it to see them).
    static func openPostgres(
        url: PostgresURL, secrets: SecretBox, logger: Logger, maximumConnections: Int, poolLogLevel: Logger.Level
    ) async throws -> Store {
        // One direct connection first: the pool retries a failing connect quietly and forever,
        // while start-up should say at once why it cannot reach the database.
        do {
            let probe = try await PostgresConnection.connect(
                configuration: try url.connectionConfiguration(), id: 0, logger: logger)
            try? await probe.close()
        } catch {
            throw PostgresOpenFailure(url: url, error: error)
        }
        var configuration = PostgresClient.Configuration(
            host: url.host, port: url.port, username: url.username, password: url.password,
            database: url.database, tls: try url.clientTLS())
        configuration.options.maximumConnections = max(1, maximumConnections)
        // The pool's own log lines name the driver's error types ("PSQLError(code: connectionError)");
        // failures reach the store's callers as `DatabaseFailure`s, which say what happened.
        var poolLogger = logger
        poolLogger.logLevel = poolLogLevel
        let client = PostgresClient(configuration: configuration, backgroundLogger: poolLogger)
        // Started immediately, on this thread up to its first suspension, so `run()` has marked the
        // client running before the schema migration below leases a connection (a plain `Task`
        // may start later: the lease then comes first, and the client warns that `run()` was not
        // called).
        let running = Task.immediate { await client.run() }
        let database = PooledPostgresDatabase(client: client, logger: logger)
        let listenConfiguration = try url.connectionConfiguration()
        let connector = WorkListenConnector {
            try await PostgresConnection.connect(configuration: listenConfiguration, id: 1, logger: logger)
        }
        do {
            return try await open(database: database, secrets: secrets, logger: logger, listenConnector: connector) {
                running.cancel()
                await running.value
            }
        } catch {
            running.cancel()
            await running.value
            throw PostgresOpenFailure(url: url, error: error)
        }
    }
}

/// Why a PostgreSQL database could not be opened, in words for the operator: the redacted URL and
/// the server's own message (its text names no password), never the driver's type names.
public struct PostgresOpenFailure: Error, CustomStringConvertible {
    public var url: String
    public var reason: String

    init(url: PostgresURL, error: any Error) {
        self.url = url.redacted
        self.reason = Self.reason(error)
    }

    public var description: String { "cannot open PostgreSQL database \(url): \(reason)" }

    static func reason(_ error: any Error) -> String {
        if let failure = error as? PostgresOpenFailure { return failure.reason }
        guard let error = error as? PSQLError else {
            if error is NIOSSLError { return "TLS failed (check sslmode and the server's certificate)" }
            if let connect = error as? NIOConnectionError {
                return "cannot connect to \(connect.host):\(connect.port) (refused, unreachable or unknown host)"
            }
            if error is IOError || error is ChannelError { return "the connection failed" }
            return "\(error)"
        }
        if let message = error.serverInfo?[.message] {
            let state = error.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
            return message + state
        }
        switch error.code {
        case .connectionError:
            if let underlying = error.underlying { return reason(underlying) }
            return "cannot connect"
        case .sslUnsupported: return "the server does not offer TLS (sslmode=require)"
        case .authMechanismRequiresPassword: return "the server asks for a password and the URL has none"
        case .unsupportedAuthMechanism: return "the server asks for an authentication method this client lacks"
        case .saslError: return "authentication failed"
        case .serverClosedConnection, .uncleanShutdown: return "the server closed the connection"
        default: return "the database reported an error"
        }
    }
}

extension PostgresURL {
    func connectionConfiguration() throws -> PostgresConnection.Configuration {
        let tls: PostgresConnection.Configuration.TLS =
            switch self.tls {
            case .disable: .disable
            case .prefer: .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
            case .require: .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
            }
        return PostgresConnection.Configuration(
            host: host, port: port, username: username, password: password, database: database, tls: tls)
    }

    func clientTLS() throws -> PostgresClient.Configuration.TLS {
        switch tls {
        case .disable: .disable
        case .prefer: .prefer(.makeClientConfiguration())
        case .require: .require(.makeClientConfiguration())
        }
    }
}

/// The store's PostgreSQL database: each statement on a connection leased from the pool for that
/// statement, each session (`withSession`: a transaction, a schema migration) on one connection
/// leased for the whole session, so a transaction's statements never mix with another task's.
/// No query logging: binds hold ciphertexts, token hashes and addresses.
struct PooledPostgresDatabase: AsyncSQLDatabase {
    let client: PostgresClient
    let logger: Logger

    var eventLoop: any EventLoop { PostgresClient.defaultEventLoopGroup.any() }
    var version: (any SQLDatabaseReportedVersion)? { nil }
    var dialect: any SQLDialect { PostgresDialect() }
    var queryLogLevel: Logger.Level? { nil }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> ()) async throws {
        do {
            try await client.withConnection { connection in
                try await connection.sql(queryLogLevel: nil, logger: logger).execute(sql: query, onRow)
            }
        } catch {
            throw DatabaseFailure(error) ?? error
        }
    }

    func withSession<R>(_ closure: @escaping @Sendable (any SQLDatabase) async throws -> R) async throws -> R {
        do {
            let result = try await client.withConnection { connection in
                Unchecked(try await closure(connection.sql(queryLogLevel: nil, logger: logger)))
            }
            return result.value
        } catch {
            throw DatabaseFailure(error) ?? error
        }
    }
}

/// Carries the session's result out of the pool's lease, which wants a `sending` value; the caller
/// of `withSession` is the only one that ever sees it.
private struct Unchecked<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}
