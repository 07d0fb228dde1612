import ArgumentParser
import TTNHost
import TTNState

/// What the handlers run and within which limits: shared by `run` and `work`.
struct HandlerOptions: ParsableArguments {
    @Option(help: "Directory of *.lua handler scripts, reloaded when they change. (TTN_SCRIPTS)")
    var scripts: String?

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

    @Option(name: .customLong("state-limit-mb"), help: "State one handler may keep, in MiB: 1 to 1048576. (default: 64)")
    var stateLimit: Int?

    /// `--scripts` or `TTN_SCRIPTS`.
    var selectedScripts: String? { scripts ?? processEnvironment["TTN_SCRIPTS"] }

    /// The limits these options set; the others nil.
    var limits: HostLimits {
        HostLimits(
            historyLimit: historyLimit, luaTimeLimitMilliseconds: luaTimeLimit, luaMemoryLimitMegabytes: luaMemoryLimit,
            luaDownlinkLimit: luaDownlinkLimit, stateLimitMegabytes: stateLimit
        )
    }

    // The scripts directory is checked where the applications are known: a configuration file may name one per application.
    func validate() throws { try limits.validateRanges() }
}

extension HostLimits {
    /// Refuses a limit out of its range with a message naming the option.
    func validateRanges() throws {
        for setting in Self.settings {
            if let value = self[keyPath: setting.field], !setting.range.contains(value) {
                throw ValidationError("--\(setting.key) must be \(setting.accepted), not \(value).")
            }
        }
    }

    /// The handlers' state limits: the defaults, with `state-limit-mb` when set.
    var stateLimits: StateLimits {
        var limits = StateLimits()
        if let megabytes = stateLimitMegabytes { limits.namespaceBytes = megabytes * 1024 * 1024 }
        return limits
    }

    /// These limits, with the ones they leave out taken from `fallback`.
    func filled(from fallback: HostLimits) -> HostLimits {
        var limits = self
        for setting in Self.settings where limits[keyPath: setting.field] == nil {
            limits[keyPath: setting.field] = fallback[keyPath: setting.field]
        }
        return limits
    }
}

extension HandlerHost.Configuration {
    /// Sets what `limits` sets (backfill's aside); a limit left out keeps its default.
    mutating func apply(_ limits: HostLimits) {
        if let megabytes = limits.queueLimitMegabytes { handlerQueueBytes = megabytes * 1024 * 1024 }
        if let uplinks = limits.historyLimit { client.historyLimit = uplinks }
        if let seconds = limits.silenceWarningSeconds { silenceWarning = .seconds(seconds) }
        if let seconds = limits.shutdownDeadlineSeconds { shutdownDeadline = .seconds(seconds) }
        if let milliseconds = limits.luaTimeLimitMilliseconds { luaLimits.timeLimit = .milliseconds(milliseconds) }
        if let megabytes = limits.luaMemoryLimitMegabytes { luaLimits.memoryLimit = megabytes * 1024 * 1024 }
        if let downlinks = limits.luaDownlinkLimit { luaLimits.downlinkLimit = downlinks }
        if let seconds = limits.downlinkTimeoutSeconds { downlinkTimeout = .seconds(seconds) }
    }
}
