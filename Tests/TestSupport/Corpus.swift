import Foundation
import IMAPClient
import NIOCore
import Synchronization
#if canImport(Glibc)
    import Glibc
#endif

// MARK: - The corpus

/// One message the corpus put into a folder, exactly as appended.
public struct CorpusMessage: Sendable {
    public var bytes: ByteBuffer
    /// Flags and keywords given to APPEND (may hold `\Deleted`).
    public var flags: [String]
    /// The INTERNALDATE given to APPEND, in its own zone.
    public var internalDate: InternalDate
    public var messageID: String?
    public var subject: String
    /// An exact copy (bytes, flags, date) of an earlier message of the same folder: same Message-ID,
    /// or, without one, the same header block.
    public var isDuplicate: Bool

    public var isDeleted: Bool { flags.contains("\\Deleted") }
    /// The INTERNALDATE as an instant.
    public var seconds: Int64 { internalDate.secondsSince1970 }
}

/// A deterministic mailbox for migration tests: nested and non-ASCII folders, a `Sent Items` folder
/// without a special-use attribute next to the server's own `Sent`, every user-visible flag and two
/// keywords, INTERNALDATEs over ten years in many zones, messages without Message-ID, exact
/// duplicates, one message flagged `\Deleted`, and (optionally) one 10 MB attachment.
///
/// Folder paths use `/` and no personal prefix ("INBOX", "Work/Projects"); `DovecotServer.folder(_:)`
/// spells them for a server's layout.
public struct Corpus: Sendable {
    public struct Options: Sendable {
        /// Multiplies the number of ordinary messages per folder (1 ≈ 100 messages in all).
        public var scale: Int
        /// Adds the 10 MB attachment message to `Work`.
        public var largeAttachment: Bool
        public var largeAttachmentBytes: Int
        /// Body sizes of ordinary messages are drawn from this range.
        public var bodyBytes: ClosedRange<Int>
        public var seed: UInt64

        public init(
            scale: Int = 1, largeAttachment: Bool = true, largeAttachmentBytes: Int = 10 << 20,
            bodyBytes: ClosedRange<Int> = 300...6000, seed: UInt64 = 0x6D61_696C_706F_7274
        ) {
            self.scale = scale
            self.largeAttachment = largeAttachment
            self.largeAttachmentBytes = largeAttachmentBytes
            self.bodyBytes = bodyBytes
            self.seed = seed
        }
    }

    /// Folders in creation order, every one of them listed (some are empty).
    public var folderOrder: [String]
    /// What each folder holds, in APPEND (= UID) order.
    public var folders: [String: [CorpusMessage]]

    /// The day the boundary messages straddle (UTC): one a second before it, two on it.
    public static let boundaryDay = InternalDate(
        year: 2020, month: 1, day: 1, hour: 0, minute: 0, second: 0, zoneMinutes: 0)

    /// Every message with its folder.
    public var all: [(folder: String, message: CorpusMessage)] {
        folderOrder.flatMap { folder in (folders[folder] ?? []).map { (folder, $0) } }
    }

    /// Messages a full migration selects (everything but `\Deleted`).
    public var selectedCount: Int { all.filter { !$0.message.isDeleted }.count }
    /// Selected messages that are exact in-folder duplicates of an earlier one.
    public var duplicateCount: Int { all.filter { !$0.message.isDeleted && $0.message.isDuplicate }.count }
    public var totalBytes: Int { all.reduce(0) { $0 + $1.message.bytes.readableBytes } }

    // MARK: Generation

    public static func generate(_ options: Options = Options()) -> Corpus {
        var generator = Generator(options: options)
        return generator.build()
    }

    /// Generates the corpus and stores it in `user`'s account over IMAP.
    @discardableResult
    public static func fill(_ server: DovecotServer, user: String, options: Options = Options()) async throws -> Corpus
    {
        let corpus = generate(options)
        try await corpus.store(on: server, user: user)
        return corpus
    }

