import NIOCore
import Testing
@testable import IMAPClient

@Suite("Response parser: RFC examples")
struct ResponseParserTests {
    @Test func greetingWithCapabilityCode() throws {
        let events = try parse("* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID STARTTLS AUTH=PLAIN] Dovecot ready.\r\n")
        #expect(
            events == [
                .untagged(
                    .status(
                        .ok,
                        ResponseText(
                            code: .capability(["IMAP4rev1", "LITERAL+", "SASL-IR", "ID", "STARTTLS", "AUTH=PLAIN"]),
                            text: "Dovecot ready.")))
            ])
    }

    @Test func taggedResponsesWithCodes() throws {
        let events = try parse(
            """
            a002 OK [READ-WRITE] SELECT completed\r
            A003 OK [APPENDUID 38505 3955] APPEND completed\r
            A004 OK [COPYUID 38505 304,319:320 3956:3958] Done\r
            a005 NO [OVERQUOTA] Quota exceeded (mailbox for user is full)\r
            a006 NO [AUTHENTICATIONFAILED] Authentication failed.\r
            a007 NO [THROTTLED] Too fast\r
            a008 NO [UNAVAILABLE] Try later\r
            a009 NO [LIMIT] Too many\r
            a010 BAD Command unknown\r
            a011 OK [X-UNKNOWN some ] words] text\r

            """)
        let expected: [ResponseEvent] = [
            .tagged(
                TaggedResponse(tag: "a002", status: .ok, text: ResponseText(code: .readWrite, text: "SELECT completed"))
            ),
            .tagged(
                TaggedResponse(
                    tag: "A003", status: .ok,
                    text: ResponseText(
                        code: .appendUID(uidValidity: 38505, uids: UIDSet([3955...3955])), text: "APPEND completed"))),
            .tagged(
                TaggedResponse(
                    tag: "A004", status: .ok,
                    text: ResponseText(
                        code: .copyUID(
                            uidValidity: 38505, source: UIDSet([304...304, 319...320]),
                            destination: UIDSet([3956...3958])), text: "Done"))),
            .tagged(
                TaggedResponse(
                    tag: "a005", status: .no,
                    text: ResponseText(code: .overQuota, text: "Quota exceeded (mailbox for user is full)"))),
            .tagged(
                TaggedResponse(
                    tag: "a006", status: .no,
                    text: ResponseText(code: .authenticationFailed, text: "Authentication failed."))),
            .tagged(TaggedResponse(tag: "a007", status: .no, text: ResponseText(code: .throttled, text: "Too fast"))),
            .tagged(
                TaggedResponse(tag: "a008", status: .no, text: ResponseText(code: .unavailable, text: "Try later"))),
            .tagged(TaggedResponse(tag: "a009", status: .no, text: ResponseText(code: .limit, text: "Too many"))),
            .tagged(TaggedResponse(tag: "a010", status: .bad, text: ResponseText(code: nil, text: "Command unknown"))),
        ]
        #expect(Array(events.prefix(9)) == expected)
        // An unknown code with a "]" inside its argument must not be mistaken for the end.
        guard case .tagged(let last) = events.last, case .other(let name, _)? = last.text.code else {
            Issue.record("unknown response code not kept: \(events.last.map { "\($0)" } ?? "none")")
            return
        }
        #expect(name == "X-UNKNOWN")
    }

    @Test func selectResponses() throws {
        let events = try parse(
            """
            * 172 EXISTS\r
            * 1 RECENT\r
            * OK [UNSEEN 12] Message 12 is first unseen\r
            * OK [UIDVALIDITY 3857529045] UIDs valid\r
            * OK [UIDNEXT 4392] Predicted next UID\r
            * FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r
            * OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r

            """)
        #expect(
            events == [
                .untagged(.exists(172)),
                .untagged(.recent(1)),
                .untagged(.status(.ok, ResponseText(code: .unseen(12), text: "Message 12 is first unseen"))),
                .untagged(.status(.ok, ResponseText(code: .uidValidity(3857529045), text: "UIDs valid"))),
                .untagged(.status(.ok, ResponseText(code: .uidNext(4392), text: "Predicted next UID"))),
                .untagged(.flags(["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"])),
                .untagged(
                    .status(.ok, ResponseText(code: .permanentFlags(["\\Deleted", "\\Seen", "\\*"]), text: "Limited"))),
            ])
    }

    @Test func listResponses() throws {
        let events = try parse(
            """
            * LIST (\\Noselect) "/" ~/Mail/foo\r
            * LIST (\\HasNoChildren \\Sent) "." "INBOX.Sent Items"\r
            * LIST () NIL Bar\r
            * LIST (\\HasNoChildren) "/" {9}\r
            Caf&AOk-]\r
            * LIST (\\Subscribed) "/" "Foo" ("CHILDINFO" ("SUBSCRIBED"))\r

            """)
        #expect(
            events == [
                .untagged(
                    .list(
                        ListEntry(attributes: ["\\Noselect"], separator: "/", name: MailboxName(encoded: "~/Mail/foo")))
                ),
                .untagged(
                    .list(
                        ListEntry(
                            attributes: ["\\HasNoChildren", "\\Sent"], separator: ".",
                            name: MailboxName(encoded: "INBOX.Sent Items")))),
                .untagged(.list(ListEntry(attributes: [], separator: nil, name: MailboxName(encoded: "Bar")))),
                .untagged(
                    .list(
                        ListEntry(
                            attributes: ["\\HasNoChildren"], separator: "/", name: MailboxName(encoded: "Caf&AOk-]")))),
                .untagged(
                    .list(ListEntry(attributes: ["\\Subscribed"], separator: "/", name: MailboxName(encoded: "Foo")))),
            ])
        guard case .untagged(.list(let entry)) = events[3] else { return }
        #expect(entry.name.decoded == "Café]")
    }

    @Test func statusSearchNamespaceQuotaId() throws {
        let events = try parse(
            """
            * STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292 UIDVALIDITY 7 SIZE 123456789012)\r
            * SEARCH 2 84 882\r
            * SEARCH\r
            * ESEARCH (TAG "A285") UID ALL 4:7,9\r
            * NAMESPACE (("INBOX." ".")) NIL (("#shared." "." "X-PARAM" ("A")))\r
            * QUOTAROOT INBOX "User quota"\r
            * QUOTA "User quota" (STORAGE 10 512 MESSAGE 3 1000)\r
            * ID ("name" "Dovecot" "version" NIL)\r
            * ENABLED UTF8=ACCEPT\r
            * BYE Logging out\r

            """)
        #expect(
            events == [
                .untagged(
                    .mailboxStatus(
                        MailboxName(encoded: "blurdybloop"),
                        [.messages(231), .uidNext(44292), .uidValidity(7), .size(123456789012)])),
                .untagged(.search([2, 84, 882])),
                .untagged(.search([])),
                .untagged(
                    .esearch(
                        ESearchResult(
                            tag: "A285", isUID: true, all: UIDSet([4...7, 9...9]), count: nil, min: nil, max: nil))),
                .untagged(
                    .namespace(
                        Namespaces(
                            personal: [NamespaceDescription(prefix: "INBOX.", separator: ".")], otherUsers: [],
                            shared: [NamespaceDescription(prefix: "#shared.", separator: ".")]))),
                .untagged(.quotaRoot(MailboxName(encoded: "INBOX"), roots: ["User quota"])),
                .untagged(
                    .quota(
                        root: "User quota",
                        resources: [
                            QuotaResource(name: "STORAGE", usage: 10, limit: 512),
                            QuotaResource(name: "MESSAGE", usage: 3, limit: 1000),
                        ])),
                .untagged(.id(["name": "Dovecot", "version": ""])),
                .untagged(.enabled(["UTF8=ACCEPT"])),
                .untagged(.status(.bye, ResponseText(code: nil, text: "Logging out"))),
            ])
    }

    @Test func continuationRequests() throws {
        #expect(
            try parse("+ Ready for literal data\r\n+\r\n+ \r\n") == [
                .continuation("Ready for literal data"), .continuation(""), .continuation(""),
            ])
    }

    /// A FETCH response without a body section is one event, however its bytes arrive; one with
    /// a body goes piecewise from its start, the attributes before the body first.
    @Test(arguments: [nil, 1, 2, 5, 64])
    func aResponseWithoutABodyIsOneEventWhateverTheChunking(chunkSize: Int?) throws {
        let input =
            "* 1 FETCH (UID 5 FLAGS (\\Seen $Forwarded \\*))\r\n* 2 fetch (flags () uid 6 MODSEQ (7))\r\n"
            + "* 3 FETCH (UID 8 FLAGS (\\Answered) BODY[] {2}\r\nab)\r\n"
        #expect(
            try parse(input, chunkSize: chunkSize) == [
                .fetch(sequence: 1, attributes: [.uid(5), .flags(["\\Seen", "$Forwarded", "\\*"])]),
                .fetch(sequence: 2, attributes: [.flags([]), .uid(6), .modSeq(7)]),
                .fetchStart(sequence: 3),
                .fetchAttribute(.uid(8)),
                .fetchAttribute(.flags(["\\Answered"])),
                .fetchBodyStart(section: "", origin: nil, size: 2, isNil: false),
                body("ab"),
                .fetchBodyEnd,
                .fetchEnd,
            ])
    }

    @Test(arguments: [nil, 1, 2, 3, 7, 64])
    func fetchStreamsBodiesWhateverTheChunking(chunkSize: Int?) throws {
        let message = "Subject: hi\r\n\r\nline one\r\n) * 3 FETCH {12}\r\n"
        let input =
            "* 12 FETCH (UID 4827313 FLAGS (\\Seen $Forwarded) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" "
            + "RFC822.SIZE \(message.utf8.count) BODY[] {\(message.utf8.count)}\r\n\(message) MODSEQ (12121231000))\r\n"
            + "* 13 FETCH (BODY[HEADER.FIELDS (MESSAGE-ID)] {4}\r\nab\r\n UID 9)\r\n"
            + "* 14 FETCH (UID 10 BODY[] NIL BODY[TEXT]<0> \"quo\\\"ted\" BINARY[1] ~{2}\r\n\u{1}\u{2})\r\n"
            + "A1 OK done\r\n"
        let events = try parse(input, chunkSize: chunkSize)
        #expect(
            events == [
                .fetchStart(sequence: 12),
                .fetchAttribute(.uid(4827313)),
                .fetchAttribute(.flags(["\\Seen", "$Forwarded"])),
                .fetchAttribute(
                    .internalDate(
                        InternalDate(year: 1996, month: 7, day: 17, hour: 2, minute: 44, second: 25, zoneMinutes: -420))
                ),
                .fetchAttribute(.rfc822Size(message.utf8.count)),
                .fetchBodyStart(section: "", origin: nil, size: message.utf8.count, isNil: false),
                body(message),
                .fetchBodyEnd,
                .fetchAttribute(.modSeq(12121231000)),
                .fetchEnd,
                .fetchStart(sequence: 13),
                .fetchBodyStart(section: "HEADER.FIELDS (MESSAGE-ID)", origin: nil, size: 4, isNil: false),
                body("ab\r\n"),
                .fetchBodyEnd,
                .fetchAttribute(.uid(9)),
                .fetchEnd,
                .fetchStart(sequence: 14),
                .fetchAttribute(.uid(10)),
                .fetchBodyStart(section: "", origin: nil, size: 0, isNil: true),
                body(""),
                .fetchBodyEnd,
                .fetchBodyStart(section: "TEXT", origin: 0, size: 7, isNil: false),
                body("quo\"ted"),
                .fetchBodyEnd,
                .fetchBodyStart(section: "1", origin: nil, size: 2, isNil: false),
                body("\u{1}\u{2}"),
                .fetchBodyEnd,
                .fetchEnd,
                .tagged(TaggedResponse(tag: "A1", status: .ok, text: ResponseText(code: nil, text: "done"))),
            ])
    }

    @Test func emptyLiteralAndRFC822AndUnknownAttributes() throws {
        let events = try parse(
            "* 1 FETCH (RFC822 {0}\r\n ENVELOPE (NIL \"subj\" ((NIL NIL \"a\" \"b.c\")) NIL) X-GM-LABELS (\"\\\\Important\" foo))\r\n"
        )
        #expect(
            events == [
                .fetchStart(sequence: 1),
                .fetchBodyStart(section: "", origin: nil, size: 0, isNil: false),
                .fetchBodyEnd,
                .fetchAttribute(.other(name: "ENVELOPE", raw: "(NIL \"subj\" ((NIL NIL \"a\" \"b.c\")) NIL)")),
                .fetchAttribute(.other(name: "X-GM-LABELS", raw: "(\"\\Important\" foo)")),
                .fetchEnd,
            ])
    }

    @Test func bareLineFeedsAndUnknownResponsesAreTolerated() throws {
        let events = try parse("* OK hello\n* XYZZY 1 (a b) \"c\"\n* 5 XFOO bar\nA2 OK fine\n")
        #expect(
            events == [
                .untagged(.status(.ok, ResponseText(code: nil, text: "hello"))),
                .untagged(.other(name: "XYZZY", raw: "1 (a b) \"c\"")),
                .untagged(.other(name: "XFOO", raw: "5 bar")),
                .tagged(TaggedResponse(tag: "A2", status: .ok, text: ResponseText(code: nil, text: "fine"))),
            ])
    }

    @Test func bodySlicesShareTheReceivedBuffer() throws {
        var parser = ResponseParser()
        let payload = String(repeating: "x", count: 100_000)
        parser.append(ByteBuffer(string: "* 1 FETCH (BODY[] {100000}\r\n"))
        #expect(try parser.next() == .fetchStart(sequence: 1))
        #expect(try parser.next() == .fetchBodyStart(section: "", origin: nil, size: 100_000, isNil: false))
        #expect(try parser.next() == nil)
        parser.append(ByteBuffer(string: String(payload.prefix(60_000))))
        guard case .fetchBodyBytes(let first)? = try parser.next() else { Issue.record("no body bytes"); return }
        #expect(first.readableBytes == 60_000)
        #expect(parser.bufferedBytes == 0)
        parser.append(ByteBuffer(string: String(payload.prefix(40_000)) + ")\r\n"))
        guard case .fetchBodyBytes(let second)? = try parser.next() else { Issue.record("no body bytes"); return }
        #expect(second.readableBytes == 40_000)
        #expect(try parser.next() == .fetchBodyEnd)
        #expect(try parser.next() == .fetchEnd)
        #expect(try parser.next() == nil)
    }

    @Test func internalDateRoundTripsAndConvertsToEpoch() throws {
        let date = try #require(InternalDate(parsing: " 1-Jan-2000 00:00:00 +0100"))
        #expect(date.description == "01-Jan-2000 00:00:00 +0100")
        #expect(date.secondsSince1970 == 946_681_200)
        #expect(InternalDate(secondsSince1970: 946_681_200).description == "31-Dec-1999 23:00:00 +0000")
        #expect(InternalDate(parsing: "32-Jan-2000 00:00:00 +0000") == nil)
        #expect(InternalDate(parsing: "01-Foo-2000 00:00:00 +0000") == nil)
        #expect(InternalDate(parsing: "01-Jan-2000 00:00:00") == nil)
        for seconds in stride(from: Int64(-86_400 * 400), to: 86_400 * 365 * 80, by: 86_400 * 37 + 3_607) {
            #expect(InternalDate(secondsSince1970: seconds).secondsSince1970 == seconds)
        }
    }
}

