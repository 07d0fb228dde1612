import ArgumentParser
import Foundation
import TTNHost

/// What the processes that connect to TTN (`run` and `ingest`) are told about it: the application and broker, the
/// configuration file, where progress is kept, backfill and the connection's watchdogs.
struct TTNOptions: ParsableArguments {
    @Option(
        help: """
            YAML configuration file: applications, sinks, limits, state directory (docs/configuration.md). Flags and \
            TTN_* variables that are set win over it. (TTN_CONFIG)
            """
    )
    var config: String?

    @OptionGroup var connection: ConnectionOptions

    @Option(
        name: .customLong("state-dir"),
        help: "Directory of the handlers' state (ttn.store), created if missing. (TTN_STATE_DIR, default: ./ttn-host-state)"
    )
    var stateDirectory: String?

    @Option(
        name: .customLong("downlink-timeout"),
        help: """
            Seconds TTN has to queue or refuse a downlink before it is reported lost (log, counter, down/lost \
            event): 1 to 86400, or 0 to follow no downlinks. (default: 30)
            """
    )
    var downlinkTimeout: Int?

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

    /// The configuration file from `--config` or `TTN_CONFIG`.
    var configurationPath: String? { config ?? processEnvironment["TTN_CONFIG"] }

    /// The limits these options set; the others nil.
    var limits: HostLimits {
        HostLimits(
            downlinkTimeoutSeconds: downlinkTimeout, silenceWarningSeconds: silenceWarning, backfillMaxAgeSeconds: backfillMaxAge,
            backfillRecheckSeconds: backfillRecheck
        )
    }

    /// Whether backfill is on: `--backfill` or `TTN_BACKFILL`.
    var backfillIsOn: Bool { (backfill ?? processEnvironment["TTN_BACKFILL"] ?? "auto") == "auto" }

    /// `--api-url` or `TTN_API_URL`.
    var selectedAPIURL: String? { apiURL ?? processEnvironment["TTN_API_URL"] }

    /// `--wait-for-broker` or `TTN_WAIT_FOR_BROKER`; true when neither is given.
    var selectedWaitForBroker: Bool { waitForBroker ?? processEnvironment["TTN_WAIT_FOR_BROKER"].flatMap(Self.boolean) ?? true }

    func validate() throws {
        let backfillMode = backfill ?? processEnvironment["TTN_BACKFILL"] ?? "auto"
        guard ["auto", "off"].contains(backfillMode) else {
            throw ValidationError("--backfill (or TTN_BACKFILL) must be auto or off, not '\(backfillMode)'.")
        }
        if let url = selectedAPIURL, !(url.hasPrefix("https://") || url.hasPrefix("http://")) {
            throw ValidationError("--api-url (or TTN_API_URL) must be an http:// or https:// address, such as https://eu1.cloud.thethings.network, not '\(url)'.")
        }
        try connection.validatePort()
        try limits.validateRanges()
        try connection.validateApplication(configurationFileGiven: configurationPath != nil)
        if let value = processEnvironment["TTN_WAIT_FOR_BROKER"], Self.boolean(value) == nil {
            throw ValidationError("TTN_WAIT_FOR_BROKER '\(value)' is not true or false.")
        }
    }

    /// The file of `--config`, read and checked; a usage error (exit 2) naming the key when it is wrong.
    func loadConfigurationFile() async throws -> ConfigurationFile? {
        guard let path = configurationPath else { return nil }
        do {
            return try await ConfigurationFile.load(path: path, environment: processEnvironment)
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
