import BulkImport
import IMAPClient
import MigrationEngine
import Testing

/// Each row's category and message, as an admin reads them before starting a batch.
@Suite struct BulkPreviewTests {
    static let mailboxes: Set<String> = ["anna@acme.example", "ben@acme.example", "cleo@acme.example"]
    static let batchServer = SourceServer(host: "imap.example.net", port: 993, security: .ssl)

    static func rules(
        _ layout: BulkLayout = .simple, rowsPerBatch: Int = 100,
        allowPrivate: Bool = false
    ) -> BulkRules {
        BulkRules(
            layout: layout, batchServer: layout == .simple ? batchServer : nil, mailboxes: mailboxes,
            planName: "starter", rowsPerBatch: rowsPerBatch,
            addressAllowed: AddressPolicy.filter(allowPrivateHosts: allowPrivate))
    }

    static func preview(_ csv: String, _ rules: BulkRules = rules()) throws -> BulkPreview {
        try BulkPreview(csv: csv, rules: rules)
    }

    @Test func everyCategoryOfTheSimpleLayout() throws {
        let csv = #"""
            source_email,source_password,destination_email
            anna@old.example,"pw,with ""quotes""",anna@acme.example
            not-an-address,pw-secret-1,ben@acme.example
            ben@old.example,,ben@acme.example
            cleo@old.example,pw-secret-2,nobody@acme.example
            ANNA@old.example,other-pw,Anna@Acme.example
            ben@old.example,pw-secret-3
            cleo@old.example,pw-secret-4,cleo@acme.example

            """#
        let preview = try Self.preview(csv)
        #expect(preview.hadHeader)
        #expect(
            preview.rows.map(\.category) == [
                .valid, .invalidSourceEmail, .missingPassword, .invalidDestination,
                .duplicateRow, .missingPassword, .valid,
            ])
        #expect(preview.rows.map(\.line) == [2, 3, 4, 5, 6, 7, 8])
        #expect(
            preview.counts[.valid] == 2 && preview.counts[.invalidServer] == 0 && preview.counts[.duplicateRow] == 1)
        #expect(preview.rows[4].message?.contains("line 2") == true)
        #expect(preview.rows[1].sourceEmail == nil)
        #expect(preview.rows[3].destinationEmail == "nobody@acme.example")
        #expect(preview.rows[5].message?.contains("3 (source_email, source_password, destination_email)") == true)
        let job = try #require(preview.jobs.first)
        #expect(job.sourcePassword == "pw,with \"quotes\"")
        #expect(job.server == Self.batchServer)
        #expect(!String(describing: job).contains("quotes"))
        for row in preview.rows {
            let shown = [row.message, row.sourceEmail, row.destinationEmail].compactMap { $0 }.joined()
            #expect(!shown.contains("pw"), "line \(row.line) shows a password")
        }
    }

    @Test func aFieldInTheWrongColumnIsNotShown() throws {
        // Columns swapped: the password sits where an email belongs.
        let preview = try Self.preview(
            "hunter2-secret,anna@old.example,anna@acme.example\n"
                + "anna@old.example,anna@acme.example,hunter3-secret")
        #expect(preview.rows.map(\.category) == [.invalidSourceEmail, .invalidDestination])
        #expect(preview.rows.allSatisfy { ($0.sourceEmail ?? "").contains("secret") == false })
        #expect(preview.rows[1].destinationEmail == nil)
    }

    @Test func theHeaderIsOptional() throws {
        let preview = try Self.preview("# accounts\nanna@old.example,pw,anna@acme.example\n")
        #expect(!preview.hadHeader)
        #expect(preview.rows.map(\.category) == [.valid])
        #expect(preview.rows[0].line == 2)
    }

    @Test func rowsOfTheOtherLayoutSayWhichSettingTheyNeed() throws {
        let full =
            "source_email,source_password,destination_email,source_host,source_port,source_security\n"
            + "anna@old.example,pw,anna@acme.example,imap.old.example,993,ssl\n"
        let simple = try Self.preview(full)
        #expect(simple.hadHeader && simple.rows.map(\.line) == [2])
        #expect(simple.rows[0].category == .missingPassword)
        #expect(simple.rows[0].message?.contains("Set per_row_server to true") == true)
        let perRow = try Self.preview("anna@old.example,pw,anna@acme.example", Self.rules(.perRowServer))
        #expect(perRow.rows[0].message?.contains("Set per_row_server to false") == true)
        let split = try Self.preview("anna@old.example,pass,word,anna@acme.example")
        #expect(split.rows[0].message?.contains("put it in double quotes") == true)
    }

    @Test func passwordsThatCannotBeSent() throws {
        let long = String(repeating: "x", count: 256)
        let preview = try Self.preview(
            "anna@old.example,\(long),anna@acme.example\n"
                + "ben@old.example,\"two\nlines\",ben@acme.example\n"
                + "cleo@old.example,\"  \",cleo@acme.example")
        #expect(preview.rows.map(\.category) == [.missingPassword, .missingPassword, .valid])
        #expect(preview.rows[1].line == 2 && preview.rows[2].line == 4)
        #expect(preview.jobs.first?.sourcePassword == "  ")
    }

    @Test func perRowServers() throws {
        let csv = """
            source_email,source_password,destination_email,source_host,source_port,source_security
            anna@old.example,pw1,anna@acme.example,imap.old.example,993,ssl
            ben@old.example,pw2,ben@acme.example,mail.old.example,,tls
            cleo@old.example,pw3,cleo@acme.example,bad host!,993,ssl
            anna@old.example,pw4,anna@acme.example,imap.old.example,99999,ssl
            anna@old.example,pw5,anna@acme.example,imap.old.example,993,starttls
            anna@old.example,pw6,anna@acme.example,127.0.0.1,143,none
            anna@old.example,pw7,anna@acme.example,[::1],143,none
            anna@old.example,pw8,anna@acme.example,10.1.2.3,993,ssl
            anna@old.example,pw9,anna@acme.example,,993,ssl
            cleo@old.example,pw10,cleo@acme.example,imap.other.example,993,SSL
            ben@old.example,pw11,ben@acme.example
            """
        let preview = try Self.preview(csv, Self.rules(.perRowServer))
        #expect(
            preview.rows.map(\.category) == [
                .valid, .valid, .invalidServer, .invalidServer, .invalidServer,
                .invalidServer, .invalidServer, .invalidServer, .invalidServer,
                .valid, .missingPassword,
            ])
        #expect(
            preview.jobs.map(\.server) == [
                SourceServer(host: "imap.old.example", port: 993, security: .ssl),
                SourceServer(host: "mail.old.example", port: 143, security: .tls),
                SourceServer(host: "imap.other.example", port: 993, security: .ssl),
            ])
        #expect(preview.rows[5].message?.contains("private, loopback") == true)
        #expect(preview.rows[3].message == "The source port must be a number from 1 to 65535.")

        // The same private hosts are fine where the service is allowed to reach them.
        let allowed = try Self.preview(csv, Self.rules(.perRowServer, allowPrivate: true))
        // Then they are the same source into the same mailbox as line 2.
        #expect(
            allowed.rows[5...7].allSatisfy { $0.category == .duplicateRow && $0.message?.contains("line 2") == true })
    }

    @Test func rowsBeyondThePlanAreOverTheLimit() throws {
        let csv =
            ["anna", "ben", "cleo"].map { "\($0)@old.example,pw,\($0)@acme.example" }
            + ["bad,pw,anna@acme.example", "anna@old.example,pw,anna@acme.example"]
        let preview = try Self.preview(csv.joined(separator: "\n"), Self.rules(rowsPerBatch: 2))
        #expect(preview.rows.map(\.category) == [.valid, .valid, .overPlanLimit, .invalidSourceEmail, .duplicateRow])
        #expect(
            preview.rows[2].message
                == "The starter plan allows 2 rows per batch and this is valid row 3; import the rest as another batch."
        )
        #expect(preview.jobs.count == 2)
    }

    @Test func aBrokenDocumentIsOneErrorNotRows() throws {
        #expect(throws: CSVError.self) { try Self.preview("anna@old.example,\"pw,anna@acme.example\n") }
    }
}

@Suite struct TimeEstimateTests {
    @Test func wavesOfThePlansJobsAtOnce() {
        let estimate = TimeEstimate(
            jobs: 11, planJobsAtOnce: 5, globalLimit: 20, messagesPerMailbox: 1000,
            messagesPerSecondPerJob: 10)
        #expect(estimate.jobsAtOnce == 5)
        #expect(estimate.seconds == 300)  // 3 waves of 100 s
        #expect(estimate.assumptions.contains("each mailbox holds about 1000 messages"))
        #expect(estimate.assumptions.contains("5 jobs run at once (the plan's limit, or the service's if lower)"))
    }

    @Test func theGlobalLimitCapsThePlan() {
        let estimate = TimeEstimate(jobs: 10, planJobsAtOnce: 10, globalLimit: 4)
        #expect(estimate.jobsAtOnce == 4)
        #expect(estimate.seconds == 3 * 500)
        #expect(TimeEstimate(jobs: 0, planJobsAtOnce: 2, globalLimit: 20).seconds == 0)
    }
}

@Suite struct LoginCheckTests {
    static func rows(_ count: Int) -> [BulkJobRow] {
        (0..<count).map {
            BulkJobRow(
                line: $0 + 2, sourceEmail: "u\($0)@old.example", sourcePassword: "pw\($0)",
                destinationEmail: "u\($0)@acme.example",
                server: SourceServer(host: "imap.old.example", port: 993, security: .ssl))
        }
    }

    actor Gauge {
        var now = 0
        var most = 0
        func enter() { now += 1; most = max(most, now) }
        func leave() { now -= 1 }
    }

    @Test func rowsAreCheckedAFewAtATimeEachWithItsOwnResult() async {
        let gauge = Gauge()
        let results = await LoginCheck.run(Self.rows(9), concurrency: 3) { row throws(ImportFailure) in
            await gauge.enter()
            try? await Task.sleep(for: .milliseconds(20))
            await gauge.leave()
            if row.sourcePassword == "pw4" {
                throw ImportFailure(
                    code: .authenticationFailed, message: "The source refused the login.", hint: "Check the password.")
            }
        }
        #expect(results.count == 9)
        #expect(
            results[6]
                == .failed(
                    ImportFailure(
                        code: .authenticationFailed, message: "The source refused the login.",
                        hint: "Check the password.")))
        #expect(results.filter { $0.value == .ok }.count == 8)
        #expect(await gauge.most == 3)
    }

    @Test func rowsPastTheDeadlineAreNotChecked() async {
        let clock = ContinuousClock()
        let started = clock.now
        let results = await LoginCheck.run(Self.rows(5), concurrency: 2, deadline: .milliseconds(300)) {
            row throws(ImportFailure) in
            if row.line >= 3 { try? await Task.sleep(for: .seconds(30)) }
        }
        // The logins sleep 30 s: well under that means the deadline cut them (bound loose for loaded machines).
        #expect(clock.now - started < .seconds(20))
        #expect(results[2] == .ok)
        #expect(results.filter { $0.value == .notChecked }.count == 4)
    }
}
