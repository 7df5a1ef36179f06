import NIOCore

/// The status word of a tagged or untagged status response (RFC 9051 §7.1).
public enum ResponseStatus: String, Sendable, Equatable {
    case ok = "OK"
    case no = "NO"
    case bad = "BAD"
    case bye = "BYE"
    case preauth = "PREAUTH"
}

/// A set of UIDs as the server wrote it in APPENDUID / COPYUID (ranges in server order).
public struct UIDSet: Sendable, Equatable, CustomStringConvertible {
    public var ranges: [ClosedRange<UInt32>]

    public init(_ ranges: [ClosedRange<UInt32>]) { self.ranges = ranges }

    public var values: [UInt32] { ranges.flatMap { Array($0) } }
    public var count: Int { ranges.reduce(0) { $0 + $1.count } }

    public var description: String {
        ranges.map { $0.lowerBound == $0.upperBound ? "\($0.lowerBound)" : "\($0.lowerBound):\($0.upperBound)" }
            .joined(separator: ",")
    }
}

/// Stored as `[[first, last], …]` (checkpoints keep sets of UIDs): short, and readable in a state file.
extension UIDSet: Codable {
    public init(from decoder: any Decoder) throws {
        let pairs = try decoder.singleValueContainer().decode([[UInt32]].self)
        ranges = try pairs.map { pair in
            guard pair.count == 2, pair[0] <= pair[1] else {
                throw DecodingError.dataCorrupted(
                    .init(codingPath: decoder.codingPath, debugDescription: "a UID range is [first, last]"))
            }
            return pair[0]...pair[1]
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(ranges.map { [$0.lowerBound, $0.upperBound] })
    }
}

/// A bracketed response code (RFC 9051 §7.1, RFC 5530, RFC 4315).
public enum ResponseCode: Sendable, Equatable {
    case alert
    case parse
    case readOnly
    case readWrite
    case tryCreate
    case uidValidity(UInt32)
    case uidNext(UInt32)
    case unseen(UInt32)
    case appendUID(uidValidity: UInt32, uids: UIDSet)
    case copyUID(uidValidity: UInt32, source: UIDSet, destination: UIDSet)
    case capability([String])
    case permanentFlags([String])
    case overQuota
    case limit
    case throttled
    case unavailable
    case authenticationFailed
    case authorizationFailed
    case expired
    case privacyRequired
    case contactAdmin
    case noPermission
    case inUse
    case expungeIssued
    case corruption
    case serverBug
    case clientBug
    case cannot
    case nonExistent
    case alreadyExists
    case other(name: String, argument: String?)
}

/// `resp-text`: an optional response code and human-readable text.
public struct ResponseText: Sendable, Equatable {
    public var code: ResponseCode?
    public var text: String

    public init(code: ResponseCode?, text: String) {
        self.code = code
        self.text = text
    }
}

public struct TaggedResponse: Sendable, Equatable {
    public var tag: String
    public var status: ResponseStatus
    public var text: ResponseText
}

/// A mailbox name exactly as the server sent it (modified UTF-7 unless UTF8=ACCEPT is on).
public struct MailboxName: Sendable, Hashable, CustomStringConvertible {
    public let encoded: String

    public init(encoded: String) { self.encoded = encoded }

    /// Builds a name from Unicode, encoding it in modified UTF-7.
    public init(decoded: String) { self.encoded = ModifiedUTF7.encode(decoded) }

    public var isInbox: Bool { encoded.uppercased() == "INBOX" }

    /// The Unicode form; a name that is not valid modified UTF-7 is shown as sent.
    public var decoded: String { (try? ModifiedUTF7.decode(encoded)) ?? encoded }

    public var description: String { decoded }
}

public struct ListEntry: Sendable, Equatable {
    /// Attributes such as `\Noselect`, `\HasChildren`, `\Sent`, as sent (case kept).
    public var attributes: [String]
    public var separator: Character?
    public var name: MailboxName

    public init(attributes: [String], separator: Character?, name: MailboxName) {
        self.attributes = attributes
        self.separator = separator
        self.name = name
    }

