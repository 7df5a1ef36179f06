import Foundation
import HTTPAPI
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

/// The Import page as `serve` hands it out: the files with their types and security headers, the
/// rules the page follows, and no route of the API disturbed.
@Suite("Import page routes")
struct WebRouteTests {
    static let webFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Sources/HTTPAPI/Resources/web").standardized

    func header(_ reply: Reply, _ name: String) -> String? { reply.headers[HTTPField.Name(name)!] }

    @Test func thePageAndItsFilesAreServedWithTheirTypesAndAStrictPolicy() async throws {
        try await APIFixture.with { fixture in
            try await fixture.test { client in
                let page = try await client.call(.get, "/")
                #expect(page.status == .ok)
                #expect(page.headers[.contentType] == "text/html; charset=utf-8")
                #expect(page.text.contains(#"<script type="module" src="/ui/app.js"></script>"#))
                let expected = try String(
                    contentsOf: Self.webFolder.appendingPathComponent("index.html"), encoding: .utf8)
                #expect(page.text == expected)

                for (path, type) in [
                    ("/", "text/html; charset=utf-8"), ("/ui/app.js", "text/javascript; charset=utf-8"),
                    ("/ui/style.css", "text/css; charset=utf-8"), ("/ui/icon.svg", "image/svg+xml"),
                    ("/ui/rules.json", "application/json; charset=utf-8"),
                ] {
                    let reply = try await client.call(.get, path)
                    #expect(reply.status == .ok, "\(path)")
                    #expect(reply.headers[.contentType] == type, "\(path)")
                    let policy = try #require(header(reply, "Content-Security-Policy"), "\(path)")
                    for directive in [
                        "default-src 'self'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
                        "frame-ancestors 'none'", "object-src 'none'", "form-action 'none'",
                    ] {
                        #expect(policy.contains(directive), "\(path): \(policy)")
                    }
                    #expect(
                        !policy.contains("unsafe-inline") && !policy.contains("unsafe-eval") && !policy.contains("*"))
                    #expect(header(reply, "X-Content-Type-Options") == "nosniff", "\(path)")
                    #expect(header(reply, "Referrer-Policy") == "no-referrer", "\(path)")
                    #expect(header(reply, "X-Request-Id") != nil)
                }

                // Only the files of the folder; the page itself only at /.
                for path in ["/ui/missing.js", "/ui/index.html", "/ui/..%2FPackage.swift", "/ui/", "/index.html"] {
                    let reply = try await client.call(.get, path)
                    #expect(reply.status == .notFound, "\(path)")
                    #expect(reply.errorCode == "not_found", "\(path)")
                }
                let post = try await client.call(.post, "/")
                #expect(post.status == .methodNotAllowed && post.headers[.allow] == "GET")
                #expect(try await client.call(.delete, "/ui/app.js").status == .methodNotAllowed)

                // The API next to it is as it was.
                #expect(try await client.call(.get, "/api/v1/me").status == .unauthorized)
                #expect(try await client.call(.get, "/api/v1/me", token: fixture.token).status == .ok)
                #expect(try await client.call(.get, "/api/v2/nothing").status == .notFound)
            }
        }
    }

    @Test func thePageFollowsTheServersPresetsAndStatusRules() async throws {
        try await APIFixture.with { fixture in
            try await fixture.test { client in
                let rules = try #require(try await client.call(.get, "/ui/rules.json").json)
                let providers = try #require(array(rules["providers"]))
                let gmail = try #require(providers.first { string($0["id"]) == "gmail" })
                #expect(string(gmail["host"]) == "imap.gmail.com" && int(gmail["port"]) == 993)
                #expect(string(gmail["security"]) == "ssl" && bool(gmail["needs_app_password"]) == true)
                #expect(string(gmail["login_hint"])?.contains("myaccount.google.com/apppasswords") == true)
                let generic = try #require(providers.first { string($0["id"]) == "generic_imap" })
                #expect(generic["host"] == .null && bool(generic["needs_app_password"]) == false)
                #expect(
                    providers.compactMap { string($0["id"]) } == [
                        "gmail", "outlook", "yahoo", "icloud", "generic_imap",
                    ])
                let actions = rules["migration_actions"]
                #expect(array(actions?["retry"])?.compactMap(string) == ["failed", "cancelled"])
                #expect(
                    array(actions?["cancel"])?.compactMap(string) == [
                        "pending", "validating", "planning", "processing",
                    ])
                #expect(array(actions?["delete"])?.compactMap(string) == ["completed", "failed", "cancelled"])
                #expect(array(rules["batch_actions"]?["resume"])?.compactMap(string) == ["paused"])
                let labels = try #require(array(rules["migration_statuses"])).compactMap { string($0["label"]) }
                #expect(labels == ["Queued", "Preparing", "Preparing", "Running", "Completed", "Failed", "Cancelled"])
            }
        }
    }

    /// Data reaches the page as text only: no module parses markup or evaluates strings.
    @Test func noScriptWritesMarkupAndTheHTMLHasNothingInline() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.webFolder.path)
        let scripts = names.filter { $0.hasSuffix(".js") }
        #expect(scripts.count >= 6)
        for name in scripts {
            let text = try String(contentsOf: Self.webFolder.appendingPathComponent(name), encoding: .utf8)
            for banned in [
                "innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                "localStorage", "document.cookie",
            ] {
                #expect(!text.contains(banned), "\(name) uses \(banned)")
            }
        }
        let html = try String(contentsOf: Self.webFolder.appendingPathComponent("index.html"), encoding: .utf8)
        #expect(!html.contains(" style=") && !html.contains("<style"), "inline style")
        #expect(html.range(of: #"\son[a-z]+\s*="#, options: .regularExpression) == nil, "inline event handler")
        #expect(html.components(separatedBy: "<script").count == 2 && html.contains("<script type=\"module\" src="))
    }
}