    /// Creates the folders (parents of nested ones are left to the server, so they are `\Noselect`)
    /// and appends every message with its flags and INTERNALDATE, several per MULTIAPPEND.
    public func store(on server: DovecotServer, user: String) async throws {
        let session = try await IMAPSession.open(
            server.configuration(),
            credentials: .password(username: user, password: DovecotServer.password))
        do {
            let existing = Set(try await session.listAll().map { $0.name.decoded })
            for folder in folderOrder where !existing.contains(server.folder(folder)) {
                try await session.create(MailboxName(decoded: server.folder(folder)))
            }
            for folder in folderOrder {
                let mailbox = MailboxName(decoded: server.folder(folder))
                var chunk: [(flags: [String], internalDate: InternalDate?, message: ByteBuffer)] = []
                var chunkBytes = 0
                func flush() async throws {
                    guard !chunk.isEmpty else { return }
                    let uids = try await session.appendAll(to: mailbox, messages: chunk)
                    if !uids.isEmpty, uids.count != chunk.count {
                        throw IMAPError.protocolError(
                            "appended \(chunk.count) messages to \(folder), got \(uids.count) UIDs")
                    }
                    chunk = []
                    chunkBytes = 0
                }
                for message in folders[folder] ?? [] {
                    if message.bytes.readableBytes > 1 << 20 {
                        try await flush()
                        _ = try await session.append(
                            to: mailbox, flags: message.flags, internalDate: message.internalDate,
                            message: message.bytes)
                        continue
                    }
                    chunk.append((message.flags, message.internalDate, message.bytes))
                    chunkBytes += message.bytes.readableBytes
                    if chunk.count >= 50 || chunkBytes >= 2 << 20 { try await flush() }
                }
                try await flush()
            }
            // Open every folder once (see `DovecotServer.prepare(user:)`).
            for mailbox in try await session.listAll() where mailbox.isSelectable {
                _ = try await session.select(mailbox.name, readOnly: true)
            }
            await session.logout()
        } catch {
            await session.close()
            throw error
        }
    }
}

/// SplitMix64: small, fast, and the same on every platform, so a failure reproduces from its seed.
public struct SeededRandom: RandomNumberGenerator {
    public var state: UInt64

    public init(state: UInt64) { self.state = state }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.upperBound - range.lowerBound + 1))
    }

    mutating func chance(_ percent: Int) -> Bool { next() % 100 < UInt64(percent) }

    mutating func pick<T>(_ values: [T]) -> T { values[Int(next() % UInt64(values.count))] }
}

private struct Generator {
    let options: Options
    var random: SeededRandom
    typealias Options = Corpus.Options

    static let words = [
        "meeting", "budget", "Grüße", "台北", "naïve", "invoice", "quarterly", "résumé", "project",
        "deadline", "Übersicht", "Kaffee", "日本語", "status", "review", "draft", "ok", "📎", "Zürich",
        "forecast", "follow-up", "thanks", "agenda", "Ελληνικά", "ship", "it",
    ]
    /// Zones in minutes: UTC, PST, IST, LINT, -1200, CET, NPT, NST.
    static let zones = [0, -480, 330, 840, -720, 60, 345, -210]

    init(options: Options) {
        self.options = options
        random = SeededRandom(state: options.seed)
    }

