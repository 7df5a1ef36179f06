import MigrationEngine
import Testing

/// The one address rule every entry point applies (API bodies, CSV rows, the mailboxes API, admin commands).
@Suite("Address syntax")
struct SourceFieldSyntaxTests {
    @Test(arguments: [
        "anna@example.com", "a.b+tag@mail.example.co.uk", "x@xn--bcher-kva.example", "o'neil@ex-ample.org",
    ])
    func plausibleAddressesPass(_ email: String) {
        #expect(SourceFieldSyntax.isEmailAddress(email))
    }

    @Test(arguments: [
        "", "anna", "anna@", "@example.com", "anna@example", "anna@.example.com", "anna@example..com",
        "anna@-example.com", "anna@example-.com", "a b@example.com", "anna@example.com,ben@example.com",
        "Anna <anna@example.com>", "anna;@example.com", "a@b@example.com",
        String(repeating: "l", count: 65) + "@example.com", "anna@" + String(repeating: "d", count: 250) + ".com",
    ])
    func anythingElseIsRefused(_ email: String) {
        #expect(!SourceFieldSyntax.isEmailAddress(email))
    }
}
