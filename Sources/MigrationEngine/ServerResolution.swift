import IMAPClient

extension Provider {
    /// The source server: what the user gave, the rest from this provider's preset. The one rule
    /// for the API, the job runner and the command line.
    ///
    /// Security falls back to the preset's, then to `ssl`; the port to the chosen security's
    /// default, so `tls` without a port is 143 even for a provider whose preset is 993. A blank
    /// host counts as none given. Without a host and without a preset there is nothing to
    /// connect to: a classified failure, which each entry point words for its own input.
    public func server(host: String?, port: Int?, security: ConnectionSecurity?) throws(ImportFailure)
        -> ServerConfiguration
    {
        let givenHost = host.flatMap { $0.isEmpty ? nil : $0 }
        guard let resolvedHost = givenHost ?? preset?.host else {
            throw ImportFailure(
                code: .hostUnreachable, message: "No source server was given, and \(rawValue) has no preset one.",
                hint:
                    "Give the IMAP server's host name, port and security (see the old provider's mail client settings), "
                    + "or a provider with a preset: \(Provider.allCases.filter { $0.preset != nil }.map(\.rawValue).joined(separator: ", "))."
            )
        }
        let resolvedSecurity = security ?? preset?.security ?? .ssl
        return ServerConfiguration(
            host: resolvedHost, port: port ?? resolvedSecurity.defaultPort, security: resolvedSecurity)
    }
}
