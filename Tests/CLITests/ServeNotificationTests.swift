import Foundation
import Testing
import TestSupport

/// Notices through `mailporter serve`: a bulk batch between two real Dovecots ends with errors while
/// serve has no relay; serve is killed and started with one (aiosmtpd, STARTTLS and AUTH, its CA
/// configured), and exactly one mail arrives with what a person needs and no password; a further
/// restart sends nothing again. The reports download and match the records.
@Suite("mailporter serve: notifications and reports", .serialized, .timeLimit(.minutes(6)))
struct ServeNotificationTests {
    typealias Service = ServeEndToEndTests.Service
    typealias Failure = ServeEndToEndTests.Failure

    func object(_ text: String) throws -> [String: Any] { try ServeEndToEndTests.object(text) }
    func number(_ value: Any?) -> Int? { (value as? NSNumber)?.intValue }

    static func environment(_ sink: SMTPSink) -> [String: String] {
        [
            "MAILPORTER_SMTP_URL": "smtp://127.0.0.1:\(sink.port)",
            "MAILPORTER_SMTP_USER": sink.options.user,
            "MAILPORTER_SMTP_PASSWORD": sink.options.password,
            "MAILPORTER_SMTP_FROM": "Mailporter <mailporter@example.net>",
            "MAILPORTER_SMTP_CA_FILE": sink.certificatePath,
            "MAILPORTER_PUBLIC_URL": "https://mp.example.net",
        ]
    }

    @Test func aBatchWithErrorsMailsOnceAcrossARestartAndItsReportsDownload() async throws {
        let sink = try await SMTPSink.start()
        defer { sink.stop() }
        let source = try await SharedServers.shared.server(.dot)
        let destination = try await SharedServers.shared.server(.slash)
        let accounts = try await ServeBulkTests.accounts(3, source: source, destination: destination, prefix: "ntf")
        let dataDir = ServeEndToEndTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        let port = try DovecotServer.freePorts(1)[0]
        let environment = Self.environment(sink)
        // The first serve has no relay: the batch's notice is recorded and waits in the outbox.
        var service = try Service(dataDir: dataDir, port: port, destination: destination)
        try await service.waitUntilReady()
        let bulk = ServeBulkTests()
        let token = try await bulk.provision(service, mailboxes: accounts.destinations)

        let wrongPassword = "wrong-Pw-4417"
        var lines = ["source_email,source_password,destination_email"]
        for index in 0..<3 {
            lines.append(
                "\(accounts.sources[index]),\(index == 1 ? wrongPassword : DovecotServer.password),"
                    + accounts.destinations[index])
        }
        let started = try await service.curl(
            "POST", "/api/v1/migrations/bulk", token: token,
            json: try bulk.body(
                csv: lines.joined(separator: "\n") + "\n", sourcePort: source.imapPort, extra: ["name": "Acme, \"Q3\""])
        )
        #expect(started.status == 201, "\(started.body)")
        let startedData = try #require(try object(started.body)["data"] as? [String: Any])
        let id = try #require(number(startedData["id"]))
        let ended = try await bulk.pollBatch(service, id: id, token: token, until: bulk.hasSettled)
        #expect(ended["status"] as? String == "completed_with_errors", "\(ended)")

        let waiting = try await service.curl("GET", "/api/v1/notifications", token: token)
        let queued = try #require(try object(waiting.body)["data"] as? [[String: Any]])
        #expect(queued.count == 1 && queued.first?["status"] as? String == "pending", "\(waiting.body)")

        // Killed between the state change and the delivery; the next start, with the relay, sends it.
        service.process.kill()
        _ = await service.process.wait(timeout: .seconds(10))
        service.process.cleanUp()
        service = try Service(dataDir: dataDir, port: port, destination: destination, extraEnvironment: environment)
        try await service.waitUntilReady()
        var mails = await sink.waitForMail(count: 1)
        try #require(mails.count == 1, "\(service.process.stderr)\n\(sink.log)")
        #expect(mails[0].recipients == ["ops@example.com"])
        #expect(mails[0].sender == "mailporter@example.net")
        let mail = ParsedMail(mails[0].raw)
        #expect(mail.header("From") == "Mailporter <mailporter@example.net>")
        #expect(
            mail.decodedSubject == "Mailporter: bulk import \"Acme, \"Q3\"\" completed with errors (2 of 3 mailboxes)")
        let body = mail.decodedBody
        #expect(body.contains("Mailboxes: 3 in all; 2 completed, 1 failed"), "\(body)")
        #expect(body.contains("- \(accounts.destinations[1]) (CSV line 3): authentication_failed"), "\(body)")
        #expect(body.contains("Fix: "), "\(body)")
        #expect(body.contains("https://mp.example.net/#/bulk/\(id)"), "\(body)")
        for secret in [wrongPassword, DovecotServer.password, DovecotServer.masterPassword, sink.options.password] {
            #expect(!mails[0].raw.contains(secret), "a password in the mail")
            #expect(!service.process.stderr.contains(secret), "a password in the log")
        }

