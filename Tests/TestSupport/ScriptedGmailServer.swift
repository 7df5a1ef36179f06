import Foundation
import IMAPClient
import NIOCore
import NIOPosix
import Synchronization

/// An in-process IMAP server on 127.0.0.1 that behaves like Gmail where the engine looks: labels
/// as folders (a message is in All Mail and in the folder of each of its labels, under each
/// folder's own UIDs), `[Gmail]/…` special-use folders, and the X-GM-EXT-1 extension
/// (`X-GM-LABELS`, `X-GM-MSGID`, `X-GM-THRID`). Dovecot cannot stand in here: it has no labels.
///
/// It is strict on purpose: a command, argument or FETCH item it does not emulate is answered
/// `BAD` and recorded in `refusals`, so a test notices when the engine asks for something a Gmail
/// test would not cover. The mail is fixed when the server starts; nothing is ever changed.
public final class ScriptedGmailServer: Sendable {
    public struct Message: Sendable {
        public var bytes: ByteBuffer
        public var flags: [String]
        public var internalDate: InternalDate
        /// Gmail's labels: `\Inbox`, `\Sent`, `\Draft`, `\Important`, `\Starred`, `\Spam`, `\Trash`,
        /// or a user label, which is also the name of a folder. Empty: archived without a label.
        public var labels: [String]

        public init(bytes: ByteBuffer, flags: [String], internalDate: InternalDate, labels: [String]) {
            self.bytes = bytes
            self.flags = flags
            self.internalDate = internalDate
            self.labels = labels
        }
    }

    /// Every user name logs in with this password.
    public static let password = "gmail-app-password"

    public let port: Int
    private let serverChannel: Channel
    private let state: GmailServerState

    private init(port: Int, serverChannel: Channel, state: GmailServerState) {
        self.port = port
        self.serverChannel = serverChannel
        self.state = state
    }

    /// Starts serving `messages`; without `gmailExtension` the server is a plain IMAP server with
    /// Gmail's folders: no X-GM-EXT-1 capability, and X-GM-* FETCH items are refused.
    public static func start(messages: [Message], gmailExtension: Bool = true) async throws -> ScriptedGmailServer {
        let state = GmailServerState(store: GmailStore(messages: messages), gmailExtension: gmailExtension)
        let serverChannel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                state.track(channel)
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(GmailConnectionHandler(state: state))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        guard let port = serverChannel.localAddress?.port else {
            try? await serverChannel.close()
            throw ChannelError.unknownLocalAddress
        }
        return ScriptedGmailServer(port: port, serverChannel: serverChannel, state: state)
    }

    public func configuration() -> ServerConfiguration {
        ServerConfiguration(
            host: "127.0.0.1", port: port, security: .none, connectTimeout: .seconds(5),
            greetingTimeout: .seconds(10), idleTimeout: .seconds(30))
    }

    /// Every command received, in order, each with the status it got (`LOGIN` without its password).
    public var commands: [String] { state.log.withLock { $0.commands } }

    /// The commands answered NO or BAD, with the reason.
    public var refusals: [String] { state.log.withLock { $0.refusals } }

    /// Connections accepted so far.
    public var connectionCount: Int { state.log.withLock { $0.connections } }

    /// Stops listening and closes every connection still open.
    public func stop() async {
        try? await serverChannel.close()
        for channel in state.openChannels() {
            try? await channel.close()
        }
    }
}

// MARK: - Mail store

/// One folder as Gmail shows it over IMAP.
struct GmailFolder: Sendable {
    struct Entry: Sendable {
        var uid: UInt32
        /// Index into `GmailStore.messages`.
        var message: Int
    }

    var name: String
    var attributes: [String]
    var isSelectable: Bool { !attributes.contains("\\Noselect") }
    var uidValidity: UInt32
    var entries: [Entry]
    var uidNext: UInt32 { (entries.last?.uid ?? 0) + 1 }
}

/// Gmail's folder layout over a list of labelled messages.
struct GmailStore: Sendable {
    let messages: [ScriptedGmailServer.Message]
    let folders: [GmailFolder]

