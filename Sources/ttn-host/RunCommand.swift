import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import TTNHost
import TTNLua
import TTNMQTT
import TTNMonitor
import TTNState

/// `ttn-host [run]`: connects to TTN and runs the handlers until SIGTERM.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Runs Lua and Swift message handlers for every uplink of one The Things Network application.",
        discussion: """
            Every option can also come from the environment (TTN_APP_ID, TTN_API_KEY, TTN_HOST, TTN_PORT, \
            TTN_REGION, TTN_TENANT, TTN_SCRIPTS, TTN_STATE_DIR, TTN_WAIT_FOR_BROKER, TTN_CONFIG, TTN_HTTP, TTN_LOG_FORMAT, \
            TTN_BACKFILL, TTN_API_URL), so the API key need not be on the command line. SIGHUP reloads the scripts; SIGINT/SIGTERM drain the queues and exit 0. A broker that cannot be \
            reached yet is waited for; a missing or out-of-range setting, a refused key or a TLS failure exits 2.

            Example (TTN, Europe):  TTN_API_KEY=NNSXS.... ttn-host --app-id my-app --scripts handlers
            """
    )

    @Option(
        help: """
            YAML configuration file: applications, sinks, limits, state directory (docs/configuration.md). Flags and \
            TTN_* variables that are set win over it. (TTN_CONFIG)
            """
    )
    var config: String?

    @Option(help: "Directory of *.lua handler scripts, reloaded when they change. (TTN_SCRIPTS)")
    var scripts: String?

    @OptionGroup var connection: ConnectionOptions

    @Option(
        name: .customLong("queue-limit-mb"),
        help: "MiB of uplinks that may wait per handler before the oldest is dropped: 1 to 1048576. (default: 64)"
    )
    var queueLimitMegabytes: Int?

    @Option(name: .customLong("history-limit"), help: "Uplinks kept for getAllMessages(); at least 1. (default: 1000)")
    var historyLimit: Int?

    @Option(
        name: .customLong("lua-time-limit-ms"),
        help: """
            Time budget of one Lua handler invocation, in milliseconds: 1 to 3600000, or 0 for no time check (the \
            instruction budget still applies). (default: 200)
            """
    )
    var luaTimeLimit: Int?

    @Option(name: .customLong("lua-memory-limit-mb"), help: "Memory cap of one Lua script, in MiB: 1 to 1048576. (default: 64)")
    var luaMemoryLimit: Int?

    @Option(
        name: .customLong("lua-downlink-limit"),
        help: "Downlinks one Lua handler invocation may publish; 0 lets no script publish. (default: 10)"
    )
    var luaDownlinkLimit: Int?

    @Option(
        name: .customLong("state-dir"),
        help: "Directory of the handlers' state (ttn.store), created if missing. (TTN_STATE_DIR, default: ./ttn-host-state)"
    )
    var stateDirectory: String?

    @Option(name: .customLong("state-limit-mb"), help: "State one handler may keep, in MiB: 1 to 1048576. (default: 64)")
    var stateLimit: Int?

    @Option(
        name: .customLong("downlink-timeout"),
        help: """
            Seconds TTN has to queue or refuse a downlink before it is reported lost (log, counter, down/lost \
            event): 1 to 86400, or 0 to follow no downlinks. (default: 30)
            """
    )
    var downlinkTimeout: Int?

    @Option(
        name: .customLong("shutdown-deadline"),
        help: "Seconds SIGTERM waits for queued uplinks to be handled: 0 to 3600; 0 reports them unhandled at once. (default: 10)"
    )
    var shutdownDeadline: Int?

    @Option(
        help: """
            Serve /metrics (Prometheus), /health/live, /health/ready and /status on this address, as 127.0.0.1:9464 \
            or :9464 (every interface); port 0 picks a free one. (TTN_HTTP, default: off)
            """
    )
    var http: String?

    @Option(name: .customLong("log-format"), help: "text, or json for one JSON object per line. (TTN_LOG_FORMAT, default: text)")
    var logFormat: String?

    @Option(
        help: """
            auto: fetch the uplinks missed while disconnected, at start and in gaps from TTN's Storage Integration \
            (an application without it gets one log line saying how to activate it); off: only find and count gaps. \
            (TTN_BACKFILL, default: auto)
            """
    )
    var backfill: String?

    @Option(
        name: .customLong("api-url"),
        help: "The Things Stack API address for backfill. (TTN_API_URL, default: https://<cluster>.cloud.thethings.network, or https://<host>)"
    )
    var apiURL: String?

    @Option(
        name: .customLong("backfill-max-age"),
        help: "Seconds back that backfill at start reaches: 1 to 31536000. (default: 86400, what TTN's storage keeps)"
    )
    var backfillMaxAge: Int?

    @Option(
        name: .customLong("backfill-recheck"),
        help: "Seconds before a gap is asked about again, then given up (TTN writes its storage in batches): 1 to 86400. (default: 60)"
    )
    var backfillRecheck: Int?

    @Option(
        name: .customLong("silence-warning"),
        help: "Seconds connected without an uplink before a warning, repeated with backoff: 0 for none. (default: 900)"
    )
    var silenceWarning: Int?

    @Flag(
        inversion: .prefixedNo,
        help: """
            Keep trying, with backoff, while the broker cannot be reached yet (default); with --no-wait-for-broker \
            the first failure exits 2, for a supervisor to restart. (TTN_WAIT_FOR_BROKER=true|false)
            """
    )
    var waitForBroker: Bool?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    static let environment = ProcessInfo.processInfo.environment

    /// The configuration file from `--config` or `TTN_CONFIG`.
    var configurationPath: String? { config ?? Self.environment["TTN_CONFIG"] }

    /// The numeric flags, as the limits of a configuration file.
    var flagLimits: HostLimits {
        HostLimits(
            queueLimitMegabytes: queueLimitMegabytes, historyLimit: historyLimit, luaTimeLimitMilliseconds: luaTimeLimit,
            luaMemoryLimitMegabytes: luaMemoryLimit, luaDownlinkLimit: luaDownlinkLimit, stateLimitMegabytes: stateLimit,
            downlinkTimeoutSeconds: downlinkTimeout, shutdownDeadlineSeconds: shutdownDeadline, silenceWarningSeconds: silenceWarning,
            backfillMaxAgeSeconds: backfillMaxAge, backfillRecheckSeconds: backfillRecheck
        )
    }

    /// `--http` or `TTN_HTTP`.
    var selectedHTTP: String? { http ?? Self.environment["TTN_HTTP"] }

    /// `--log-format` or `TTN_LOG_FORMAT`.
    var selectedLogFormat: String { logFormat ?? Self.environment["TTN_LOG_FORMAT"] ?? "text" }

    /// Whether backfill is on: `--backfill` or `TTN_BACKFILL`.
    var backfillIsOn: Bool { (backfill ?? Self.environment["TTN_BACKFILL"] ?? "auto") == "auto" }

    /// `--api-url` or `TTN_API_URL`.
    var selectedAPIURL: String? { apiURL ?? Self.environment["TTN_API_URL"] }

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical.")
        }
        guard ["text", "json"].contains(selectedLogFormat) else {
            throw ValidationError("--log-format (or TTN_LOG_FORMAT) must be text or json, not '\(selectedLogFormat)'.")
        }
        let backfillMode = backfill ?? Self.environment["TTN_BACKFILL"] ?? "auto"
        guard ["auto", "off"].contains(backfillMode) else {
            throw ValidationError("--backfill (or TTN_BACKFILL) must be auto or off, not '\(backfillMode)'.")
        }
        if let address = selectedHTTP {
            do {
                _ = try MonitorAddress(parsing: address)
            } catch {
                throw ValidationError("\(error.message) (from --http or TTN_HTTP)")
            }
        }
        if let url = selectedAPIURL, !(url.hasPrefix("https://") || url.hasPrefix("http://")) {
            throw ValidationError("--api-url (or TTN_API_URL) must be an http:// or https:// address, such as https://eu1.cloud.thethings.network, not '\(url)'.")
        }
        try connection.validatePort()
        let limits = flagLimits
        for setting in HostLimits.settings {
            if let value = limits[keyPath: setting.field], !setting.range.contains(value) {
                throw ValidationError("--\(setting.key) must be \(setting.accepted), not \(value).")
            }
        }
        try connection.validateApplication(configurationFileGiven: configurationPath != nil)
        if let value = Self.environment["TTN_WAIT_FOR_BROKER"], Self.boolean(value) == nil {
            throw ValidationError("TTN_WAIT_FOR_BROKER '\(value)' is not true or false.")
        }
        // The scripts directory is checked by HostPlan, for every application it applies to.
    }

    func run() async throws {
        let logger = bootstrapLogging()
        let file = try await loadConfigurationFile()
        let monitorAddress = try monitorAddress(file: file)
        let plan = try HostPlan(command: self, file: file)
        plan.printSummary(asLog: selectedLogFormat == "json" ? logger : nil)

        let database: StateDatabase
        let outputs: Outputs
        do {
            database = try StateDatabase(directory: plan.stateDirectory, limits: plan.stateLimits)
            outputs = try Outputs(database: database, sinks: file?.sinks ?? [], logger: logger)
        } catch {
            FileHandle.standardError.write(Data("ttn-host: \(error)\n".utf8))
            throw ExitCode(2)
        }
        defer { database.close() }
        let hosts = plan.hosts.map { HandlerHost(configuration: $0, outputs: outputs) }
        let monitor = monitorAddress.map { Monitoring.server(address: $0, hosts: hosts, outputs: outputs, logger: logger) }
        // A group stops its services in reverse order: the hosts drain first, then the outputs deliver what they emitted,
        // and the monitoring endpoint answers (503 for readiness) until the end.
        let services: [any Service] = (monitor.map { [$0] } ?? []) + [outputs] + hosts
        let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        let rereading = configurationPath.map { path in
            Task { await ConfigurationRereader(path: path, loaded: file, logger: logger).run() }
        }
        defer { rereading?.cancel() }
        do {
            try await group.run()
        } catch let error as TTNError {
            FileHandle.standardError.write(Data("ttn-host: \(error)\n".utf8))
            throw ExitCode(2)
        }
    }

    /// Sets up the process's logging as `--log-level` and `--log-format` say, and returns its logger.
    func bootstrapLogging() -> Logger {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        if selectedLogFormat == "json" {
            LoggingSystem.bootstrap({ label, provider in
                var handler = JSONLogHandler(label: label, metadataProvider: provider)
                handler.logLevel = level
                return handler
            }, metadataProvider: nil)
        } else {
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        }
        return Logger(label: "ttn-host")
    }

    /// The monitoring address of `--http`, `TTN_HTTP` or the file; nil for none.
    func monitorAddress(file: ConfigurationFile?) throws -> MonitorAddress? {
        guard let text = selectedHTTP ?? file?.http else { return nil }
        do {
            return try MonitorAddress(parsing: text)
        } catch {
            throw ValidationError(selectedHTTP == nil ? "\(configurationPath ?? "the file"): http: \(error.reason)" : error.message)
        }
    }

    /// The file of `--config`, read and checked; a usage error (exit 2) naming the key when it is wrong.
    func loadConfigurationFile() async throws -> ConfigurationFile? {
        guard let path = configurationPath else { return nil }
        do {
            return try await ConfigurationFile.load(path: path, environment: Self.environment)
        } catch {
            throw ValidationError(error.description)
        }
    }

    /// `true`, `false` and their usual spellings in environment variables (1/0, yes/no, on/off), or nil.
    static func boolean(_ text: String) -> Bool? {
        switch text.lowercased() {
        case "true", "1", "yes", "on": true
        case "false", "0", "no", "off": false
        default: nil
        }
    }
}
