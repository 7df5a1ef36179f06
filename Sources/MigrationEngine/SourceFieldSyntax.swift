import Foundation

/// What a source address and a source host must look like: the one rule for a single start's body
/// and for each row of a bulk CSV.
public enum SourceFieldSyntax {
    /// `local@domain.tld`: one `@`, something before it, a dotted domain after it, no whitespace.
    public static func isEmailAddress(_ value: String) -> Bool {
        let parts = value.split(separator: "@", omittingEmptySubsequences: false)
        return parts.count == 2 && !parts[0].isEmpty && parts[1].contains(".") && !parts[1].hasPrefix(".")
            && !parts[1].hasSuffix(".") && !value.contains(where: { $0.isWhitespace })
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
