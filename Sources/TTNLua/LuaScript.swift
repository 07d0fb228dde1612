internal import CLua
internal import CLuaShim
import Logging
import Synchronization
import TTNCore
import TTNSync

/// Aborts the running invocation of a script from any thread (and every later one: it stays raised).
public final class LuaInterrupter: Sendable {
    /// `@unchecked Sendable` is safe: the flag is a C11 atomic, written with `atomic_store` by
    /// ``interrupt()`` and read with `atomic_load` by the Lua hook; it is freed only in `deinit`.
    fileprivate struct Flag: @unchecked Sendable { let pointer: UnsafeMutableRawPointer }
    fileprivate let flag: Flag

    public init() {
        guard let pointer = ttn_flag_new() else { fatalError("TTNLua: out of memory allocating an interrupt flag") }
        flag = Flag(pointer: pointer)
    }

    deinit { ttn_flag_free(flag.pointer) }

    /// Aborts the running invocation with ``LuaError/Kind/interrupted``, and every invocation after it.
    public func interrupt() { ttn_flag_raise(flag.pointer) }
}

/// One script file compiled into its own sandboxed Lua state.
///
/// Not `Sendable`: use it from one thread at a time. Lua is entered only through `lua_pcall`, and every
/// Lua operation that can raise an error runs in C (`CLuaShim`), so no error unwinds through Swift.
public final class LuaScript {
    /// The script's file name: the chunk name in its error messages, and its `lua.script` log metadata.
    public let name: String
    private let state: OpaquePointer
    private let context: OpaquePointer
    private let limits: LuaLimits
    private let environment: ScriptEnvironment
    /// Keeps the interrupt flag alive as long as the state that reads it.
    public let interrupter: LuaInterrupter

