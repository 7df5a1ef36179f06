import Foundation
import IMAPClient
import NIOCore
import Testing
import TestSupport

@Suite("mailporter test-connection")
struct TestConnectionCommandTests {
    /// Seeds a fresh user with a few messages in INBOX and a nested non-ASCII folder.
    func seededUser(on server: DovecotServer) async throws -> String {
        let user = uniqueUser("cli")
        let session = try await IMAPSession.open(
            server.configuration(),
            credentials: .password(username: user, password: DovecotServer.password))
        let folder = MailboxName(decoded: server.folder("Archiv/2024 Übersicht"))
        try await session.create(folder)
        for index in 0..<3 {
            _ = try await session.append(
                to: MailboxName(encoded: "INBOX"), flags: [], internalDate: nil,
                message: ByteBuffer(string: "Subject: \(index)\r\n\r\nx\r\n"))
        }
        _ = try await session.append(
            to: folder, flags: [], internalDate: nil, message: ByteBuffer(string: "Subject: a\r\n\r\ny\r\n"))
        await session.logout()
        return user
    }

    @Test func listsFoldersWithCounts() async throws {
        let server = try await SharedServers.shared.server(.dot)
        let user = try await seededUser(on: server)
        let caFile = server.directory + "/ca.pem"
        let result = try await spawnProcess(
            mailporterExecutable,
            [
                "test-connection", "--host", "127.0.0.1", "--port", "\(server.imapsPort)", "--security", "ssl",
                "--user", user, "--ca-file", caFile,
            ], environment: ["MAILPORTER_PASSWORD": DovecotServer.password])
        #expect(result.status == 0, "\(result.stderr)")
        let rows = Dictionary(
            uniqueKeysWithValues: result.stdout.split(separator: "\n").dropLast().map { line -> (String, Int) in
                let parts = line.split(separator: " ", omittingEmptySubsequences: true)
                return (parts.dropLast().joined(separator: " "), Int(parts.last ?? "") ?? -1)
            })
        #expect(rows["INBOX"] == 3)
        #expect(rows["INBOX.Archiv.2024 Übersicht"] == 1)
        #expect(rows["INBOX.Sent"] == 0)
        #expect(rows["INBOX.Archiv"] == nil, "a \\Noselect parent is not a folder with messages")
        #expect(result.stdout.contains("4 messages"))
        #expect(!result.stdout.contains(DovecotServer.password) && !result.stderr.contains(DovecotServer.password))

        let json = try await spawnProcess(
            mailporterExecutable,
            [
                "test-connection", "--host", "127.0.0.1", "--port", "\(server.imapPort)", "--security", "tls",
                "--user", user, "--ca-file", caFile, "--json",
            ], environment: ["MAILPORTER_PASSWORD": DovecotServer.password])
        #expect(json.status == 0, "\(json.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(object?["success"] as? Bool == true)
        let folders = object?["folders"] as? [String: Int]
        #expect(folders?["INBOX"] == 3)
        #expect(folders?["INBOX.Archiv.2024 Übersicht"] == 1)
    }

    @Test func failsWithOneClassifiedLine() async throws {
        let server = try await SharedServers.shared.server(.slash)
        let wrong = try await spawnProcess(
            mailporterExecutable,
            [
                "test-connection", "--host", "127.0.0.1", "--port", "\(server.imapPort)", "--security", "none",
                "--user", "nobody",
            ], environment: ["MAILPORTER_PASSWORD": "not-the-password"])
        #expect(wrong.status != 0)
        #expect(wrong.stderr.hasPrefix("error: authentication_failed:"))
        #expect(wrong.stderr.split(separator: "\n").count == 1)
        #expect(!wrong.stderr.contains("not-the-password"))

        let untrusted = try await spawnProcess(
            mailporterExecutable,
            [
                "test-connection", "--host", "127.0.0.1", "--port", "\(server.imapsPort)", "--security", "ssl",
                "--user", "x",
            ], environment: ["MAILPORTER_PASSWORD": "x"])
        #expect(untrusted.status != 0)
        #expect(untrusted.stderr.hasPrefix("error: tls_failed:"))
        #expect(
            untrusted.stderr.contains("is not trusted") && untrusted.stderr.contains("--ca-file"), "\(untrusted.stderr)"
        )
        for word in ["NIOSSL", "BoringSSL", ".build", "checkouts"] {
            #expect(!untrusted.stderr.contains(word), "\(untrusted.stderr)")
        }

        let wrongPort = try await spawnProcess(
            mailporterExecutable,
            [
                "test-connection", "--host", "127.0.0.1", "--port", "\(server.imapsPort)", "--security", "none",
                "--user", "x",
            ], environment: ["MAILPORTER_PASSWORD": "x"])
        #expect(
            wrongPort.stderr.hasPrefix("error: tls_failed: 127.0.0.1:\(server.imapsPort) speaks TLS"),
            "\(wrongPort.stderr)")
        #expect(wrongPort.stderr.contains("Use security ssl for this port"))

        let closed = try RefusingPort()
        let refused = try await spawnProcess(
            mailporterExecutable,
            [
                "test-connection", "--host", "127.0.0.1", "--port", "\(closed.port)", "--security", "none", "--user",
                "x",
            ], environment: ["MAILPORTER_PASSWORD": "x"])
        #expect(refused.status != 0)
        #expect(refused.stderr.hasPrefix("error: host_unreachable:"), "\(refused.stderr)")
        withExtendedLifetime(closed) {}

        let noPassword = try await spawnProcess(
            mailporterExecutable,
            [
                "test-connection", "--host", "127.0.0.1", "--port", "\(server.imapPort)", "--security", "none",
                "--user", "x",
            ], environment: [:])
        #expect(noPassword.status != 0)
        #expect(noPassword.stderr.contains("MAILPORTER_PASSWORD"))
    }

    /// `--provider gmail` stands in for --host, --port and --security, as it does for migrate and
    /// the API. Without a password the command stops right after its arguments, so nothing here
    /// connects to Gmail (tests reach only loopback addresses).
    @Test func aProviderPresetStandsInForTheHost() async throws {
        let preset = try await spawnProcess(
            mailporterExecutable, ["test-connection", "--provider", "gmail", "--user", "jane@gmail.com"],
            environment: [:])
        #expect(preset.status != 0)
        #expect(!preset.stderr.contains("--host"), "\(preset.stderr)")
        #expect(preset.stderr.contains("MAILPORTER_PASSWORD"), "the arguments were accepted: \(preset.stderr)")

        let generic = try await spawnProcess(
            mailporterExecutable, ["test-connection", "--user", "jane@example.net"], environment: [:])
        #expect(generic.status != 0)
        #expect(generic.stderr.contains("--host is required for generic_imap"), "\(generic.stderr)")

        let unknown = try await spawnProcess(
            mailporterExecutable, ["test-connection", "--provider", "gmial", "--user", "x"], environment: [:])
        #expect(unknown.status != 0)
        #expect(unknown.stderr.contains("--provider"), "\(unknown.stderr)")
    }
}
