import TTNSinks

/// What a `ttn-host --config FILE` YAML file says, as plain values.
///
/// Every setting is optional: flags and `TTN_*` variables may supply it, and win over the file. In particular an
/// application's `api-key` may be left out of the file; whoever merges the file with the flags and the environment
/// must refuse an application that still has no key. `${NAME}` in a text value is replaced by the environment
/// variable NAME, so that secrets need not sit in the file. docs/configuration.md describes every key.
///
/// ```yaml
/// state-dir: /var/lib/ttn-host
/// applications:
///   my-app: { region: eu1, api-key: "${TTN_API_KEY}", scripts: /etc/ttn-host/my-app }
/// sinks:
///   archive: { type: file, path: /var/log/ttn-host/archive.jsonl, max-size: 100MB }
/// ```
public struct ConfigurationFile: Sendable, Hashable {
    /// `state-dir`: the directory of the handlers' state.
    public var stateDirectory: String?
    /// `http`: the address of the metrics and health endpoint, as `127.0.0.1:9464`; kept as written.
    public var http: String?
    /// `limits`: the host's numeric settings, with the ranges of their flags.
    public var limits: HostLimits
    /// `applications`, sorted by id (swift-configuration does not tell the order of the file); may be empty.
    public var applications: [ApplicationEntry]
    /// `sinks`, sorted by name.
    public var sinks: [SinkConfiguration]

    public init(
        stateDirectory: String? = nil, http: String? = nil, limits: HostLimits = HostLimits(), applications: [ApplicationEntry] = [],
        sinks: [SinkConfiguration] = []
    ) {
        self.stateDirectory = stateDirectory
        self.http = http
        self.limits = limits
        self.applications = applications
        self.sinks = sinks
    }

    /// Reads and checks the YAML file at `path`.
    ///
    /// - Parameter environment: the variables `${NAME}` is replaced from, usually
    ///   `ProcessInfo.processInfo.environment`.
    /// - Throws: a missing or unreadable file, a file that is not YAML, an unknown key, a value of the wrong kind
    ///   or out of range, a missing required key, an unknown sink type or an unset variable. The error names the
    ///   file and the full dotted key, and never shows a secret.
    public static func load(path: String, environment: [String: String]) async throws(ConfigurationFileError) -> ConfigurationFile {
        let root = try await ConfigurationDocument.open(path: path, environment: environment).root
        try root.rejectUnknownKeys(known: ["state-dir", "http", "limits", "applications", "sinks"], in: "the file")
        var file = ConfigurationFile(stateDirectory: try root.nonEmptyString("state-dir"), http: try root.nonEmptyString("http"))
        if let limits = try root.section("limits", holding: "a mapping of limits") {
            file.limits = try HostLimits(limits)
        }
        if let applications = try root.section("applications", holding: "a mapping of application ids") {
            file.applications = try ApplicationEntry.all(in: applications)
        }
        if let sinks = try root.section("sinks", holding: "a mapping of sink names") {
            file.sinks = try SinkConfiguration.all(in: sinks)
        }
        return file
    }
}

/// `limits:` in the configuration file; each is the value of the `ttn-host run` flag of the same name, in the
/// same unit and range, and nil when the file leaves it out.
public struct HostLimits: Sendable, Hashable {
    /// `queue-limit-mb`: MiB of uplinks waiting per handler before the oldest is dropped; 1 to 1048576.
    public var queueLimitMegabytes: Int?
    /// `history-limit`: uplinks kept for `getAllMessages()`; at least 1.
    public var historyLimit: Int?
    /// `lua-time-limit-ms`: 1 to 3600000 milliseconds, or 0 for no time check.
    public var luaTimeLimitMilliseconds: Int?
    /// `lua-memory-limit-mb`: 1 to 1048576 MiB.
    public var luaMemoryLimitMegabytes: Int?
    /// `lua-downlink-limit`: downlinks per invocation, 0 or more.
    public var luaDownlinkLimit: Int?
    /// `state-limit-mb`: state per handler, 1 to 1048576 MiB.
    public var stateLimitMegabytes: Int?
    /// `downlink-timeout`: 1 to 86400 seconds, or 0 to follow no downlinks.
    public var downlinkTimeoutSeconds: Int?
    /// `shutdown-deadline`: 0 to 3600 seconds.
    public var shutdownDeadlineSeconds: Int?
    /// `silence-warning`: seconds connected without an uplink before a warning, 1 to 31536000, or 0 for none.
    public var silenceWarningSeconds: Int?
    /// `backfill-max-age`: how far back backfill at start reaches, 1 to 31536000 seconds.
    public var backfillMaxAgeSeconds: Int?
    /// `backfill-recheck`: seconds before a gap is asked about again (then given up), 1 to 86400.
    public var backfillRecheckSeconds: Int?

