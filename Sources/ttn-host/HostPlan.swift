import ArgumentParser
import Foundation
import Logging
import TTNHost
import TTNLua
import TTNMQTT
import TTNState

/// What `ttn-host run` is about to run: one host configuration per application, and the state they share, from the
/// flags, the `TTN_*` variables and the configuration file, in that order of precedence.
///
/// With a file that lists applications, every one of them runs (or only the one `--app-id`/`TTN_APP_ID` names), and
/// each keeps its state under `<application id>/`; a connection flag or variable that is set applies to every one.
/// Without, the flags and variables describe the one application, whose state has no prefix.
struct HostPlan {
    var hosts: [HandlerHost.Configuration] = []
    var stateDirectory: String
    var stateLimits = StateLimits()

    init(command: RunCommand, file: ConfigurationFile?) throws {
        let environment = RunCommand.environment
        let limits = command.flagLimits.filled(from: file?.limits ?? HostLimits())
        stateDirectory = command.stateDirectory ?? environment["TTN_STATE_DIR"] ?? file?.stateDirectory ?? "./ttn-host-state"
        if let megabytes = limits.stateLimitMegabytes { stateLimits.namespaceBytes = megabytes * 1024 * 1024 }

        let entries: [ApplicationEntry?]
        let fileApplications = file?.applications ?? []
        if fileApplications.isEmpty {
            guard command.connection.selectedApplication != nil else {
                throw ValidationError(
                    "Give the application id with --app-id or TTN_APP_ID, or list it under applications in \(command.configurationPath ?? "the file")."
                )
            }
            entries = [nil]
        } else if let selected = command.connection.selectedApplication {
            guard let entry = fileApplications.first(where: { $0.id == selected }) else {
                throw ValidationError(
                    "Application '\(selected)' (--app-id or TTN_APP_ID) is not under applications in \(command.configurationPath ?? "the file"); "
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
                client = try command.connection.clientConfiguration(over: entry)
                client.historyLimit = limits.historyLimit ?? 1000
                try client.validate()
            } catch {
                throw ValidationError(entry.map { "Application \($0.id): \(error.description)" } ?? error.description)
            }
            if let entry, client.apiKey.isEmpty {
                throw ValidationError("Application \(entry.id) has no API key: give it as api-key: ${VARIABLE} in the file. \(ConnectionOptions.missingKeyAdvice)")
            }
            let scripts = command.scripts ?? environment["TTN_SCRIPTS"] ?? entry?.scripts
            if let scripts { try checkScriptDirectory(scripts, application: entry?.id) }
            var configuration = HandlerHost.Configuration(client: client, scriptDirectory: scripts)
            if let megabytes = limits.queueLimitMegabytes { configuration.handlerQueueBytes = megabytes * 1024 * 1024 }
            if let seconds = limits.silenceWarningSeconds { configuration.silenceWarning = .seconds(seconds) }
            if command.backfillIsOn {
                var backfill = BackfillConfiguration(apiURL: command.selectedAPIURL ?? entry?.apiURL ?? "https://\(client.server.host)")
                if let seconds = limits.backfillMaxAgeSeconds { backfill.maxAge = .seconds(seconds) }
                if let seconds = limits.backfillRecheckSeconds { backfill.recheckDelay = .seconds(seconds) }
                configuration.backfill = backfill
            }
            configuration.shutdownDeadline = .seconds(limits.shutdownDeadlineSeconds ?? 10)
            configuration.waitForBroker = command.waitForBroker ?? environment["TTN_WAIT_FOR_BROKER"].flatMap(RunCommand.boolean) ?? true
            if let milliseconds = limits.luaTimeLimitMilliseconds { configuration.luaLimits.timeLimit = .milliseconds(milliseconds) }
            if let megabytes = limits.luaMemoryLimitMegabytes { configuration.luaLimits.memoryLimit = megabytes * 1024 * 1024 }
            if let downlinks = limits.luaDownlinkLimit { configuration.luaLimits.downlinkLimit = downlinks }
            if let seconds = limits.downlinkTimeoutSeconds { configuration.downlinkTimeout = .seconds(seconds) }
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

extension HostLimits {
    /// These limits, with the ones they leave out taken from `fallback`.
    fileprivate func filled(from fallback: HostLimits) -> HostLimits {
        var limits = self
        for setting in Self.settings where limits[keyPath: setting.field] == nil {
            limits[keyPath: setting.field] = fallback[keyPath: setting.field]
        }
        return limits
    }
}