        // The reports, parsed back and checked against the records.
        let report = try await service.curl("GET", "/api/v1/migrations/bulk/\(id)/report.csv", token: token)
        #expect(report.status == 200, "\(report.body)")
        let rows = try CSVRows.parse(report.body)
        #expect(
            rows.first == [
                "line", "destination", "source", "status", "expected", "imported", "skipped", "failed", "bytes",
                "started_at", "finished_at", "error_code", "error_hint",
            ])
        let jobs = bulk.jobs(ended)
        try #require(rows.count == 1 + jobs.count, "\(report.body)")
        for (row, job) in zip(rows.dropFirst(), jobs) {
            #expect(row[1] == job["mailbox_email"] as? String)
            #expect(row[2] == job["source_email"] as? String && row[2].contains("***"))
            #expect(row[3] == job["status"] as? String)
            #expect(Int(row[4]) == number(job["total_messages"]) && Int(row[5]) == number(job["imported_messages"]))
            #expect(row[11] == (job["error_code"] as? String ?? ""))
            if job["status"] as? String == "completed" { #expect((Int(row[8]) ?? 0) > 0, "bytes copied: \(row)") }
        }
        let firstJob = try #require(number(jobs.first?["id"]))
        let folderReport = try await service.curl("GET", "/api/v1/migrations/\(firstJob)/report.csv", token: token)
        #expect(folderReport.status == 200)
        let folderRows = try CSVRows.parse(folderReport.body)
        let folders = try #require(jobs.first?["folders"] as? [[String: Any]])
        #expect(folderRows.count == 1 + folders.count)
        // `kind` first: a run with no failed message has folder rows only.
        #expect(folderRows.dropFirst().allSatisfy { $0.first == "folder" }, "\(folderRows)")
        #expect(Set(folderRows.dropFirst().map { $0[1] }) == Set(folders.compactMap { $0["name"] as? String }))

        // Another restart: the notice was sent, and stays sent.
        service.process.kill(SIGTERM)
        _ = await service.process.wait(timeout: .seconds(20))
        service.process.cleanUp()
        service = try Service(dataDir: dataDir, port: port, destination: destination, extraEnvironment: environment)
        try await service.waitUntilReady()
        try await Task.sleep(for: .seconds(5))
        mails = sink.received()
        #expect(mails.count == 1, "one mail, not one per start")
        let outbox = try await service.curl("GET", "/api/v1/notifications", token: token)
        let notices = try #require(try object(outbox.body)["data"] as? [[String: Any]])
        #expect(notices.count == 1 && notices.first?["status"] as? String == "sent", "\(outbox.body)")
        #expect(notices.first?["event"] as? String == "batch_finished")
        service.process.kill()
        _ = await service.process.wait(timeout: .seconds(10))
        service.process.cleanUp()
    }

    @Test func wrongMailSettingsStopTheStartWithOneLineAndNoPassword() async throws {
        let dataDir = ServeEndToEndTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        let base = [
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin", "MAILPORTER_DATA_DIR": dataDir,
            "MAILPORTER_LISTEN": "127.0.0.1:\(try DovecotServer.freePorts(1)[0])",
        ]
        let cases: [([String: String], String)] = [
            (["MAILPORTER_SMTP_URL": "smtp://relay:hunter2-Pw@mail.example.com:587"], "must not hold credentials"),
            (["MAILPORTER_SMTP_URL": "imap://mail.example.com"], "smtps://host:465"),
            (["MAILPORTER_SMTP_URL": "smtp://mail.example.com:587"], "MAILPORTER_SMTP_FROM is required"),
            (
                [
                    "MAILPORTER_SMTP_URL": "smtp://mail.example.com:587", "MAILPORTER_SMTP_FROM": "mp@example.com",
                    "MAILPORTER_SMTP_PASSWORD": "hunter2-Pw",
                ], "go together"
            ),
            (
                ["MAILPORTER_SMTP_URL": "smtps://mail.example.com", "MAILPORTER_SMTP_FROM": "Mailporter <nope>"],
                "no usable address"
            ),
        ]
        for (settings, expected) in cases {
            let result = try await spawnProcess(
                mailporterExecutable, ["serve"], environment: base.merging(settings) { $1 })
            #expect(result.status == 2, "\(settings): \(result.stderr)")
            #expect(result.stderr.contains(expected), "\(settings): \(result.stderr)")
            #expect(!result.stderr.contains("hunter2-Pw"), "\(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
        }
    }
}
