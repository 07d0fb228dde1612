import TTNCore
import TTNMQTT

extension HostLimits {
    /// Each limit: its key in the file (and, after `--`, its `ttn-host run` flag), where it goes, the values that
    /// make sense, and how to say so.
    ///
    /// The ranges follow how each value is used. A handler queue below 1 would quietly hold 1, and the client
    /// refuses a history below 1. A time limit of 0 turns the time check off, as in `LuaLimits`; a negative one
    /// would do the same without saying so, hence refused. A downlink limit of 0 lets no script publish, and a
    /// shutdown deadline of 0 does not wait. The upper bounds, far above any useful value, keep the conversions
    /// to nanoseconds and bytes from overflowing.
    package static var settings: [(key: String, field: WritableKeyPath<HostLimits, Int?>, range: ClosedRange<Int>, accepted: String)] {
        [
            ("queue-limit-mb", \.queueLimitMegabytes, 1...1_048_576, "from 1 to 1048576 (MiB of uplinks that may wait per handler)"),
            ("history-limit", \.historyLimit, 1...Int.max, "at least 1 (uplinks kept for getAllMessages())"),
            (
                "lua-time-limit-ms", \.luaTimeLimitMilliseconds, 0...3_600_000,
                "from 1 to 3600000 (milliseconds, at most an hour), or 0 to turn the time check off"
            ),
            ("lua-memory-limit-mb", \.luaMemoryLimitMegabytes, 1...1_048_576, "from 1 to 1048576 (MiB, at most 1 TiB)"),
            ("lua-downlink-limit", \.luaDownlinkLimit, 0...Int.max, "0 or more (downlinks per invocation; 0: none)"),
            ("state-limit-mb", \.stateLimitMegabytes, 1...1_048_576, "from 1 to 1048576 (MiB of state per handler)"),
            ("downlink-timeout", \.downlinkTimeoutSeconds, 0...86_400, "from 1 to 86400 (seconds), or 0 to follow no downlinks"),
            (
                "shutdown-deadline", \.shutdownDeadlineSeconds, 0...3600,
                "from 0 to 3600 (seconds; 0 reports the queued uplinks unhandled without waiting)"
            ),
            (
                "silence-warning", \.silenceWarningSeconds, 0...31_536_000,
                "from 1 to 31536000 (seconds connected without an uplink before a warning), or 0 for no warning"
            ),
            (
                "backfill-max-age", \.backfillMaxAgeSeconds, 1...31_536_000,
                "from 1 to 31536000 (seconds: how far back backfill at start reaches)"
            ),
            (
                "backfill-recheck", \.backfillRecheckSeconds, 1...86_400,
                "from 1 to 86400 (seconds before a gap is asked about again, then given up)"
            ),
        ]
    }

    /// `limits:` of the configuration file.
    init(_ section: ConfigurationSection) throws(ConfigurationFileError) {
        try section.rejectUnknownKeys(known: Self.settings.map(\.key), in: "limits")
        self.init()
        for setting in Self.settings {
            self[keyPath: setting.field] = try section.int(setting.key, range: setting.range, accepted: setting.accepted)
        }
    }
}

extension ApplicationEntry {
    private static let keys = ["tenant", "region", "host", "port", "tls", "ca-file", "api-key", "api-url", "scripts", "legacy-v2"]

    /// Every entry of `applications:`, sorted by id.
    static func all(in section: ConfigurationSection) throws(ConfigurationFileError) -> [ApplicationEntry] {
        var entries: [ApplicationEntry] = []
        for id in section.names {
            guard let entry = try section.section(id, holding: "the application's settings") else { continue }
            entries.append(try ApplicationEntry(id: id, entry, in: section))
        }
        return entries
    }

    /// One application: `section` holds its settings, `applications` the whole list (for messages).
    private init(id: String, _ section: ConfigurationSection, in applications: ConfigurationSection) throws(ConfigurationFileError) {
        try section.rejectUnknownKeys(known: Self.keys, in: "an application")
        let legacyV2 = try section.bool("legacy-v2")
        guard Identifier.isApplicationID(id, legacyV2: legacyV2 ?? false) else {
            throw applications.error(
                id,
                legacyV2 == true
                    ? "is not a TTN v2 application id: 2 to 36 lowercase letters and digits, with single dashes or underscores between them."
                    : "is not a TTN application id: 3 to 36 lowercase letters and digits, with single dashes between them. "
                        + "Use the id shown in the TTN console (Applications)."
            )
        }
        self.init(
            id: id, tenant: try section.string("tenant"), region: try Self.server(section, "region"),
            host: try Self.server(section, "host"), port: try section.int("port", range: 1...65535, accepted: "from 1 to 65535 (8883 with TLS, 1883 without)"),
            tls: try section.bool("tls"), caFile: try section.nonEmptyString("ca-file"), apiKey: try section.string("api-key"),
            scripts: try section.nonEmptyString("scripts"), legacyV2: legacyV2, apiURL: try Self.apiURL(section)
        )
        if region != nil && host != nil {
            throw section.error("host", "give region or host, not both (region picks a TTN cluster's host)")
        }
    }

    /// `api-url`: an `http://` or `https://` address.
    private static func apiURL(_ section: ConfigurationSection) throws(ConfigurationFileError) -> String? {
        guard let url = try section.nonEmptyString("api-url") else { return nil }
        guard url.hasPrefix("https://") || url.hasPrefix("http://") else {
            throw section.error("api-url", "is not an http:// or https:// address, such as https://eu1.cloud.thethings.network")
        }
        return url
    }

    /// `region` or `host`, checked as `--region` and `--host` are: a TTN v3 cluster or a full host name.
    private static func server(_ section: ConfigurationSection, _ key: String) throws(ConfigurationFileError) -> String? {
        guard let name = try section.nonEmptyString(key) else { return nil }
        do {
            _ = try MQTTClient.Server.region(name)
        } catch {
            throw section.error(key, error.description)
        }
        return name
    }
}
