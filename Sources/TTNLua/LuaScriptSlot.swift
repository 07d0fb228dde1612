import Logging

/// A script that can be replaced while it runs: the reload rule of the host.
///
/// ``load(source:)`` builds the new version in a fresh Lua state and swaps it in only if it compiled **and** its
/// top level ran without error; otherwise the previous version keeps running. Not `Sendable`: use it from one
/// thread at a time (the host guards it with a lock).
///
/// After a failed invocation the same state handles the next message (Lua states stay consistent after a
/// caught error; the script's globals are as the aborted run left them). The one exception: if the script
/// still holds more than 75 % of its memory limit after a full garbage collection, it could hardly run
/// anything further, so the state is rebuilt from the current source and its top level runs again.
public final class LuaScriptSlot {
    /// The script's file name.
    public let name: String
    /// Aborts the running invocation, whichever version runs.
    public let interrupter = LuaInterrupter()
    private let limits: LuaLimits
    private let bridge: any LuaHostBridge
    private let logger: Logger
    private var script: LuaScript
    private var source: [UInt8]

    /// Loads the first version.
    /// - Throws: ``LuaError`` when it does not compile or its top level fails.
    public init(name: String, source: [UInt8], limits: LuaLimits, bridge: any LuaHostBridge, logger: Logger) throws(LuaError) {
        self.name = name
        self.limits = limits
        self.bridge = bridge
        self.logger = logger
        self.source = source
        self.script = try LuaScript(
            name: name, source: source, limits: limits, bridge: bridge, logger: logger, interrupter: interrupter
        )
    }

    /// Replaces the running version with `source` if it loads; otherwise keeps the running one and throws.
    public func load(source: [UInt8]) throws(LuaError) {
        script = try LuaScript(name: name, source: source, limits: limits, bridge: bridge, logger: logger, interrupter: interrupter)
        self.source = source
    }

    /// Runs the current version's handler for `message`.
    public func handle(_ message: LuaMessage) throws(LuaError) {
        do {
            try script.handle(message)
        } catch {
            if error.kind == .memoryLimit && script.memoryInUse > limits.memoryLimit / 4 * 3 {
                logger.warning("Lua state still full after the memory error; rebuilding it", metadata: ["lua.script": "\(name)"])
                script = try LuaScript(
                    name: name, source: source, limits: limits, bridge: bridge, logger: logger, interrupter: interrupter
                )
            }
            throw error
        }
    }

    /// Whether the running version called `setMessageHandler`.
    public var hasMessageHandler: Bool { script.hasMessageHandler }
    /// Bytes the running version's Lua state uses.
    public var memoryInUse: Int { script.memoryInUse }
}