    /// Compiles `source` (text only; binary chunks are refused) and runs its top level under `limits`.
    /// - Throws: ``LuaError`` when it does not compile, or its top level fails or hits a limit.
    /// - Parameter timerIDs: where the script's timer ids come from; share it between the versions of a script so
    ///   that a tick meant for one version never finds a timer of the next.
    public init(
        name: String, source: [UInt8], limits: LuaLimits, bridge: any LuaHostBridge, logger: Logger,
        interrupter: LuaInterrupter = LuaInterrupter(), timerIDs: LuaTimerIDs = LuaTimerIDs()
    ) throws(LuaError) {
        self.name = name
        self.limits = limits
        self.interrupter = interrupter
        var logger = logger
        logger[metadataKey: "lua.script"] = "\(name)"
        self.environment = ScriptEnvironment(name: name, bridge: bridge, logger: logger, limits: limits, timerIDs: timerIDs)
        guard let context = ttn_context_new(limits.memoryLimit, interrupter.flag.pointer) else {
            throw LuaError(.memoryLimit, script: name, message: "\(name): out of memory creating the Lua state")
        }
        guard let state = ttn_state_new(context) else {
            ttn_context_free(context)
            throw LuaError(.memoryLimit, script: name, message: "\(name): out of memory creating the Lua state")
        }
        self.context = context
        self.state = state
        // From here on deinit closes the state, whatever is thrown.
        try check(ttn_state_open(state), while: "opening the sandbox")
        for function in environment.hostFunctions() {
            let box = Unmanaged.passRetained(function).toOpaque()
            try check(ttn_register(state, function.globalName, HostFunction.entry, HostFunction.release, box), while: "registering")
        }
        try check(ttn_state_finish(state), while: "sealing the sandbox")
        try run { source.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { ttn_load(state, $0.baseAddress, $0.count, "=\(name)") }
        } }
    }

    deinit {
        lua_close(state)
        ttn_context_free(context)
    }

    /// Whether the script called `setMessageHandler`.
    public var hasMessageHandler: Bool { ttn_has_handler(state) != 0 }

    /// Bytes the script's Lua state uses.
    public var memoryInUse: Int { ttn_context_used(context) }

    /// Runs the script's message handler once; inside it `getLastMessage()` returns `message` as a table.
    /// - Throws: ``LuaError``: the handler failed, hit a limit, or there is none. The state stays usable.
    public func handle(_ message: LuaMessage) throws(LuaError) {
        guard hasMessageHandler else {
            throw LuaError(
                .noHandler, script: name,
                message: "\(name): no message handler; call setMessageHandler(function() ... end) at the top level"
            )
        }
        environment.currentDeviceID = message.deviceID
        environment.currentIsBackfilled = message.isBackfilled
        defer {
            environment.currentDeviceID = nil
            environment.currentIsBackfilled = false
        }
        try run {
            guard let tape = message.tape else {
                return message.json.withUnsafeBufferPointer { buffer in
                    buffer.withMemoryRebound(to: CChar.self) { ttn_handle(state, $0.baseAddress, $0.count, nil, 0) }
                }
            }
            return tape.withUnsafeParts { text, elements in
                text.withMemoryRebound(to: CChar.self) {
                    ttn_handle(state, $0.baseAddress, $0.count, elements.baseAddress, elements.count)
                }
            }
        }
    }

    /// The timers and event kinds the script set up.
    public var schedule: LuaSchedule { environment.schedule }

    /// Reports the schedule to the bridge now and on every later change: this version runs from now on.
    public func activate() {
        environment.isActive = true
        environment.bridge.scheduleChanged(environment.schedule)
    }

    /// Runs the function of timer `id`, if it is still live; a one-shot timer ends here.
    /// - Returns: whether a timer ran.
    @discardableResult
    public func fireTimer(_ id: Int) throws(LuaError) -> Bool {
        guard let timer = environment.schedule.timers[id] else { return false }
        if !timer.repeats { environment.schedule.timers[id] = nil }
        try run { ttn_dispatch(state, Int64(id), nil, nil, 0) }
        return true
    }

    /// Runs the script's handler for `event`'s kind, if it has one; inside it `getLastEvent()` is the event.
    /// - Returns: whether a handler ran.
    @discardableResult
    public func deliver(_ event: LuaEvent) throws(LuaError) -> Bool {
        guard environment.schedule.eventKinds.contains(event.kind) else { return false }
        environment.currentDeviceID = event.deviceID
        defer { environment.currentDeviceID = nil }
        var json = event.json
        try run {
            json.withUTF8 { text in
                text.withMemoryRebound(to: CChar.self) { ttn_dispatch(state, 0, event.kind, $0.baseAddress, $0.count) }
            }
        }
        return true
    }

    /// Runs `body` (a protected call into Lua) under the limits, and turns a failure into a ``LuaError``.
    private func run(_ body: () -> Int32) throws(LuaError) {
        let top = lua_gettop(state)
        environment.downlinksPublished = 0
        environment.downlinksRefused = 0
        ttn_arm(state, Int64(limits.instructionLimit), limits.timeLimit.nanoseconds)
        let status = body()
        ttn_disarm(state)
        guard status != LUA_OK else {
            // The script caught the error of the publish past the limit: the invocation fails all the same.
            guard environment.downlinksRefused == 0 else {
                throw LuaError(
                    .downlinkLimit, script: name,
                    message: "\(name): \(environment.downlinkLimitMessage) (caught by the script; "
                        + "\(environment.downlinksRefused) publish calls refused)"
                )
            }
            return
        }
        let error = error(status: status)
        // No to-be-closed slots live at this level (Lua code runs only inside lua_pcall), so settop cannot raise.
        lua_settop(state, top)
        if error.kind == .memoryLimit { _ = clua_gc(state, LUA_GCCOLLECT) }
        throw error
    }

    private func check(_ status: Int32, while step: String) throws(LuaError) {
        guard status != LUA_OK else { return }
        let error = error(status: status)
        throw LuaError(error.kind, script: name, message: "\(name): \(step): \(error.message)")
    }

    /// The error of a failed protected call, from the message on top of the stack and the hook's abort reason.
    private func error(status: Int32) -> LuaError {
        var length = 0
        let text = lua_tolstring(state, -1, &length).map {
            String(decoding: UnsafeRawBufferPointer(start: $0, count: length), as: UTF8.self)
        } ?? "(error object is not a string)"
        let parts = text.split(separator: "\nstack traceback:", maxSplits: 1)
        let message = parts.first.map(String.init) ?? text
        let traceback = parts.count > 1 ? "stack traceback:" + parts[1] : nil
        let kind: LuaError.Kind
        switch (status, Int32(ttn_context_abort_reason(context))) {
        case (LUA_ERRSYNTAX, _): kind = .syntax
        case (LUA_ERRMEM, _): kind = .memoryLimit
        case (_, Int32(TTN_ABORT_TIME.rawValue)): kind = .timeLimit
        case (_, Int32(TTN_ABORT_INSTRUCTIONS.rawValue)): kind = .instructionLimit
        case (_, Int32(TTN_ABORT_INTERRUPT.rawValue)): kind = .interrupted
        case (LUA_ERRRUN, _) where ttn_context_memory_refused(context) != 0 && text.contains("not enough memory"):
            kind = .memoryLimit  // a memory error that passed through a script's pcall and was raised again
        case (LUA_ERRRUN, _) where environment.downlinksRefused > 0 && message.hasSuffix(environment.downlinkLimitMessage):
            kind = .downlinkLimit
        default: kind = .runtime
        }
        // Lua gives no position for a memory error, nor for a limit that fired where no Lua line was running.
        guard !message.hasPrefix(name) else { return LuaError(kind, script: name, message: message, traceback: traceback) }
        let detail = kind == .memoryLimit ? " (memory limit \(limits.memoryLimit / 1024) KiB)" : ""
        return LuaError(kind, script: name, message: "\(name): \(message)\(detail)", traceback: traceback)
    }
}

