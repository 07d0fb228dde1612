import ArgumentParser
import Foundation
import TTNState

/// `ttn-host state list|forget`: what the handlers keep, and forgetting a handler that is gone.
struct StateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "state",
        abstract: "Lists the handlers' state, or forgets one handler's.",
        discussion: """
            A script that is deleted keeps its state (a script of the same name later finds it again) until it is \
            forgotten here. Run these while no ttn-host uses the state directory: it is locked while one runs.
            """,
        subcommands: [List.self, Forget.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Prints each handler's namespace, key count and bytes.")

        @OptionGroup var options: StateOptions

        func run() throws {
            let database = try options.open()
            defer { database.close() }
            let namespaces = try database.namespaces()
            if namespaces.isEmpty { printLine("no state in \(database.directory)") }
            for namespace in namespaces { printLine("\(namespace.name)\t\(namespace.keys) keys\t\(namespace.bytes) bytes") }
        }
    }

    struct Forget: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Deletes every key of one handler.")

        @OptionGroup var options: StateOptions

        @Argument(help: "The handler: a script's file name (counter.lua), or a namespace as list prints it (swift/name).")
        var handler: String

        func run() throws {
            let database = try options.open()
            defer { database.close() }
            let namespace = handler.contains("/") ? handler : "lua/\(handler)"
            let removed = try database.forget(namespace)
            printLine("forgot \(namespace): \(removed) keys")
        }
    }
}

/// Where the state is: `--state-dir`, `TTN_STATE_DIR`, or `./ttn-host-state`.
struct StateOptions: ParsableArguments {
    @Option(name: .customLong("state-dir"), help: "Directory of the handlers' state. (TTN_STATE_DIR, default: ./ttn-host-state)")
    var stateDirectory: String?

    /// The directory from an option's value, the environment, or the default.
    static func directory(_ option: String?) -> String {
        option ?? ProcessInfo.processInfo.environment["TTN_STATE_DIR"] ?? "./ttn-host-state"
    }

    /// Opens the state of an existing directory; a usage error when there is none, or another process uses it.
    func open() throws -> StateDatabase {
        let directory = Self.directory(stateDirectory)
        guard FileManager.default.fileExists(atPath: directory) else {
            throw ValidationError("There is no state directory '\(directory)'; give it with --state-dir or TTN_STATE_DIR.")
        }
        do {
            return try StateDatabase(directory: directory)
        } catch {
            throw ValidationError(error.description)
        }
    }
}