    init(messages: [ScriptedGmailServer.Message]) {
        self.messages = messages
        func has(_ label: String) -> (ScriptedGmailServer.Message) -> Bool {
            { message in message.labels.contains { $0.lowercased() == label.lowercased() } }
        }
        let userLabels = Set(messages.flatMap(\.labels).filter { !$0.hasPrefix("\\") }).sorted()
        var layout: [(name: String, attributes: [String], holds: (ScriptedGmailServer.Message) -> Bool)] = [
            ("INBOX", ["\\HasNoChildren"], has("\\Inbox")),
            ("[Gmail]", ["\\HasChildren", "\\Noselect"], { _ in false }),
            // Spam and Trash are the only labels that take a message out of All Mail.
            ("[Gmail]/All Mail", ["\\All", "\\HasNoChildren"], { !has("\\Spam")($0) && !has("\\Trash")($0) }),
            ("[Gmail]/Drafts", ["\\Drafts", "\\HasNoChildren"], has("\\Draft")),
            ("[Gmail]/Important", ["\\HasNoChildren", "\\Important"], has("\\Important")),
            ("[Gmail]/Sent Mail", ["\\HasNoChildren", "\\Sent"], has("\\Sent")),
            ("[Gmail]/Spam", ["\\HasNoChildren", "\\Junk"], has("\\Spam")),
            ("[Gmail]/Starred", ["\\Flagged", "\\HasNoChildren"], has("\\Starred")),
            ("[Gmail]/Trash", ["\\HasNoChildren", "\\Trash"], has("\\Trash")),
        ]
        for label in userLabels { layout.append((label, ["\\HasNoChildren"], has(label))) }
        folders = layout.enumerated().map { ordinal, folder in
            let indices = messages.indices.filter { folder.holds(messages[$0]) }
            // All Mail's UIDs have gaps, as Gmail's do; a label folder numbers its messages 1, 2, 3….
            let isAllMail = folder.attributes.contains("\\All")
            let entries = indices.enumerated().map { position, index in
                GmailFolder.Entry(uid: isAllMail ? UInt32(5 + 3 * position) : UInt32(position + 1), message: index)
            }
            return GmailFolder(
                name: folder.name, attributes: folder.attributes, uidValidity: UInt32(600 + ordinal),
                entries: entries)
        }
    }

    func folder(named name: String) -> Int? {
        folders.firstIndex { $0.name == name || ($0.name == "INBOX" && name.uppercased() == "INBOX") }
    }
}

/// What the connections share: the mail, the options, the log, the open channels.
final class GmailServerState: Sendable {
    struct Log {
        var commands: [String] = []
        var refusals: [String] = []
        var connections = 0
    }

    let store: GmailStore
    let gmailExtension: Bool
    let log = Mutex(Log())
    private let channels = Mutex<[ObjectIdentifier: Channel]>([:])

    init(store: GmailStore, gmailExtension: Bool) {
        self.store = store
        self.gmailExtension = gmailExtension
    }

    /// Before LOGIN, as Gmail offers it (less its OAuth mechanisms, which are not emulated).
    var greetingCapabilities: String {
        "IMAP4rev1 UNSELECT ID NAMESPACE CHILDREN" + (gmailExtension ? " X-GM-EXT-1" : "")
    }

    /// After LOGIN: what the engine may use, as Gmail spells it.
    var capabilities: String {
        "IMAP4rev1 UNSELECT ID NAMESPACE CHILDREN" + (gmailExtension ? " X-GM-EXT-1" : "")
            + " UIDPLUS ESEARCH LIST-EXTENDED LITERAL- SPECIAL-USE"
    }

    func track(_ channel: Channel) {
        let key = ObjectIdentifier(channel)
        log.withLock { $0.connections += 1 }
        channels.withLock { $0[key] = channel }
        channel.closeFuture.whenComplete { [self] _ in
            _ = channels.withLock { $0.removeValue(forKey: key) }
        }
    }

    func openChannels() -> [Channel] { channels.withLock { Array($0.values) } }

    func record(_ command: String, status: String, reason: String?) {
        log.withLock { log in
            log.commands.append("\(command) → \(status)" + (reason.map { " \($0)" } ?? ""))
            if status != "OK" { log.refusals.append("\(command) → \(status) \(reason ?? "")") }
        }
    }
}

// MARK: - Command syntax

/// A command argument: atom (with any `[...]` section inside kept whole), string, or list.
indirect enum GmailArgument: Equatable {
    case atom(String)
    case string(String)
    case list([GmailArgument])

    /// An astring's value.
    var text: String? {
        switch self {
        case .atom(let value), .string(let value): value
        case .list: nil
        }
    }

    var atomValue: String? {
        if case .atom(let value) = self { return value }
        return nil
    }

    var rendered: String {
        switch self {
        case .atom(let value): value
        case .string(let value): "\"\(value)\""
        case .list(let items): "(" + items.map(\.rendered).joined(separator: " ") + ")"
        }
    }
}

struct GmailSyntaxError: Error {
    var reason: String
}

/// A command line split at its literals: text, literal bytes, text, ….
enum GmailSegment {
    case text([UInt8])
    case literal([UInt8])
}

