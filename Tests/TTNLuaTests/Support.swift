import Foundation
import Logging
import TTNSync

@testable import TTNLua

/// An in-memory host: keeps given messages and records published downlinks.
final class MemoryBridge: LuaHostBridge {
    struct Published: Sendable, Equatable {
        var downlink: String
        var deviceID: String
        var queue: DownlinkQueue?
    }

    let messages: [[UInt8]]
    private let sent = Locked<[Published]>([])
    private let refusal: String?

    init(messages: [[UInt8]] = [], refusing refusal: String? = nil) {
        self.messages = messages
        self.refusal = refusal
    }

    var published: [Published] { sent.withLock { $0 } }

    func allMessages() -> [[UInt8]] { messages }

    func publish(_ downlink: String, deviceID: String, queue: DownlinkQueue?) throws {
        struct Refused: Error, CustomStringConvertible { let description: String }
        if let refusal { throw Refused(description: refusal) }
        sent.withLock { $0.append(Published(downlink: downlink, deviceID: deviceID, queue: queue)) }
    }
}

/// Lua source of `same(a, b)`: deep equality of decoded JSON that tells integers from floats.
let luaSame = """
    local function same(a, b)
      if type(a) ~= type(b) then return false end
      if type(a) ~= "table" then return a == b and math.type(a) == math.type(b) end
      for k, v in pairs(a) do if not same(v, b[k]) then return false end end
      for k in pairs(b) do if a[k] == nil then return false end end
      return true
    end
    """

let quietLogger = Logger(label: "lua-test") { _ in SwiftLogNoOpLogHandler() }

func makeScript(
    _ source: String, name: String = "test.lua", bridge: MemoryBridge = MemoryBridge(), limits: LuaLimits = LuaLimits(),
    logger: Logger = quietLogger
) throws -> LuaScript {
    try LuaScript(name: name, source: Array(source.utf8), limits: limits, bridge: bridge, logger: logger)
}

let emptyUplink = LuaMessage(json: Array(#"{"end_device_ids":{"device_id":"dev1"},"uplink_message":{"f_cnt":1}}"#.utf8), deviceID: "dev1")

/// Small limits, so the limit tests run fast.
/// The instruction budget is large so that the time limit is what stops an endless loop.
let tightLimits = LuaLimits(timeLimit: .milliseconds(50), instructionLimit: 1_000_000_000_000, memoryLimit: 4 * 1024 * 1024)

/// A small memory cap with time to reach it even on a loaded machine.
let memoryOnlyLimits = LuaLimits(timeLimit: .seconds(30), instructionLimit: 1_000_000_000_000, memoryLimit: 4 * 1024 * 1024)
