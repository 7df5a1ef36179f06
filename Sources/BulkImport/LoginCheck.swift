import MigrationEngine

/// How logging in to one row's source went before a batch starts.
public enum LoginResult: Sendable, Equatable {
    case ok
    case failed(ImportFailure)
    /// The check's deadline passed before the row's turn came or its login ended.
    case notChecked
}

/// Logs in to each valid row's source before anything starts (like a credentials-verification
/// pass): a few rows at a time, so neither the service nor one provider sees a burst, and all
/// within one deadline, so a preview answers in bounded time whatever the CSV holds.
public enum LoginCheck {
    public static let defaultConcurrency = 4
    public static let defaultDeadline: Duration = .seconds(30)

    /// Results by the rows' lines. `check` logs in and out (throwing the classified failure); the
    /// connection is the caller's to build, with the address policy it connects under.
    public static func run(
        _ rows: [BulkJobRow], concurrency: Int = defaultConcurrency,
        deadline: Duration = defaultDeadline,
        check: @escaping @Sendable (BulkJobRow) async throws(ImportFailure) -> Void
    ) async -> [Int: LoginResult] {
        let end = ContinuousClock.now + deadline
        var results: [Int: LoginResult] = [:]
        await withTaskGroup(of: (Int, LoginResult).self) { group in
            var waiting = rows[...]
            for _ in 0..<max(1, concurrency) {
                guard let row = waiting.popFirst() else { break }
                group.addTask { (row.line, await outcome(row, until: end, check)) }
            }
            while let (line, result) = await group.next() {
                results[line] = result
                if ContinuousClock.now < end, let row = waiting.popFirst() {
                    group.addTask { (row.line, await outcome(row, until: end, check)) }
                }
            }
        }
        for row in rows where results[row.line] == nil { results[row.line] = .notChecked }
        return results
    }

    /// The row's login, or `notChecked` once `end` passes (the login is then cancelled).
    private static func outcome(
        _ row: BulkJobRow, until end: ContinuousClock.Instant,
        _ check: @escaping @Sendable (BulkJobRow) async throws(ImportFailure) -> Void
    ) async -> LoginResult {
        await withTaskGroup(of: LoginResult?.self) { group in
            group.addTask {
                do throws(ImportFailure) {
                    try await check(row)
                    return .ok
                } catch {
                    return .failed(error)
                }
            }
            group.addTask {
                try? await Task.sleep(until: end, clock: .continuous)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? .notChecked
        }
    }
}