enum GmailCommandSyntax {
    private enum Lexeme {
        case open
        case close
        case atom(String)
        case string(String)
    }

    static func arguments(_ segments: [GmailSegment]) throws -> [GmailArgument] {
        var lexemes: [Lexeme] = []
        for segment in segments {
            switch segment {
            case .literal(let bytes): lexemes.append(.string(String(decoding: bytes, as: UTF8.self)))
            case .text(let bytes): lexemes += try lex(bytes)
            }
        }
        var index = 0
        var arguments: [GmailArgument] = []
        while index < lexemes.count { arguments.append(try argument(lexemes, &index)) }
        return arguments
    }

    private static func argument(_ lexemes: [Lexeme], _ index: inout Int) throws -> GmailArgument {
        let lexeme = lexemes[index]
        index += 1
        switch lexeme {
        case .atom(let value): return .atom(value)
        case .string(let value): return .string(value)
        case .close: throw GmailSyntaxError(reason: "unbalanced ')'")
        case .open:
            var items: [GmailArgument] = []
            while true {
                guard index < lexemes.count else { throw GmailSyntaxError(reason: "unclosed '('") }
                if case .close = lexemes[index] {
                    index += 1
                    return .list(items)
                }
                items.append(try argument(lexemes, &index))
            }
        }
    }

    private static func lex(_ bytes: [UInt8]) throws -> [Lexeme] {
        var lexemes: [Lexeme] = []
        var index = 0
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: " "):
                index += 1
            case UInt8(ascii: "("):
                lexemes.append(.open)
                index += 1
            case UInt8(ascii: ")"):
                lexemes.append(.close)
                index += 1
            case UInt8(ascii: "\""):
                index += 1
                var value: [UInt8] = []
                while true {
                    guard index < bytes.count else { throw GmailSyntaxError(reason: "unterminated quoted string") }
                    let byte = bytes[index]
                    index += 1
                    if byte == UInt8(ascii: "\"") { break }
                    if byte == UInt8(ascii: "\\") {
                        guard index < bytes.count,
                            bytes[index] == UInt8(ascii: "\"") || bytes[index] == UInt8(ascii: "\\")
                        else {
                            throw GmailSyntaxError(reason: "bad escape in quoted string")
                        }
                        value.append(bytes[index])
                        index += 1
                        continue
                    }
                    value.append(byte)
                }
                lexemes.append(.string(String(decoding: value, as: UTF8.self)))
            default:
                var value: [UInt8] = []
                var inSection = false
                while index < bytes.count {
                    let byte = bytes[index]
                    if !inSection, byte == UInt8(ascii: " ") || byte == UInt8(ascii: "(") || byte == UInt8(ascii: ")") {
                        break
                    }
                    if byte == UInt8(ascii: "[") { inSection = true }
                    if byte == UInt8(ascii: "]") { inSection = false }
                    value.append(byte)
                    index += 1
                }
                guard !inSection else { throw GmailSyntaxError(reason: "unclosed '['") }
                lexemes.append(.atom(String(decoding: value, as: UTF8.self)))
            }
        }
        return lexemes
    }

    /// `sequence-set` against the largest number in use (`*`).
    static func numberSet(_ text: String, largest: UInt32) throws -> [ClosedRange<UInt32>] {
        try text.split(separator: ",", omittingEmptySubsequences: false).map { part in
            let bounds = try part.split(separator: ":", omittingEmptySubsequences: false).map { bound -> UInt32 in
                if bound == "*" { return largest }
                guard let value = UInt32(bound), value > 0 else {
                    throw GmailSyntaxError(reason: "bad sequence set \(text)")
                }
                return value
            }
            guard bounds.count == 1 || bounds.count == 2 else {
                throw GmailSyntaxError(reason: "bad sequence set \(text)")
            }
            // `n:*` with n past the end still holds the last message (RFC 9051 §9, seq-range).
            return min(bounds[0], bounds[bounds.count - 1])...max(bounds[0], bounds[bounds.count - 1])
        }
    }

    /// A SEARCH `date` (`d-Mon-yyyy`) as (year, month, day).
    static func searchDate(_ text: String) throws -> (Int, Int, Int) {
        let parts = text.split(separator: "-")
        guard parts.count == 3, let day = Int(parts[0]), (1...31).contains(day), let year = Int(parts[2]),
            parts[2].count == 4,
            let month = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
                .firstIndex(of: parts[1].lowercased())
        else { throw GmailSyntaxError(reason: "bad date \(text)") }
        return (year, month + 1, day)
    }

    static func quoted(_ value: String) -> String {
        "\"" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    static func compact(_ uids: [UInt32]) -> String {
        var ranges: [ClosedRange<UInt32>] = []
        for uid in uids.sorted() {
            if let last = ranges.last, last.upperBound + 1 == uid {
                ranges[ranges.count - 1] = last.lowerBound...uid
            } else {
                ranges.append(uid...uid)
            }
        }
        return ranges.map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound):\($0.upperBound)" }.joined(
            separator: ",")
    }
}

