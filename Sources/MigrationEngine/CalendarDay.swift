import IMAPClient

/// A day as users write it, `YYYY-MM-DD`: the one rule for `import_since`, `--since` and what the
/// runner reads back from the store. Only real calendar days pass (2025-02-30 and 2024-04-31 do
/// not), from 1970 on, with exactly four, two and two digits.
public struct CalendarDay: Sendable, Hashable, CustomStringConvertible {
    public let year: Int
    public let month: Int
    public let day: Int

    /// What every refusal says, after the name of the field or option.
    public static let rule =
        "must be a real calendar day written YYYY-MM-DD, from 1970-01-01 on (for example 2024-04-30)"

    public init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
            parts.allSatisfy({ $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
            let year = Int(parts[0]), let month = Int(parts[1]), let day = Int(parts[2]),
            (1970...9999).contains(year), (1...12).contains(month),
            (1...Self.days(inMonth: month, year: year)).contains(day)
        else { return nil }
        self.year = year
        self.month = month
        self.day = day
    }

    static func days(inMonth month: Int, year: Int) -> Int {
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
        return [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
    }

    /// Midnight UTC of the day, as IMAP's SEARCH SINCE compares it.
    public var start: InternalDate {
        InternalDate(year: year, month: month, day: day, hour: 0, minute: 0, second: 0, zoneMinutes: 0)
    }

    public var description: String {
        "\(year)-\(month < 10 ? "0" : "")\(month)-\(day < 10 ? "0" : "")\(day)"
    }
}
