import Foundation
import IMAPClient
import NIOCore
import NIOPosix
import Synchronization

/// A real Dovecot started for the tests on 127.0.0.1 (scripts/dovecot-test-server), in its own
/// directory with its own ports. Any user name logs in with `DovecotServer.password`, so each test
/// takes fresh user names and never sees another test's mail.
public final class DovecotServer: Sendable {
    public enum Layout: String, Sendable {
        /// Separator `.`, personal namespace prefix `INBOX.` (Courier / cPanel style).
        case dot
        /// Separator `/`, no prefix.
        case slash
    }

    /// The server certificate: by default signed by the server's own test CA (`certificatePEM`)
    /// for 127.0.0.1 and localhost.
    public struct Certificate: Sendable {
        /// subjectAltName entries, like `DNS:mail.example.test` or `IP:127.0.0.1`.
        public var names: [String]
        /// Self-signed (CA:TRUE, like a snakeoil certificate); `certificatePEM` is then the certificate itself.
        public var selfSigned: Bool

        public init(names: [String] = ["IP:127.0.0.1", "DNS:localhost"], selfSigned: Bool = false) {
            self.names = names
            self.selfSigned = selfSigned
        }
    }

    public static let password = "test-pass"
    public static let masterUser = "admin"
    public static let masterPassword = "admin-pass"

    public let directory: String
    public let imapPort: Int
    public let imapsPort: Int
    public let layout: Layout
    public let certificatePEM: String

    private init(directory: String, imapPort: Int, imapsPort: Int, layout: Layout, certificatePEM: String) {
        self.directory = directory
        self.imapPort = imapPort
        self.imapsPort = imapsPort
        self.layout = layout
        self.certificatePEM = certificatePEM
    }

    /// Starts a server on ports that were free a moment before. With the proxies and servers of
    /// tests running in parallel one is now and then taken meanwhile; a start that lost that race
    /// is tried again on other ports.
    /// `imapCapability` replaces the capabilities Dovecot advertises after login (to test a server
    /// without, say, CONDSTORE).
    public static func start(
        layout: Layout, quotaKB: Int? = nil, certificate: Certificate = Certificate(), imapCapability: String? = nil
    ) throws -> DovecotServer {
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try startOnce(
                    layout: layout, quotaKB: quotaKB, certificate: certificate, imapCapability: imapCapability)
            } catch let failure as ProcessFailure where attempt < 3 && failure.output.contains("Address already in use")
            {
                continue
            }
        }
    }

    private static func startOnce(layout: Layout, quotaKB: Int?, certificate: Certificate, imapCapability: String?)
        throws -> DovecotServer
    {
        let directory =
            "/tmp/mp-dovecot-\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))"
        let ports = try freePorts(2)
        var arguments = [
            "start", directory, "--imap-port", "\(ports[0])", "--imaps-port", "\(ports[1])",
            "--layout", layout.rawValue, "--any-user-password", password,
        ]
        if let quotaKB { arguments += ["--quota-kb", "\(quotaKB)"] }
        arguments += ["--cert-names", certificate.names.joined(separator: ",")]
        if certificate.selfSigned { arguments.append("--self-signed") }
        if let imapCapability { arguments += ["--imap-capability", imapCapability] }
        do {
            _ = try runScript(arguments)
        } catch {
            // Leave nothing behind from a start that failed half-way.
            _ = try? runScript(["stop", directory])
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
        let certificate = try String(contentsOfFile: directory + "/ca.pem", encoding: .utf8)
        let server = DovecotServer(
            directory: directory, imapPort: ports[0], imapsPort: ports[1], layout: layout,
            certificatePEM: certificate)
        RunningServers.shared.add(directory)
        return server
    }

    public func stop() {
        _ = try? Self.runScript(["stop", directory])
        RunningServers.shared.remove(directory)
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// `doveadm` against this server: an independent view of what is stored.
    public func doveadm(_ arguments: [String], input: Data? = nil) throws -> String {
        try Self.runScript(["doveadm", directory] + arguments, input: input)
    }

    /// A connection configuration that trusts this server's test CA.
    public func configuration(security: ConnectionSecurity = .none) -> ServerConfiguration {
        ServerConfiguration(
            host: "127.0.0.1", port: security == .ssl ? imapsPort : imapPort, security: security,
            additionalTrustRootsPEM: [certificatePEM], connectTimeout: .seconds(5),
            greetingTimeout: .seconds(10), idleTimeout: .seconds(60))
    }

    /// The folder name as this server spells a personal folder given with `/` as separator.
    public func folder(_ path: String) -> String {
        if path.uppercased() == "INBOX" { return "INBOX" }
        switch layout {
        case .dot: return "INBOX." + path.replacingOccurrences(of: "/", with: ".")
        case .slash: return path
        }
    }

    public var separator: Character { layout == .dot ? "." : "/" }

    // MARK: Helpers

    static var repositoryRoot: URL {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
        }
        return URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
    }

    @discardableResult
    static func runScript(_ arguments: [String], input: Data? = nil) throws -> String {
        let script = repositoryRoot.appendingPathComponent("scripts/dovecot-test-server").path
        return try runProcess(script, arguments, input: input)
    }

    /// Ports that were free a moment ago, for servers a test starts. Drawn from below the kernel's
    /// ephemeral range (32768–60999 here), which the many outgoing connections of parallel tests draw
    /// their local ports from: a port the kernel handed out as free for port 0 was, more than once, taken
    /// by such a connection before the server bound it. No port is handed out twice in one test process.
    public static func freePorts(_ count: Int) throws -> [Int] {
        var ports: [Int] = []
        var attempts = 0
        while ports.count < count {
            attempts += 1
            guard attempts < 10_000 else {
                throw ProcessFailure(command: "bind", status: -1, output: "no free loopback port in 20000-32000")
            }
            let port = Int.random(in: 20_000..<32_000)
            guard PortRegistry.shared.claim(port) else { continue }
            if let channel = try? ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .bind(host: "127.0.0.1", port: port).wait()
            {
                try? channel.close().wait()
                ports.append(port)
            }
        }
        return ports
    }
}

