import Foundation
import TestSupport
import Testing

@testable import TTNLua

@Suite("The example scripts in examples/lua")
struct ExampleScriptTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("examples/lua")

    static let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).filter { $0.hasSuffix(".lua") }.sorted()

    @Test("there are examples to test")
    func present() {
        #expect(Self.names.count >= 4)
    }

    @Test("each example loads, handles every uplink fixture, and runs its timers", arguments: names)
    func runs(name: String) throws {
        let source = try [UInt8](Data(contentsOf: Self.directory.appendingPathComponent(name)))
        let script = try LuaScript(
            name: name, source: source, limits: LuaLimits(), bridge: MemoryBridge(store: DictionaryStore()), logger: quietLogger
        )
        #expect(script.hasMessageHandler)
        for fixture in ["v3-up-decoded.json", "v3-up-no-decoder.json", "v3-up-multi-gateway.json", "v3-up-mac-only.json", "v3-up-legacy-shape.json"] {
            try script.handle(LuaMessage(json: try Fixtures.bytes(fixture), deviceID: "dev"))
        }
        for id in script.schedule.timers.keys.sorted() { try script.fireTimer(id) }
    }

    @Test("the complete handler in docs/lua-handlers.md runs and answers a hot device")
    func documentedHandler() throws {
        let document = try String(contentsOf: Self.directory.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/lua-handlers.md"), encoding: .utf8)
        let start = try #require(document.range(of: "```lua\n"))
        let end = try #require(document.range(of: "```", range: start.upperBound..<document.endIndex))
        let bridge = MemoryBridge()
        let script = try LuaScript(
            name: "alert.lua", source: Array(document[start.upperBound..<end.lowerBound].utf8), limits: LuaLimits(),
            bridge: bridge, logger: quietLogger
        )
        let hot = #"{"end_device_ids":{"device_id":"d"},"uplink_message":{"decoded_payload":{"temperature":31.5}}}"#
        try script.handle(LuaMessage(json: Array(hot.utf8), deviceID: "d"))
        #expect(bridge.published.count == 2)
        #expect(bridge.published.last?.queue == .push)
    }

    @Test("temperature-alert answers a hot device with a downlink and ignores a cool one, and a backfilled hot one")
    func temperatureAlert() throws {
        let bridge = MemoryBridge()
        let source = try [UInt8](Data(contentsOf: Self.directory.appendingPathComponent("temperature-alert.lua")))
        let script = try LuaScript(name: "temperature-alert.lua", source: source, limits: LuaLimits(), bridge: bridge, logger: quietLogger)
        let hot = #"{"end_device_ids":{"device_id":"d"},"uplink_message":{"decoded_payload":{"temperature":31.5}}}"#
        let cool = #"{"end_device_ids":{"device_id":"d"},"uplink_message":{"decoded_payload":{"temperature":20}}}"#
        try script.handle(LuaMessage(json: Array(cool.utf8), deviceID: "d"))
        var past = LuaMessage(json: Array(hot.utf8), deviceID: "d")
        past.isBackfilled = true
        try script.handle(past)
        #expect(bridge.published.isEmpty)
        try script.handle(LuaMessage(json: Array(hot.utf8), deviceID: "d"))
        #expect(bridge.published == [.init(downlink: #"{"port": 1, "confirmed": false, "payload_raw": "AQ=="}"#, deviceID: "d", queue: nil)])
    }
}

/// `examples/lua/types/ttn.lua`, the editor annotations of the script API, against the API a script really has.
@Suite("The editor annotations in examples/lua/types")
struct AnnotationTests {
    static let file = ExampleScriptTests.directory.appendingPathComponent("types/ttn.lua")

    /// The functions the file declares (`function name(` and `function ttn.x.y(`), outside the standard `os`.
    static func declaredFunctions() throws -> Set<String> {
        let text = try String(contentsOf: file, encoding: .utf8)
        let names = text.split(separator: "\n").compactMap { line in
            line.firstMatch(of: #/^function ([A-Za-z_][A-Za-z_0-9.]*)\(/#).map { String($0.1) }
        }
        return Set(names.filter { !$0.hasPrefix("os.") })
    }

    @Test("every function it declares exists in a script's environment, as a function")
    func declaredExist() throws {
        let names = try Self.declaredFunctions()
        let checks = names.sorted().map { "assert(type(\($0)) == 'function', '\($0) is not a function')" }
        let source = "setMessageHandler(function() end)\n" + checks.joined(separator: "\n")
        let script = try LuaScript(name: "annotations.lua", source: Array(source.utf8), limits: LuaLimits(), bridge: MemoryBridge(), logger: quietLogger)
        #expect(script.hasMessageHandler)
    }

    @Test("it declares the whole script API of docs/lua-handlers.md")
    func apiCovered() throws {
        let api: Set<String> = [
            "setMessageHandler", "getLastMessage", "getAllMessages", "publish", "setDeviceID", "setEventHandler", "getLastEvent",
            "ttn.log", "ttn.setMessageHandler", "ttn.getLastMessage", "ttn.getAllMessages", "ttn.publish", "ttn.setDeviceID",
            "ttn.setEventHandler", "ttn.getLastEvent", "ttn.downlinkID", "ttn.every", "ttn.after", "ttn.payloadBytes", "ttn.bytes",
            "ttn.json.decode", "ttn.json.encode", "ttn.json.array", "ttn.base64.encode", "ttn.base64.decode", "ttn.hex.encode",
            "ttn.hex.decode", "ttn.store.get", "ttn.store.set", "ttn.store.delete", "ttn.store.incr", "ttn.store.keys",
            "ttn.backfilled",
        ]
        let declared = try Self.declaredFunctions()
        #expect(api.subtracting(declared).isEmpty, "not declared: \(api.subtracting(declared).sorted())")
        let text = try String(contentsOf: Self.file, encoding: .utf8)
        #expect(text.hasPrefix("---@meta"))
        #expect(text.contains("function TTNTimer:cancel()"))
        // The event kinds are a closed list, so that a misspelled one is flagged.
        for kind in ["join", "up/normalized", "down/queued", "down/sent", "down/ack", "down/nack", "down/failed",
                     "down/invalidated", "location/solved", "service/data", "down/lost"] {
            #expect(text.contains("\"\(kind)\""), "event kind \(kind)")
        }
    }
}
