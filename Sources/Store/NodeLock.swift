import Foundation
import SQLKit

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Held by a runner for as long as it runs: while it is held, no other live process works under
/// the same node id, so leases under that id that outlived their process can be requeued at once
/// instead of after they expire. On PostgreSQL a session advisory lock on a connection kept for
/// the purpose (it goes when the process dies, with its connection); on SQLite an exclusive
/// `flock` on a file beside the database (it goes when the process dies, with its descriptor).
public final class NodeLock: Sendable {
    private let unlock: @Sendable () async -> Void

    init(unlock: @escaping @Sendable () async -> Void) {
        self.unlock = unlock
    }

    public func release() async {
        await unlock()
    }
}

/// The node lock's file could not be opened (a permissions problem, usually).
public struct NodeLockFailure: Error, CustomStringConvertible {
    public var description: String
}

extension Store {
    /// Takes the node lock for `nodeID`, or returns nil while another live process holds it.
    public func lockNode(_ nodeID: String) async throws -> NodeLock? {
        switch flavor {
        case .postgres: try await lockNodeOnPostgres(nodeID)
        case .sqlite: try await lockNodeBesideSQLite(nodeID)
        }
    }

    private func lockNodeOnPostgres(_ nodeID: String) async throws -> NodeLock? {
        let key: SQLQueryString = "hashtextextended(\(bind: "mailporter-node:" + nodeID), 0)"
        let (released, release) = AsyncStream.makeStream(of: Void.self)
        let (outcome, report) = AsyncThrowingStream.makeStream(of: Bool.self)
        // The session keeps one pooled connection for the lock's lifetime: a session lock lives
        // on the connection that took it.
        let holder = Task { [database] in
            do {
                try await database.withSession { session in
                    let got =
                        try await session.raw("SELECT pg_try_advisory_lock(\(key)) AS got").first()?
                        .decode(column: "got", as: Bool.self) ?? false
                    report.yield(got)
                    report.finish()
                    guard got else { return }
                    for await _ in released { break }
                    _ = try? await session.raw("SELECT pg_advisory_unlock(\(key))").run()
                }
            } catch {
                report.finish(throwing: error)
            }
        }
        var got = false
        for try await value in outcome { got = value }
        guard got else {
            release.finish()
            await holder.value
            return nil
        }
        return NodeLock {
            release.yield()
            release.finish()
            await holder.value
        }
    }

    private func lockNodeBesideSQLite(_ nodeID: String) async throws -> NodeLock? {
        let file = try await database.raw("PRAGMA database_list").all()
            .first { (try? $0.decode(column: "name", as: String.self)) == "main" }
            .flatMap { try? $0.decode(column: "file", as: String.self) }
        // In memory: nobody else can open this database.
        guard let file, !file.isEmpty else { return NodeLock {} }
        let path = file + ".node-" + Self.fileSafe(nodeID) + ".lock"
        guard let descriptor = try ExclusiveFileLock.take(path) else { return nil }
        return NodeLock { ExclusiveFileLock.give(descriptor) }
    }

    /// A node id as a file name part: letters, digits, `-` and `_` kept, the rest hex-escaped.
    static func fileSafe(_ text: String) -> String {
        text.utf8.map { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
                String(UnicodeScalar(byte))
            default:
                String(format: "%%%02X", byte)
            }
        }.joined()
    }
}

/// `flock(LOCK_EX | LOCK_NB)` on a file, held through its open descriptor.
private enum ExclusiveFileLock {
    /// The descriptor holding the lock, or nil while another open description holds it.
    static func take(_ path: String) throws -> Int32? {
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw NodeLockFailure(
                description: "cannot open the node lock file \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(descriptor)
            return nil
        }
        return descriptor
    }

    static func give(_ descriptor: Int32) {
        close(descriptor)
    }
}
