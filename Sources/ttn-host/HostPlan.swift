import ArgumentParser
import Foundation
import Logging
import TTNHost
import TTNLua
import TTNMQTT
import TTNState

/// What `ttn-host run` (or `ingest`) is about to run: one host configuration per application, and the state they
/// share, from the flags, the `TTN_*` variables and the configuration file, in that order of precedence.
///
/// With a file that lists applications, every one of them runs (or only the one `--app-id`/`TTN_APP_ID` names), and
/// each keeps its state under `<application id>/`; a connection flag or variable that is set applies to every one.
/// Without, the flags and variables describe the one application, whose state has no prefix.
struct HostPlan {
    var hosts: [HandlerHost.Configuration] = []
    let stateDirectory: String
    let stateLimits: StateLimits

    /// - Parameter handlers: the handlers' options; nil for a process that runs no scripts (`ingest`).
    init(ttn: TTNOptions, handlers: HandlerOptions?, process: ProcessOptions, file: ConfigurationFile?) throws {
        let flags = (handlers?.limits ?? HostLimits()).filled(from: ttn.limits).filled(from: process.limits)
        let limits = flags.filled(from: file?.limits ?? HostLimits())
        stateDirectory = ttn.stateDirectory ?? processEnvironment["TTN_STATE_DIR"] ?? file?.stateDirectory ?? "./ttn-host-state"
        stateLimits = limits.stateLimits

        let entries: [ApplicationEntry?]
        let fileApplications = file?.applications ?? []
        let selected = ttn.connection.application.selectedApplication
        if fileApplications.isEmpty {
            guard selected != nil else {
                throw ValidationError(
                    "Give the application id with --app-id or TTN_APP_ID, or list it under applications in \(ttn.configurationPath ?? "the file")."
                )
            }
            entries = [nil]
        } else if let selected {
            guard let entry = fileApplications.first(where: { $0.id == selected }) else {
                throw ValidationError(
                    "Application '\(selected)' (--app-id or TTN_APP_ID) is not under applications in \(ttn.configurationPath ?? "the file"); "
                        + "it lists \(fileApplications.map(\.id).joined(separator: ", "))."
                )
            }
            entries = [entry]
        } else {
            entries = fileApplications
        }
        for entry in entries {
            var client: MQTTClient.Configuration
            do {
                client = try ttn.connection.clientConfiguration(over: entry)
                try client.validate()
            } catch {
                throw ValidationError(entry.map { "Application \($0.id): \(error.description)" } ?? error.description)
            }
            if let entry, client.apiKey.isEmpty {
                throw ValidationError("Application \(entry.id) has no API key: give it as api-key: ${VARIABLE} in the file. \(ConnectionOptions.missingKeyAdvice)")
            }
            let scripts = handlers.flatMap { $0.selectedScripts ?? entry?.scripts }
            if let scripts { try checkScriptDirectory(scripts, application: entry?.id) }
            var configuration = HandlerHost.Configuration(client: client, scriptDirectory: scripts)
            configuration.apply(limits)
            if ttn.backfillIsOn {
                var backfill = BackfillConfiguration(apiURL: ttn.selectedAPIURL ?? entry?.apiURL ?? "https://\(client.server.host)")
                if let seconds = limits.backfillMaxAgeSeconds { backfill.maxAge = .seconds(seconds) }
                if let seconds = limits.backfillRecheckSeconds { backfill.recheckDelay = .seconds(seconds) }
                configuration.backfill = backfill
            }
            configuration.waitForBroker = ttn.selectedWaitForBroker
            configuration.stateNamespacePrefix = entry.map { "\($0.id)/" } ?? ""
            hosts.append(configuration)
        }
    }

    /// What the host is about to do, for each application: printed as an indented summary, or with `--log-format json`
    /// logged as one line per application. Never shows an API key.
    func printSummary(asLog logger: Logger?) {
        var lines = ["ttn-host", "  state:    \(stateDirectory)"]
        for configuration in hosts {
            let client = configuration.client
            var settings: KeyValuePairs<String, String> {
                [
                    "broker": "\(client.server)", "username": client.username,
                    "tls": client.usesTLS ? "on\(client.tls.caFile.map { " (CA \($0))" } ?? " (system CAs)")" : "off",
                    "backfill": configuration.backfill.map { "from \($0.apiURL)" } ?? "off",
                    "scripts": configuration.scriptDirectory.map { directory in
                        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory))?
                            .filter(ScriptDirectoryWatcher.isScriptName).sorted() ?? []
                        return "\(directory) (\(names.isEmpty ? "none yet" : names.joined(separator: ", ")))"
                    } ?? "none",
                ]
            }
            lines.append("  application \(client.applicationID):")
            lines += settings.map { "    \(($0.key + ":").padding(toLength: 10, withPad: " ", startingAt: 0))\($0.value)" }
            var metadata: Logger.Metadata = ["ttn.app_id": "\(client.applicationID)", "state.dir": "\(stateDirectory)"]
            for (key, value) in settings { metadata[key] = "\(value)" }
            logger?.info("Starting", metadata: metadata)
        }
        if logger == nil { FileHandle.standardError.write(Data((lines.joined(separator: "\n") + "\n").utf8)) }
    }
}