    public func hasAttribute(_ attribute: String) -> Bool {
        attributes.contains { $0.lowercased() == attribute.lowercased() }
    }
}

public enum MailboxStatusItem: Sendable, Equatable {
    case messages(Int)
    case recent(Int)
    case uidNext(UInt32)
    case uidValidity(UInt32)
    case unseen(Int)
    case size(Int64)
    case highestModSeq(UInt64)
    case other(String, Int64)
}

public struct NamespaceDescription: Sendable, Equatable {
    public var prefix: String
    public var separator: Character?
}

public struct Namespaces: Sendable, Equatable {
    public var personal: [NamespaceDescription]
    public var otherUsers: [NamespaceDescription]
    public var shared: [NamespaceDescription]
}

public struct QuotaResource: Sendable, Equatable {
    public var name: String
    public var usage: Int64
    public var limit: Int64
}

public struct ESearchResult: Sendable, Equatable {
    public var tag: String?
    public var isUID: Bool
    public var all: UIDSet?
    public var count: Int?
    public var min: UInt32?
    public var max: UInt32?
}

public enum UntaggedResponse: Sendable, Equatable {
    case status(ResponseStatus, ResponseText)
    case capability([String])
    case list(ListEntry)
    case mailboxStatus(MailboxName, [MailboxStatusItem])
    case exists(UInt32)
    case recent(UInt32)
    case expunge(UInt32)
    case flags([String])
    case search([UInt32])
    case esearch(ESearchResult)
    case namespace(Namespaces)
    case quotaRoot(MailboxName, roots: [String])
    case quota(root: String, resources: [QuotaResource])
    case id([String: String])
    case enabled([String])
    case other(name: String, raw: String)
}

/// INTERNALDATE (`date-time`, RFC 9051 §9), kept with its zone so it can be written back unchanged.
public struct InternalDate: Sendable, Hashable, CustomStringConvertible {
    public var year: Int
    public var month: Int
    public var day: Int
    public var hour: Int
    public var minute: Int
    public var second: Int
    /// Offset from UTC in minutes (e.g. +0200 → 120).
    public var zoneMinutes: Int

    static let monthNames = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    public init(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int, zoneMinutes: Int) {
        self.year = year
        self.month = month
        self.day = day
        self.hour = hour
        self.minute = minute
        self.second = second
        self.zoneMinutes = zoneMinutes
    }

    /// Parses `dd-Mon-yyyy hh:mm:ss +zzzz` (day may be space-padded).
    public init?(parsing text: String) {
        let parts = text.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 3 else { return nil }
        let dateParts = parts[0].split(separator: "-")
        let timeParts = parts[1].split(separator: ":")
        guard dateParts.count == 3, timeParts.count == 3,
            let day = Int(dateParts[0]), (1...31).contains(day),
            let monthIndex = Self.monthNames.firstIndex(where: { $0.lowercased() == dateParts[1].lowercased() }),
            let year = Int(dateParts[2]), dateParts[2].count == 4,
            let hour = Int(timeParts[0]), (0...23).contains(hour),
            let minute = Int(timeParts[1]), (0...59).contains(minute),
            let second = Int(timeParts[2]), (0...60).contains(second)
        else { return nil }
        let zone = parts[2]
        guard zone.count == 5, let sign = zone.first, sign == "+" || sign == "-",
            let hhmm = Int(zone.dropFirst()), hhmm >= 0
        else { return nil }
        let offset = (hhmm / 100) * 60 + hhmm % 100
        self.init(
            year: year, month: monthIndex + 1, day: day, hour: hour, minute: minute, second: second,
            zoneMinutes: sign == "-" ? -offset : offset)
    }

    /// Builds a UTC date from seconds since 1970.
    public init(secondsSince1970 seconds: Int64) {
        var days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let rest = Int(seconds - days * 86_400)
        // Civil-from-days (H. Hinnant's algorithm).
        days += 719_468
        let era = (days >= 0 ? days : days - 146_096) / 146_097
        let doe = days - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = Int(doy - (153 * mp + 2) / 5 + 1)
        let month = Int(mp < 10 ? mp + 3 : mp - 9)
        let year = Int(yoe + era * 400) + (month <= 2 ? 1 : 0)
        self.init(
            year: year, month: month, day: day, hour: rest / 3600, minute: (rest / 60) % 60,
            second: rest % 60, zoneMinutes: 0)
    }