    mutating func build() -> Corpus {
        let scale = max(1, options.scale)
        let order = ["INBOX", "Work", "Work/Projects", "Büro/Übersicht 台北", "Sent Items", "Sent", "Drafts", "Empty"]
        var folders: [String: [CorpusMessage]] = [:]

        // INBOX: ordinary mail, one message of each flag combination that matters, the \Deleted
        // one, boundary dates, exact duplicates (one without Message-ID), one shared with Work/Projects.
        var inbox: [CorpusMessage] = []
        for index in 0..<(40 * scale) {
            var flags = randomFlags()
            if index == 0 { flags = ["\\Seen", "\\Answered", "\\Flagged", "\\Draft", "$Forwarded", "project-x"] }
            if index == 1 { flags = [] }
            if index == 7 { flags = ["\\Seen", "\\Deleted"] }
            // The first messages are small, so a connection cut a few KB into the first body has
            // already let complete messages through.
            let size = index < 3 ? 400 + index * 300 : random.int(options.bodyBytes)
            inbox.append(message(folder: "INBOX", index: index, folderNumber: 0, flags: flags, bodySize: size))
            if index == 20 { inbox.append(duplicate(of: inbox[2])) }
        }
        inbox.append(duplicate(of: inbox[2]))
        inbox.append(duplicate(of: inbox[4]))  // index 4 has no Message-ID
        let boundary = Corpus.boundaryDay.secondsSince1970
        inbox.append(
            message(
                folder: "INBOX", index: 9001, folderNumber: 0, flags: ["\\Seen"], bodySize: 500,
                date: date(boundary - 1, zone: 0)))
        inbox.append(
            message(
                folder: "INBOX", index: 9002, folderNumber: 0, flags: [], bodySize: 500,
                date: date(boundary, zone: 0)))
        inbox.append(
            message(
                folder: "INBOX", index: 9003, folderNumber: 0, flags: ["\\Flagged"], bodySize: 500,
                date: date(boundary + 1800, zone: 480)))  // 08:30 +0800 on the day
        let shared = message(
            folder: "shared", index: 0, folderNumber: 99, flags: ["\\Seen", "project-x"], bodySize: 900,
            messageID: "<shared-across-folders@corpus.mailporter.test>")
        inbox.append(shared)
        folders["INBOX"] = inbox

        var work: [CorpusMessage] = []
        for index in 0..<(8 * scale) {
            work.append(
                message(
                    folder: "Work", index: index, folderNumber: 1, flags: randomFlags(),
                    bodySize: random.int(options.bodyBytes)))
        }
        if options.largeAttachment { work.insert(largeMessage(), at: min(3, work.count)) }
        folders["Work"] = work

        var projects: [CorpusMessage] = []
        for index in 0..<(12 * scale) {
            projects.append(
                message(
                    folder: "Work/Projects", index: index, folderNumber: 2, flags: randomFlags(),
                    bodySize: random.int(options.bodyBytes)))
        }
        projects.insert(shared, at: min(5, projects.count))
        projects.append(duplicate(of: projects[1]))
        folders["Work/Projects"] = projects

        folders["Büro/Übersicht 台北"] = (0..<(6 * scale)).map { index in
            message(
                folder: "Büro/Übersicht 台北", index: index, folderNumber: 3, flags: randomFlags(),
                bodySize: random.int(options.bodyBytes))
        }
        folders["Sent Items"] = (0..<(8 * scale)).map { index in
            message(
                folder: "Sent Items", index: index, folderNumber: 4,
                flags: ["\\Seen"] + (index % 3 == 0 ? ["$Forwarded"] : []),
                bodySize: random.int(options.bodyBytes))
        }
        folders["Sent"] = (0..<(5 * scale)).map { index in
            message(
                folder: "Sent", index: index, folderNumber: 5, flags: ["\\Seen"],
                bodySize: random.int(options.bodyBytes))
        }
        folders["Drafts"] = (0..<2).map { index in
            message(folder: "Drafts", index: index, folderNumber: 6, flags: ["\\Draft", "\\Seen"], bodySize: 400)
        }
        folders["Empty"] = []
        return Corpus(folderOrder: order, folders: folders)
    }

    mutating func randomFlags() -> [String] {
        var flags: [String] = []
        if random.chance(70) { flags.append("\\Seen") }
        if random.chance(20) { flags.append("\\Answered") }
        if random.chance(15) { flags.append("\\Flagged") }
        if random.chance(5) { flags.append("\\Draft") }
        if random.chance(10) { flags.append("$Forwarded") }
        if random.chance(10) { flags.append("project-x") }
        return flags
    }

    /// A date between 2015 and 2025 in one of several zones.
    mutating func randomDate() -> InternalDate {
        let start: Int64 = 1_420_070_400  // 2015-01-01T00:00:00Z
        let seconds = start + Int64(random.next() % UInt64(10 * 365 * 86_400))
        return date(seconds, zone: random.pick(Self.zones))
    }

