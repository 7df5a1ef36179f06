import ArgumentParser
import IMAPClient
import MigrationEngine
#if canImport(Glibc)
    import Glibc
#endif

extension ConnectionSecurity: ExpressibleByArgument {}
extension Provider: ExpressibleByArgument {}

/// Reads a whole small file (a CA certificate) without Foundation.
func readTextFile(_ path: String) throws -> String {
    guard let file = fopen(path, "r") else { throw ValidationError("cannot read \(path)") }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = fread(&chunk, 1, chunk.count, file)
        if count <= 0 { break }
        bytes += chunk[0..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// TLS trust options shared by commands that connect.
struct TLSOptions: ParsableArguments {
    @Option(name: .customLong("ca-file"), help: "Extra PEM certificate(s) to trust, e.g. a private CA.")
    var caFile: String?

    @Flag(name: .customLong("insecure-skip-verify"), help: "Do not verify server certificates (unsafe).")
    var skipVerify = false

    func apply(to configuration: inout ServerConfiguration) throws {
        configuration.verifyCertificates = !skipVerify
        if let caFile { configuration.additionalTrustRootsPEM = [try readTextFile(caFile)] }
    }
}
