import ArgumentParser
import Foundation
import Logging
import TTNCluster
import TTNState

/// `ttn-host state list|forget`: what the handlers keep, and forgetting a handler that is gone.
struct StateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "state",
        abstract: "Lists the handlers' state, or forgets one handler's.",
        discussion: """
            A script that is deleted keeps its state (a script of the same name later finds it again) until it is \
            forgotten here. A state directory: run these while no ttn-host uses it (it is locked while one runs). \
            A cluster's bucket (--nats and --app-id, for `ttn-host work`): while the workers run, too.
            """,
        subcommands: [List.self, Forget.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Prints each handler's namespace, key count and bytes.")

        @OptionGroup var options: StateLocationOptions

        func run() throws {
            try options.withState { state, location in
                let namespaces = try state.namespaces()
                if namespaces.isEmpty { printLine("no state in \(location)") }
                for namespace in namespaces { printLine("\(namespace.name)\t\(namespace.keys) keys\t\(namespace.bytes) bytes") }
            }
        }
    }

    struct Forget: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Deletes every key of one handler.")

        @OptionGroup var options: StateLocationOptions

        @Argument(help: "The handler: a script's file name (counter.lua), or a namespace as list prints it (swift/name).")
        var handler: String

        func run() throws {
            let namespace = handler.contains("/") ? handler : "lua/\(handler)"
            try options.withState { state, _ in
                printLine("forgot \(namespace): \(try state.forget(namespace)) keys")
            }
        }
    }
}

/// Whose state `state list` and `state forget` work on: a state directory, or with `--nats` the key-value bucket
/// of an application's workers.
struct StateLocationOptions: ParsableArguments {
    @OptionGroup var directory: StateOptions

    @Option(help: "NATS servers of a cluster (`ttn-host work`), comma-separated: the state is then the bucket ttn-<app>-state.")
    var nats: String?

    @Option(name: .customLong("app-id"), help: "With --nats: the application whose workers' state it is. (TTN_APP_ID)")
    var appID: String?

    /// The application of `--app-id` or `TTN_APP_ID`.
    private var application: String? { appID ?? processEnvironment["TTN_APP_ID"] }

    func validate() throws {
        guard let nats else {
            if appID != nil { throw ValidationError("--app-id chooses a cluster's bucket: give the NATS servers with --nats too.") }
            return
        }
        if directory.stateDirectory != nil {
            throw ValidationError("Give --state-dir (the state of `ttn-host run`) or --nats (of `ttn-host work`), not both.")
        }
        guard let application else { throw ValidationError("With --nats, give the application with --app-id or TTN_APP_ID.") }
        if let problem = settings(servers: nats, application: application).problems.first {
            throw ValidationError("\(problem) (--nats, --app-id).")
        }
    }

    /// Runs `body` on the state these options name, with where it is for messages; a usage error when a state
    /// directory does not exist or another process uses it.
    func withState(_ body: (any StateInventory, String) throws -> Void) throws {
        if let nats, let application {
            var logger = Logger(label: "ttn-host") { StreamLogHandler.standardError(label: $0) }
            logger.logLevel = .warning
            let settings = settings(servers: nats, application: application)
            try body(ClusterState(settings: settings, limits: StateLimits(), logger: logger), "bucket \(settings.stateBucket)")
            return
        }
        let database = try directory.open()
        defer { database.close() }
        try body(database, database.directory)
    }

    private func settings(servers: String, application: String) -> ClusterSettings {
        ClusterSettings(servers: ClusterOptions.servers(servers), application: application)
    }
}

/// Where the state is: `--state-dir`, `TTN_STATE_DIR`, or `./ttn-host-state`.
struct StateOptions: ParsableArguments {
    @Option(name: .customLong("state-dir"), help: "Directory of the handlers' state. (TTN_STATE_DIR, default: ./ttn-host-state)")
    var stateDirectory: String?

    /// The directory from an option's value, the environment, or the default.
    static func directory(_ option: String?) -> String {
        option ?? processEnvironment["TTN_STATE_DIR"] ?? "./ttn-host-state"
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

/// What `state list` and `state forget` work on: a state directory's database or a cluster's bucket.
protocol StateInventory {
    func namespaces() throws(StateError) -> [NamespaceSummary]
    func forget(_ name: String) throws(StateError) -> Int
}

extension StateDatabase: StateInventory {}
extension ClusterState: StateInventory {}
