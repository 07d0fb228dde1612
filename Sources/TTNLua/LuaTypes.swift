// LuaHostBridge speaks TTNCore's DownlinkQueue, so a host implementing it needs no second import.
@_exported import TTNCore

/// The triggering uplink of one handler invocation.
public struct LuaMessage: Sendable {
    /// The uplink's JSON, as received; scripts see it as a table through `getLastMessage()`.
    public var json: [UInt8] {
        didSet { tape = nil }
    }
    /// The device it came from: where `publish` sends by default.
    public var deviceID: String?
    /// Whether the host fetched it from the Storage Integration to fill a gap: what `ttn.backfilled()` says.
    public var isBackfilled = false

    /// `json` as the host parsed it on arrival: `getLastMessage()` reads its elements instead of parsing again.
    package private(set) var tape: JSONTape?

    /// An uplink with its raw JSON and, when known, its device.
    public init(json: [UInt8], deviceID: String?) {
        self.json = json
        self.deviceID = deviceID
    }

    /// An uplink the host parsed already.
    package init(tape: JSONTape, deviceID: String?) {
        self.init(json: tape.bytes, deviceID: deviceID)
        self.tape = tape
    }

    /// `uplink`, read through its tape when it was parsed from JSON.
    package init(_ uplink: Uplink) {
        if let tape = uplink.tape {
            self.init(tape: tape, deviceID: uplink.deviceID)
        } else {
            self.init(json: uplink.jsonBytes, deviceID: uplink.deviceID)
        }
        isBackfilled = uplink.isBackfilled
    }
}

/// What scripts reach through the host: `getAllMessages()`, `publish()`, `ttn.store`, and the timers and event
/// handlers the host runs for them. The host implements it, one per script.
public protocol LuaHostBridge: Sendable {
    /// Uplinks kept by the host, oldest first, as raw JSON.
    func allMessages() -> [[UInt8]]
    /// Sends a downlink to `deviceID`. `downlink` is JSON: the script's string as given (v2 or v3 form), or
    /// the v3 `{"downlinks":[...]}` built from a table. `queue` is nil for a string (the host decides from the
    /// form) and set for a table. A thrown error reaches the script as a Lua error with its description.
    /// - Returns: the downlink's id, which `publish` returns to the script.
    func publish(_ downlink: String, deviceID: String, queue: DownlinkQueue?) throws -> String
    /// The script's persistent state behind `ttn.store`; nil when the host keeps none (`ttn.store` then raises).
    var store: (any LuaStore)? { get }
    /// Hands `json`, a value the script emitted with `ttn.emit(sink, value)`, to the sink named `sink`, as part of
    /// the running invocation (the host writes it when the invocation succeeds). `deviceID` is the device of the
    /// uplink or event being handled, or the one set with `setDeviceID`. A thrown error (an unknown sink, say)
    /// reaches the script as a Lua error with its description.
    /// - Returns: the record's id, which `ttn.emit` returns to the script.
    func emit(_ json: String, to sink: String, deviceID: String?) throws -> String
    /// The timers and event handlers of the running version changed; also called once when a version starts
    /// running, with everything its top level set up. The host fires the timers and delivers the events through
    /// ``LuaScriptSlot/fireTimer(_:)`` and ``LuaScriptSlot/deliver(_:)``.
    func scheduleChanged(_ schedule: LuaSchedule)
}

extension LuaHostBridge {
    /// No state: `ttn.store` raises an error saying the host keeps none.
    public var store: (any LuaStore)? { nil }
    /// Timers and event handlers are kept by the script but never run.
    public func scheduleChanged(_ schedule: LuaSchedule) {}
    /// No outputs: `ttn.emit` raises an error saying the host has none.
    public func emit(_ json: String, to sink: String, deviceID: String?) throws -> String {
        throw LuaHostError("no sink named \(sink.debugDescription): this host has no sinks (configure them in ttn-host's --config file)")
    }
}

/// A script's persistent key-value state (`ttn.store`), values as JSON text. The host makes an invocation's
/// writes land together when it succeeds, and discards them when it fails. A thrown error reaches the script
/// as a Lua error with its description.
public protocol LuaStore: Sendable {
    /// The JSON of the value at `key`, or nil.
    func get(_ key: String) throws -> String?
    /// Sets `key` to the JSON text `json`, expiring after `ttl` when given.
    func set(_ key: String, json: String, ttl: Duration?) throws
    func delete(_ key: String) throws
    /// Adds `amount` to the number at `key` (missing counts as 0); returns the new number.
    func increment(_ key: String, by amount: LuaNumber) throws -> LuaNumber
    /// The keys, sorted, with `prefix` when given.
    func keys(prefix: String?) throws -> [String]
}

/// A Lua number: an integer or a float.
public enum LuaNumber: Sendable, Hashable {
    case integer(Int64)
    case double(Double)
}

/// What a script wants the host to run besides its message handler.
public struct LuaSchedule: Sendable, Hashable {
    /// The live timers, by id.
    public var timers: [Int: LuaTimer] = [:]
    /// The event kinds (TTN's topic suffixes, and `down/lost`) the script has handlers for.
    public var eventKinds: Set<String> = []

