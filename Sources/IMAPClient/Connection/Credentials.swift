/// How to log in to a mailbox.
public enum Credentials: Sendable {
    case password(username: String, password: String)
    /// A master (proxy) user logging in as `user`: SASL PLAIN with an authorization identity.
    case master(user: String, masterUsername: String, masterPassword: String)
    /// An OAuth 2 access token via SASL XOAUTH2.
    case oauth2(username: String, accessToken: String)

    public var username: String {
        switch self {
        case .password(let username, _): username
        case .master(let user, _, _): user
        case .oauth2(let username, _): username
        }
    }
}

extension IMAPSession {
    /// Logs in with LOGIN, or AUTHENTICATE PLAIN where the server disables LOGIN or a master user is used.
    public func authenticate(_ credentials: Credentials) async throws {
        switch credentials {
        case .password(let username, let password):
            if hasCapability("LOGINDISABLED"), hasCapability("AUTH=PLAIN") {
                try await authenticatePlain(username: username, password: password)
            } else if hasCapability("LOGINDISABLED") {
                throw IMAPError.capabilityMissing("LOGIN (the server disables it on this connection; try TLS)")
            } else {
                try await login(username: username, password: password)
            }
        case .master(let user, let masterUsername, let masterPassword):
            try await authenticatePlain(authorizationIdentity: user, username: masterUsername, password: masterPassword)
        case .oauth2(let username, let accessToken):
            try await authenticateXOAuth2(username: username, accessToken: accessToken)
        }
    }

    /// Connects and logs in; the session is closed again if logging in fails.
    public static func open(
        _ configuration: ServerConfiguration, credentials: Credentials,
        affinity: SessionAffinity? = nil
    ) async throws -> IMAPSession {
        let session = try await connect(configuration, affinity: affinity)
        do {
            try await session.authenticate(credentials)
            return session
        } catch {
            await session.close()
            throw error
        }
    }
}
