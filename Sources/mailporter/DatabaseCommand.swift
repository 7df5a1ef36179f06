import ArgumentParser
import HTTPAPI
import Store

/// `mailporter db migrate`: applies the schema explicitly, e.g. from a deploy step before the
/// nodes start. `serve` applies it too at every start; both take the migrators' lock, so running
/// this while nodes start is safe.
struct DatabaseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db",
        abstract: "Manage the service's database.",
        subcommands: [Migrate.self]
    )

    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "migrate",
            abstract: "Apply the schema migrations not yet applied; prints the versions as one JSON line.")

        @OptionGroup var storage: DataDirectoryOptions

        func run() async throws {
            try await Admin.run(storage) { store in
                let versions = try await store.schemaVersions()
                Admin.printLine([
                    ("applied", .array(store.schemaVersionsAppliedAtOpen.map { .int(Int64($0)) })),
                    ("schema_versions", .array(versions.map { .int(Int64($0)) })),
                ])
            }
        }
    }
}
