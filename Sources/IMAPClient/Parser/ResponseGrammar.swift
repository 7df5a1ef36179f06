import NIOCore

/// What one parse attempt at the start of a response produced.
enum ResponseStart {
    case complete(ResponseEvent)
    /// `* n FETCH (` was read; the attributes follow piecewise.
    case fetchOpened(sequence: UInt32)
}

/// What one parse attempt inside a FETCH attribute list produced.
enum FetchStep {
    case attribute(FetchAttribute)
    case body(FetchBody)
    case end
}

/// A body section's start within a FETCH response.
enum FetchBody {
    case literal(section: String, origin: Int?, size: Int)
    case inline(section: String, origin: Int?, bytes: [UInt8]?)
}

extension ParserCursor {
    mutating func responseStart() throws -> ResponseStart {
        switch try peek() {
        case ASCII.plus:
            buffer.moveReaderIndex(forwardBy: 1)
            _ = try accept(ASCII.space)
            let text = try textToEndOfLine()
            try expectEndOfLine()
            return .complete(.continuation(text))
        case ASCII.star:
            buffer.moveReaderIndex(forwardBy: 1)
            try expectSpace()
            return try untagged()
        default:
            let tag = try token("a tag", { $0 != ASCII.plus && ASCII.isAStringChar($0) })
            try expectSpace()
            let word = try upperToken("an atom", ASCII.isAtomChar)
            guard let status = ResponseStatus(rawValue: word), status != .preauth else {
                throw IMAPParseError.malformed("unknown tagged status \(word)")
            }
            let text = try responseText()
            try expectEndOfLine()
            return .complete(.tagged(TaggedResponse(tag: tag, status: status, text: text)))
        }
    }

    private mutating func untagged() throws -> ResponseStart {
        if ASCII.isDigit(try peek()) {
            let number = try number32()
            try expectSpace()
            let word = try upperToken("an atom", ASCII.isAtomChar)
            let response: UntaggedResponse
            switch word {
            case "EXISTS": response = .exists(number)
            case "RECENT": response = .recent(number)
            case "EXPUNGE": response = .expunge(number)
            case "FETCH":
                try expectSpace()
                try expect(ASCII.openParen, "'(' after FETCH")
                return .fetchOpened(sequence: number)
            default:
                let rest = try genericValuesToEndOfLine()
                response = .other(name: word, raw: "\(number) \(rest)")
            }
            try skipSpaces()
            try expectEndOfLine()
            return .complete(.untagged(response))
        }
        let word = try upperToken("an atom", ASCII.isAtomChar)
        let response: UntaggedResponse
        switch word {
        case "OK", "NO", "BAD", "BYE", "PREAUTH":
            response = .status(ResponseStatus(rawValue: word) ?? .ok, try responseText())
        case "CAPABILITY":
            response = .capability(try atomsToEndOfLine())
        case "ENABLED":
            response = .enabled(try atomsToEndOfLine())
        case "LIST", "LSUB", "XLIST":
            response = .list(try listEntry())
        case "STATUS":
            response = try mailboxStatus()
        case "FLAGS":
            try expectSpace()
            response = .flags(try flagList())
        case "SEARCH":
            response = .search(try searchNumbers())
        case "ESEARCH":
            response = .esearch(try esearch())
        case "NAMESPACE":
            response = .namespace(try namespaces())
        case "QUOTAROOT":
            try expectSpace()
            let mailbox = MailboxName(encoded: try astring())
            var roots: [String] = []
            while try accept(ASCII.space) {
                if try atEndOfLine() { break }
                roots.append(try astring())
            }
            response = .quotaRoot(mailbox, roots: roots)
        case "QUOTA":
            response = try quota()
        case "ID":
            response = .id(try idParameters())
        default:
            response = .other(name: word, raw: try genericValuesToEndOfLine())
        }
        try skipSpaces()
        try expectEndOfLine()
        return .complete(.untagged(response))
    }