/// Hands out a script's timer ids, shared by its versions. Not `Sendable`: the versions of one script use it one
/// at a time, as they use the script.
public final class LuaTimerIDs {
    private var last = 0
    public init() {}
    func next() -> Int {
        last += 1
        return last
    }
}

/// What a script's Swift functions work with. It does not reference the Lua state, so the functions the
/// state owns do not keep their state alive.
final class ScriptEnvironment {
    let name: String
    let bridge: any LuaHostBridge
    let logger: Logger
    let limits: LuaLimits
    let timerIDs: LuaTimerIDs
    var currentDeviceID: String?
    /// Whether the uplink being handled was backfilled.
    var currentIsBackfilled = false
    var deviceOverride: String?
    /// Downlinks sent and publish calls refused by the downlink limit, in the running invocation.
    var downlinksPublished = 0
    var downlinksRefused = 0
    /// Whether this version runs: only then do schedule changes reach the bridge.
    var isActive = false
    var schedule = LuaSchedule() {
        didSet { if isActive { bridge.scheduleChanged(schedule) } }
    }

    init(name: String, bridge: any LuaHostBridge, logger: Logger, limits: LuaLimits, timerIDs: LuaTimerIDs) {
        self.name = name
        self.bridge = bridge
        self.logger = logger
        self.limits = limits
        self.timerIDs = timerIDs
    }

    /// The error of a publish past ``LuaLimits/downlinkLimit``.
    var downlinkLimitMessage: String {
        "publish: downlink limit reached: at most \(limits.downlinkLimit) downlinks per invocation; "
            + "nothing more is sent from this one (raise it with --lua-downlink-limit or LuaLimits.downlinkLimit)"
    }

