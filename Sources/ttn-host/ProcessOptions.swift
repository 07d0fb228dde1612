import ArgumentParser
import Foundation
import Logging
import TTNHost
import TTNMonitor

/// The process's environment, where every option's `TTN_*` variable is read.
let processEnvironment = ProcessInfo.processInfo.environment

/// How a host process logs, serves monitoring, queues uplinks and shuts down: shared by `run`, `ingest` and `work`.
struct ProcessOptions: ParsableArguments {
    @Option(
        name: .customLong("queue-limit-mb"),
        help: "MiB of uplinks that may wait per handler before the oldest is dropped: 1 to 1048576. (default: 64)"
    )
    var queueLimitMegabytes: Int?

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

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    /// `--http` or `TTN_HTTP`.
    var selectedHTTP: String? { http ?? processEnvironment["TTN_HTTP"] }

    /// `--log-format` or `TTN_LOG_FORMAT`.
    var selectedLogFormat: String { logFormat ?? processEnvironment["TTN_LOG_FORMAT"] ?? "text" }

    /// The limits these options set; the others nil.
    var limits: HostLimits { HostLimits(queueLimitMegabytes: queueLimitMegabytes, shutdownDeadlineSeconds: shutdownDeadline) }

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical.")
        }
        guard ["text", "json"].contains(selectedLogFormat) else {
            throw ValidationError("--log-format (or TTN_LOG_FORMAT) must be text or json, not '\(selectedLogFormat)'.")
        }
        if let address = selectedHTTP {
            do {
                _ = try MonitorAddress(parsing: address)
            } catch {
                throw ValidationError("\(error.message) (from --http or TTN_HTTP)")
            }
        }
        try limits.validateRanges()
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

    /// The monitoring address of `--http`, `TTN_HTTP` or the configuration file at `path`; nil for none.
    func monitorAddress(file: ConfigurationFile?, path: String?) throws -> MonitorAddress? {
        guard let text = selectedHTTP ?? file?.http else { return nil }
        do {
            return try MonitorAddress(parsing: text)
        } catch {
            throw ValidationError(selectedHTTP == nil ? "\(path ?? "the file"): http: \(error.reason)" : error.message)
        }
    }
}