    /// `resp-text`, tolerating servers that omit the space or the text.
    mutating func responseText() throws -> ResponseText {
        try skipSpaces()
        var code: ResponseCode?
        if try accept(ASCII.openBracket) {
            code = try responseCode()
            try skipSpaces()
        }
        return ResponseText(code: code, text: try textToEndOfLine())
    }

    private mutating func responseCode() throws -> ResponseCode {
        let name = try upperToken("a response code", { ASCII.isAtomChar($0) && $0 != ASCII.closeBracket })
        let code: ResponseCode
        switch name {
        case "ALERT": code = .alert
        case "PARSE": code = .parse
        case "READ-ONLY": code = .readOnly
        case "READ-WRITE": code = .readWrite
        case "TRYCREATE": code = .tryCreate
        case "OVERQUOTA": code = .overQuota
        case "LIMIT": code = .limit
        case "THROTTLED": code = .throttled
        case "UNAVAILABLE": code = .unavailable
        case "AUTHENTICATIONFAILED": code = .authenticationFailed
        case "AUTHORIZATIONFAILED": code = .authorizationFailed
        case "EXPIRED": code = .expired
        case "PRIVACYREQUIRED": code = .privacyRequired
        case "CONTACTADMIN": code = .contactAdmin
        case "NOPERM": code = .noPermission
        case "INUSE": code = .inUse
        case "EXPUNGEISSUED": code = .expungeIssued
        case "CORRUPTION": code = .corruption
        case "SERVERBUG": code = .serverBug
        case "CLIENTBUG": code = .clientBug
        case "CANNOT": code = .cannot
        case "NONEXISTENT": code = .nonExistent
        case "ALREADYEXISTS": code = .alreadyExists
        case "UIDVALIDITY":
            try expectSpace()
            code = .uidValidity(try number32())
        case "UIDNEXT":
            try expectSpace()
            code = .uidNext(try number32())
        case "UNSEEN":
            try expectSpace()
            code = .unseen(try number32())
        case "APPENDUID":
            try expectSpace()
            let validity = try number32()
            try expectSpace()
            code = .appendUID(uidValidity: validity, uids: try uidSet())
        case "COPYUID":
            try expectSpace()
            let validity = try number32()
            try expectSpace()
            let source = try uidSet()
            try expectSpace()
            code = .copyUID(uidValidity: validity, source: source, destination: try uidSet())
        case "CAPABILITY":
            var atoms: [String] = []
            while try accept(ASCII.space) {
                atoms.append(try token("a capability", { ASCII.isAtomChar($0) && $0 != ASCII.closeBracket }))
            }
            code = .capability(atoms)
        case "PERMANENTFLAGS":
            try expectSpace()
            code = .permanentFlags(try flagList())
        default:
            var argument: [UInt8] = []
            if try accept(ASCII.space) {
                while try peek() != ASCII.closeBracket {
                    if try atEndOfLine() { throw malformed("']'") }
                    argument.append(try next())
                }
            }
            code = .other(name: name, argument: argument.isEmpty ? nil : String(decoding: argument, as: UTF8.self))
        }
        try expect(ASCII.closeBracket, "']' closing a response code")
        return code
    }

    private mutating func atomsToEndOfLine() throws -> [String] {
        var atoms: [String] = []
        while true {
            try skipSpaces()
            if try atEndOfLine() { return atoms }
            atoms.append(try atom())
        }
    }

    private mutating func listEntry() throws -> ListEntry {
        try expectSpace()
        let attributes = try flagList()
        try expectSpace()
        var separator: Character?
        if try peek() == ASCII.quote {
            let bytes = try quoted()
            guard bytes.count == 1 else { throw IMAPParseError.malformed("hierarchy separator must be one character") }
            separator = Character(Unicode.Scalar(bytes[0]))
        } else {
            let word = try atom()
            guard word.uppercased() == "NIL" else { throw IMAPParseError.malformed("bad hierarchy separator \(word)") }
        }
        try expectSpace()
        let name = try astring()
        // LIST-EXTENDED data (CHILDINFO, OLDNAME) is not needed; skip it.
        _ = try genericValuesToEndOfLine()
        return ListEntry(attributes: attributes, separator: separator, name: MailboxName(encoded: name))
    }

