import ArgumentParser
import Foundation
import Logging
import Store
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `--data-dir` and `--database-url`, each falling back to its environment variable.
struct DataDirectoryOptions: ParsableArguments {
    @Option(
        name: .customLong("data-dir"),
        help: "Directory for the database and the secret key (env MAILPORTER_DATA_DIR; default ./mailporter-data).")
    var dataDir: String?

    @Option(
        name: .customLong("database-url"),
        help:
            "sqlite:PATH, a file path, or postgres://USER:PASSWORD@HOST:PORT/DATABASE (env MAILPORTER_DATABASE_URL; default <data-dir>/mailporter.sqlite)."
    )
    var databaseURL: String?

    @Option(
        name: .customLong("secret-key-file"),
        help:
            "File holding the base64 key that encrypts stored credentials (env MAILPORTER_SECRET_KEY holds the key itself; default <data-dir>/secret.key, generated)."
    )
    var secretKeyFile: String?

    @Option(
        name: .customLong("database-pool-size"),
        help:
            "PostgreSQL connections this process keeps at most, 2 to 500; a process that runs jobs has one more for work notices (env MAILPORTER_DATABASE_POOL_SIZE; default 10)."
    )
    var databasePoolSize: Int?

    /// Resolves the options against the process environment.
    func resolve(environment: [String: String] = ProcessInfo.processInfo.environment) throws(DataDirectory.Failure)
        -> DataDirectory
    {
        var secretKey = environment["MAILPORTER_SECRET_KEY"]
        if let secretKeyFile {
            do {
                secretKey = try readTextFile(secretKeyFile).trimmingCharacters(in: .whitespacesAndNewlines)
            } catch {
                throw DataDirectory.Failure(code: "secret_key_unusable", message: "cannot read \(secretKeyFile)")
            }
        }
        var poolSize = Store.defaultPoolSize
        if let databasePoolSize {
            poolSize = databasePoolSize
        } else if let text = environment["MAILPORTER_DATABASE_POOL_SIZE"]?.trimmingCharacters(in: .whitespaces),
            !text.isEmpty
        {
            guard let parsed = Int(text) else {
                throw DataDirectory.Failure(
                    code: "invalid_pool_size", message: "MAILPORTER_DATABASE_POOL_SIZE must be a number, not \(text)")
            }
            poolSize = parsed
        }
        guard DataDirectory.poolSizes.contains(poolSize) else {
            throw DataDirectory.Failure(
                code: "invalid_pool_size",
                message: "MAILPORTER_DATABASE_POOL_SIZE must be between \(DataDirectory.poolSizes.lowerBound) and "
                    + "\(DataDirectory.poolSizes.upperBound)")
        }
        var directory = try DataDirectory(
            path: dataDir ?? environment["MAILPORTER_DATA_DIR"],
            databaseURL: databaseURL ?? environment["MAILPORTER_DATABASE_URL"],
            secretKey: secretKey)
        directory.poolSize = poolSize
        return directory
    }
}

/// Where the service keeps its state: the data directory (mode 0700) with the SQLite database and the
/// generated secret key, unless `MAILPORTER_DATABASE_URL` / `MAILPORTER_SECRET_KEY` say otherwise.
/// Used by the admin commands and `serve`.
struct DataDirectory: Sendable, Equatable {
    static let defaultPath = "./mailporter-data"
    static let databaseFileName = "mailporter.sqlite"

    /// The database to open.
    enum Database: Sendable, Equatable {
        case sqlite(path: String)
        /// Shared by any number of nodes.
        case postgres(PostgresURL)
    }

    /// A configuration or start-up problem, printed as one `error:` line.
    struct Failure: Error, Equatable, CustomStringConvertible {
        var code: String
        var message: String

        var description: String { "\(code): \(message)" }
    }

    /// The data directory.
    var path: String
    var database: Database
    /// `MAILPORTER_SECRET_KEY` when set; otherwise the key file in the data directory is used.
    var secretKey: String?
    /// PostgreSQL: the pool's most connections (`MAILPORTER_DATABASE_POOL_SIZE`). A process that
    /// runs jobs holds one more that listens for work; the sum over all nodes must stay under the
    /// server's max_connections. SQLite: unused (one connection).
    var poolSize = Store.defaultPoolSize
    /// At least 2: a runner keeps one pooled connection for its node lock for as long as it runs.
    static let poolSizes = 2...500

    init(path: String?, databaseURL: String?, secretKey: String?) throws(Failure) {
        let chosen = path?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        self.path = chosen.isEmpty ? Self.defaultPath : chosen
        let url = databaseURL?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        database =
            url.isEmpty
            ? .sqlite(path: (self.path as NSString).appendingPathComponent(Self.databaseFileName))
            : try Self.parseDatabaseURL(url)
        self.secretKey = secretKey
        if case .postgres = database, secretKey?.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ?? true {
            // A key generated here would differ from every other node's: credentials one node
            // stored could not be opened by the node that runs the job.
            throw Failure(
                code: "secret_key_required",
                message: "a PostgreSQL database is shared by several nodes, which must all use the same "
                    + "secret key; set MAILPORTER_SECRET_KEY or --secret-key-file to the key every node uses "
                    + "(`openssl rand -base64 32` makes one)")
        }
    }

