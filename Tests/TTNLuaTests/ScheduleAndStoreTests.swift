import Foundation
import Logging
import Testing
import TestSupport

@testable import TTNLua

/// The script API of issue "state, time and events": `ttn.store`, timers, event handlers and downlink ids, as
/// TTNLua provides them to a host (the host's side, transactions and scheduling, is tested in the host).
@Suite("Store, timers and events in a script")
struct ScheduleAndStoreTests {
    private func makeSlot(_ source: String, bridge: MemoryBridge, limits: LuaLimits = LuaLimits()) throws -> LuaScriptSlot {
        try LuaScriptSlot(name: "s.lua", source: Array(source.utf8), limits: limits, bridge: bridge, logger: Logger(label: "test"))
    }

    private let uplink = LuaMessage(json: Array(#"{"end_device_ids":{"device_id":"dev1"}}"#.utf8), deviceID: "dev1")

    @Test("ttn.store round-trips every JSON value, incr counts, keys are sorted and filtered")
    func storeValues() throws {
        let store = DictionaryStore()
        let slot = try makeSlot(
            luaSame + """
                setMessageHandler(function()
                  local value = { n = 1, f = 1.5, s = "é\\0x", list = ttn.json.array({ 1, 2 }), flag = false, none = ttn.null }
                  ttn.store.set("b:table", value)
                  assert(same(ttn.store.get("b:table"), value), "table differs")
                  ttn.store.set("a:string", "text")
                  assert(ttn.store.get("a:string") == "text")
                  assert(ttn.store.incr("count") == 1 and ttn.store.incr("count", 41) == 42)
                  assert(math.type(ttn.store.get("count")) == "integer")
                  local keys = ttn.store.keys()
                  assert(#keys == 3 and keys[1] == "a:string" and keys[2] == "b:table" and keys[3] == "count", table.concat(keys, ","))
                  assert(#ttn.store.keys("b:") == 1)
                  ttn.store.set("a:string", nil)
                  assert(ttn.store.get("a:string") == nil)
                  ttn.store.delete("count")
                  assert(ttn.store.get("count") == nil)
                  assert(ttn.store.get("missing") == nil)
                end)
                """,
            bridge: MemoryBridge(store: store)
        )
        try slot.handle(uplink)
        #expect(store.values.withLock { Array($0.keys) } == ["b:table"])
    }

    @Test("ttn.store errors are Lua errors at the script's line", arguments: [
        ("ttn.store.get(1)", "ttn.store.get: the key must be a string"),
        ("ttn.store.set('refused', 1)", "ttn.store.set: key refused"),
        ("ttn.store.set('k', 1, -1)", "ttn.store.set: ttl must be a number of seconds > 0"),
        ("ttn.store.set('k', function() end)", "ttn.store.set:"),
        ("ttn.store.incr('k', 'x')", "ttn.store.incr: by must be a number"),
        ("ttn.store.keys(5)", "ttn.store.keys: the prefix must be a string"),
    ])
    func storeErrors(call: String, message: String) throws {
        let slot = try makeSlot("setMessageHandler(function()\n\(call)\nend)", bridge: MemoryBridge(store: DictionaryStore()))
        let error = #expect(throws: LuaError.self) { try slot.handle(uplink) }
        #expect(error?.message.hasPrefix("s.lua:2: \(message)") == true, "\(error?.message ?? "-")")
    }

    @Test("without a store, ttn.store says how to get one")
    func noStore() throws {
        let slot = try makeSlot("setMessageHandler(function() ttn.store.get('k') end)", bridge: MemoryBridge())
        let error = #expect(throws: LuaError.self) { try slot.handle(uplink) }
        #expect(error?.message.contains("--state-dir") == true)
    }

    @Test("publish returns the host's downlink id")
    func publishReturnsID() throws {
        let bridge = MemoryBridge()
        let slot = try makeSlot(
            """
            setMessageHandler(function()
              local first = publish({ f_port = 1, bytes = { 1 } })
              local second = publish('{"downlinks":[{"f_port":2,"frm_payload":"AQ=="}]}')
              assert(first == "d1" and second == "d2", tostring(first) .. " " .. tostring(second))
            end)
            """,
            bridge: bridge
        )
        try slot.handle(uplink)
        #expect(bridge.published.count == 2)
    }

    @Test("timers are reported when the version starts, fire by id, and a one-shot ends after firing")
    func timers() throws {
        let bridge = MemoryBridge(store: DictionaryStore())
        let slot = try makeSlot(
            """
            setMessageHandler(function() end)
            ttn.every(0.5, function() ttn.store.incr("ticks") end)
            ttn.after(2, function() ttn.store.incr("once") end)
            """,
            bridge: bridge
        )
        let schedule = try #require(bridge.reportedSchedules.last)
        let timers = schedule.timers.values.sorted { $0.id < $1.id }
        #expect(timers.map(\.interval) == [.milliseconds(500), .seconds(2)])
        #expect(timers.map(\.repeats) == [true, false])
        #expect(try slot.fireTimer(timers[0].id))
        #expect(try slot.fireTimer(timers[0].id))
        #expect(try slot.fireTimer(timers[1].id))
        #expect(try slot.fireTimer(timers[1].id) == false)
        #expect(slot.schedule.timers.keys.sorted() == [timers[0].id])
        #expect(bridge.reportedSchedules.last?.timers.count == 1)
        let values = (bridge.store as! DictionaryStore).values.withLock { $0 }
        #expect(values == ["ticks": "2", "once": "1"])
    }

    @Test("a cancelled timer never fires, and a reload replaces the old version's timers")
    func cancelAndReload() throws {
        let bridge = MemoryBridge(store: DictionaryStore())
        let slot = try makeSlot(
            """
            setMessageHandler(function() end)
            local t = ttn.every(1, function() ttn.store.incr("old") end)
            local u = ttn.every(1, function() ttn.store.incr("cancelled") end)
            u:cancel()
            u:cancel()
            """,
            bridge: bridge
        )
        #expect(slot.schedule.timers.count == 1)
        let oldID = try #require(slot.schedule.timers.keys.first)
        try slot.load(source: Array("setMessageHandler(function() end)\nttn.every(1, function() ttn.store.incr('new') end)".utf8))
        #expect(try slot.fireTimer(oldID) == false)
        let newID = try #require(slot.schedule.timers.keys.first)
        #expect(newID != oldID)
        #expect(try slot.fireTimer(newID))
        #expect(bridge.reportedSchedules.last?.timers.keys.sorted() == [newID])
        #expect((bridge.store as! DictionaryStore).values.withLock { $0 } == ["new": "1"])
    }

    @Test("a failed reload reports nothing: the running version's timers stay")
    func failedReloadKeepsTimers() throws {
        let bridge = MemoryBridge()
        let slot = try makeSlot("setMessageHandler(function() end)\nttn.every(1, function() end)", bridge: bridge)
        let reported = bridge.reportedSchedules.count
        #expect(throws: LuaError.self) {
            try slot.load(source: Array("ttn.every(1, function() end)\nerror('broken')".utf8))
        }
        #expect(bridge.reportedSchedules.count == reported)
        #expect(slot.schedule.timers.count == 1)
    }

    @Test("timer arguments are checked and live timers are limited")
    func timerLimits() throws {
        var limits = LuaLimits()
        limits.timerLimit = 3
        for (call, message) in [
            ("ttn.every(0.05, function() end)", "ttn.every: seconds must be at least 0.1"),
            ("ttn.after(-1, function() end)", "ttn.after: seconds must not be negative"),
            ("ttn.every('x', function() end)", "ttn.every: seconds must be a number"),
            ("ttn.after(1)", "ttn.after: expected a function"),
            ("for i = 1, 4 do ttn.after(1, function() end) end", "ttn.after: timer limit reached: at most 3"),
        ] {
            let error = #expect(throws: LuaError.self) { _ = try makeSlot("setMessageHandler(function() end)\n\(call)", bridge: MemoryBridge(), limits: limits) }
            #expect(error?.message.hasPrefix("s.lua:2: \(message)") == true, "\(error?.message ?? "-")")
        }
    }

    @Test("inside a timer there is no message, and publish needs a device")
    func timerContext() throws {
        let bridge = MemoryBridge()
        let slot = try makeSlot(
            """
            setMessageHandler(function() end)
            ttn.after(1, function()
              assert(getLastMessage() == nil and getLastEvent() == nil)
              local ok, err = pcall(publish, { f_port = 1, bytes = { 1 } })
              assert(not ok and err:find("no device to send to"), err)
              publish({ f_port = 1, bytes = { 1 } }, "dev2")
            end)
            """,
            bridge: bridge
        )
        let id = try #require(slot.schedule.timers.keys.first)
        try slot.handle(uplink)
        #expect(try slot.fireTimer(id))
        #expect(bridge.published.map(\.deviceID) == ["dev2"])
    }

    @Test("an event reaches the handler of its kind as getLastEvent(), only inside it")
    func events() throws {
        let ack = try Fixtures.text("v3-down-ack.json")
            .replacingOccurrences(of: #""as:downlink:01E19B99501X84X6CV471TVSZ1","#, with: #""ttn-host:abc-1","#)
        let bridge = MemoryBridge(store: DictionaryStore())
        let slot = try makeSlot(
            """
            setMessageHandler(function() assert(getLastEvent() == nil) end)
            setEventHandler("down/ack", function()
              local e = getLastEvent()
              assert(e == ttn.getLastEvent(), "the same table for the whole call")
              ttn.store.set("acked", { id = ttn.downlinkID(), port = e.downlink_ack.f_port, device = e.end_device_ids.device_id })
              publish({ f_port = 3, bytes = { 1 } })
            end)
            ttn.setEventHandler("down/nack", function() error("nack handler ran") end)
            """,
            bridge: bridge
        )
        #expect(bridge.reportedSchedules.last?.eventKinds == ["down/ack", "down/nack"])
        #expect(try slot.deliver(LuaEvent(kind: "down/ack", json: ack, deviceID: "dev1")))
        #expect(try slot.deliver(LuaEvent(kind: "down/sent", json: ack, deviceID: "dev1")) == false)
        try slot.handle(uplink)
        let stored = (bridge.store as! DictionaryStore).values.withLock { $0["acked"] }
        for member in [#""id":"abc-1""#, #""port":15"#, #""device":"dev1""#] {
            #expect(stored?.contains(member) == true, "\(stored ?? "nothing stored")")
        }
        #expect(bridge.published.map(\.deviceID) == ["dev1"], "publish in an event handler goes to the event's device")
        let error = #expect(throws: LuaError.self) { try slot.deliver(LuaEvent(kind: "down/nack", json: "{}", deviceID: nil)) }
        #expect(error?.message.contains("nack handler ran") == true)
    }

    @Test("setEventHandler with nil removes the handler; an unknown kind is refused with the list")
    func eventHandlerRemoval() throws {
        let bridge = MemoryBridge()
        let slot = try makeSlot(
            "setMessageHandler(function() end)\nsetEventHandler('join', function() end)\nsetEventHandler('join', nil)",
            bridge: bridge
        )
        #expect(slot.schedule.eventKinds.isEmpty)
        #expect(try slot.deliver(LuaEvent(kind: "join", json: "{}", deviceID: nil)) == false)
        let error = #expect(throws: LuaError.self) { _ = try makeSlot("setEventHandler('down/acked', function() end)", bridge: bridge) }
        #expect(error?.message.contains("unknown event kind down/acked; one of join") == true)
    }

    @Test("ttn.downlinkID finds the host's id at the top, in a nested message, or in a down/lost table; nil otherwise")
    func downlinkID() throws {
        let slot = try makeSlot(
            """
            setMessageHandler(function() end)
            assert(ttn.downlinkID({ correlation_ids = { "as:x", "ttn-host:top" } }) == "top")
            assert(ttn.downlinkID({ downlink_nack = { correlation_ids = { "ttn-host:nested" } } }) == "nested")
            assert(ttn.downlinkID({ downlink_id = "lost-1", end_device_ids = { device_id = "d" } }) == "lost-1")
            assert(ttn.downlinkID({ correlation_ids = { "my-correlation-id" } }) == nil)
            assert(ttn.downlinkID() == nil)
            """,
            bridge: MemoryBridge()
        )
        #expect(slot.hasMessageHandler)
    }
}

@Suite("ttn.emit")
struct EmitTests {
    @Test("emit encodes the value, passes the invocation's device, and returns the host's id")
    func emits() throws {
        let bridge = MemoryBridge()
        let script = try makeScript(
            """
            ids = {}
            setMessageHandler(function()
              ids[#ids + 1] = ttn.emit("warehouse", {f_cnt = getLastMessage().uplink_message.f_cnt})
              setDeviceID("other")
              ids[#ids + 1] = ttn.emit("archive", "text")
              assert(ids[1] == "emit-1" and ids[2] == "emit-2", "the ids: " .. tostring(ids[1]) .. ", " .. tostring(ids[2]))
            end)
            """,
            bridge: bridge
        )
        try script.handle(emptyUplink)
        #expect(bridge.emitted == [
            .init(sink: "warehouse", json: #"{"f_cnt":1}"#, deviceID: "dev1"),
            .init(sink: "archive", json: #""text""#, deviceID: "other"),
        ])
    }

    @Test("emit errors are Lua errors at the script's line", arguments: [
        ("ttn.emit(1, {})", "ttn.emit: the sink must be a string"),
        ("ttn.emit('s', function() end)", "ttn.emit:"),
        ("ttn.emit('refused', 1)", #"ttn.emit: no sink named "refused""#),
    ])
    func errors(call: String, message: String) throws {
        let script = try makeScript("setMessageHandler(function()\n  \(call)\nend)")
        let error = try #require(throws: LuaError.self) { try script.handle(emptyUplink) }
        #expect(error.message.hasPrefix("test.lua:2: \(message)"), "\(error.message)")
    }
}
