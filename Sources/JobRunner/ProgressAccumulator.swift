import MigrationEngine
import Store

/// A migration's progress as its events describe it, kept in memory and written to the store by
/// the job's ticker: per-message writes would make the database the bottleneck of every copy.
actor ProgressAccumulator {
    private struct Folder {
        var sourceName: String
        var destinationName: String
        var status: FolderProgress.Status = .pending
        var counts: FolderSummaryCounts
    }

    private var folders: [Folder] = []
    private var indexBySource: [String: Int] = [:]

    /// The plan arrived: from here on there are folder rows to write.
    private(set) var isPlanned = false

    func handle(_ event: MigrationEvent) {
        switch event {
        case .validated:
            break
        case .planned(let plans):
            folders = plans.map { plan in
                Folder(sourceName: plan.sourceName, destinationName: plan.destinationName,
                       counts: FolderSummaryCounts(expected: plan.expected))
            }
            indexBySource = [:]
            for (index, folder) in folders.enumerated() where indexBySource[folder.sourceName] == nil {
                indexBySource[folder.sourceName] = index
            }
            isPlanned = true
        case .folderStarted(let source, _):
            update(source) { $0.status = .processing }
        case .folderBaseline(let source, let counts):
            // Each attempt restarts from the checkpoint's totals; what an interrupted attempt
            // counted since is counted again by the next one.
            update(source) { $0.counts = counts }
        case .messageCopied(let folder, let bytes):
            update(folder) {
                $0.counts.copied += 1
                $0.counts.bytes += Int64(bytes)
            }
        case .messageSkipped(let folder):
            update(folder) { $0.counts.skipped += 1 }
        case .messageFailed(let folder, _, _):
            update(folder) { $0.counts.failed += 1 }
        case .retrying(let folder, _, _, _):
            update(folder) { $0.status = .processing }
        case .notice:
            break
        case .folderFinished(let source, let summary):
            update(source) {
                $0.counts = summary
                $0.status = .completed
            }
        case .folderFailed(let source, _):
            update(source) { $0.status = .failed }
        }
    }

    private func update(_ source: String, _ change: (inout Folder) -> Void) {
        guard let index = indexBySource[source] else { return }
        change(&folders[index])
    }

    /// Totals and folder rows as the store keeps them. With `interrupted`, folders still being
    /// copied are shown as pending again: the run that was copying them has stopped.
    func snapshot(interrupted: Bool = false) -> (totals: MigrationTotals, folders: [FolderProgress]) {
        var totals = MigrationTotals()
        var rows: [FolderProgress] = []
        rows.reserveCapacity(folders.count)
        for folder in folders {
            totals.total += folder.counts.expected
            totals.imported += folder.counts.copied
            totals.skipped += folder.counts.skipped
            totals.failed += folder.counts.failed
            let status: FolderProgress.Status = interrupted && folder.status == .processing ? .pending : folder.status
            rows.append(FolderProgress(sourceName: folder.sourceName, destinationName: folder.destinationName,
                                       status: status, expected: folder.counts.expected,
                                       imported: folder.counts.copied, failed: folder.counts.failed,
                                       skipped: folder.counts.skipped))
        }
        return (totals, rows)
    }
}
