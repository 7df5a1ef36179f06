import Foundation
import MigrationEngine
import Synchronization

/// Migration progress for display: the fold of events, with throughput, ETA, and the failures and
/// notices to list at the end.
final class ProgressTracker: Sendable {
    struct Snapshot {
        var progress = MigrationProgress()
        var started = Date()
        var failures: [String] = []
        var notices: [String] = []
        /// Each folder's counts when this run first looked at it, so a pass can say what it added.
        var firstBaselines: [String: FolderSummaryCounts] = [:]

        var expected: Int { progress.totals.expected }
        var done: Int {
            let totals = progress.totals
            return totals.copied + totals.skipped + totals.failed
        }
        var bytes: Int64 { progress.totals.bytes }
        var percent: Int { expected == 0 ? 100 : min(100, done * 100 / expected) }
    }

    private let state = Mutex(Snapshot())

    func handle(_ event: MigrationEvent) {
        state.withLock { snapshot in
            snapshot.progress.apply(event)
            switch event {
            case .planned:
                snapshot.started = Date()
            case .folderBaseline(let folder, let counts):
                if snapshot.firstBaselines[folder] == nil { snapshot.firstBaselines[folder] = counts }
            case .messageFailed(let folder, let uid, _, _, let reason):
                snapshot.failures.append("\(folder) UID \(uid): \(reason)")
            case .notice(let folder, let message):
                snapshot.notices.append("\(folder): \(message)")
            default:
                break
            }
        }
    }

    var snapshot: Snapshot { state.withLock { $0 } }

    /// The counts the run started from (what earlier runs had done).
    var baseline: FolderSummaryCounts { FolderSummaryCounts(sum: Array(snapshot.firstBaselines.values)) }

    /// One status line: bar, counts, MB, MB/s, ETA.
    func line(width: Int = 24) -> String {
        let snapshot = self.snapshot
        let elapsed = max(0.001, Date().timeIntervalSince(snapshot.started))
        let filled = snapshot.percent * width / 100
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let megabytes = Double(snapshot.bytes) / 1_000_000
        let rate = Double(snapshot.done) / elapsed
        let remaining = snapshot.expected - snapshot.done
        let eta = rate > 0 && remaining > 0 ? Self.duration(Double(remaining) / rate) : "--:--"
        return "[\(bar)] \(snapshot.percent)% \(snapshot.done)/\(snapshot.expected) msgs  "
            + "\(Self.format(megabytes)) MB  \(Self.format(megabytes / elapsed)) MB/s  ETA \(eta)"
    }

    static func format(_ value: Double) -> String {
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }

    static func duration(_ seconds: Double) -> String {
        let total = Int(seconds.rounded())
        let minutes = total / 60
        let rest = total % 60
        return "\(minutes):\(rest < 10 ? "0" : "")\(rest)"
    }
}