/// The ports this test process has handed out, so two tests never get the same one.
final class PortRegistry: Sendable {
    static let shared = PortRegistry()
    private let handedOut = Mutex<Set<Int>>([])

    func claim(_ port: Int) -> Bool { handedOut.withLock { $0.insert(port).inserted } }
}

/// A loopback port that refuses connections for as long as this lives: bound, never listening, so
/// the kernel answers a connect with a reset and no other test can be handed the port meanwhile
/// (a port that is merely free may be bound by a parallel test before it is used).
public final class RefusingPort: Sendable {
    public let port: Int
    private let descriptor: Int32

    public init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                bind(descriptor, raw, length) == 0 && getsockname(descriptor, raw, &length) == 0
            }
        }
        guard descriptor >= 0, bound else {
            if descriptor >= 0 { close(descriptor) }
            throw ProcessFailure(command: "bind", status: errno, output: "could not reserve a loopback port")
        }
        self.descriptor = descriptor
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(descriptor) }
}

public struct ProcessFailure: Error, CustomStringConvertible {
    public var command: String
    public var status: Int32
    public var output: String
    public var description: String { "\(command) exited \(status): \(output)" }
}

/// Runs a program to completion and returns its standard output.
///
/// Uses posix_spawn and waitpid directly: Foundation's Process waits for SIGCHLD delivery, which
/// never came here when the program left a daemon behind. Output goes through temporary files, and
/// not pipes, so a daemon the program starts cannot hold our reads open.
@discardableResult
public func runProcess(
    _ executable: String, _ arguments: [String], input: Data? = nil,
    environment: [String: String]? = nil
) throws -> String {
    let result = try spawnProcess(executable, arguments, input: input, environment: environment)
    guard result.status == 0 else {
        throw ProcessFailure(
            command: ([executable] + arguments).joined(separator: " "), status: result.status,
            output: result.stdout + result.stderr)
    }
    return result.stdout
}

