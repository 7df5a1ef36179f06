import ArgumentParser
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Reads secrets without echo and writes to standard error.
enum Terminal {
    static var isInteractive: Bool { isatty(STDIN_FILENO) == 1 }
    static var isErrorInteractive: Bool { isatty(STDERR_FILENO) == 1 }

    /// `body`'s value, or its error printed as the one `error: …` line and exit status 2: how a
    /// command refuses bad settings or a store it cannot open.
    static func orExit<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch {
            printError("error: \(error)")
            throw ExitCode(2)
        }
    }

    static func printError(_ text: String) {
        var line = text
        if !line.hasSuffix("\n") { line += "\n" }
        writeError(line)
    }

    /// Writes to file descriptor 2 directly: the C `stderr` global is not concurrency-safe.
    static func writeError(_ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes {
                write(STDERR_FILENO, $0.baseAddress! + offset, $0.count - offset)
            }
            if written <= 0 { return }
            offset += written
        }
    }

    /// A password from `variable` in the environment, or typed at a prompt; never from the command line.
    static func secret(fromEnvironment variable: String, prompt: String) throws -> String {
        if let value = getenv(variable) { return String(cString: value) }
        guard isInteractive else {
            throw ValidationError("set \(variable) or run on a terminal to be prompted for the password")
        }
        writeError(prompt)
        var saved = termios()
        tcgetattr(STDIN_FILENO, &saved)
        var silent = saved
        silent.c_lflag &= ~tcflag_t(ECHO)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &silent)
        defer {
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved)
            writeError("\n")
        }
        return readLine(strippingNewline: true) ?? ""
    }
}