    public var secondsSince1970: Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let m = Int64(month)
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        return days * 86_400 + Int64(hour * 3600 + minute * 60 + second) - Int64(zoneMinutes * 60)
    }

    public var description: String {
        let sign = zoneMinutes < 0 ? "-" : "+"
        let zone = abs(zoneMinutes)
        return "\(pad(day))-\(Self.monthNames[month - 1])-\(pad(year, 4)) \(pad(hour)):\(pad(minute)):\(pad(second)) "
            + "\(sign)\(pad(zone / 60))\(pad(zone % 60))"
    }

    private func pad(_ value: Int, _ width: Int = 2) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    /// `date` for SEARCH SINCE (RFC 9051 §6.4.4): `d-Mon-yyyy`.
    public var searchDate: String { "\(day)-\(Self.monthNames[month - 1])-\(year)" }
}

public enum FetchAttribute: Sendable, Equatable {
    case uid(UInt32)
    case flags([String])
    case internalDate(InternalDate)
    case rfc822Size(Int)
    case modSeq(UInt64)
    case other(name: String, raw: String)
}

/// One step of a server response. A FETCH response with a body section arrives piecewise, so
/// message bodies never have to be held whole: `fetchStart`, attributes, body sections as
/// start/bytes/end, `fetchEnd`. One without (`UID FLAGS`, `UID RFC822.SIZE INTERNALDATE`, …) is
/// one `fetch` event.
public enum ResponseEvent: Sendable, Equatable {
    case untagged(UntaggedResponse)
    case tagged(TaggedResponse)
    case continuation(String)
    /// A whole FETCH response without body sections: a flag pass reads 100,000 of them, and four
    /// events each (start, UID, FLAGS, end) were half of its client-side CPU.
    case fetch(sequence: UInt32, attributes: [FetchAttribute])
    case fetchStart(sequence: UInt32)
    case fetchAttribute(FetchAttribute)
    /// `section` is the text between the brackets (`""` for `BODY[]`, `HEADER`, …); `RFC822` maps to `""`.
    case fetchBodyStart(section: String, origin: Int?, size: Int, isNil: Bool)
    case fetchBodyBytes(ByteBuffer)
    case fetchBodyEnd
    case fetchEnd
}

extension FetchAttribute {
    /// The labels of Gmail's `X-GM-LABELS` (X-GM-EXT-1), e.g. `["\\Inbox", "Work", "Muy Importante"]`;
    /// nil for any other attribute or a value that is not a list.
    ///
    /// The parser passes X-GM-LABELS through like any attribute it does not interpret (`.other`,
    /// quoted strings and literals unescaped between double quotes), so the labels are read back from
    /// that text. A label that itself holds a double quote followed by a space comes back in pieces;
    /// a label-less message (`()`, or only `\Important` / `\Starred`) always reads exactly.
    public var gmailLabels: [String]? {
        guard case .other(let name, let raw) = self, name.uppercased() == "X-GM-LABELS" else { return nil }
        let bytes = Array(raw.utf8)
        guard bytes.count >= 2, bytes.first == ASCII.openParen, bytes.last == ASCII.closeParen else { return nil }
        let end = bytes.count - 1
        var labels: [String] = []
        var index = 1
        while index < end {
            if bytes[index] == ASCII.space {
                index += 1
                continue
            }
            var label: [UInt8] = []
            if bytes[index] == ASCII.quote {
                index += 1
                // Quotes inside were unescaped: the closing one is the quote that ends the item.
                while index < end,
                    !(bytes[index] == ASCII.quote && (index + 1 == end || bytes[index + 1] == ASCII.space))
                {
                    label.append(bytes[index])
                    index += 1
                }
                index += 1
            } else {
                while index < end, bytes[index] != ASCII.space {
                    label.append(bytes[index])
                    index += 1
                }
            }
            labels.append(String(decoding: label, as: UTF8.self))
        }
        return labels
    }
}