// MARK: - One connection

/// One client connection: reads commands (with literals), answers them from the store.
private final class GmailConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// A reply to one command: untagged data, then the tagged status line.
    private struct Reply {
        var data = ByteBuffer()
        var status = "OK"
        var text = "Success"
        var logoff = false

        mutating func line(_ text: String) { data.writeString(text + "\r\n") }
        mutating func bytes(_ bytes: ByteBuffer) {
            var bytes = bytes
            data.writeBuffer(&bytes)
        }
    }

    private struct Refusal: Error {
        var status: String
        var reason: String
        static func bad(_ reason: String) -> Refusal { Refusal(status: "BAD", reason: reason) }
    }

    private let state: GmailServerState
    private var buffer = ByteBuffer()
    /// Synchronising literals of the command being read that were already answered with `+`.
    private var continuationsSent = 0
    private var authenticated = false
    private var selected: Int?
    private var closing = false

    init(state: GmailServerState) { self.state = state }

    func channelActive(context: ChannelHandlerContext) {
        write("* OK Gimap ready for requests from 127.0.0.1 scripted\r\n", context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        buffer.writeBuffer(&incoming)
        while !closing, let command = nextCommand(context) {
            buffer.moveReaderIndex(forwardBy: command.length)
            continuationsSent = 0
            answer(command.segments, context)
        }
        buffer.discardReadBytes()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    private func write(_ text: String, _ context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: text)), promise: nil)
    }

    /// The next whole command (its literals read), and its length in bytes; nil while incomplete.
    private func nextCommand(_ context: ChannelHandlerContext) -> (segments: [GmailSegment], length: Int)? {
        let bytes = Array(buffer.readableBytesView)
        var segments: [GmailSegment] = []
        var offset = 0
        var literals = 0
        while true {
            guard let lineFeed = bytes[offset...].firstIndex(of: UInt8(ascii: "\n")) else { return nil }
            var line = Array(bytes[offset..<lineFeed])
            if line.last == UInt8(ascii: "\r") { line.removeLast() }
            guard let literal = literalAnnouncement(line) else {
                segments.append(.text(line))
                return (segments, lineFeed + 1)
            }
            let size = literal.size
            segments.append(.text(Array(line.prefix(literal.start))))
            if literal.synchronising, literals >= continuationsSent {
                write("+ go ahead\r\n", context)
                continuationsSent += 1
            }
            literals += 1
            let start = lineFeed + 1
            guard bytes.count >= start + size else { return nil }
            segments.append(.literal(Array(bytes[start..<(start + size)])))
            offset = start + size
        }
    }

    /// `{n}` or `{n+}` ending a line: the size, whether the client waits for `+`, where it starts.
    private func literalAnnouncement(_ line: [UInt8]) -> (size: Int, synchronising: Bool, start: Int)? {
        guard line.last == UInt8(ascii: "}"), let open = line.lastIndex(of: UInt8(ascii: "{")) else { return nil }
        var digits = line[(open + 1)..<(line.count - 1)]
        let nonSynchronising = digits.last == UInt8(ascii: "+")
        if nonSynchronising { digits = digits.dropLast() }
        guard let size = Int(String(decoding: digits, as: UTF8.self)), size <= 1 << 20 else { return nil }
        return (size, !nonSynchronising, open)
    }

    private func answer(_ segments: [GmailSegment], _ context: ChannelHandlerContext) {
        let shown = segments.map { segment -> String in
            switch segment {
            case .text(let bytes): String(decoding: bytes, as: UTF8.self)
            case .literal(let bytes): "{\(bytes.count)}"
            }
        }.joined()
        let arguments: [GmailArgument]
        do {
            arguments = try GmailCommandSyntax.arguments(segments)
        } catch {
            let reason = (error as? GmailSyntaxError)?.reason ?? "\(error)"
            state.record(shown, status: "BAD", reason: reason)
            // Answered under its tag where one can be made out, so the client does not wait for it.
            let tag = shown.prefix { $0 != " " }
            write("\(tag.isEmpty ? "*" : tag) BAD \(reason)\r\n", context)
            return
        }
        guard arguments.count >= 2, let tag = arguments[0].atomValue, let name = arguments[1].atomValue?.uppercased()
        else {
            state.record(shown, status: "BAD", reason: "no tag and command")
            write("* BAD Unknown command\r\n", context)
            return
        }
        let logged = name == "LOGIN" ? "\(tag) LOGIN \(arguments.count > 2 ? arguments[2].rendered : "") ***" : shown
        var reply = Reply()
        do {
            try run(name, Array(arguments.dropFirst(2)), tag: tag, into: &reply)
            state.record(logged, status: "OK", reason: nil)
        } catch {
            let refusal = error as? Refusal ?? Refusal.bad((error as? GmailSyntaxError)?.reason ?? "\(error)")
            reply = Reply(status: refusal.status, text: refusal.reason)
            state.record(logged, status: refusal.status, reason: refusal.reason)
        }
        reply.line("\(tag) \(reply.status) \(reply.text)")
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(reply.data), promise: promise)
        if reply.logoff {
            closing = true
            promise.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }

    // MARK: Commands

    private func run(_ name: String, _ arguments: [GmailArgument], tag: String, into reply: inout Reply) throws {
        switch name {
        case "CAPABILITY":
            try expectCount(arguments, 0)
            reply.line("* CAPABILITY \(authenticated ? state.capabilities : state.greetingCapabilities)")
        case "NOOP":
            try expectCount(arguments, 0)
        case "LOGOUT":
            try expectCount(arguments, 0)
            reply.line("* BYE LOGOUT Requested")
            reply.text = "73 good day (Success)"
            reply.logoff = true
        case "ID":
            try expectCount(arguments, 1)
            switch arguments[0] {
            case .list: break
            case .atom(let word) where word.uppercased() == "NIL": break
            default: throw Refusal.bad("ID takes a list or NIL")
            }
            reply.line(
                "* ID (\"name\" \"GImap\" \"vendor\" \"Google, Inc.\" \"support-url\" \"https://support.google.com/mail\")"
            )
        case "LOGIN":
            try expectCount(arguments, 2)
            guard !authenticated else { throw Refusal.bad("Command received in Invalid state.") }
            guard let user = arguments[0].text, !user.isEmpty, let password = arguments[1].text else {
                throw Refusal.bad("LOGIN takes a user name and a password")
            }
            guard password == ScriptedGmailServer.password else {
                throw Refusal(status: "NO", reason: "[AUTHENTICATIONFAILED] Invalid credentials (Failure)")
            }
            authenticated = true
            reply.text = "[CAPABILITY \(state.capabilities)] \(user) authenticated (Success)"
        default:
            guard authenticated else { throw Refusal.bad("Command received in Invalid state.") }
            try runAuthenticated(name, arguments, tag: tag, into: &reply)
        }
    }

    private func runAuthenticated(_ name: String, _ arguments: [GmailArgument], tag: String, into reply: inout Reply)
        throws
    {
        let store = state.store
        switch name {
        case "NAMESPACE":
            try expectCount(arguments, 0)
            reply.line("* NAMESPACE ((\"\" \"/\")) NIL NIL")
        case "LIST":
            try list(arguments, into: &reply)
        case "STATUS":
            try expectCount(arguments, 2)
            let folder = try selectableFolder(arguments[0])
            guard case .list(let items) = arguments[1], !items.isEmpty else {
                throw Refusal.bad("STATUS takes a list of items")
            }
            let values = try items.map { item -> String in
                switch item.atomValue?.uppercased() {
                case "MESSAGES"?: "MESSAGES \(store.folders[folder].entries.count)"
                case "RECENT"?: "RECENT 0"
                case "UIDNEXT"?: "UIDNEXT \(store.folders[folder].uidNext)"
                case "UIDVALIDITY"?: "UIDVALIDITY \(store.folders[folder].uidValidity)"
                case "UNSEEN"?:
                    "UNSEEN \(store.folders[folder].entries.filter { !store.messages[$0.message].flags.contains("\\Seen") }.count)"
                default: throw Refusal.bad("STATUS item \(item.rendered) is not emulated")
                }
            }
            reply.line(
                "* STATUS \(GmailCommandSyntax.quoted(store.folders[folder].name)) (\(values.joined(separator: " ")))")
        case "SELECT", "EXAMINE":
            try expectCount(arguments, 1)
            selected = nil
            let folder = try selectableFolder(arguments[0])
            let mailbox = store.folders[folder]
            reply.line("* FLAGS (\\Answered \\Flagged \\Draft \\Deleted \\Seen $NotPhishing $Phishing)")
            reply.line(
                name == "EXAMINE"
                    ? "* OK [PERMANENTFLAGS ()] Flags permitted."
                    : "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Draft \\Deleted \\Seen $NotPhishing $Phishing \\*)] Flags permitted."
            )
            reply.line("* OK [UIDVALIDITY \(mailbox.uidValidity)] UIDs valid.")
            reply.line("* \(mailbox.entries.count) EXISTS")
            reply.line("* 0 RECENT")
            reply.line("* OK [UIDNEXT \(mailbox.uidNext)] Predicted next UID.")
            reply.text =
                name == "EXAMINE"
                ? "[READ-ONLY] \(mailbox.name) selected. (Success)" : "[READ-WRITE] \(mailbox.name) selected. (Success)"
            selected = folder
        case "UNSELECT":
            try expectCount(arguments, 0)
            guard selected != nil else { throw Refusal.bad("Command received in Invalid state.") }
            selected = nil
        case "UID":
            guard let folder = selected else { throw Refusal.bad("Command received in Invalid state.") }
            guard let sub = arguments.first?.atomValue?.uppercased() else { throw Refusal.bad("UID takes a command") }
            switch sub {
            case "SEARCH": try search(Array(arguments.dropFirst()), in: folder, tag: tag, into: &reply)
            case "FETCH": try fetch(Array(arguments.dropFirst()), in: folder, into: &reply)
            default: throw Refusal.bad("UID \(sub) is not emulated")
            }
        default:
            throw Refusal.bad("\(name) is not emulated")
        }
    }

    private func expectCount(_ arguments: [GmailArgument], _ count: Int) throws {
        guard arguments.count == count else { throw Refusal.bad("expected \(count) arguments, got \(arguments.count)") }
    }

    private func selectableFolder(_ argument: GmailArgument) throws -> Int {
        guard let name = argument.text else { throw Refusal.bad("expected a mailbox name") }
        guard let folder = state.store.folder(named: name) else {
            throw Refusal(status: "NO", reason: "[NONEXISTENT] Unknown Mailbox: \(name) (Failure)")
        }
        guard state.store.folders[folder].isSelectable else {
            throw Refusal(status: "NO", reason: "[NONEXISTENT] \(name) is not selectable (Failure)")
        }
        return folder
    }

    /// `LIST "" "*"`, optionally `RETURN (SPECIAL-USE)` or `RETURN (CHILDREN)`: Gmail sends the
    /// special-use attributes either way.
    private func list(_ arguments: [GmailArgument], into reply: inout Reply) throws {
        guard arguments.count == 2 || arguments.count == 4 else {
            throw Refusal.bad("LIST takes a reference and a pattern")
        }
        guard arguments[0].text == "", arguments[1].text == "*" else {
            throw Refusal.bad("only LIST \"\" \"*\" is emulated, not \(arguments[0].rendered) \(arguments[1].rendered)")
        }
        if arguments.count == 4 {
            guard arguments[2].atomValue?.uppercased() == "RETURN", case .list(let options) = arguments[3] else {
                throw Refusal.bad("LIST options are RETURN (...)")
            }
            for option in options where !["SPECIAL-USE", "CHILDREN"].contains(option.atomValue?.uppercased() ?? "") {
                throw Refusal.bad("LIST RETURN \(option.rendered) is not emulated")
            }
        }
        for folder in state.store.folders {
            reply.line(
                "* LIST (\(folder.attributes.joined(separator: " "))) \"/\" \(GmailCommandSyntax.quoted(folder.name))")
        }
    }

    // MARK: UID SEARCH

    private typealias Matcher = (_ sequence: Int, _ entry: GmailFolder.Entry) -> Bool

    private func search(_ arguments: [GmailArgument], in folder: Int, tag: String, into reply: inout Reply) throws {
        var arguments = arguments[...]
        var extended = false
        if arguments.first?.atomValue?.uppercased() == "RETURN" {
            guard arguments.count >= 2, case .list(let options) = arguments[arguments.startIndex + 1] else {
                throw Refusal.bad("SEARCH RETURN takes a list")
            }
            for option in options where option.atomValue?.uppercased() != "ALL" {
                throw Refusal.bad("SEARCH RETURN \(option.rendered) is not emulated")
            }
            extended = true
            arguments = arguments.dropFirst(2)
        }
        guard !arguments.isEmpty else { throw Refusal.bad("SEARCH needs criteria") }
        let mailbox = state.store.folders[folder]
        var matchers: [Matcher] = []
        while !arguments.isEmpty { matchers.append(try searchKey(&arguments, in: mailbox)) }
        let uids = mailbox.entries.enumerated().filter { position, entry in
            matchers.allSatisfy { $0(position + 1, entry) }
        }.map(\.element.uid)
        if extended {
            let all = uids.isEmpty ? "" : " ALL \(GmailCommandSyntax.compact(uids))"
            reply.line("* ESEARCH (TAG \"\(tag)\") UID\(all)")
        } else {
            reply.line("* SEARCH" + uids.map { " \($0)" }.joined())
        }
        reply.text = "SEARCH completed (Success)"
    }

    private func searchKey(_ arguments: inout ArraySlice<GmailArgument>, in mailbox: GmailFolder) throws -> Matcher {
        guard let argument = arguments.popFirst() else { throw Refusal.bad("SEARCH key missing") }
        let messages = state.store.messages
        func hasFlag(_ flag: String) -> Matcher {
            { _, entry in messages[entry.message].flags.contains { $0.lowercased() == flag.lowercased() } }
        }
        func date(_ compare: @escaping ((Int, Int, Int), (Int, Int, Int)) -> Bool) throws -> Matcher {
            guard let text = arguments.popFirst()?.text else { throw Refusal.bad("SEARCH date missing") }
            let day = try GmailCommandSyntax.searchDate(text)
            // The internal date's own calendar day, disregarding time and zone (RFC 9051 §6.4.4).
            return { _, entry in
                let date = messages[entry.message].internalDate
                return compare((date.year, date.month, date.day), day)
            }
        }
        if case .list(let inner) = argument {
            var inner = inner[...]
            var keys: [Matcher] = []
            while !inner.isEmpty { keys.append(try searchKey(&inner, in: mailbox)) }
            return { sequence, entry in keys.allSatisfy { $0(sequence, entry) } }
        }
        guard let key = argument.atomValue?.uppercased() else {
            throw Refusal.bad("SEARCH key \(argument.rendered) is not an atom")
        }
        switch key {
        case "ALL": return { _, _ in true }
        case "DELETED": return hasFlag("\\Deleted")
        case "UNDELETED":
            let deleted = hasFlag("\\Deleted")
            return { !deleted($0, $1) }
        case "SEEN": return hasFlag("\\Seen")
        case "FLAGGED": return hasFlag("\\Flagged")
        case "NOT":
            let inner = try searchKey(&arguments, in: mailbox)
            return { !inner($0, $1) }
        case "OR":
            let first = try searchKey(&arguments, in: mailbox)
            let second = try searchKey(&arguments, in: mailbox)
            return { first($0, $1) || second($0, $1) }
        case "SINCE": return try date { $0 >= $1 }
        case "BEFORE": return try date { $0 < $1 }
        case "ON": return try date { $0 == $1 }
        case "UID":
            guard let set = arguments.popFirst()?.atomValue else { throw Refusal.bad("SEARCH UID needs a set") }
            let ranges = try GmailCommandSyntax.numberSet(set, largest: mailbox.entries.last?.uid ?? 0)
            return { _, entry in ranges.contains { $0.contains(entry.uid) } }
        default:
            guard key.first?.isNumber == true || key.first == "*" else {
                throw Refusal.bad("SEARCH key \(key) is not emulated")
            }
            let ranges = try GmailCommandSyntax.numberSet(key, largest: UInt32(mailbox.entries.count))
            return { sequence, _ in ranges.contains { $0.contains(UInt32(sequence)) } }
        }
    }

    // MARK: UID FETCH

    private func fetch(_ arguments: [GmailArgument], in folder: Int, into reply: inout Reply) throws {
        try expectCount(arguments, 2)
        let mailbox = state.store.folders[folder]
        guard let set = arguments[0].atomValue else { throw Refusal.bad("FETCH takes a UID set") }
        let ranges = try GmailCommandSyntax.numberSet(set, largest: mailbox.entries.last?.uid ?? 0)
        let items: [String]
        switch arguments[1] {
        case .atom(let item): items = [item]
        case .list(let list):
            items = try list.map { item in
                guard let atom = item.atomValue else {
                    throw Refusal.bad("FETCH item \(item.rendered) is not emulated")
                }
                return atom
            }
        case .string: throw Refusal.bad("FETCH items are atoms")
        }
        // Checked up front, so a bad item is refused before any data goes out.
        for item in items { _ = try fetchItem(item, of: nil, uid: 0, validateOnly: true) }
        // A UID FETCH always reports the UID, first when it was not asked for.
        let reported = items.contains { $0.uppercased() == "UID" } ? items : ["UID"] + items
        for (position, entry) in mailbox.entries.enumerated() where ranges.contains(where: { $0.contains(entry.uid) }) {
            reply.data.writeString("* \(position + 1) FETCH (")
            for (index, item) in reported.enumerated() {
                if index > 0 { reply.data.writeString(" ") }
                if let bytes = try fetchItem(item, of: entry, uid: entry.uid, validateOnly: false) {
                    reply.bytes(bytes)
                }
            }
            reply.data.writeString(")\r\n")
        }
        reply.text = "Success"
    }

    /// One FETCH item's response text; with `validateOnly` only checks the item is one served.
    private func fetchItem(
        _ item: String, of entry: GmailFolder.Entry?, uid: UInt32,
        validateOnly: Bool
    ) throws -> ByteBuffer? {
        let upper = item.uppercased()
        let gmailItems = ["X-GM-LABELS", "X-GM-MSGID", "X-GM-THRID"]
        if gmailItems.contains(upper) {
            guard state.gmailExtension else { throw Refusal.bad("Could not parse command") }
        } else if upper.hasPrefix("BODY[") || (upper.hasPrefix("RFC822") && upper != "RFC822.SIZE") {
            // The source must stay unread: only the PEEK forms are expected of the engine.
            throw Refusal.bad("\(item) would set \\Seen; the engine must use BODY.PEEK")
        } else if !["UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE"].contains(upper), !upper.hasPrefix("BODY.PEEK[") {
            throw Refusal.bad("FETCH item \(item) is not emulated")
        }
        var section: String?
        if upper.hasPrefix("BODY.PEEK[") {
            guard upper.hasSuffix("]") else { throw Refusal.bad("partial FETCH \(item) is not emulated") }
            let inside = String(item.dropFirst("BODY.PEEK[".count).dropLast())
            let upperInside = inside.uppercased()
            guard
                ["", "HEADER", "TEXT"].contains(upperInside)
                    || upperInside.hasPrefix("HEADER.FIELDS (") && upperInside.hasSuffix(")")
            else {
                throw Refusal.bad("section \(inside) is not emulated")
            }
            section = inside
        }
        guard !validateOnly, let entry else { return nil }
        let message = state.store.messages[entry.message]
        var out = ByteBuffer()
        switch upper {
        case "UID": out.writeString("UID \(uid)")
        case "FLAGS": out.writeString("FLAGS (\(message.flags.joined(separator: " ")))")
        case "INTERNALDATE": out.writeString("INTERNALDATE \"\(message.internalDate)\"")
        case "RFC822.SIZE": out.writeString("RFC822.SIZE \(message.bytes.readableBytes)")
        case "X-GM-LABELS":
            // System labels quoted with their backslash escaped, user labels as atoms where they
            // can be: what Gmail sends today.
            let labels = message.labels.map { label -> String in
                let isAtom =
                    !label.isEmpty
                    && label.utf8.allSatisfy { byte in
                        byte > 0x20 && byte < 0x7F && !"(){%*\"\\]".utf8.contains(byte)
                    }
                return isAtom ? label : GmailCommandSyntax.quoted(label)
            }
            out.writeString("X-GM-LABELS (\(labels.joined(separator: " ")))")
        case "X-GM-MSGID", "X-GM-THRID":
            out.writeString("\(upper) \(1_600_000_000_000_000_000 + UInt64(entry.message))")
        default:
            guard let section else { return nil }
            let content = Self.section(section, of: message.bytes)
            out.writeString("BODY[\(section)] {\(content.readableBytes)}\r\n")
            var body = content
            out.writeBuffer(&body)
        }
        return out
    }

    /// `""`, `HEADER`, `TEXT` or `HEADER.FIELDS (names)` of a message.
    private static func section(_ section: String, of message: ByteBuffer) -> ByteBuffer {
        let bytes = Array(message.readableBytesView)
        let separator = Array("\r\n\r\n".utf8)
        var headerEnd = bytes.count
        if bytes.count >= 4 {
            for index in 0...(bytes.count - 4) where Array(bytes[index..<(index + 4)]) == separator {
                headerEnd = index + 4
                break
            }
        }
        let upper = section.uppercased()
        if upper.isEmpty { return message }
        if upper == "HEADER" { return ByteBuffer(bytes: bytes[..<headerEnd]) }
        if upper == "TEXT" { return ByteBuffer(bytes: bytes[headerEnd...]) }
        let names = Set(upper.dropFirst("HEADER.FIELDS (".count).dropLast().split(separator: " ").map(String.init))
        let header = String(decoding: bytes[..<headerEnd], as: UTF8.self)
        var kept = ""
        var keeping = false
        for line in header.components(separatedBy: "\r\n") where !line.isEmpty {
            if line.first == " " || line.first == "\t" {
                if keeping { kept += line + "\r\n" }
                continue
            }
            let name = line.split(separator: ":", maxSplits: 1).first.map { String($0).uppercased() } ?? ""
            keeping = names.contains(name)
            if keeping { kept += line + "\r\n" }
        }
        return ByteBuffer(string: kept + "\r\n")
    }
}
