import ArgumentParser
import Foundation
import TTNHost
import TTNLua

/// `ttn-host check --scripts DIR`: loads every script as the host would, without a broker.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Compiles every script and runs its top level; prints each error with file and line.",
        discussion: "Exits 0 when every script loads and sets a message handler, 1 otherwise."
    )

    @OptionGroup var scripts: ScriptOptions

    func run() throws {
        let loaded = try scripts.load(output: printLine)
        for name in loaded.names { printLine("OK \(name)") }
        for failure in loaded.failures { printLine("FAILED \(failure.message)") }
        if loaded.names.isEmpty && loaded.failures.isEmpty { printLine("no *.lua scripts in \(scripts.directory)") }
        if !loaded.failures.isEmpty { throw ExitCode(1) }
    }
}

/// The options `check` and `replay` share: which scripts, and as which application.
struct ScriptOptions: ParsableArguments {
    @Option(name: .customLong("scripts"), help: "Directory of *.lua handler scripts. (TTN_SCRIPTS)")
    var scriptsOption: String?

    @Option(name: .customLong("app-id"), help: "Application id the downlink topics name. (TTN_APP_ID, default replay)")
    var appID: String?

    var directory: String { scriptsOption ?? processEnvironment["TTN_SCRIPTS"] ?? "" }

    func validate() throws {
        guard !directory.isEmpty else { throw ValidationError("Give the scripts directory with --scripts or TTN_SCRIPTS.") }
        try checkScriptDirectory(directory)
    }

    /// Loads the scripts with the host's default limits, reporting what they do to `output`; their state is in
    /// `stateDirectory`, or a throw-away directory when nil.
    func load(stateDirectory: String? = nil, output: @escaping @Sendable (String) -> Void) throws -> OfflineScripts {
        let application = appID ?? processEnvironment["TTN_APP_ID"] ?? "replay"
        return try OfflineScripts(
            directory: directory, applicationID: application, limits: LuaLimits(), stateDirectory: stateDirectory, output: output
        )
    }
}

/// Refuses a scripts directory that does not exist, naming it (and the application it is for, when given).
func checkScriptDirectory(_ directory: String, application: String? = nil) throws {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw ValidationError("The scripts directory '\(directory)'\(application.map { " of application \($0)" } ?? "") does not exist.")
    }
}

/// Writes one line to standard output at once, so that it interleaves with nothing.
@Sendable func printLine(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
