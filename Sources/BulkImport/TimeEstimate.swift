/// How long a batch may take, with the assumptions it rests on said out loud: before anything
/// starts nobody knows how much mail a source holds.
public struct TimeEstimate: Sendable, Equatable {
    public var jobs: Int
    /// Jobs running side by side: the plan's, unless the service's global limit is lower.
    public var jobsAtOnce: Int
    public var messagesPerMailbox: Int
    public var messagesPerSecondPerJob: Double
    public var seconds: Int

    /// Defaults: a mailbox of 5,000 messages copied at 10 messages a second.
    public static let defaultMessagesPerMailbox = 5_000
    public static let defaultMessagesPerSecondPerJob = 10.0

    /// Jobs run in waves of `min(planJobsAtOnce, globalLimit)`; each wave takes as long as one mailbox.
    public init(
        jobs: Int, planJobsAtOnce: Int, globalLimit: Int,
        messagesPerMailbox: Int = defaultMessagesPerMailbox,
        messagesPerSecondPerJob: Double = defaultMessagesPerSecondPerJob
    ) {
        self.jobs = max(0, jobs)
        self.jobsAtOnce = max(1, min(planJobsAtOnce, globalLimit))
        self.messagesPerMailbox = max(0, messagesPerMailbox)
        self.messagesPerSecondPerJob =
            messagesPerSecondPerJob > 0 ? messagesPerSecondPerJob : Self.defaultMessagesPerSecondPerJob
        let waves = (self.jobs + self.jobsAtOnce - 1) / self.jobsAtOnce
        let perMailbox = Double(self.messagesPerMailbox) / self.messagesPerSecondPerJob
        self.seconds = Int((Double(waves) * perMailbox).rounded(.up))
    }

    /// The assumptions, as a person reads them next to the figure.
    public var assumptions: [String] {
        [
            "each mailbox holds about \(messagesPerMailbox) messages",
            "each job copies about \(Self.format(messagesPerSecondPerJob)) messages per second",
            "\(jobsAtOnce) job\(jobsAtOnce == 1 ? "" : "s") run at once (the plan's limit, or the service's if lower)",
            "no other migrations hold the service's slots meanwhile",
        ]
    }

    private static func format(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }
}
