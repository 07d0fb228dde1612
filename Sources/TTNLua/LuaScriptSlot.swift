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
    private let timerIDs = LuaTimerIDs()
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
            name: name, source: source, limits: limits, bridge: bridge, logger: logger, interrupter: interrupter, timerIDs: timerIDs
        )
        script.activate()
    }

    /// Replaces the running version with `source` if it loads; otherwise keeps the running one and throws.
    /// The new version's timers and event handlers replace the old one's (``LuaHostBridge/scheduleChanged(_:)``).
    public func load(source: [UInt8]) throws(LuaError) {
        script = try makeScript(source: source)
        self.source = source
        script.activate()
    }

    /// Runs the current version's handler for `message`.
    public func handle(_ message: LuaMessage) throws(LuaError) {
        try invoke { script throws(LuaError) in try script.handle(message) }
    }

    /// Runs the current version's timer `id`, if it is still live; a tick for a replaced version finds nothing.
    /// - Returns: whether a timer ran.
    @discardableResult
    public func fireTimer(_ id: Int) throws(LuaError) -> Bool {
        try invoke { script throws(LuaError) in try script.fireTimer(id) }
    }

    /// Runs the current version's handler for `event`'s kind, if it has one.
    /// - Returns: whether a handler ran.
    @discardableResult
    public func deliver(_ event: LuaEvent) throws(LuaError) -> Bool {
        try invoke { script throws(LuaError) in try script.deliver(event) }
    }

    /// The current version's timers and event kinds.
    public var schedule: LuaSchedule { script.schedule }

    private func makeScript(source: [UInt8]) throws(LuaError) -> LuaScript {
        try LuaScript(
            name: name, source: source, limits: limits, bridge: bridge, logger: logger, interrupter: interrupter, timerIDs: timerIDs
        )
    }

    /// Runs one invocation of the current version; rebuilds the state when a memory error left it full.
    private func invoke<Result>(_ body: (LuaScript) throws(LuaError) -> Result) throws(LuaError) -> Result {
        do {
            return try body(script)
        } catch {
            if error.kind == .memoryLimit && script.memoryInUse > limits.memoryLimit / 4 * 3 {
                logger.warning("Lua state still full after the memory error; rebuilding it", metadata: ["lua.script": "\(name)"])
                script = try makeScript(source: source)
                script.activate()
            }
            throw error
        }
    }

    /// Whether the running version called `setMessageHandler`.
    public var hasMessageHandler: Bool { script.hasMessageHandler }
    /// Bytes the running version's Lua state uses.
    public var memoryInUse: Int { script.memoryInUse }
}
