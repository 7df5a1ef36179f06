import MigrationEngine
import Testing

/// The one rule for a day, which `--since`, `import_since` and the runner all use.
@Suite struct CalendarDayTests {
    @Test(arguments: ["2024-04-30", "2024-02-29", "2000-02-29", "1970-01-01", "9999-12-31"])
    func realDaysPass(_ text: String) throws {
        let day = try #require(CalendarDay(text))
        #expect(day.description == text)
        #expect(day.start.hour == 0 && day.start.zoneMinutes == 0)
    }

    @Test(arguments: [
        "2025-02-30", "2024-04-31", "2023-02-29", "1900-02-29", "2024-4-30", "2024-04-3", "24-04-30",
        "1969-12-31", "2024-13-01", "2024-00-10", "2024-01-00", "2024-04-30 ", "+024-04-30", "２０２４-04-30", "",
    ])
    func everythingElseIsRefused(_ text: String) {
        #expect(CalendarDay(text) == nil)
    }
}