    public init(
        queueLimitMegabytes: Int? = nil, historyLimit: Int? = nil, luaTimeLimitMilliseconds: Int? = nil, luaMemoryLimitMegabytes: Int? = nil,
        luaDownlinkLimit: Int? = nil, stateLimitMegabytes: Int? = nil, downlinkTimeoutSeconds: Int? = nil,
        shutdownDeadlineSeconds: Int? = nil, silenceWarningSeconds: Int? = nil, backfillMaxAgeSeconds: Int? = nil,
        backfillRecheckSeconds: Int? = nil
    ) {
        self.queueLimitMegabytes = queueLimitMegabytes
        self.silenceWarningSeconds = silenceWarningSeconds
        self.backfillMaxAgeSeconds = backfillMaxAgeSeconds
        self.backfillRecheckSeconds = backfillRecheckSeconds
        self.historyLimit = historyLimit
        self.luaTimeLimitMilliseconds = luaTimeLimitMilliseconds
        self.luaMemoryLimitMegabytes = luaMemoryLimitMegabytes
        self.luaDownlinkLimit = luaDownlinkLimit
        self.stateLimitMegabytes = stateLimitMegabytes
        self.downlinkTimeoutSeconds = downlinkTimeoutSeconds
        self.shutdownDeadlineSeconds = shutdownDeadlineSeconds
    }
}

/// One entry of `applications:`: an application id and how to connect for it. Nil fields are left to the flags,
/// the `TTN_*` variables and the defaults. Its description leaves the API key out.
public struct ApplicationEntry: Sendable, Hashable, CustomStringConvertible {
    /// The key of the entry: a valid TTN application id.
    public var id: String
    public var tenant: String?
    /// `region`: a TTN cluster (`eu1`, `nam1`, `au1`); never given together with ``host``.
    public var region: String?
    public var host: String?
    /// 1 to 65535.
    public var port: Int?
    public var tls: Bool?
    /// `ca-file`: a PEM file of the CA to trust instead of the system's.
    public var caFile: String?
    /// `api-key`, usually `${TTN_API_KEY}`; nil when the file has none, for `TTN_API_KEY` or `--api-key` to supply.
    public var apiKey: String?
    /// `scripts`: the directory of the application's Lua handlers.
    public var scripts: String?
    /// `legacy-v2`: speak TTN v2 topics and JSON.
    public var legacyV2: Bool?
    /// `api-url`: The Things Stack's API address for backfill from the Storage Integration.
    public var apiURL: String?

    public init(
        id: String, tenant: String? = nil, region: String? = nil, host: String? = nil, port: Int? = nil, tls: Bool? = nil,
        caFile: String? = nil, apiKey: String? = nil, scripts: String? = nil, legacyV2: Bool? = nil, apiURL: String? = nil
    ) {
        self.apiURL = apiURL
        self.id = id
        self.tenant = tenant
        self.region = region
        self.host = host
        self.port = port
        self.tls = tls
        self.caFile = caFile
        self.apiKey = apiKey
        self.scripts = scripts
        self.legacyV2 = legacyV2
    }

    public var description: String {
        let fields: [(String, String?)] = [
            ("tenant", tenant), ("region", region), ("host", host), ("port", port.map(String.init)), ("tls", tls.map(String.init)),
            ("ca-file", caFile), ("api-key", apiKey.map { _ in "<not shown>" }), ("scripts", scripts),
            ("legacy-v2", legacyV2.map(String.init)), ("api-url", apiURL),
        ]
        return "\(id) {" + fields.compactMap { name, value in value.map { " \(name): \($0)" } }.joined(separator: ",") + " }"
    }
}
