import NIOCore
import NIOPosix

/// One event loop for a group of sessions and the code that drives them.
///
/// A folder copy moves every byte from a source connection to a destination connection. When both
/// channels and the task that copies live on one event loop, a read, its parsing, the copy and the
/// write never cross threads: no wake-up of another thread per batch of events or per write.
public struct SessionAffinity: Sendable {
    let eventLoop: any EventLoop
    /// Runs tasks (and the default actors they call, such as `IMAPSession`) on the event loop.
    public let taskExecutor: any TaskExecutor

    /// The loops copies run on, apart from NIO's shared group, where the API's connections and the
    /// store's completions live. A copy's loop is busy for as long as the copy runs: a GET that
    /// shared it waited in the loop's queue behind parsing and appends (while a 50-mailbox batch
    /// ran on 2 cores, the server's own GET p99 was 26–35 ms; on these loops, 12–16 ms). On loops
    /// of their own the kernel's scheduler shares the cores, and the API's loop, mostly asleep, is
    /// served when woken.
    private static let copyLoops = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)

    /// The next event loop of the copies' group.
    public static func next() -> SessionAffinity {
        let loop = copyLoops.next()
        return SessionAffinity(eventLoop: loop, taskExecutor: EventLoopTaskExecutor(loop))
    }
}

/// A task executor that runs jobs on one NIO event loop.
final class EventLoopTaskExecutor: TaskExecutor {
    private let loop: any EventLoop

    init(_ loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
