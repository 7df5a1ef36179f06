import Crypto
import Foundation

/// API tokens: `mp_live_` followed by 32 random bytes in lowercase hex. Only the SHA-256 (hex) of the
/// whole token is stored, with a short prefix for display.
public enum Tokens {
    public static let prefix = "mp_live_"
    /// Characters kept for display: the `mp_live_` prefix and four more.
    public static let displayPrefixLength = prefix.count + 4

    /// A new token with its hash and display prefix.
    public static func generate() -> (token: String, hash: String, displayPrefix: String) {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let token = prefix + hex(bytes)
        return (token, hash(token), String(token.prefix(displayPrefixLength)))
    }

    /// SHA-256 of the token, lowercase hex.
    public static func hash(_ token: String) -> String {
        hex(Array(SHA256.hash(data: Data(token.utf8))))
    }

    /// Whether `token` looks like one of ours (right prefix and length), before any lookup.
    public static func isWellFormed(_ token: String) -> Bool {
        token.hasPrefix(prefix) && token.utf8.count == prefix.utf8.count + 64
            && token.dropFirst(prefix.count).allSatisfy { $0.isHexDigit && !$0.isUppercase }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