public struct ProcessResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// Runs a program to completion, whatever its exit status.
public func spawnProcess(
    _ executable: String, _ arguments: [String], input: Data? = nil,
    environment: [String: String]? = nil
) throws -> ProcessResult {
    let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("mp-proc-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: scratch) }
    let outputPath = scratch.appendingPathComponent("out").path
    let errorPath = scratch.appendingPathComponent("err").path
    let inputPath = scratch.appendingPathComponent("in").path
    _ = FileManager.default.createFile(atPath: inputPath, contents: input ?? Data())

    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, inputPath, O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&actions, 2, errorPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)

    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    let environmentPairs = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
    let envp = environmentPairs.map { strdup($0) } + [nil]
    defer { for pointer in envp { free(pointer) } }

    var pid: pid_t = 0
    // The test runner blocks signals on its threads; a child (and a Dovecot it starts) must not
    // inherit that, or it ignores SIGTERM and every stop waits for the SIGKILL fallback.
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var emptyMask = sigset_t()
    sigemptyset(&emptyMask)
    posix_spawnattr_setsigmask(&attributes, &emptyMask)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    sigaddset(&defaults, SIGTERM)
    sigaddset(&defaults, SIGINT)
    sigaddset(&defaults, SIGPIPE)
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    let spawned = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
    guard spawned == 0 else {
        throw ProcessFailure(command: executable, status: spawned, output: "posix_spawn failed: \(spawned)")
    }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) == -1, errno == EINTR {}
    let exitCode = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    return ProcessResult(
        status: exitCode,
        stdout: (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "",
        stderr: (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "")
}

/// `runProcess` for async code: the wait happens on a thread of its own. A blocking `waitpid` on
/// one of the cooperative pool's threads (two, on a two-core machine) stalls every other test's
/// tasks for as long as the program runs, and timing-bound checks elsewhere then fail.
@discardableResult
public func runProcess(
    _ executable: String, _ arguments: [String], input: Data? = nil,
    environment: [String: String]? = nil
) async throws -> String {
    try await offThePool { try runProcess(executable, arguments, input: input, environment: environment) }
}

/// `spawnProcess` for async code, waiting on a thread of its own (see `runProcess`).
public func spawnProcess(
    _ executable: String, _ arguments: [String], input: Data? = nil,
    environment: [String: String]? = nil
) async throws -> ProcessResult {
    try await offThePool { try spawnProcess(executable, arguments, input: input, environment: environment) }
}

private func offThePool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result(catching: work)) }
    }
}

/// The `mailporter` executable built next to the test bundle.
public var mailporterExecutable: String {
    URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("mailporter").path
}

/// Stops every server this process started when it exits, so no Dovecot outlives the tests.
final class RunningServers: Sendable {
    static let shared = RunningServers()
    private let directories = Mutex<Set<String>>([])

    private init() {
        atexit {
            for directory in RunningServers.shared.directories.withLock({ $0 }) {
                _ = try? DovecotServer.runScript(["stop", directory])
                try? FileManager.default.removeItem(atPath: directory)
            }
        }
    }

    func add(_ directory: String) { directories.withLock { _ = $0.insert(directory) } }
    func remove(_ directory: String) { directories.withLock { _ = $0.remove(directory) } }
}

/// Servers shared by every test in the process, started on first use.
public actor SharedServers {
    public static let shared = SharedServers()
    private var servers: [DovecotServer.Layout: DovecotServer] = [:]

    public func server(_ layout: DovecotServer.Layout) throws -> DovecotServer {
        if let server = servers[layout] { return server }
        let server = try DovecotServer.start(layout: layout)
        servers[layout] = server
        return server
    }
}

/// A user name no other test uses.
public func uniqueUser(_ prefix: String = "user") -> String {
    "\(prefix)\(UInt32.random(in: 0...UInt32.max))"
}
