import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A private PostgreSQL cluster for the tests: `initdb` in a temporary directory, run by the
/// `postgres` OS user when the tests run as root (the server refuses root), listening on a loopback
/// high port with its unix socket in that directory, password (SCRAM) logins over TCP. Stopped and
/// removed by `stop()` or when the test process exits.
public final class PostgresServer: Sendable {
    public let directory: String
    public let port: Int
    public static let superuser = "postgres"
    public let password: String
    private let binDirectory: String
    private let databaseCounter = Mutex(0)

    private init(directory: String, port: Int, password: String, binDirectory: String) {
        self.directory = directory
        self.port = port
        self.password = password
        self.binDirectory = binDirectory
    }

    /// The cluster's binaries: PostgreSQL 15 (Debian's `postgresql` package) or the newest installed.
    static func findBinDirectory() throws -> String {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [])
            .compactMap(Int.init).sorted(by: >)
        let preferred = versions.contains(15) ? [15] + versions : versions
        for version in preferred where FileManager.default.isExecutableFile(atPath: "\(root)/\(version)/bin/initdb") {
            return "\(root)/\(version)/bin"
        }
        throw ProcessFailure(
            command: "initdb", status: -1,
            output: "PostgreSQL is not installed (no \(root)/*/bin/initdb); run scripts/setup-test-deps")
    }

    /// Starts a cluster; initdb and pg_ctl are waited for on a thread of their own (see `runProcess`).
    public static func start() async throws -> PostgresServer {
        try await offTheCooperativePool { try startBlocking() }
    }

    static func startBlocking() throws -> PostgresServer {
        let bin = try findBinDirectory()
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try startOnce(binDirectory: bin)
            } catch let failure as ProcessFailure where attempt < 3 && failure.output.contains("could not bind") {
                continue
            }
        }
    }

    private static func startOnce(binDirectory: String) throws -> PostgresServer {
        let directory = "/tmp/mp-pg-\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))"
        let port = try DovecotServer.freePorts(1)[0]
        let password = "pg-\(UUID().uuidString)"
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        let server = PostgresServer(directory: directory, port: port, password: password, binDirectory: binDirectory)
        do {
            try Data(password.utf8).write(to: URL(fileURLWithPath: directory + "/pwfile"))
            try server.handOverToServerUser()
            try server.runAsServerUser(
                "initdb",
                [
                    "-D", directory + "/data", "-U", superuser, "--pwfile", directory + "/pwfile",
                    "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync",
                ])
            try server.startServer()
        } catch let failure as ProcessFailure {
            let log = (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? ""
            server.stop()
            throw ProcessFailure(command: failure.command, status: failure.status, output: failure.output + log)
        } catch {
            server.stop()
            throw error
        }
        RunningPostgresServers.shared.add(server)
        return server
    }

    /// A new empty database (owned by the superuser); its URL connects over TCP with the password.
    public func createDatabase(prefix: String = "test") async throws -> String {
        let number = databaseCounter.withLock { value in
            value += 1
            return value
        }
        let name = "\(prefix)_\(number)_\(UInt32.random(in: 0...UInt32.max))"
        _ = try await offTheCooperativePool { try self.psql("CREATE DATABASE \(name)") }
        return name
    }

    /// Drops a database, ending any session still connected to it.
    public func dropDatabase(_ name: String) async {
        _ = try? await offTheCooperativePool { try self.psql("DROP DATABASE IF EXISTS \(name) WITH (FORCE)") }
    }

    /// The URL of `database` as the superuser over loopback TCP.
    public func url(database: String) -> String {
        "postgres://\(Self.superuser):\(password)@127.0.0.1:\(port)/\(database)?sslmode=disable"
    }

    /// Runs SQL as the superuser over the unix socket; returns psql's unaligned output.
    @discardableResult
    public func psql(_ sql: String, database: String = "postgres") throws -> String {
        try runAsServerUser(
            "psql",
            [
                "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", directory, "-p", "\(port)",
                "-U", Self.superuser, "-d", database, "-c", sql,
            ])
    }

    private func startServer() throws {
        // Durability is not what these tests check; speed on a loaded machine is what they need.
        let settings = [
            "-p \(port)", "-k \(directory)", "-c listen_addresses=127.0.0.1", "-c fsync=off",
            "-c synchronous_commit=off", "-c full_page_writes=off", "-c max_connections=400",
            "-c shared_buffers=32MB",
        ].joined(separator: " ")
        try runAsServerUser(
            "pg_ctl",
            ["-D", directory + "/data", "-l", directory + "/server.log", "-w", "-t", "60", "-o", settings, "start"])
    }

    /// Stops the server at once, as a crash would (every connection cut, no checkpoint), keeps it
    /// down for `pause`, then starts it again on the same port and data.
    public func restart(downFor pause: Duration) async throws {
        try await offTheCooperativePool {
            _ = try self.runAsServerUser("pg_ctl", ["-D", self.directory + "/data", "-m", "immediate", "-w", "stop"])
        }
        try await Task.sleep(for: pause)
        try await offTheCooperativePool { try self.startServer() }
    }

    public func stop() {
        if FileManager.default.fileExists(atPath: directory + "/data/postmaster.pid") {
            _ = try? runAsServerUser("pg_ctl", ["-D", directory + "/data", "-m", "immediate", "-w", "stop"])
        }
        RunningPostgresServers.shared.remove(self)
        try? FileManager.default.removeItem(atPath: directory)
    }

    // MARK: Running as the server's user

    private static var isRoot: Bool { getuid() == 0 }

    /// Gives the directory (and the password file in it) to `postgres`: initdb and the server run as it.
    private func handOverToServerUser() throws {
        guard Self.isRoot else { return }
        guard let entry = getpwnam(Self.superuser) else {
            throw ProcessFailure(
                command: "getpwnam", status: -1,
                output: "no \(Self.superuser) OS user; install Debian's postgresql package (scripts/setup-test-deps)")
        }
        for path in [directory, directory + "/pwfile"]
        where chown(path, entry.pointee.pw_uid, entry.pointee.pw_gid) != 0 {
            throw ProcessFailure(command: "chown", status: errno, output: "cannot give \(path) to \(Self.superuser)")
        }
    }

    @discardableResult
    private func runAsServerUser(_ tool: String, _ arguments: [String]) throws -> String {
        let executable = "\(binDirectory)/\(tool)"
        if Self.isRoot {
            return try runProcess("/usr/sbin/runuser", ["-u", Self.superuser, "--", executable] + arguments)
        }
        return try runProcess(executable, arguments)
    }
}

/// Stops every cluster this process started when it exits, so no PostgreSQL outlives the tests.
final class RunningPostgresServers: Sendable {
    static let shared = RunningPostgresServers()
    private let servers = Mutex<[String: PostgresServer]>([:])

    private init() {
        atexit {
            for server in RunningPostgresServers.shared.servers.withLock({ Array($0.values) }) { server.stop() }
        }
    }

    func add(_ server: PostgresServer) { servers.withLock { $0[server.directory] = server } }
    func remove(_ server: PostgresServer) { servers.withLock { _ = $0.removeValue(forKey: server.directory) } }
}

/// One cluster shared by every test in the process, started on first use; each test takes a database.
public actor SharedPostgres {
    public static let shared = SharedPostgres()
    private var server: PostgresServer?

    private var starting: Task<PostgresServer, any Error>?

    public func server() async throws -> PostgresServer {
        if let server { return server }
        // Tests ask at once; they all wait for the one start.
        let start = starting ?? Task { try await PostgresServer.start() }
        starting = start
        let started = try await start.value
        server = started
        return started
    }
}

private func offTheCooperativePool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result(catching: work)) }
    }
}
