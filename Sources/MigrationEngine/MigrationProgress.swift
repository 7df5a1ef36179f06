/// A migration's progress as its events tell it: each folder's counts and where it stands. The one
/// fold of `MigrationEvent`s, behind the runner's stored progress and the command line's display.
public struct MigrationProgress: Sendable {
    public enum FolderState: Sendable, Equatable {
        case queued
        case copying
        /// A connection dropped or the server throttled; the folder resumes from its checkpoint.
        case reconnecting
        case done
        case failed(ImportFailure.Code)
    }

    public struct Folder: Sendable {
        public var sourceName: String
        public var destinationName: String
        public var state = FolderState.queued
        public var counts: FolderSummaryCounts
    }

    public private(set) var folders: [Folder] = []
    private var indexBySource: [String: Int] = [:]
    /// The plan arrived: from here on there are folders.
    public private(set) var isPlanned = false

    public init() {}

    public mutating func apply(_ event: MigrationEvent) {
        switch event {
        case .validated, .notice:
            break
        case .planned(let plans):
            folders = plans.map { plan in
                Folder(
                    sourceName: plan.sourceName, destinationName: plan.destinationName,
                    counts: FolderSummaryCounts(expected: plan.expected))
            }
            indexBySource = [:]
            for (index, folder) in folders.enumerated() where indexBySource[folder.sourceName] == nil {
                indexBySource[folder.sourceName] = index
            }
            isPlanned = true
        case .folderStarted(let source, _):
            update(source) { $0.state = .copying }
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
        case .messageFailed(let folder, _, _, _, _):
            update(folder) { $0.counts.failed += 1 }
        case .retrying(let folder, _, _, _):
            update(folder) { $0.state = .reconnecting }
        case .folderFinished(let source, let summary):
            update(source) {
                $0.counts = summary
                $0.state = .done
            }
        case .folderFailed(let source, let failure):
            update(source) { $0.state = .failed(failure.code) }
        }
    }

    /// The counts of every folder added up.
    public var totals: FolderSummaryCounts { FolderSummaryCounts(sum: folders.map(\.counts)) }

    private mutating func update(_ source: String, _ change: (inout Folder) -> Void) {
        guard let index = indexBySource[source] else { return }
        change(&folders[index])
    }
}