    func date(_ seconds: Int64, zone: Int) -> InternalDate {
        var local = InternalDate(secondsSince1970: seconds + Int64(zone * 60))
        local.zoneMinutes = zone
        return local
    }

    func duplicate(of original: CorpusMessage) -> CorpusMessage {
        var copy = original
        copy.isDuplicate = true
        return copy
    }

    static func rfc5322Date(_ date: InternalDate) -> String {
        func pad(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let zone = abs(date.zoneMinutes)
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        return
            "\(date.day) \(months[date.month - 1]) \(date.year) \(pad(date.hour)):\(pad(date.minute)):\(pad(date.second)) "
            + (date.zoneMinutes < 0 ? "-" : "+") + pad(zone / 60) + pad(zone % 60)
    }

    /// An ordinary text message; every tenth one has no Message-ID (its `X-Corpus` header keeps its
    /// header block unique).
    mutating func message(
        folder: String, index: Int, folderNumber: Int, flags: [String], bodySize: Int,
        date: InternalDate? = nil, messageID: String? = nil
    ) -> CorpusMessage {
        let date = date ?? randomDate()
        let id =
            messageID
            ?? (index % 10 == 4 ? nil : "<f\(folderNumber)-m\(index).\(options.seed % 10_000)@corpus.mailporter.test>")
        let subject = "[\(folder)] #\(index) " + (0..<4).map { _ in random.pick(Self.words) }.joined(separator: " ")
        var text = "Return-Path: <sender\(index % 7)@example.org>\r\n"
        text += "From: \"Sender \(index % 7)\" <sender\(index % 7)@example.org>\r\n"
        text += "To: corpus@example.com\r\n"
        text += "Subject: \(subject)\r\n"
        text += "Date: \(Self.rfc5322Date(date))\r\n"
        if let id { text += "Message-ID: \(id)\r\n" }
        text += "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        text += "X-Corpus: \(folderNumber)/\(index)\r\n\r\n"
        var bytes = ByteBuffer(string: text)
        let bodyStart = bytes.readableBytes
        var line = 0
        while bytes.readableBytes - bodyStart < bodySize {
            line += 1
            switch line % 17 {
            case 5: bytes.writeString(".\r\n")  // a lone dot
            case 9: bytes.writeString("From the desk of sender \(index)  \r\n")  // mbox-style From, trailing blanks
            case 13: bytes.writeString("..leading dots\r\n")
            default:
                let count = random.int(4...14)
                bytes.writeString((0..<count).map { _ in random.pick(Self.words) }.joined(separator: " ") + "\r\n")
            }
        }
        return CorpusMessage(
            bytes: bytes, flags: flags, internalDate: date, messageID: id, subject: subject, isDuplicate: false)
    }

    /// multipart/mixed with a base64 attachment, `largeAttachmentBytes` in all.
    mutating func largeMessage() -> CorpusMessage {
        let date = randomDate()
        let subject = "[Work] the quarterly archive (large attachment)"
        let id = "<large-attachment.\(options.seed % 10_000)@corpus.mailporter.test>"
        var bytes = ByteBuffer()
        bytes.reserveCapacity(options.largeAttachmentBytes + 1024)
        bytes.writeString(
            "From: \"Archivist\" <archive@example.org>\r\nTo: corpus@example.com\r\nSubject: \(subject)\r\n"
                + "Date: \(Self.rfc5322Date(date))\r\nMessage-ID: \(id)\r\nMIME-Version: 1.0\r\n"
                + "Content-Type: multipart/mixed; boundary=\"mp-boundary-1\"\r\n\r\n"
                + "--mp-boundary-1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nDas Archiv ist angehängt.\r\n"
                + "--mp-boundary-1\r\nContent-Type: application/octet-stream; name=\"archive.bin\"\r\n"
                + "Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"archive.bin\"\r\n\r\n"
        )
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        let block = (0..<8192).map { _ in alphabet[Int(random.next() % 64)] }
        let trailer = "\r\n--mp-boundary-1--\r\n"
        var line = 0
        while bytes.readableBytes + 78 + trailer.utf8.count <= options.largeAttachmentBytes {
            let offset = (line &* 7919) % (block.count - 76)
            bytes.writeBytes(block[offset..<(offset + 76)])
            bytes.writeString("\r\n")
            line += 1
        }
        bytes.writeString(
            String(
                repeating: "A", count: max(0, options.largeAttachmentBytes - bytes.readableBytes - trailer.utf8.count)))
        bytes.writeString(trailer)
        return CorpusMessage(
            bytes: bytes, flags: ["\\Seen", "\\Flagged"], internalDate: date, messageID: id, subject: subject,
            isDuplicate: false)
    }
}

// MARK: - Snapshots

/// One stored message as a user would compare it: bytes, flags (without `\Recent`), date instant.
public struct StoredMessage: Sendable, Hashable, CustomStringConvertible {
    public var body: ByteBuffer
    public var flags: Set<String>
    /// INTERNALDATE, seconds since 1970.
    public var internalDate: Int64

