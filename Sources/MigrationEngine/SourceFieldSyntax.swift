import Foundation

/// What an address and a source host must look like: the one rule for a single start's body, each
/// row of a bulk CSV, the mailboxes API and the admin commands.
public enum SourceFieldSyntax {
    /// `local@domain.tld`: one `@`, a local part of 1–64 characters, a domain of two or more non-empty
    /// labels not starting or ending in `-`, at most 254 characters, no whitespace or list separators.
    public static func isEmailAddress(_ value: String) -> Bool {
        let parts = value.split(separator: "@", omittingEmptySubsequences: false)
        guard value.count <= 254, parts.count == 2, !parts[0].isEmpty, parts[0].count <= 64 else { return false }
        let labels = parts[1].split(separator: ".", omittingEmptySubsequences: false)
        // Separators and brackets are never part of one address: they mean a list or a display name.
        return labels.count >= 2 && labels.allSatisfy { !$0.isEmpty && !$0.hasPrefix("-") && !$0.hasSuffix("-") }
            && !value.contains(where: { $0.isWhitespace || $0.isNewline || ",;<>".contains($0) })
    }

    /// A DNS name, an IPv4 address, or an IPv6 address (bare or in brackets).
    public static func isHostName(_ value: String) -> Bool {
        guard !value.isEmpty, value.count <= 253 else { return false }
        if value.hasPrefix("[") && value.hasSuffix("]") { return value.count > 2 }  // [IPv6]
        return value.unicodeScalars.allSatisfy {
            CharacterSet.alphanumerics.contains($0) || $0 == "." || $0 == "-" || $0 == ":" || $0 == "_"
        } && !value.hasPrefix("-") && !value.hasPrefix(".")
    }
}
