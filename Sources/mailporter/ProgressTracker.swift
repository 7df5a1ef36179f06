import Foundation
import MigrationEngine
import Synchronization

/// Folds migration events into totals, per-folder counts, throughput and ETA for display.
final class ProgressTracker: Sendable {
    struct Folder {
        var source: String
        var destination: String
        var counts = FolderSummaryCounts()
        var state = "queued"
    }

    struct Snapshot {
        var folders: [Folder] = []
        var started = Date()
        var expected: Int { folders.reduce(0) { $0 + $1.counts.expected } }
        var done: Int { folders.reduce(0) { $0 + $1.counts.copied + $1.counts.skipped + $1.counts.failed } }
        var copied: Int { folders.reduce(0) { $0 + $1.counts.copied } }
        var skipped: Int { folders.reduce(0) { $0 + $1.counts.skipped } }
        var failed: Int { folders.reduce(0) { $0 + $1.counts.failed } }
        var bytes: Int64 { folders.reduce(0) { $0 + $1.counts.bytes } }
        var failures: [String] = []
        var notices: [String] = []

        var percent: Int { expected == 0 ? 100 : min(100, done * 100 / expected) }
    }

    private let state = Mutex(Snapshot())

    func handle(_ event: MigrationEvent) {
        state.withLock { snapshot in
            func update(_ name: String, _ change: (inout Folder) -> Void) {
                if let index = snapshot.folders.firstIndex(where: { $0.source == name }) { change(&snapshot.folders[index]) }
            }
            switch event {
            case .validated:
                break
            case .planned(let plans):
                snapshot.folders = plans.map { Folder(source: $0.sourceName, destination: $0.destinationName,
                                                      counts: FolderSummaryCounts(expected: $0.expected)) }
                snapshot.started = Date()
            case .folderStarted(let source, _):
                update(source) { $0.state = "copying" }
            case .folderBaseline(let source, let counts):
                update(source) { $0.counts = counts }
            case .messageCopied(let folder, let bytes):
                update(folder) { $0.counts.copied += 1; $0.counts.bytes += Int64(bytes) }
            case .messageSkipped(let folder):
                update(folder) { $0.counts.skipped += 1 }
            case .messageFailed(let folder, let uid, let reason):
                update(folder) { $0.counts.failed += 1 }
                snapshot.failures.append("\(folder) UID \(uid): \(reason)")
            case .retrying(let folder, _, _, _):
                update(folder) { $0.state = "reconnecting" }
            case .notice(let folder, let message):
                snapshot.notices.append("\(folder): \(message)")
            case .folderFinished(let source, let summary):
                update(source) { $0.counts = summary; $0.state = "done" }
            case .folderFailed(let source, let failure):
                update(source) { $0.state = failure.code.rawValue }
            }
        }
    }

    var snapshot: Snapshot { state.withLock { $0 } }

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
