import Foundation

/// A real SMTP server for the tests: aiosmtpd (pinned in scripts/test-requirements.txt, from the
/// venv `scripts/test-venv` makes) on a loopback high port, with STARTTLS and AUTH required by
/// default and a self-signed certificate for 127.0.0.1 made with openssl. Every accepted mail is
/// kept as a file, with its envelope, so a test reads what a person's mailbox would get.
public final class SMTPSink: Sendable {
    public struct Options: Sendable {
        /// Offer STARTTLS and require it (and AUTH) before MAIL.
        public var startTLS = true
        public var user = "relay-user"
        public var password = "relay-pass-9f3k"
        /// Answer the first this-many DATA ends with 451.
        public var deferFirst = 0

        public init() {}
    }

    /// A mail as the sink received it.
    public struct Received: Sendable {
        public var sender: String
        public var recipients: [String]
        /// The message as it arrived (after un-dot-stuffing), CRLF line ends.
        public var raw: String
    }

    public let port: Int
    public let directory: String
    public let options: Options
    /// The sink's certificate (self-signed): the CA file a client trusts.
    public let certificatePath: String
    private let process: BackgroundProcess

    private init(port: Int, directory: String, options: Options, process: BackgroundProcess) {
        self.port = port
        self.directory = directory
        self.options = options
        self.certificatePath = directory + "/cert.pem"
        self.process = process
    }

    public static var python: String {
        DovecotServer.repositoryRoot.appendingPathComponent(".build-venv/bin/python").path
    }

    /// A free port can be taken by a parallel test between the pick and the bind: then again, on another.
    public static func start(_ options: Options = Options()) async throws -> SMTPSink {
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await startOnce(options)
            } catch let failure as ProcessFailure where attempt < 3 && failure.output.contains("address already in use")
            {
                continue
            }
        }
    }

    private static func startOnce(_ options: Options) async throws -> SMTPSink {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("mp-smtp-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory + "/mail", withIntermediateDirectories: true)
        try await runProcess(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-keyout", directory + "/key.pem", "-out", directory + "/cert.pem",
            ])
        try script.write(toFile: directory + "/sink.py", atomically: true, encoding: .utf8)
        let port = try DovecotServer.freePorts(1)[0]
        var arguments = [
            directory + "/sink.py", "--port", "\(port)", "--dir", directory + "/mail",
            "--cert", directory + "/cert.pem", "--key", directory + "/key.pem",
            "--user", options.user, "--password", options.password, "--defer-first", "\(options.deferFirst)",
        ]
        if !options.startTLS { arguments.append("--no-starttls") }
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw ProcessFailure(command: python, status: 127, output: "run scripts/test-venv first")
        }
        let process = try BackgroundProcess.start(python, arguments, environment: ["PATH": "/usr/bin:/bin"])
        let sink = SMTPSink(port: port, directory: directory, options: options, process: process)
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if process.stdout.contains("ready") { return sink }
            if let status = process.poll() {
                let output = process.stderr
                process.cleanUp()
                try? FileManager.default.removeItem(atPath: directory)
                throw ProcessFailure(command: "aiosmtpd sink", status: status, output: output)
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        sink.stop()
        throw ProcessFailure(command: "aiosmtpd sink", status: -1, output: "not ready in 20 s: \(process.stderr)")
    }

    public func stop() {
        process.kill(SIGTERM)
        if process.poll() == nil {
            usleep(200_000)
            process.kill()
        }
        _ = process.poll()
        process.cleanUp()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// The server's own log (what it was sent, command by command), for failure messages.
    public var log: String { process.stderr }

    /// Every mail accepted so far, oldest first.
    public func received() -> [Received] {
        let mail = directory + "/mail"
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: mail)) ?? []).filter {
            $0.hasSuffix(".json")
        }
        .sorted()
        return names.compactMap { name in
            guard let data = FileManager.default.contents(atPath: mail + "/" + name),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            else { return nil }
            return Received(
                sender: object["from"] as? String ?? "", recipients: object["to"] as? [String] ?? [],
                raw: object["data"] as? String ?? "")
        }
    }

    /// Waits until at least `count` mails are in (or the time is up) and returns them all.
    public func waitForMail(count: Int, timeout: Duration = .seconds(60)) async -> [Received] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let mails = received()
            if mails.count >= count { return mails }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return received()
    }

    static let script = #"""
        import argparse, json, os, ssl, time
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        parser = argparse.ArgumentParser()
        for name in ("--dir", "--cert", "--key", "--user", "--password"):
            parser.add_argument(name, required=True)
        parser.add_argument("--port", type=int, required=True)
        parser.add_argument("--defer-first", type=int, default=0)
        parser.add_argument("--no-starttls", action="store_true")
        args = parser.parse_args()

        class Handler:
            def __init__(self):
                self.deferred = 0
                self.count = 0

            async def handle_DATA(self, server, session, envelope):
                if self.deferred < args.defer_first:
                    self.deferred += 1
                    return "451 4.3.0 Try again later"
                self.count += 1
                stem = os.path.join(args.dir, "%020d-%04d" % (time.time_ns(), self.count))
                record = {"from": envelope.mail_from, "to": envelope.rcpt_tos,
                          "data": envelope.original_content.decode("utf-8", "replace")}
                with open(stem + ".tmp", "w") as out:
                    json.dump(record, out)
                os.rename(stem + ".tmp", stem + ".json")
                return "250 2.0.0 OK queued"

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == args.user
                  and auth_data.password.decode() == args.password)
            return AuthResult(success=ok, handled=False)

        kwargs = dict(authenticator=authenticator)
        if args.no_starttls:
            kwargs.update(auth_required=False, auth_require_tls=False)
        else:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(args.cert, args.key)
            kwargs.update(tls_context=context, require_starttls=True, auth_required=True, auth_require_tls=True)
        controller = Controller(Handler(), hostname="127.0.0.1", port=args.port, **kwargs)
        controller.start()
        print("ready", flush=True)
        while True:
            time.sleep(3600)
        """#
}
