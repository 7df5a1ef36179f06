import MigrationEngine
import Store

/// A migration's progress as its events describe it, kept in memory and written to the store by
/// the job's ticker: per-message writes would make the database the bottleneck of every copy.
actor ProgressAccumulator {
    private var progress = MigrationProgress()

    /// The plan arrived: from here on there are folder rows to write.
    var isPlanned: Bool { progress.isPlanned }

    func handle(_ event: MigrationEvent) { progress.apply(event) }

    /// Totals and folder rows as the store keeps them. With `interrupted`, folders still being
    /// copied are shown as pending again: the run that was copying them has stopped.
    func snapshot(interrupted: Bool = false) -> (totals: MigrationTotals, folders: [FolderProgress]) {
        var totals = MigrationTotals()
        var rows: [FolderProgress] = []
        rows.reserveCapacity(progress.folders.count)
        for folder in progress.folders {
            totals.total += folder.counts.expected
            totals.imported += folder.counts.copied
            totals.skipped += folder.counts.skipped
            totals.failed += folder.counts.failed
            totals.bytes += folder.counts.bytes
            var status = FolderProgress.Status(folder.state)
            if interrupted, status == .processing { status = .pending }
            rows.append(
                FolderProgress(
                    sourceName: folder.sourceName, destinationName: folder.destinationName,
                    status: status, expected: folder.counts.expected,
                    imported: folder.counts.copied, failed: folder.counts.failed,
                    skipped: folder.counts.skipped, flagsUpdated: folder.counts.flagsUpdated,
                    deleted: folder.counts.deleted))
        }
        return (totals, rows)
    }
}

extension FolderProgress.Status {
    /// A reconnecting folder is still being processed.
    init(_ state: MigrationProgress.FolderState) {
        switch state {
        case .queued: self = .pending
        case .copying, .reconnecting: self = .processing
        case .done: self = .completed
        case .failed: self = .failed
        }
    }
}