    /// `sqlite:PATH`, `sqlite://PATH`, `file:PATH`, `file://PATH`, a plain path, or
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (see `PostgresURL.parse`).
    static func parseDatabaseURL(_ url: String) throws(Failure) -> Database {
        let lower = url.lowercased()
        if lower.hasPrefix("postgres:") || lower.hasPrefix("postgresql:") {
            do {
                return .postgres(try PostgresURL.parse(url))
            } catch {
                throw Failure(code: "invalid_database_url", message: error.reason)
            }
        }
        for scheme in ["sqlite:", "file:"] where lower.hasPrefix(scheme) {
            var rest = String(url.dropFirst(scheme.count))
            if rest.hasPrefix("//") { rest.removeFirst(2) }  // sqlite:///abs/path → /abs/path
            if let query = rest.firstIndex(of: "?") { rest = String(rest[..<query]) }
            let path = rest.removingPercentEncoding ?? rest
            guard !path.isEmpty, path != ":memory:" else {
                throw Failure(
                    code: "invalid_database_url",
                    message: "\(scheme) needs a file path, e.g. \(scheme)./data/mailporter.sqlite")
            }
            return .sqlite(path: path)
        }
        if let colon = url.firstIndex(of: ":"), url[..<colon].allSatisfy({ $0.isLetter || $0 == "+" }),
            url[colon...].hasPrefix("://")
        {
            throw Failure(
                code: "invalid_database_url",
                message: "unsupported database URL scheme \(url[..<colon]); use sqlite:PATH or postgres://")
        }
        return .sqlite(path: url)
    }

    /// Creates the data directory with mode 0700 if it is missing (an existing one is left as it is).
    func prepare() throws(Failure) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw Failure(code: "data_dir_unusable", message: "\(path) exists and is not a directory")
            }
            return
        }
        do {
            try FileManager.default.createDirectory(
                atPath: path, withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700])
        } catch {
            throw Failure(code: "data_dir_unusable", message: "cannot create \(path): \(error.localizedDescription)")
        }
        // The umask may have narrowed the mode, never widened it; make it exactly 0700.
        chmod(path, 0o700)
    }

    /// The key that encrypts stored credentials: `MAILPORTER_SECRET_KEY`, or `secret.key` (mode 0600)
    /// in the data directory, generated on first use.
    func secretBox() throws(Failure) -> SecretBox {
        do {
            return try SecretBox.loadOrCreate(dataDirectory: path, environmentKey: secretKey)
        } catch {
            throw Failure(code: "secret_key_unusable", message: "\(error)")
        }
    }

    /// Prepares the directory, loads the key and opens the store (applying schema migrations). A
    /// PostgreSQL node has no data directory of its own: its key is explicit (checked in `init`).
    func openStore(logger: Logger = DataDirectory.quietLogger) async throws(Failure) -> Store {
        switch database {
        case .sqlite(let databasePath):
            try prepare()
            let secrets = try secretBox()
            Self.createPrivateFile(databasePath)
            do {
                return try await Store.openSQLite(path: databasePath, secrets: secrets, logger: logger)
            } catch {
                throw Failure(
                    code: "database_unavailable", message: "cannot open SQLite database \(databasePath): \(error)")
            }
        case .postgres(let url):
            let secrets = try secretBox()
            do {
                return try await Store.openPostgres(
                    url: url, secrets: secrets, logger: logger, maximumConnections: poolSize)
            } catch let failure as PostgresOpenFailure {
                throw Failure(code: "database_unavailable", message: failure.description)
            } catch {
                throw Failure(code: "database_unavailable", message: "cannot open PostgreSQL database \(url.redacted)")
            }
        }
    }

    /// Creates `path` (and its directory, 0700) as an empty file with mode 0600 if it does not exist, so a
    /// new database and its -wal/-shm files (SQLite gives them the database's mode) are private. An
    /// existing file is left as it is; failures are left to the open that follows.
    private static func createPrivateFile(_ path: String) {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty, !FileManager.default.fileExists(atPath: directory) {
            try? FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700])
        }
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if descriptor >= 0 {
            fchmod(descriptor, 0o600)  // exactly 0600 whatever the umask
            close(descriptor)
        }
    }

    /// A logger for one-shot commands: only warnings and worse, on standard error.
    static var quietLogger: Logger {
        var logger = Logger(label: "mailporter.store") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = .warning
        return logger
    }
}
