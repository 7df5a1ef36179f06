import Synchronization

/// Lets `wake()` (and jobs that end, freeing a slot) cut the run loop's wait short.
///
/// A signal that arrives while nobody waits is kept, so the next wait returns at once: a migration
/// queued just before the loop starts waiting is still claimed without a full poll interval.
final class WakeSignal: Sendable {
    private struct State {
        var signalled = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    func signal() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.signalled = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Returns on a signal, after `timeout`, or when the task is cancelled, whichever is first.
    func wait(upTo timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: timeout) }
            group.addTask { await self.waitForSignal() }
            await group.next()
            group.cancelAll()
        }
    }

    private func waitForSignal() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let (resumeNow, displaced) = state.withLock { state -> (Bool, CheckedContinuation<Void, Never>?) in
                    // Every return leads to a claim, so a kept signal is used up by any wait.
                    if state.signalled || Task.isCancelled {
                        state.signalled = false
                        return (true, nil)
                    }
                    let displaced = state.waiter
                    state.waiter = continuation
                    return (false, displaced)
                }
                // Only the run loop waits; should a second waiter ever come, the first must not hang.
                displaced?.resume()
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }
    }
}
