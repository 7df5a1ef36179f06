import Crypto
import Foundation
#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Encrypts credentials at rest with AES-256-GCM.
///
/// A sealed value is the base64 of nonce (12 bytes) + ciphertext + tag (16 bytes). The key is 32 bytes,
/// from `MAILPORTER_SECRET_KEY` (base64 or 64 hex digits) or from a key file made with mode 0600 in
/// the data directory. Neither the key nor any plaintext ever appears in a description.
public struct SecretBox: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public enum Failure: Error, Equatable, CustomStringConvertible {
        /// The configured key is not 32 bytes of base64 or hex.
        case invalidKey(String)
        /// The key file could not be read or created.
        case keyFile(String)
        /// A sealed value is not base64, was tampered with, or was sealed with another key.
        case cannotOpen

        public var description: String {
            switch self {
            case .invalidKey(let why): "invalid secret key: \(why)"
            case .keyFile(let why): "secret key file: \(why)"
            case .cannotOpen: "cannot decrypt a stored secret (wrong MAILPORTER_SECRET_KEY or damaged data)"
            }
        }
    }

    /// Name of the key file in the data directory.
    public static let keyFileName = "secret.key"

    /// Kept as bytes (`SymmetricKey` is not `Sendable`); a key is made per operation.
    private let keyBytes: [UInt8]
    private var key: SymmetricKey { SymmetricKey(data: keyBytes) }

    /// A box with this 32-byte key.
    public init(keyBytes: some Collection<UInt8>) throws {
        guard keyBytes.count == 32 else {
            throw Failure.invalidKey("expected 32 bytes, got \(keyBytes.count)")
        }
        self.keyBytes = Array(keyBytes)
    }

    /// A box with a key given as base64 (standard or URL-safe) or as 64 hex digits.
    public init(encodedKey: String) throws {
        guard let bytes = Self.decodeKey(encodedKey) else {
            throw Failure.invalidKey("expected 32 bytes as base64 or 64 hex digits")
        }
        try self.init(keyBytes: bytes)
    }

    /// A box with a fresh random key (tests, one-shot runs).
    public static func random() -> SecretBox {
        // 32 random bytes always make a valid key.
        try! SecretBox(keyBytes: SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) })
    }

    /// The key from `environmentKey` (the value of `MAILPORTER_SECRET_KEY`) when it is set and not
    /// empty; otherwise from `<dataDirectory>/secret.key`, created (mode 0600, directory 0700) if absent.
    public static func loadOrCreate(dataDirectory: String, environmentKey: String?) throws -> SecretBox {
        if let environmentKey, !environmentKey.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            return try SecretBox(encodedKey: environmentKey)
        }
        let fileManager = FileManager.default
        do {
            try fileManager.createDirectory(
                atPath: dataDirectory, withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700])
        } catch {
            throw Failure.keyFile("cannot create \(dataDirectory): \(error.localizedDescription)")
        }
        let path = (dataDirectory as NSString).appendingPathComponent(keyFileName)
        if let existing = try readKeyFile(path) { return existing }

        let encoded = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).base64EncodedString() } + "\n"
        let fd = createExclusive(path, mode: 0o600)
        if fd < 0 {
            let code = errno
            // Another process made it first: use theirs.
            if code == EEXIST {
                for _ in 0..<40 {
                    if let existing = try readKeyFile(path) { return existing }
                    usleep(25_000)
                }
            }
            throw Failure.keyFile("cannot create \(path): \(String(cString: strerror(code)))")
        }
        let bytes = Array(encoded.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        closeFile(fd)
        guard written == bytes.count, synced == 0 else {
            unlink(path)
            throw Failure.keyFile("cannot write \(path)")
        }
        return try SecretBox(encodedKey: encoded)
    }

    private static func readKeyFile(_ path: String) throws -> SecretBox? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path),
            let text = String(data: data, encoding: .utf8)
        else {
            throw Failure.keyFile("cannot read \(path)")
        }
        // A file being written by another process right now reads as empty: wait for it briefly.
        if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return nil }
        do {
            return try SecretBox(encodedKey: text)
        } catch {
            throw Failure.keyFile("\(path) does not hold a 32-byte key")
        }
    }

    /// Decodes 64 hex digits or base64 / base64url (padding optional) into bytes.
    static func decodeKey(_ text: String) -> [UInt8]? {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.count == 64, trimmed.allSatisfy(\.isHexDigit) {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(32)
            var index = trimmed.startIndex
            while index < trimmed.endIndex {
                let next = trimmed.index(index, offsetBy: 2)
                guard let byte = UInt8(trimmed[index..<next], radix: 16) else { return nil }
                bytes.append(byte)
                index = next
            }
            return bytes
        }
        var base64 = trimmed.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        guard let data = Data(base64Encoded: base64) else { return nil }
        return Array(data)
    }

    /// Encrypts `plaintext` with a fresh random nonce.
    public func seal(_ plaintext: String) throws -> String {
        let box = try AES.GCM.seal(Data(plaintext.utf8), using: key)
        guard let combined = box.combined else { throw Failure.cannotOpen }
        return combined.base64EncodedString()
    }

    /// Decrypts what `seal` produced.
    public func open(_ sealed: String) throws -> String {
        guard let data = Data(base64Encoded: sealed),
            let box = try? AES.GCM.SealedBox(combined: data),
            let plain = try? AES.GCM.open(box, using: key),
            let text = String(data: plain, encoding: .utf8)
        else {
            throw Failure.cannotOpen
        }
        return text
    }

    public var description: String { "SecretBox(redacted)" }
    public var debugDescription: String { description }
}

/// `open(2)` with `O_CREAT | O_EXCL`: the file is created with `mode` from the start, never wider.
private func createExclusive(_ path: String, mode: mode_t) -> Int32 {
    #if canImport(Glibc)
        Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
    #elseif canImport(Musl)
        Musl.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
    #else
        Darwin.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
    #endif
}

private func closeFile(_ fd: Int32) {
    #if canImport(Glibc)
        _ = Glibc.close(fd)
    #elseif canImport(Musl)
        _ = Musl.close(fd)
    #else
        _ = Darwin.close(fd)
    #endif
}