    public init(body: ByteBuffer, flags: Set<String>, internalDate: Int64) {
        self.body = body
        self.flags = flags
        self.internalDate = internalDate
    }

    public init(_ message: CorpusMessage) {
        self.init(body: message.bytes, flags: Set(message.flags), internalDate: message.seconds)
    }

    /// The Subject line, for readable failures.
    public var subject: String {
        let head = body.getString(at: body.readerIndex, length: min(body.readableBytes, 2048)) ?? ""
        for line in head.split(separator: "\r\n") where line.hasPrefix("Subject: ") { return String(line.dropFirst(9)) }
        return "(no subject)"
    }

    public var description: String {
        "\"\(subject)\" (\(body.readableBytes) bytes, flags \(flags.sorted()), date \(internalDate))"
    }
}

/// Every selectable folder of an account with its messages, keyed by `/` path without prefix.
public struct AccountSnapshot: Sendable, Equatable {
    public var folders: [String: [StoredMessage]]

    public var messageCount: Int { folders.values.reduce(0) { $0 + $1.count } }

    public init(folders: [String: [StoredMessage]]) { self.folders = folders }

    /// Reads the account over IMAP (EXAMINE, so nothing changes).
    public static func take(_ server: DovecotServer, user: String) async throws -> AccountSnapshot {
        let session = try await IMAPSession.open(
            server.configuration(),
            credentials: .password(username: user, password: DovecotServer.password))
        do {
            var folders: [String: [StoredMessage]] = [:]
            for mailbox in try await session.listAll() where mailbox.isSelectable {
                let selected = try await session.select(mailbox.name, readOnly: true)
                var messages: [StoredMessage] = []
                if selected.exists > 0 {
                    for message in try await session.uidFetch("1:*", items: "UID FLAGS INTERNALDATE BODY.PEEK[]") {
                        messages.append(
                            StoredMessage(
                                body: message.body, flags: Set(message.flags.filter { $0.lowercased() != "\\recent" }),
                                internalDate: message.internalDate?.secondsSince1970 ?? 0))
                    }
                }
                folders[server.path(of: mailbox.name.decoded)] = messages
            }
            await session.logout()
            return AccountSnapshot(folders: folders)
        } catch {
            await session.close()
            throw error
        }
    }
}

extension DovecotServer {
    /// Logs in as `user` once and opens every folder, so the user's index files and auto-created
    /// folders exist before several sessions arrive at once.
    ///
    /// Dovecot 2.3 (sdbox, mailbox_list_index) races when a brand-new user's first sessions come in
    /// parallel: one imap process panics with `fcntl(.../dovecot.list.index.log, write-lock, F_SETLKW)
    /// locking failed: Resource deadlock avoided` (the client sees the connection close) and another
    /// gets `NO Mailbox already exists` for SELECT — about one round in 40 with four sessions.
    public func prepare(user: String) async throws {
        let session = try await IMAPSession.open(
            configuration(), credentials: .password(username: user, password: Self.password))
        do {
            for mailbox in try await session.listAll() where mailbox.isSelectable {
                _ = try await session.select(mailbox.name, readOnly: true)
            }
            await session.logout()
        } catch {
            await session.close()
            throw error
        }
    }