    private mutating func mailboxStatus() throws -> UntaggedResponse {
        try expectSpace()
        let name = MailboxName(encoded: try astring())
        try skipSpaces()
        try expect(ASCII.openParen, "'(' starting status items")
        var items: [MailboxStatusItem] = []
        while true {
            try skipSpaces()
            if try accept(ASCII.closeParen) { break }
            let key = try atom().uppercased()
            try expectSpace()
            let value = try number()
            switch key {
            case "MESSAGES": items.append(.messages(Int(clamping: value)))
            case "RECENT": items.append(.recent(Int(clamping: value)))
            case "UNSEEN": items.append(.unseen(Int(clamping: value)))
            case "UIDNEXT": items.append(.uidNext(UInt32(clamping: value)))
            case "UIDVALIDITY": items.append(.uidValidity(UInt32(clamping: value)))
            case "SIZE": items.append(.size(Int64(clamping: value)))
            case "HIGHESTMODSEQ": items.append(.highestModSeq(value))
            default: items.append(.other(key, Int64(clamping: value)))
            }
        }
        return .mailboxStatus(name, items)
    }

    private mutating func searchNumbers() throws -> [UInt32] {
        var numbers: [UInt32] = []
        while true {
            try skipSpaces()
            if try atEndOfLine() { return numbers }
            if try peek() == ASCII.openParen {
                _ = try genericValue()  // (MODSEQ n) from CONDSTORE
                continue
            }
            numbers.append(try number32("a message number"))
        }
    }

    private mutating func esearch() throws -> ESearchResult {
        var result = ESearchResult(tag: nil, isUID: false, all: nil, count: nil, min: nil, max: nil)
        while true {
            try skipSpaces()
            if try atEndOfLine() { return result }
            if try accept(ASCII.openParen) {
                let key = try atom().uppercased()
                try expectSpace()
                let value = try astring()
                try expect(ASCII.closeParen, "')' closing the search correlator")
                if key == "TAG" { result.tag = value }
                continue
            }
            let key = try atom().uppercased()
            if key == "UID" {
                result.isUID = true
                continue
            }
            try expectSpace()
            switch key {
            case "ALL": result.all = try uidSet()
            case "COUNT": result.count = Int(clamping: try number())
            case "MIN": result.min = try number32()
            case "MAX": result.max = try number32()
            default: _ = try genericValue()
            }
        }
    }

    private mutating func namespaces() throws -> Namespaces {
        var groups: [[NamespaceDescription]] = []
        for _ in 0..<3 {
            try expectSpace()
            groups.append(try namespaceGroup())
        }
        _ = try genericValuesToEndOfLine()
        return Namespaces(personal: groups[0], otherUsers: groups[1], shared: groups[2])
    }

    private mutating func namespaceGroup() throws -> [NamespaceDescription] {
        if try !accept(ASCII.openParen) {
            let word = try atom()
            guard word.uppercased() == "NIL" else { throw IMAPParseError.malformed("bad namespace \(word)") }
            return []
        }
        var descriptions: [NamespaceDescription] = []
        while true {
            try skipSpaces()
            if try accept(ASCII.closeParen) { return descriptions }
            try expect(ASCII.openParen, "'(' starting a namespace")
            let prefix = String(decoding: try string(), as: UTF8.self)
            try expectSpace()
            let separator = try nstring().flatMap { $0.count == 1 ? Character(Unicode.Scalar($0[0])) : nil }
            // Namespace extensions are not used.
            while try !accept(ASCII.closeParen) {
                try skipSpaces()
                if try accept(ASCII.closeParen) { break }
                _ = try genericValue()
            }
            descriptions.append(NamespaceDescription(prefix: prefix, separator: separator))
        }
    }

    private mutating func quota() throws -> UntaggedResponse {
        try expectSpace()
        let root = try astring()
        try expectSpace()
        try expect(ASCII.openParen, "'(' starting quota resources")
        var resources: [QuotaResource] = []
        while true {
            try skipSpaces()
            if try accept(ASCII.closeParen) { break }
            let name = try atom().uppercased()
            try expectSpace()
            let usage = Int64(clamping: try number())
            try expectSpace()
            let limit = Int64(clamping: try number())
            resources.append(QuotaResource(name: name, usage: usage, limit: limit))
        }
        return .quota(root: root, resources: resources)
    }