    /// The Swift side of the script API; the Lua prelude wraps these into the public functions. A failure is
    /// returned as `nil, message`, which the prelude raises at the script's line.
    func hostFunctions() -> [HostFunction] {
        [
            HostFunction("__ttn_log") { [unowned self] L in
                logger.info("\(LuaStack.string(L, 1) ?? "")")
                return 0
            },
            HostFunction("__ttn_set_device") { [unowned self] L in
                deviceOverride = LuaStack.string(L, 1)
                return 0
            },
            HostFunction("__ttn_backfilled") { [unowned self] L in
                lua_pushboolean(L, currentIsBackfilled ? 1 : 0)
                return 1
            },
            HostFunction("__ttn_all") { [unowned self] L in
                let messages = bridge.allMessages()
                lua_createtable(L, Int32(clamping: messages.count), 0)
                for (index, json) in messages.enumerated() {
                    LuaStack.push(L, bytes: json)
                    lua_rawseti(L, -2, lua_Integer(index + 1))
                }
                return 1
            },
            HostFunction("__ttn_publish") { [unowned self] L in publish(L) },
            HostFunction("__ttn_emit") { [unowned self] L in
                guard let sink = LuaStack.string(L, 1), let json = LuaStack.string(L, 2) else {
                    return LuaStack.fail(L, "ttn.emit: expected a sink name and a value")
                }
                do {
                    LuaStack.push(L, try bridge.emit(json, to: sink, deviceID: deviceOverride ?? currentDeviceID))
                    return 1
                } catch {
                    return LuaStack.fail(L, "ttn.emit: \(error)")
                }
            },
        ] + storeFunctions() + scheduleFunctions()
    }

    private func publish(_ L: OpaquePointer) -> Int32 {
        guard let downlink = LuaStack.string(L, 1) else { return LuaStack.fail(L, "publish: expected a JSON string") }
        guard let device = LuaStack.string(L, 2) ?? deviceOverride ?? currentDeviceID else {
            return LuaStack.fail(
                L, "publish: no device to send to; pass one (publish(msg, \"my-device\")) or call setDeviceID first"
            )
        }
        guard downlinksPublished < limits.downlinkLimit else {
            downlinksRefused += 1
            return LuaStack.fail(L, downlinkLimitMessage)
        }
        let queue = LuaStack.string(L, 3).flatMap(DownlinkQueue.init(rawValue:))
        let id: String
        do {
            id = try bridge.publish(downlink, deviceID: device, queue: queue)
        } catch {
            return LuaStack.fail(L, "publish: \(error)")
        }
        downlinksPublished += 1
        LuaStack.push(L, id)
        return 1
    }

    /// `ttn.store`'s functions: each takes the key first.
    private func storeFunctions() -> [HostFunction] {
        func storeFunction(_ name: String, _ body: @escaping (any LuaStore, OpaquePointer, String) throws -> Int32) -> HostFunction {
            HostFunction("__ttn_store_\(name)") { [unowned self] L in
                guard let store = bridge.store else {
                    return LuaStack.fail(L, "ttn.store.\(name): this host keeps no state (give ttn-host a --state-dir)")
                }
                guard let key = LuaStack.string(L, 1) ?? (name == "keys" ? "" : nil) else {
                    return LuaStack.fail(L, "ttn.store.\(name): the key must be a string")
                }
                do {
                    return try body(store, L, key)
                } catch {
                    return LuaStack.fail(L, "ttn.store.\(name): \(error)")
                }
            }
        }
        return [
            storeFunction("get") { store, L, key in
                guard let json = try store.get(key) else { return 0 }
                LuaStack.push(L, json)
                return 1
            },
            storeFunction("set") { store, L, key in
                let ttl = lua_type(L, 3) == LUA_TNUMBER ? Duration.seconds(lua_tonumberx(L, 3, nil)) : nil
                try store.set(key, json: LuaStack.string(L, 2) ?? "null", ttl: ttl)
                return 0
            },
            storeFunction("delete") { store, _, key in
                try store.delete(key)
                return 0
            },
            storeFunction("incr") { store, L, key in
                let amount: LuaNumber = lua_isinteger(L, 2) != 0 ? .integer(lua_tointegerx(L, 2, nil)) : .double(lua_tonumberx(L, 2, nil))
                switch try store.increment(key, by: amount) {
                case .integer(let value): lua_pushinteger(L, value)
                case .double(let value): lua_pushnumber(L, value)
                }
                return 1
            },
            storeFunction("keys") { store, L, prefix in
                let keys = try store.keys(prefix: prefix.isEmpty ? nil : prefix)
                lua_createtable(L, Int32(clamping: keys.count), 0)
                for (index, key) in keys.enumerated() {
                    LuaStack.push(L, key)
                    lua_rawseti(L, -2, lua_Integer(index + 1))
                }
                return 1
            },
        ]
    }

