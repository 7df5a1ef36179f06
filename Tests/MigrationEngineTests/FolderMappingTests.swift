import IMAPClient
import Testing
@testable import MigrationEngine

@Suite("Folder mapping")
struct FolderMappingTests {
    let dot = NamingScheme(separator: ".", personalPrefix: "INBOX.")
    let slash = NamingScheme(separator: "/", personalPrefix: "")

    func listed(_ name: String, _ attributes: [String] = []) -> ListedMailbox {
        ListedMailbox(
            entry: ListEntry(attributes: attributes, separator: ".", name: MailboxName(decoded: name)), status: nil)
    }

    @Test func prefixesAndSeparatorsTranslate() {
        #expect(dot.components(of: "INBOX") == ["INBOX"])
        #expect(dot.components(of: "INBOX.Work.Projects") == ["Work", "Projects"])
        #expect(slash.name(of: ["Work", "Projects"]) == "Work/Projects")
        #expect(dot.name(of: ["Work", "a.b"]) == "INBOX.Work.a_b")
        #expect(slash.name(of: ["INBOX"]) == "INBOX")
    }

    @Test(arguments: [
        ("Sent Items", [String](), SpecialUse.sent),
        ("Sent Messages", [], .sent),
        ("Deleted Items", [], .trash),
        ("Junk E-mail", [], .junk),
        ("Bulk Mail", [], .junk),
        ("Spam", [], .junk),
        ("Whatever", ["\\Sent"], .sent),
        ("Archive", [], .archive),
    ])
    func specialUseByAttributeOrName(name: String, attributes: [String], use: SpecialUse) {
        let mailbox = listed("INBOX." + name, attributes)
        #expect(FolderMapping.specialUse(of: mailbox, components: dot.components(of: mailbox.name.decoded)) == use)
    }

    @Test func gmailFoldersAndViews() {
        let sent = listed("[Gmail]/Sent Mail")
        #expect(FolderMapping.specialUse(of: sent, components: ["[Gmail]", "Sent Mail"]) == .sent)
        #expect(
            FolderMapping.view(
                of: listed("[Gmail]/All Mail", ["\\All"]), components: ["[Gmail]", "All Mail"], gmailNames: true)
                == .all)
        #expect(
            FolderMapping.view(of: listed("[Gmail]/Starred"), components: ["[Gmail]", "Starred"], gmailNames: true)
                == .flagged)
        #expect(
            FolderMapping.view(of: listed("[Gmail]/Starred"), components: ["[Gmail]", "Starred"], gmailNames: false)
                == nil)
        #expect(FolderMapping.view(of: sent, components: ["[Gmail]", "Sent Mail"], gmailNames: true) == nil)
        #expect(
            FolderMapping.destinationComponents(
                sourceComponents: ["[Gmail]", "Foo"], specialUse: nil, destinationSpecial: [:]) == ["Foo"])
        #expect(
            FolderMapping.destinationComponents(
                sourceComponents: ["Sent Items"], specialUse: .sent,
                destinationSpecial: [.sent: ["Gesendet"]]) == ["Gesendet"])
        #expect(
            FolderMapping.destinationComponents(
                sourceComponents: ["Sent Items"], specialUse: .sent, destinationSpecial: [:]) == ["Sent"])
    }

    /// Any server may list views (RFC 6154 `\\All`, `\\Flagged`; RFC 8457 `\\Important`), not only Gmail.
    @Test(arguments: [("\\All", SpecialUse.all), ("\\Flagged", .flagged), ("\\Important", .important)])
    func viewsByAttributeOnAnyServer(attribute: String, view: SpecialUse) {
        #expect(
            FolderMapping.view(
                of: listed("Virtual/Some name", [attribute]), components: ["Virtual", "Some name"],
                gmailNames: false) == view)
        #expect(FolderMapping.skipReason(view).contains(view.rawValue))
    }

    @Test func strategies() {
        #expect(FolderMapping.isIncluded(.inboxOnly, components: ["INBOX"], specialUse: nil))
        #expect(!FolderMapping.isIncluded(.inboxOnly, components: ["Sent"], specialUse: .sent))
        #expect(FolderMapping.isIncluded(.standard, components: ["Sent Items"], specialUse: .sent))
        #expect(!FolderMapping.isIncluded(.standard, components: ["Work"], specialUse: nil))
        #expect(FolderMapping.isIncluded(.all, components: ["Work"], specialUse: nil))
    }
}