    /// A fresh user name, its account initialised (see `prepare(user:)`).
    public func freshUser(_ prefix: String = "user") async throws -> String {
        let user = uniqueUser(prefix)
        try await prepare(user: user)
        return user
    }

    /// The `/` path of a folder as this server spells it: the inverse of `folder(_:)`.
    public func path(of decodedName: String) -> String {
        if decodedName.uppercased() == "INBOX" { return "INBOX" }
        switch layout {
        case .dot:
            let name = decodedName.hasPrefix("INBOX.") ? String(decodedName.dropFirst(6)) : decodedName
            return name.replacingOccurrences(of: ".", with: "/")
        case .slash:
            return decodedName
        }
    }
}

// MARK: - Child processes that run in the background

/// A program started without waiting for it (posix_spawn), its output going to files, so a test can
/// watch its progress and kill it. Waiting polls `waitpid(WNOHANG)`, never blocking a thread for long.
public final class BackgroundProcess: Sendable {
    public let pid: pid_t
    public let stdoutPath: String
    public let stderrPath: String
    private let scratch: String
    private let exitStatus = Mutex<Int32?>(nil)

    private init(pid: pid_t, scratch: String) {
        self.pid = pid
        self.scratch = scratch
        stdoutPath = scratch + "/out"
        stderrPath = scratch + "/err"
    }

    public static func start(_ executable: String, _ arguments: [String], environment: [String: String]) throws
        -> BackgroundProcess
    {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("mp-bg-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // The test runner's threads block most signals and posix_spawn would pass that mask on.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, scratch + "/out", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, scratch + "/err", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in envp { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard spawned == 0 else {
            throw ProcessFailure(command: executable, status: spawned, output: "posix_spawn failed: \(spawned)")
        }
        return BackgroundProcess(pid: pid, scratch: scratch)
    }

    public var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    public var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// Sends a signal (SIGKILL by default: no chance to clean up, like a crash).
    public func kill(_ signal: Int32 = SIGKILL) {
        _ = Glibc.kill(pid, signal)
    }

    /// The exit status once the process ended (128 + signal when killed), or nil while it runs.
    public func poll() -> Int32? {
        exitStatus.withLock { known in
            if let known { return known }
            var status: Int32 = 0
            guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
            known = Self.exitCode(status)
            return known
        }
    }

    private static func exitCode(_ status: Int32) -> Int32 {
        (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    }

    /// Waits for the exit; kills the process and returns nil if it outlives `timeout`.
    public func wait(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let status = poll() { return status }
            try? await Task.sleep(for: .milliseconds(20))
        }
        kill()
        exitStatus.withLock { known in
            guard known == nil else { return }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) == -1, errno == EINTR {}
            known = Self.exitCode(status)
        }
        return nil
    }

    /// Removes the output files.
    public func cleanUp() {
        try? FileManager.default.removeItem(atPath: scratch)
    }
}

/// Runs `body` with no signal blocked on the calling thread, so that processes it spawns start with
/// an empty signal mask.
///
/// The test runner's threads block most signals (SIGTERM among them) and `spawnProcess` passes that
/// mask on through posix_spawn: a Dovecot started that way ignores `stop`'s SIGTERM and is only
/// gone after the script's SIGKILL fallback, about 7 s later. Wrap `DovecotServer.start` in this.
public func withDefaultSignalMask<T>(_ body: () throws -> T) rethrows -> T {
    var none = sigset_t()
    sigemptyset(&none)
    var previous = sigset_t()
    pthread_sigmask(SIG_SETMASK, &none, &previous)
    defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
    return try body()
}