    /// Timers and event handlers: the prelude keeps the functions, the schedule what the host must run.
    private func scheduleFunctions() -> [HostFunction] {
        [
            HostFunction("__ttn_timer_add") { [unowned self] L in
                let repeats = lua_toboolean(L, 2) != 0
                guard schedule.timers.count < limits.timerLimit else {
                    return LuaStack.fail(
                        L, "ttn.\(repeats ? "every" : "after"): timer limit reached: at most \(limits.timerLimit) live "
                            + "timers per script; cancel one first (t:cancel())"
                    )
                }
                let id = timerIDs.next()
                schedule.timers[id] = LuaTimer(id: id, interval: .seconds(lua_tonumberx(L, 1, nil)), repeats: repeats)
                lua_pushinteger(L, lua_Integer(id))
                return 1
            },
            HostFunction("__ttn_timer_cancel") { [unowned self] L in
                schedule.timers[Int(lua_tointegerx(L, 1, nil))] = nil
                return 0
            },
            HostFunction("__ttn_want_event") { [unowned self] L in
                guard let kind = LuaStack.string(L, 1) else { return 0 }
                if lua_toboolean(L, 2) != 0 { schedule.eventKinds.insert(kind) } else { schedule.eventKinds.remove(kind) }
                return 0
            },
        ]
    }
}

/// A Swift function the Lua state owns; `body` returns its result count and never raises a Lua error.
final class HostFunction {
    let globalName: String
    let body: (OpaquePointer) -> Int32

    init(_ globalName: String, _ body: @escaping (OpaquePointer) -> Int32) {
        self.globalName = globalName
        self.body = body
    }

    static let entry: ttn_host_fn = { state, box in
        Unmanaged<HostFunction>.fromOpaque(box!).takeUnretainedValue().body(state!)
    }

    static let release: ttn_release_fn = { box in
        Unmanaged<HostFunction>.fromOpaque(box!).release()
    }
}

/// Stack access that cannot raise a Lua error.
enum LuaStack {
    /// The string at `index`, or nil for anything that is not a string.
    static func string(_ L: OpaquePointer, _ index: Int32) -> String? {
        guard lua_type(L, index) == LUA_TSTRING else { return nil }
        var length = 0
        guard let pointer = lua_tolstring(L, index, &length) else { return nil }
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: length), as: UTF8.self)
    }

    /// Pushes `text` as a Lua string.
    static func push(_ L: OpaquePointer, _ text: String) {
        var text = text
        text.withUTF8 { push(L, bytes: $0) }
    }

    /// Pushes `bytes` as a Lua string.
    static func push(_ L: OpaquePointer, bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { push(L, bytes: $0) }
    }

    private static func push(_ L: OpaquePointer, bytes: UnsafeBufferPointer<UInt8>) {
        bytes.withMemoryRebound(to: CChar.self) { _ = lua_pushlstring(L, $0.baseAddress, $0.count) }
    }

    /// Returns `nil, message` from a host function: the prelude raises `message` at the script's line.
    static func fail(_ L: OpaquePointer, _ message: String) -> Int32 {
        lua_pushnil(L)
        push(L, message)
        return 2
    }
}