/// Gmail's X-GM-EXT-1 FETCH attributes pass through as raw attributes (the parser interprets
/// nothing of them), and `gmailLabels` reads the labels back from X-GM-LABELS.
@Suite("Response parser: Gmail's X-GM-EXT-1 attributes")
struct GmailAttributeParserTests {
    private func labels(_ input: String) throws -> [[String]?] {
        attributes(try parse(input)).compactMap { attribute -> [String]?? in
            if case .other(let name, _) = attribute, name == "X-GM-LABELS" { return .some(attribute.gmailLabels) }
            return nil
        }
    }

    /// The attributes of every FETCH response, whole or piecewise, in order.
    private func attributes(_ events: [ResponseEvent]) -> [FetchAttribute] {
        events.flatMap { event -> [FetchAttribute] in
            switch event {
            case .fetch(_, let attributes): attributes
            case .fetchAttribute(let attribute): [attribute]
            default: []
            }
        }
    }

    @Test func labelsInEachFormGmailSends() throws {
        // Flag-like system labels and atoms (Gmail's documentation), quoted and escaped system
        // labels (today's Gmail), the empty list, a literal, a modified UTF-7 name.
        let found = try labels(
            """
            * 1 FETCH (X-GM-LABELS (\\Inbox \\Sent Important "Muy Importante") UID 1)\r
            * 2 FETCH (UID 7 X-GM-LABELS ("\\\\Important" "\\\\Starred"))\r
            * 3 FETCH (UID 8 X-GM-LABELS ())\r
            * 4 FETCH (UID 9 X-GM-LABELS ({5}\r\nA (b) "&AMk-quipe" Work/Projects))\r

            """)
        #expect(
            found == [
                ["\\Inbox", "\\Sent", "Important", "Muy Importante"],
                ["\\Important", "\\Starred"],
                [],
                ["A (b)", "&AMk-quipe", "Work/Projects"],
            ])
    }

    @Test func labelsArriveBetweenTheOtherAttributes() throws {
        let events = try parse(
            "* 12 FETCH (UID 40 X-GM-LABELS (\"\\\\Inbox\" Work) FLAGS (\\Seen))\r\nM5 OK Success\r\n")
        #expect(
            events == [
                .fetch(
                    sequence: 12,
                    attributes: [
                        .uid(40), .other(name: "X-GM-LABELS", raw: "(\"\\Inbox\" Work)"), .flags(["\\Seen"]),
                    ]),
                .tagged(TaggedResponse(tag: "M5", status: .ok, text: ResponseText(code: nil, text: "Success"))),
            ])
        #expect(attributes(events).compactMap(\.gmailLabels) == [["\\Inbox", "Work"]])
    }

    @Test func messageAndThreadIDsPassThroughWhole() throws {
        let events = try parse("* 5 FETCH (X-GM-THRID 1278455344230334865 X-GM-MSGID 18446744073709551615 UID 10)\r\n")
        #expect(
            events == [
                .fetch(
                    sequence: 5,
                    attributes: [
                        .other(name: "X-GM-THRID", raw: "1278455344230334865"),
                        .other(name: "X-GM-MSGID", raw: "18446744073709551615"), .uid(10),
                    ])
            ])
    }

    @Test func onlyAnXGMLabelsListHasLabels() {
        #expect(FetchAttribute.uid(3).gmailLabels == nil)
        #expect(FetchAttribute.other(name: "X-GM-MSGID", raw: "(1)").gmailLabels == nil)
        #expect(FetchAttribute.other(name: "X-GM-LABELS", raw: "NIL").gmailLabels == nil)
        #expect(FetchAttribute.other(name: "x-gm-labels", raw: "(a)").gmailLabels == ["a"])
    }

    /// Quoted labels reach `gmailLabels` unescaped: one with a quote inside is read whole unless a
    /// space follows that quote, and even then its pieces are labels, never none.
    @Test func aLabelWithQuotesIsNeverReadAsNoLabel() throws {
        #expect(try labels("* 1 FETCH (X-GM-LABELS (\"say \\\"hi\\\"\" Work))\r\n") == [["say \"hi\"", "Work"]])
        let split = try #require(try labels("* 1 FETCH (X-GM-LABELS (\"a\\\" b\"))\r\n").first ?? nil)
        #expect(!split.isEmpty && !split.allSatisfy { $0.hasPrefix("\\") })
    }

    @Test func theParserLimitsStillHold() {
        let nested = String(repeating: "(", count: 100) + String(repeating: ")", count: 100)
        #expect(throws: IMAPParseError.nestingTooDeep(limit: ParserLimits().maxNesting)) {
            _ = try parse("* 1 FETCH (X-GM-LABELS \(nested))\r\n")
        }
        #expect(throws: IMAPParseError.literalTooLarge(size: 1 << 40, limit: ParserLimits().maxResponseSize)) {
            _ = try parse("* 1 FETCH (X-GM-LABELS ({1099511627776}\r\nabc")
        }
        #expect(throws: IMAPParseError.self) {
            _ = try parse("* 1 FETCH (X-GM-LABELS (\"unterminated\r\n")
        }
    }
}