    public init(timers: [Int: LuaTimer] = [:], eventKinds: Set<String> = []) {
        self.timers = timers
        self.eventKinds = eventKinds
    }
}

/// One timer of `ttn.every` (repeating) or `ttn.after` (once).
public struct LuaTimer: Sendable, Hashable {
    /// Unique among every version of the script, so a tick meant for a replaced version finds nothing.
    public let id: Int
    public let interval: Duration
    public let repeats: Bool
}

/// One event for a script's event handler.
public struct LuaEvent: Sendable {
    /// TTN's topic suffix (`down/ack`), or `down/lost`.
    public var kind: String
    /// The event's JSON: what `getLastEvent()` returns as a table.
    public var json: String
    /// The device it is about: where `publish` sends by default inside the handler.
    public var deviceID: String?

    public init(kind: String, json: String, deviceID: String?) {
        self.kind = kind
        self.json = json
        self.deviceID = deviceID
    }
}

/// Limits for one script: per invocation (time, instructions, downlinks) and per state (memory).
public struct LuaLimits: Sendable, Hashable {
    /// Wall-clock budget of one invocation (the top level when loading, or one handler run). Default 200 ms.
    public var timeLimit: Duration = .milliseconds(200)
    /// Lua VM instructions per invocation, counted in steps of 1000. Default 50 million.
    public var instructionLimit: Int = 50_000_000
    /// Memory of the script's Lua state, in bytes. Default 64 MiB.
    public var memoryLimit: Int = 64 * 1024 * 1024
    /// Live timers (`ttn.every`, `ttn.after`) one script may have. Default 64.
    public var timerLimit: Int = 64
    /// Downlinks one invocation may publish. Default 10.
    ///
    /// A class A device receives at most one downlink after each uplink, and TTN's fair use allows about 10 per
    /// device per day, so a script that answers with more is almost surely looping. Every publish is queued in
    /// memory until the broker acknowledges it, so without a cap such a loop would swamp memory and the connection
    /// (and TTN's downlink rate limit closes the connection). The publish past the cap raises a Lua error at the
    /// script's line; the invocation fails even if the script catches it, and nothing more is sent from it.
    public var downlinkLimit: Int = 10

    /// The defaults: 200 ms, 50 million instructions, 64 MiB, 10 downlinks.
    public init() {}

    /// Limits of your own; a time limit of zero turns the time check off.
    public init(timeLimit: Duration, instructionLimit: Int, memoryLimit: Int, downlinkLimit: Int = 10) {
        self.timeLimit = timeLimit
        self.instructionLimit = instructionLimit
        self.memoryLimit = memoryLimit
        self.downlinkLimit = downlinkLimit
    }
}

/// A failure of the host behind a script's call, in words for the script's Lua error.
public struct LuaHostError: Error, Sendable, CustomStringConvertible {
    public let description: String

    public init(_ description: String) { self.description = description }
}

/// Why a script could not be loaded or did not finish an invocation.
public struct LuaError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure it was; compare with the static members (`error.kind == .timeLimit`).
    public struct Kind: Sendable, Hashable, CustomStringConvertible {
        fileprivate let name: String
        public var description: String { name }

        /// The source does not compile.
        public static let syntax = Kind(name: "syntax")
        /// The script raised an error.
        public static let runtime = Kind(name: "runtime")
        /// The invocation ran past ``LuaLimits/timeLimit``.
        public static let timeLimit = Kind(name: "timeLimit")
        /// The invocation ran past ``LuaLimits/instructionLimit``.
        public static let instructionLimit = Kind(name: "instructionLimit")
        /// The state would have grown past ``LuaLimits/memoryLimit``.
        public static let memoryLimit = Kind(name: "memoryLimit")
        /// The invocation published more than ``LuaLimits/downlinkLimit`` downlinks.
        public static let downlinkLimit = Kind(name: "downlinkLimit")
        /// ``LuaInterrupter/interrupt()`` was called.
        public static let interrupted = Kind(name: "interrupted")
        /// The script never called `setMessageHandler`.
        public static let noHandler = Kind(name: "noHandler")
    }

    /// What kind of failure it was.
    public let kind: Kind
    /// The script's name, e.g. `alert.lua`.
    public let script: String
    /// The error, with file and line where Lua knows them: `alert.lua:12: attempt to index a nil value`.
    public let message: String
    /// The line in the script where it happened, when Lua knows it (the `12` of `alert.lua:12: ...`).
    public let line: Int?
    /// Lua's stack traceback, when there is one.
    public let traceback: String?

    public var description: String { message }

    init(_ kind: Kind, script: String, message: String, traceback: String? = nil) {
        self.kind = kind
        self.script = script
        self.message = message
        self.traceback = traceback
        let location = message.utf8.starts(with: "\(script):".utf8) ? message.dropFirst(script.count + 1) : ""
        self.line = location.firstIndex(of: ":").flatMap { Int(location[..<$0]) }
    }
}
