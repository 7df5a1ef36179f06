import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import MCP
import MCPServer
import NIOCore
import NIOHTTP1

/// `mailporter mcp`: the migration tools for an AI agent over stdio, as a client of the REST API.
struct MCPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcp",
        abstract: "Serves the migration tools to an AI agent over stdio (Model Context Protocol).",
        discussion: """
            A client of a running `mailporter serve`. Environment: MAILPORTER_URL (the server, e.g. \
            http://127.0.0.1:8080), MAILPORTER_API_TOKEN (a token with migrations:read and, for writes, \
            migrations:write), MAILPORTER_ALLOW_MIGRATION (exactly true or false, default false: then \
            only the read tools, cancel and resume work). Logs go to standard error.
            """)

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let settings = try await Terminal.orExit { try StdioConfiguration(environment: environment) }
        let level = environment["MAILPORTER_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0.lowercased()) } ?? .info
        // Standard output carries the protocol; everything else goes to standard error.
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "mailporter.mcp")
        // A server that is down is an answer for the agent at once: the shared client's default
        // retries a refused connection until the request's deadline (90 s here).
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(90))
        configuration.connectionPool.retryConnectionEstablishment = false
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        let caller = HTTPAPICaller(client: client, baseURL: settings.baseURL, token: settings.token)
        let tools = MailporterTools(caller: caller, allowMigration: settings.allowMigration, logger: logger)
        let server = await MailporterMCPServer.make(tools: tools)
        do {
            try await server.start(transport: StdioTransport(logger: logger))
        } catch {
            try? await client.shutdown()
            Terminal.printError("error: mcp_failed: standard input or output cannot be used")
            throw ExitCode(1)
        }
        logger.info(
            "mailporter mcp ready",
            metadata: ["url": "\(settings.baseURL)", "allow_migration": "\(settings.allowMigration)"])
        await server.waitUntilCompleted()
        try? await client.shutdown()
    }
}

/// The REST API over HTTP(S) with the configured token.
struct HTTPAPICaller: APICaller {
    let client: HTTPClient
    let baseURL: String
    let token: String
    static let maxBodyBytes = 32 << 20

    func call(_ request: APIRequest) async throws -> APIResponse {
        var outgoing = HTTPClientRequest(url: baseURL + request.path)
        outgoing.method = HTTPMethod(rawValue: request.method)
        outgoing.headers.add(name: "Authorization", value: "Bearer \(token)")
        outgoing.headers.add(name: "Accept", value: "application/json")
        outgoing.headers.add(name: "User-Agent", value: "mailporter-mcp/\(MailporterMCPServer.version)")
        if let key = request.idempotencyKey { outgoing.headers.add(name: "Idempotency-Key", value: key) }
        if let body = request.body {
            outgoing.headers.add(name: "Content-Type", value: "application/json")
            outgoing.body = .bytes(body)
        }
        do {
            // A bulk preview with check_logins takes up to 30 s on the server.
            let response = try await client.execute(outgoing, timeout: .seconds(90))
            let body = try await response.body.collect(upTo: Self.maxBodyBytes)
            var headers: [String: String] = [:]
            for header in response.headers { headers[header.name.lowercased()] = header.value }
            return APIResponse(status: Int(response.status.code), headers: headers, body: Array(body.readableBytesView))
        } catch {
            throw APIUnreachable(
                message: "The Mailporter API at \(baseURL) did not answer: the connection failed or timed out.",
                hint: "Check MAILPORTER_URL and that `mailporter serve` is running there.")
        }
    }
}
