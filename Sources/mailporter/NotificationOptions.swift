import ArgumentParser
import Notifications
import SMTPClient

/// The mail options of `serve` and `worker` (SPEC.md §6); each falls back to its MAILPORTER_* variable.
struct NotificationOptions: ParsableArguments {
    @Option(
        name: .customLong("smtp-url"),
        help:
            "Relay for notices: smtp://host:587, smtps://host:465 or smtp://host:25?starttls=off (env MAILPORTER_SMTP_URL)."
    )
    var smtpURL: String?

    @Option(name: .customLong("smtp-user"), help: "Relay login (env MAILPORTER_SMTP_USER).")
    var smtpUser: String?

    @Option(
        name: .customLong("smtp-password-file"),
        help: "File holding the relay password (env MAILPORTER_SMTP_PASSWORD holds the password itself).")
    var smtpPasswordFile: String?

    @Option(
        name: .customLong("smtp-from"),
        help: "Sender of notices, e.g. 'Mailporter <mp@example.com>' (env MAILPORTER_SMTP_FROM).")
    var smtpFrom: String?

    @Option(
        name: .customLong("smtp-ca-file"), help: "Extra PEM CA to trust for the relay (env MAILPORTER_SMTP_CA_FILE).")
    var smtpCAFile: String?

    @Option(
        name: .customLong("public-url"),
        help: "Where people reach the web page, for links in notices (env MAILPORTER_PUBLIC_URL).")
    var publicURL: String?
}

extension NotificationOptions {
    /// The delivery settings, or nil when no relay is configured. Throws a one-line reason for a
    /// setting that is wrong or incomplete; the password is never part of it.
    func resolve(environment: [String: String], nodeID: String) throws -> NoticeDeliveryConfiguration? {
        let value = SettingValues(environment: environment).value
        guard let urlText = value(smtpURL, "MAILPORTER_SMTP_URL") else { return nil }
        let endpoint: SMTPEndpoint
        do {
            endpoint = try SMTPEndpoint(url: urlText)
        } catch {
            throw SettingsFailure(description: error.description)
        }
        guard let from = value(smtpFrom, "MAILPORTER_SMTP_FROM") else {
            throw SettingsFailure(
                description: "MAILPORTER_SMTP_FROM is required with MAILPORTER_SMTP_URL (the sender of notices)")
        }
        let user = value(smtpUser, "MAILPORTER_SMTP_USER")
        var password = environment["MAILPORTER_SMTP_PASSWORD"].flatMap { $0.isEmpty ? nil : $0 }
        if let path = smtpPasswordFile {
            password = try readTextFile(path).trimmingCharacters(in: .newlines)
        }
        if (user == nil) != (password == nil) {
            throw SettingsFailure(
                description:
                    "MAILPORTER_SMTP_USER and MAILPORTER_SMTP_PASSWORD (or --smtp-password-file) go together;"
                    + " set both or neither")
        }
        var smtp = SMTPConfiguration(endpoint: endpoint)
        if let user, let password { smtp.credentials = SMTPCredentials(username: user, password: password) }
        if let path = value(smtpCAFile, "MAILPORTER_SMTP_CA_FILE") {
            smtp.additionalTrustRootsPEM = [try readTextFile(path)]
        }
        let configuration = NoticeDeliveryConfiguration(
            smtp: smtp, from: from, publicURL: value(publicURL, "MAILPORTER_PUBLIC_URL"), nodeID: nodeID)
        do {
            _ = try SMTPEnvelope(sender: configuration.envelopeSender, recipients: [configuration.envelopeSender])
        } catch {
            throw SettingsFailure(description: "MAILPORTER_SMTP_FROM holds no usable address (\(from))")
        }
        return configuration
    }
}
