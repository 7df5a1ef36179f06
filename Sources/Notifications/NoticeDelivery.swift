import Foundation
import Logging
import SMTPClient
import ServiceLifecycle
import Store
import Synchronization

/// How notices go out.
public struct NoticeDeliveryConfiguration: Sendable {
    public var smtp: SMTPConfiguration
    /// `MAILPORTER_SMTP_FROM`: an address, or `Name <address>`.
    public var from: String
    /// `MAILPORTER_PUBLIC_URL`, for links to the web page and the reports.
    public var publicURL: String?
    /// The name this node holds delivery leases under.
    public var nodeID: String
    public var pollInterval: Duration
    /// How long a claimed notice is this node's; a node that dies mid-delivery leaves it to another
    /// after this. It must outlast one delivery (`SMTPConfiguration.longestSessionSeconds`).
    public var leaseSeconds: Int
    /// Attempts before a notice that keeps failing for a transient reason is given up.
    public var maxAttempts: Int
    /// The wait before attempt `n + 1` after `n` attempts failed for a transient reason.
    public var backoff: @Sendable (Int) -> Duration

    public init(
        smtp: SMTPConfiguration, from: String, publicURL: String? = nil, nodeID: String,
        pollInterval: Duration = .seconds(2), leaseSeconds: Int? = nil, maxAttempts: Int = 8,
        backoff: @escaping @Sendable (Int) -> Duration = NoticeDeliveryConfiguration.exponentialBackoff
    ) {
        self.smtp = smtp
        self.from = from
        self.publicURL = publicURL
        self.nodeID = nodeID
        self.pollInterval = pollInterval
        // By default longer than the slowest delivery the SMTP timeouts allow, plus a minute.
        self.leaseSeconds = leaseSeconds ?? smtp.longestSessionSeconds + 60
        self.maxAttempts = maxAttempts
        self.backoff = backoff
    }

    /// 30 s, 1 min, 2 min … up to an hour: a relay that is down for maintenance gets time.
    public static let exponentialBackoff: @Sendable (Int) -> Duration = { attempts in
        .seconds(min(3600, 30 << min(max(attempts - 1, 0), 7)))
    }

    /// The address in `from` (inside `<…>` when a name is given).
    public var envelopeSender: String {
        guard let open = from.lastIndex(of: "<"), let close = from.lastIndex(of: ">"), open < close else {
            return from.trimmingCharacters(in: .whitespaces)
        }
        return String(from[from.index(after: open)..<close]).trimmingCharacters(in: .whitespaces)
    }
}

/// Delivers the store's outbox: claims a due notice under a lease, writes it in words, sends it,
/// and marks it sent, or due again later with backoff (4xx, network), or failed for good (5xx).
/// Runs beside the job runner and shares nothing with it but the store, so mail that cannot go
/// out never holds up or fails a migration.
public final class NoticeDelivery: Service, Sendable {
    private let store: Store
    private let configuration: NoticeDeliveryConfiguration
    private let client: SMTPClient
    private let composer: NoticeComposer
    private let logger: Logger

    public init(store: Store, configuration: NoticeDeliveryConfiguration, logger: Logger) {
        self.store = store
        self.configuration = configuration
        self.client = SMTPClient(configuration: configuration.smtp, logger: logger)
        self.composer = NoticeComposer(publicURL: configuration.publicURL)
        var logger = logger
        logger[metadataKey: "node_id"] = "\(configuration.nodeID)"
        self.logger = logger
    }

    /// Delivers until graceful shutdown. A notice being sent is finished first (and marked), so a
    /// stop never leaves a sent notice looking unsent.
    public func run() async throws {
        let stopping = StopFlag()
        await withGracefulShutdownHandler {
            logger.info(
                "notice delivery started", metadata: ["smtp": "\(configuration.smtp.endpoint.displayURL)"])
            while !stopping.isSet {
                while !stopping.isSet, await deliverNext() {}
                await stopping.sleep(for: configuration.pollInterval)
            }
            logger.info("notice delivery stopped")
        } onGracefulShutdown: {
            stopping.set()
        }
    }

    /// Claims and handles one due notice; false when none was due (or the store did not answer).
    @discardableResult
    public func deliverNext(now: Date = Date()) async -> Bool {
        let notice: Notice
        do {
            guard
                let claimed = try await store.claimNotice(
                    owner: configuration.nodeID, leaseSeconds: configuration.leaseSeconds, now: now)
            else { return false }
            notice = claimed
        } catch {
            logger.error("could not read the notification outbox", metadata: ["error": "\(error)"])
            return false
        }
        var logger = self.logger
        logger[metadataKey: "notice_id"] = "\(notice.id)"
        logger[metadataKey: "event"] = "\(notice.event.rawValue)"
        do {
            guard let subject = try await subject(of: notice) else {
                try await store.markNoticeFailed(
                    id: notice.id, owner: configuration.nodeID, code: "subject_deleted",
                    message: "the batch or migration was deleted before its notice went out", retryAt: nil, now: now)
                return true
            }
            let text = composer.compose(notice, about: subject)
            let sender = configuration.envelopeSender
            let message = MailMessage(
                from: configuration.from, to: [notice.recipient], subject: text.subject, body: text.body,
                messageID: MailMessage.messageID(key: "mailporter-notice-\(notice.id)", sender: sender))
            do {
                try await client.send(message, envelopeSender: sender)
            } catch {
                try await record(error, for: notice, now: now, logger: logger)
                return true
            }
            if try await store.markNoticeSent(id: notice.id, owner: configuration.nodeID, now: now) {
                logger.info("notice sent", metadata: ["attempt": "\(notice.attempts)"])
            } else {
                logger.warning("notice sent after its lease ran out; another node may send it too")
            }
        } catch {
            // The store failed: the lease runs out and the notice is claimed again.
            logger.error("could not finish a notice", metadata: ["error": "\(error)"])
        }
        return true
    }

    private func record(_ error: SMTPError, for notice: Notice, now: Date, logger: Logger) async throws {
        let retry = error.isTransient && notice.attempts < configuration.maxAttempts
        let retryAt = retry ? now.addingTimeInterval(Self.seconds(configuration.backoff(notice.attempts))) : nil
        try await store.markNoticeFailed(
            id: notice.id, owner: configuration.nodeID, code: error.code, message: error.description,
            retryAt: retryAt, now: now)
        logger.warning(
            retry ? "notice not delivered; tried again later" : "notice not delivered; given up",
            metadata: ["attempt": "\(notice.attempts)", "error_code": "\(error.code)", "error": "\(error)"])
    }

    private func subject(of notice: Notice) async throws -> NoticeSubject? {
        if let batchID = notice.batchID {
            guard let detail = try await store.batchDetail(id: batchID),
                let account = try await store.account(id: detail.batch.accountID)
            else { return nil }
            return .batch(detail, account)
        }
        guard let migrationID = notice.migrationID, let record = try await store.migration(id: migrationID) else {
            return nil
        }
        return .migration(record)
    }

    static func seconds(_ duration: Duration) -> TimeInterval {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}

/// Set once on shutdown; sleeps check it, so a stop is seen within a quarter second.
private final class StopFlag: Sendable {
    private let state = Mutex(false)
    var isSet: Bool { state.withLock { $0 } }
    func set() { state.withLock { $0 = true } }

    func sleep(for duration: Duration) async {
        let clock = ContinuousClock()
        let end = clock.now + duration
        while !isSet, clock.now < end {
            try? await Task.sleep(for: min(.milliseconds(250), end - clock.now))
        }
    }
}
