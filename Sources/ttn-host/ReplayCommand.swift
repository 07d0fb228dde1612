import ArgumentParser
import TTNHost

/// `ttn-host replay --scripts DIR FILE...`: every script handles every recorded uplink, offline.
struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Runs every script for every uplink of the files, in order, without a broker.",
        discussion: """
            Each FILE is an uplink JSON file, or JSON lines of uplinks (each line optionally after its topic, as \
            `mosquitto_sub -v` prints them). Prints one line per effect: DOWNLINK <device> <topic> <json>, \
            STORE <script> <key> <json or (deleted)>, LOG <script> <message>, ERROR <script or file:line> <message>. \
            Exits 1 when a script did not load, an invocation failed or a line was not an uplink; 0 otherwise. \
            The scripts' state lives in a throw-away directory unless --state-dir is given; timers and event \
            handlers never run.
            """
    )

    @OptionGroup var scripts: ScriptOptions

    @Option(name: .customLong("state-dir"), help: "Keep the scripts' state (ttn.store) in this directory, from run to run.")
    var stateDirectory: String?

    @Argument(help: "Uplink JSON files, or JSON lines of uplinks.")
    var files: [String]

    func validate() throws {
        if files.isEmpty { throw ValidationError("Give at least one file of uplinks to replay.") }
    }

    func run() throws {
        let loaded = try scripts.load(stateDirectory: stateDirectory, output: printLine)
        var failed = loaded.failures.count
        for failure in loaded.failures { printLine("ERROR \(failure.message)") }
        for file in files {
            for result in try OfflineScripts.uplinks(inFile: file) {
                switch result {
                case .success(let uplink):
                    failed += loaded.handle(uplink)
                case .failure(let error):
                    failed += 1
                    printLine("ERROR \(error)")
                }
            }
        }
        if failed > 0 { throw ExitCode(1) }
    }
}
