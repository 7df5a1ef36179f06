import Metrics
import MigrationEngine
import Store

/// The runner's counters, reported through the global `MetricsSystem` (Prometheus in the server).
///
/// The per-message counters are made once, when the runner is made: the server bootstraps the
/// metrics system before that, and looking a counter up on every message would cost a lock and a
/// dictionary lookup per message in the factory.
struct RunnerMetrics: Sendable {
    let messagesCopied = Counter(label: "mailporter_messages_copied_total")
    let bytesCopied = Counter(label: "mailporter_bytes_copied_total")
    let messagesSkipped = Counter(label: "mailporter_messages_skipped_total")
    let messagesFailed = Counter(label: "mailporter_messages_failed_total")
    /// How long a claim takes, found or not: with many nodes it waits for the others' claims
    /// (one at a time behind the claim lock), so this is where contention shows.
    let claimDuration = Timer(label: "mailporter_claim_duration_seconds")

    func record(_ event: MigrationEvent) {
        switch event {
        case .messageCopied(_, let bytes):
            messagesCopied.increment()
            bytesCopied.increment(by: max(0, bytes))
        case .messageSkipped:
            messagesSkipped.increment()
        case .messageFailed:
            messagesFailed.increment()
        default:
            break
        }
    }

    /// A migration reached `status` (completed, failed or cancelled) while this runner held it.
    func finished(_ status: MigrationStatus) {
        Counter(label: "mailporter_migrations_finished_total", dimensions: [("status", status.rawValue)]).increment()
    }

    func failure(code: String) {
        Counter(label: "mailporter_migration_failures_total", dimensions: [("code", code)]).increment()
    }
}