    private mutating func idParameters() throws -> [String: String] {
        try expectSpace()
        if try !accept(ASCII.openParen) {
            _ = try atom()
            return [:]
        }
        var parameters: [String: String] = [:]
        while true {
            try skipSpaces()
            if try accept(ASCII.closeParen) { return parameters }
            let key = String(decoding: try string(), as: UTF8.self)
            try expectSpace()
            let value = try nstring().map { String(decoding: $0, as: UTF8.self) }
            parameters[key] = value ?? ""
        }
    }

    // MARK: FETCH attributes

    mutating func fetchStep() throws -> FetchStep {
        try skipSpaces()
        if try accept(ASCII.closeParen) {
            try skipSpaces()
            try expectEndOfLine()
            return .end
        }
        let name = try upperToken("a FETCH attribute", { ASCII.isAtomChar($0) && $0 != ASCII.openBracket })
        var section: String?
        var origin: Int?
        if try accept(ASCII.openBracket) {
            section = try sectionText()
            if try accept(ASCII.lessThan) {
                origin = Int(clamping: try number("an origin octet"))
                try expect(ASCII.greaterThan, "'>'")
            }
        }
        try expectSpace()
        switch (name, section) {
        case ("UID", nil):
            return .attribute(.uid(try number32("a UID")))
        case ("FLAGS", nil):
            return .attribute(.flags(try flagList()))
        case ("INTERNALDATE", nil):
            let text = String(decoding: try quoted(), as: UTF8.self)
            guard let date = InternalDate(parsing: text) else {
                throw IMAPParseError.malformed("bad INTERNALDATE \(text)")
            }
            return .attribute(.internalDate(date))
        case ("RFC822.SIZE", nil):
            return .attribute(.rfc822Size(Int(clamping: try number("RFC822.SIZE"))))
        case ("MODSEQ", nil):
            try expect(ASCII.openParen, "'(' after MODSEQ")
            let value = try number()
            try expect(ASCII.closeParen, "')' after MODSEQ value")
            return .attribute(.modSeq(value))
        case ("BODY", let section?), ("BINARY", let section?):
            return try bodyValue(section: section, origin: origin)
        case ("RFC822", nil):
            return try bodyValue(section: "", origin: nil)
        case ("RFC822.HEADER", nil):
            return try bodyValue(section: "HEADER", origin: nil)
        case ("RFC822.TEXT", nil):
            return try bodyValue(section: "TEXT", origin: nil)
        default:
            let shownName = section.map { "\(name)[\($0)]" } ?? name
            return .attribute(.other(name: shownName, raw: try genericValue()))
        }
    }

    /// Text between `[` and `]` of a section, with quoted strings inside kept intact.
    private mutating func sectionText() throws -> String {
        var bytes: [UInt8] = []
        var inQuote = false
        while true {
            let byte = try next()
            if byte == ASCII.cr || byte == ASCII.lf { throw IMAPParseError.malformed("line break inside a section") }
            if inQuote {
                if byte == ASCII.backslash {
                    bytes.append(byte)
                    bytes.append(try next())
                    continue
                }
                if byte == ASCII.quote { inQuote = false }
            } else if byte == ASCII.quote {
                inQuote = true
            } else if byte == ASCII.closeBracket {
                return String(decoding: bytes, as: UTF8.self)
            }
            bytes.append(byte)
        }
    }

    private mutating func bodyValue(section: String, origin: Int?) throws -> FetchStep {
        if try atLiteral() {
            let size = try literalHeader()
            guard size <= UInt64(limits.maxBodySize) else {
                throw IMAPParseError.literalTooLarge(size: size, limit: limits.maxBodySize)
            }
            return .body(.literal(section: section, origin: origin, size: Int(size)))
        }
        return .body(.inline(section: section, origin: origin, bytes: try nstring()))
    }
}
