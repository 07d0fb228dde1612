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
    let store: (any LuaStore)?
    private let sent = Locked<[Published]>([])
    private let emits = Locked<[Emitted]>([])
    private let schedules = Locked<[LuaSchedule]>([])
    private let refusal: String?

    init(messages: [[UInt8]] = [], refusing refusal: String? = nil, store: (any LuaStore)? = nil) {
        self.messages = messages
        self.refusal = refusal
        self.store = store
    }

    var published: [Published] { sent.withLock { $0 } }
    /// Every `ttn.emit`, in order.
    var emitted: [Emitted] { emits.withLock { $0 } }

    struct Emitted: Sendable, Equatable {
        var sink: String
        var json: String
        var deviceID: String?
    }

    /// Keeps the record; sink `refused` throws. The id is the record's position among those emitted, from 1.
    func emit(_ json: String, to sink: String, deviceID: String?) throws -> String {
        struct UnknownSink: Error, CustomStringConvertible { let description: String }
        if sink == "refused" { throw UnknownSink(description: "no sink named \"refused\"") }
        return emits.withLock {
            $0.append(Emitted(sink: sink, json: json, deviceID: deviceID))
            return "emit-\($0.count)"
        }
    }
    /// Every schedule reported, oldest first.
    var reportedSchedules: [LuaSchedule] { schedules.withLock { $0 } }

    func allMessages() -> [[UInt8]] { messages }

    /// Sends nothing; the id is the downlink's position among those published, from 1.
    func publish(_ downlink: String, deviceID: String, queue: DownlinkQueue?) throws -> String {
        struct Refused: Error, CustomStringConvertible { let description: String }
        if let refusal { throw Refused(description: refusal) }
        return sent.withLock {
            $0.append(Published(downlink: downlink, deviceID: deviceID, queue: queue))
            return "d\($0.count)"
        }
    }

    func scheduleChanged(_ schedule: LuaSchedule) {
        schedules.withLock { $0.append(schedule) }
    }
}

/// A `ttn.store` in a dictionary, without transactions (the host's part).
final class DictionaryStore: LuaStore {
    struct Failure: Error, CustomStringConvertible { let description: String }
    let values = Locked<[String: String]>([:])

    func get(_ key: String) throws -> String? { values.withLock { $0[key] } }

    func set(_ key: String, json: String, ttl: Duration?) throws {
        guard key != "refused" else { throw Failure(description: "key refused") }
        values.withLock { $0[key] = json }
    }

    func delete(_ key: String) throws { values.withLock { $0[key] = nil } }

    func increment(_ key: String, by amount: LuaNumber) throws -> LuaNumber {
        try values.withLock { values in
            let current = values[key].map { Int64($0) } ?? 0
            guard let current, case .integer(let step) = amount else { throw Failure(description: "not an integer") }
            values[key] = "\(current + step)"
            return .integer(current + step)
        }
    }

    func keys(prefix: String?) throws -> [String] {
        values.withLock { $0.keys.filter { $0.hasPrefix(prefix ?? "") }.sorted() }
    }
}

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
