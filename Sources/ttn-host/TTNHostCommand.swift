import ArgumentParser
import Foundation

@main
struct TTNHostCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ttn-host",
        abstract: "Runs Lua and Swift message handlers for the uplinks of a The Things Network application.",
        discussion: """
            Without a subcommand, `run`: connect to TTN and handle every uplink (ttn-host run --help). \
            `check` and `replay` try scripts offline, with no broker and no TTN account; `record` writes live \
            uplinks to a file that `replay` reads.
            """,
        subcommands: [RunCommand.self, IngestCommand.self, WorkCommand.self, CheckCommand.self, ReplayCommand.self, RecordCommand.self, StateCommand.self, OutboxCommand.self],
        defaultSubcommand: RunCommand.self
    )

    /// Parses, validates and runs. A usage error (an unknown option, a missing, malformed or out-of-range setting)
    /// exits 2 like a refused key or a TLS failure, rather than ArgumentParser's 64, so that a supervisor sees
    /// one status for "the settings are wrong"; the message and the usage are printed as ArgumentParser does.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var command = command as? AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            guard exitCode(for: error) == .validationFailure else { exit(withError: error) }
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            exit(withError: ExitCode(2))
        }
    }
}
