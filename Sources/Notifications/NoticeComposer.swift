import BulkImport
import Foundation
import Store

/// A notice in words: a subject and a plain-text body a person can act on (what happened, the
/// counts, which mailboxes failed and how to fix each, the storage figures, where to look).
/// Built from the records at delivery time; nothing secret is ever in them to begin with.
public struct NoticeText: Sendable, Equatable {
    public var subject: String
    public var body: String
}

/// What a notice is about, read from the store when it is delivered.
public enum NoticeSubject: Sendable {
    case batch(BatchDetail, Account)
    case migration(MigrationRecord)
}

public struct NoticeComposer: Sendable {
    /// `MAILPORTER_PUBLIC_URL`, without a trailing slash; links are left out without it.
    public var publicURL: String?

    public init(publicURL: String?) {
        var url = publicURL?.trimmingCharacters(in: .whitespaces)
        while url?.hasSuffix("/") == true { url?.removeLast() }
        self.publicURL = url?.isEmpty == false ? url : nil
    }

    public func compose(_ notice: Notice, about subject: NoticeSubject) -> NoticeText {
        switch subject {
        case .batch(let detail, let account): batchText(notice, detail, account)
        case .migration(let record): migrationText(record)
        }
    }

    // MARK: Batches

    private func batchText(_ notice: Notice, _ detail: BatchDetail, _ account: Account) -> NoticeText {
        let batch = detail.batch
        let counts = batch.counts
        let name = "\"\(batch.name)\""
        var lines: [String] = []
        let subject: String
        switch notice.event {
        case .batchPausedForStorage:
            let pool = notice.detail.poolBytes ?? account.plan.storagePoolBytes
            var storage = "Storage pool: \(Self.gigabytes(pool)) (\(account.plan.rawValue) plan)"
            if let used = notice.detail.usedBytes {
                let percent = StorageFigures(poolBytes: pool, usedBytes: used, measured: true).usedPercent
                storage = "Storage: \(Self.gigabytes(used)) used of \(Self.gigabytes(pool)) (\(percent)%)"
                subject = "Mailporter: bulk import \(name) paused, storage at \(percent)%"
            } else {
                subject = "Mailporter: bulk import \(name) paused for storage"
            }
            lines += [
                "Bulk import \(name) (batch \(batch.id)) was paused because the account's storage reached"
                    + " \(Self.pauseThresholdPercent)% of its pool.",
                "",
                storage + "; batches pause at \(Self.pauseThresholdPercent)%.",
                "Mailboxes: \(counts.jobs) in all; \(counts.completed) completed, \(counts.failed) failed,"
                    + " \(counts.pending + counts.running) waiting.",
                "",
                "Running mailboxes stopped at a safe point; each continues where it stopped when the batch is resumed.",
                "What to do: free space in the destination mailboxes or upgrade the plan, then resume the batch.",
            ]
        case .batchMostJobsFailed:
            subject = "Mailporter: most mailboxes of bulk import \(name) failed (\(counts.failed) of \(counts.jobs))"
            lines += [
                "More than half of the mailboxes of bulk import \(name) (batch \(batch.id)) failed:"
                    + " \(counts.failed) of \(counts.jobs).",
                "",
            ]
            lines += countLines(counts)
        default:
            let outcome = batch.status == .completed ? "completed" : "completed with errors"
            subject =
                "Mailporter: bulk import \(name) \(outcome) (\(counts.completed) of \(counts.jobs) mailboxes)"
            lines += ["Bulk import \(name) (batch \(batch.id)) \(outcome).", ""]
            lines += countLines(counts)
        }
        let failed = detail.jobs.filter { $0.migration.status == .failed }
        if !failed.isEmpty {
            lines += ["", "Failed mailboxes:"]
            for job in failed.prefix(Self.maxListedMailboxes) { lines += failureLines(job) }
            if failed.count > Self.maxListedMailboxes {
                lines.append("- and \(failed.count - Self.maxListedMailboxes) more (see the report)")
            }
            lines += [
                "",
                "What to do: fix each cause above (a wrong password is replaced on the job), then retry the batch;"
                    + " what was copied already is not copied again.",
            ]
        }
        lines += links(page: "bulk/\(batch.id)", report: "/api/v1/migrations/bulk/\(batch.id)/report.csv")
        return NoticeText(subject: subject, body: lines.joined(separator: "\n") + "\n")
    }

    private func countLines(_ counts: BatchCounts) -> [String] {
        [
            "Mailboxes: \(counts.jobs) in all; \(counts.completed) completed, \(counts.failed) failed,"
                + " \(counts.cancelled) cancelled, \(counts.pending + counts.running) not finished.",
            "Messages: \(counts.importedMessages) imported, \(counts.skippedDuplicates) skipped as duplicates,"
                + " \(counts.failedMessages) failed, of \(counts.totalMessages) found.",
        ]
    }

    private func failureLines(_ job: BatchJob) -> [String] {
        let record = job.migration
        let mailbox = record.mailboxEmail ?? "mailbox \(record.mailboxID)"
        let line = job.line.map { " (CSV line \($0))" } ?? ""
        guard let error = record.error else { return ["- \(mailbox)\(line): failed"] }
        var lines = ["- \(mailbox)\(line): \(error.code): \(error.message)"]
        if let hint = error.hint, !hint.isEmpty { lines.append("  Fix: \(hint)") }
        return lines
    }

    // MARK: Single migrations

    private func migrationText(_ record: MigrationRecord) -> NoticeText {
        let mailbox = record.mailboxEmail ?? "mailbox \(record.mailboxID)"
        var lines = [
            "The import into \(mailbox) (migration \(record.id)) ended: \(record.status.rawValue).",
            "",
            "Messages: \(record.importedMessages) imported, \(record.skippedDuplicates) skipped as duplicates,"
                + " \(record.failedMessages) failed, of \(record.totalMessages) found.",
        ]
        if let error = record.error {
            lines += ["", "Error: \(error.code): \(error.message)"]
            if let hint = error.hint, !hint.isEmpty { lines.append("Fix: \(hint)") }
        }
        let failedFolders = record.folders.filter { $0.failed > 0 }
        if !failedFolders.isEmpty {
            lines += ["", "Folders with messages that failed:"]
            lines += failedFolders.map { "- \($0.sourceName): \($0.failed) of \($0.expected)" }
        }
        lines += links(page: "migrations/\(record.id)", report: "/api/v1/migrations/\(record.id)/report.csv")
        return NoticeText(
            subject: "Mailporter: import into \(mailbox) \(record.status.rawValue)",
            body: lines.joined(separator: "\n") + "\n")
    }

    private func links(page: String, report: String) -> [String] {
        guard let publicURL else { return [] }
        return ["", "Open it: \(publicURL)/#/\(page)", "Report (CSV): \(publicURL)\(report)"]
    }

    // MARK: Figures

    static let maxListedMailboxes = 50
    static var pauseThresholdPercent: Int { StorageFigures.pauseThresholdPercent }

    /// `13.7 GB`: pools are whole decimal gigabytes, so usage is said in the same unit.
    static func gigabytes(_ bytes: Int64) -> String {
        let tenths = (bytes + 50_000_000) / 100_000_000
        return "\(tenths / 10).\(tenths % 10) GB"
    }
}
