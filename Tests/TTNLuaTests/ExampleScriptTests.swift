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

    @Test("temperature-alert answers a hot device with a downlink and ignores a cool one")
    func temperatureAlert() throws {
        let bridge = MemoryBridge()
        let source = try [UInt8](Data(contentsOf: Self.directory.appendingPathComponent("temperature-alert.lua")))
        let script = try LuaScript(name: "temperature-alert.lua", source: source, limits: LuaLimits(), bridge: bridge, logger: quietLogger)
        let hot = #"{"end_device_ids":{"device_id":"d"},"uplink_message":{"decoded_payload":{"temperature":31.5}}}"#
        let cool = #"{"end_device_ids":{"device_id":"d"},"uplink_message":{"decoded_payload":{"temperature":20}}}"#
        try script.handle(LuaMessage(json: Array(cool.utf8), deviceID: "d"))
        #expect(bridge.published.isEmpty)
        try script.handle(LuaMessage(json: Array(hot.utf8), deviceID: "d"))
        #expect(bridge.published == [.init(downlink: #"{"port": 1, "confirmed": false, "payload_raw": "AQ=="}"#, deviceID: "d", queue: nil)])
    }
}
