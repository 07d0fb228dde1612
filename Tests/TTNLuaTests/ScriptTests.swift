import Foundation
import Logging
import TestSupport
import Testing
import TTNSync

@testable import TTNLua

@Suite("Lua scripts: API, sandbox and limits")
struct ScriptTests {
    @Test("a Swift closure is called from Lua: publish reaches the host with the device and queue")
    func publishFromTable() throws {
        let bridge = MemoryBridge()
        let script = try makeScript("""
            setMessageHandler(function()
              publish({f_port = 2, bytes = {1, 2, 255}, confirmed = true, schedule = "replace"})
              publish('{"port": 1, "payload_raw": "AA=="}')
              publish({f_port = 3, frm_payload = "AQ==", priority = "HIGH"}, "other-device")
            end)
            """, bridge: bridge)
        try script.handle(emptyUplink)
        let sent = bridge.published
        try #require(sent.count == 3)
        #expect(sent[0].deviceID == "dev1" && sent[0].queue == .replace)
        let body = try JSONSerialization.jsonObject(with: Data(sent[0].downlink.utf8)) as? [String: Any]
        let item = try #require((body?["downlinks"] as? [[String: Any]])?.first)
        #expect(item["f_port"] as? Int == 2)
        #expect(item["frm_payload"] as? String == "AQL/")
        #expect(item["confirmed"] as? Bool == true)
        #expect(item["priority"] as? String == "NORMAL")
        #expect(sent[1] == .init(downlink: #"{"port": 1, "payload_raw": "AA=="}"#, deviceID: "dev1", queue: nil))
        #expect(sent[2].deviceID == "other-device" && sent[2].queue == .push)
    }

    @Test("ttn.backfilled() says whether the uplink being handled was backfilled")
    func backfilled() throws {
        var backfilled = emptyUplink
        backfilled.isBackfilled = true
        let check = try makeScript("""
            setMessageHandler(function()
              if ttn.backfilled() then error("live uplink seen as backfilled") end
            end)
            """)
        try check.handle(emptyUplink)
        let failing = try makeScript("""
            setMessageHandler(function()
              if ttn.backfilled() then error("backfilled: " .. tostring(ttn.backfilled())) end
            end)
            """)
        let error = #expect(throws: LuaError.self) { try failing.handle(backfilled) }
        #expect(error?.message.contains("backfilled: true") == true)
        try failing.handle(emptyUplink)
    }

    @Test("setDeviceID overrides the triggering device; no device at all is a clear error")
    func deviceSelection() throws {
        let bridge = MemoryBridge()
        let script = try makeScript("""
            setMessageHandler(function() publish('{"port":1,"payload_raw":"AA=="}') end)
            """, bridge: bridge)
        let error = #expect(throws: LuaError.self) { try script.handle(LuaMessage(json: Array("{}".utf8), deviceID: nil)) }
        #expect(error?.message.contains("no device") == true)
        let overriding = try makeScript("""
            setDeviceID("fixed-device")
            setMessageHandler(function() publish('{"port":1,"payload_raw":"AA=="}') end)
            """, bridge: bridge)
        try overriding.handle(emptyUplink)
        #expect(bridge.published.last?.deviceID == "fixed-device")
    }

    @Test("a host refusal and bad tables become Lua errors the script can catch", arguments: [
        "publish({bytes = {1}})", "publish({f_port = 1, bytes = {256}})", "publish({f_port = 1})", "publish(42)",
        "publish({f_port = 1, bytes = 'x', schedule = 'first'})",
    ])
    func publishErrors(call: String) throws {
        let bridge = MemoryBridge()
        let script = try makeScript("""
            setMessageHandler(function()
              local ok, err = pcall(function() \(call) end)
              assert(not ok)
              ttn.log(err)
              error(err, 0)
            end)
            """, bridge: bridge)
        let error = #expect(throws: LuaError.self) { try script.handle(emptyUplink) }
        #expect(error?.message.contains("publish") == true)
        #expect(bridge.published.isEmpty)
    }

    @Test("an error thrown by the host reaches the script")
    func hostRefusal() throws {
        let script = try makeScript("""
            setMessageHandler(function() publish('{"port":0}') end)
            """, bridge: MemoryBridge(refusing: "Downlink refused: f_port 0 is outside 1...223."))
        let error = #expect(throws: LuaError.self) { try script.handle(emptyUplink) }
        #expect(error?.message.contains("f_port 0 is outside") == true)
        #expect(error?.kind == .runtime)
        #expect(error?.line == 1, "at the script's line: \(error?.message ?? "")")
    }

    @Test("a flood of downlinks stops at the downlink limit, at the script's line; the next invocation has its own budget")
    func downlinkLimit() throws {
        let bridge = MemoryBridge()
        let script = try makeScript("""
            setMessageHandler(function()
              for i = 1, 10000 do
                publish({f_port = 1, bytes = {1}})
              end
            end)
            """, name: "flood.lua", bridge: bridge)
        let error = #expect(throws: LuaError.self) { try script.handle(emptyUplink) }
        #expect(error?.kind == .downlinkLimit)
        #expect(error?.line == 3, "\(error?.message ?? "")")
        #expect(error?.message.contains("at most 10 downlinks per invocation") == true)
        #expect(bridge.published.count == LuaLimits().downlinkLimit)
        #expect(throws: LuaError.self) { try script.handle(emptyUplink) }
        #expect(bridge.published.count == 20)
    }

    @Test("the downlink limit holds when the script catches the error, and is configurable")
    func downlinkLimitCaught() throws {
        let bridge = MemoryBridge()
        var limits = LuaLimits()
        limits.downlinkLimit = 3
        limits.timeLimit = .seconds(60)  // 10,000 refused calls take longer than 200 ms under AddressSanitizer
        let script = try makeScript("""
            setMessageHandler(function()
              for i = 1, 10000 do pcall(publish, '{"port": 1, "payload_raw": "AA=="}') end
            end)
            """, name: "sly.lua", bridge: bridge, limits: limits)
        let error = #expect(throws: LuaError.self) { try script.handle(emptyUplink) }
        #expect(error?.kind == .downlinkLimit)
        #expect(error?.message.contains("caught by the script; 9997 publish calls refused") == true, "\(error?.message ?? "")")
        #expect(bridge.published.count == 3)
        let quiet = try makeScript(
            "setMessageHandler(function() for i = 1, 3 do publish({f_port = 1, bytes = {i}}) end end)", bridge: bridge, limits: limits
        )
        try quiet.handle(emptyUplink)
        #expect(bridge.published.count == 6, "up to the limit is fine")
    }

    @Test("fixture uplinks become tables with the right types")
    func fixtureTypes() throws {
        let bridge = MemoryBridge()
        let script = try makeScript("""
            setMessageHandler(function()
              local m = getLastMessage()
              local up = m.uplink_message
              assert(m == getLastMessage(), "decoded once per invocation")
              assert(math.type(up.f_cnt) == "integer", "f_cnt " .. math.type(up.f_cnt))
              assert(math.type(up.f_port) == "integer")
              assert(type(up.settings.frequency) == "string", "frequency stays a string")
              assert(math.type(up.decoded_payload.sensorTemperature) == "float")
              assert(up.decoded_payload.thermistorProperlyConnected == true)
              assert(#up.rx_metadata == 1 and up.rx_metadata[1].rssi == -31)
              assert(#m.correlation_ids == 1)
              local bytes = ttn.payloadBytes(m)
              assert(#bytes == 9 and bytes[1] == 0xB1, "payload bytes")
              assert(ttn.hex.encode(ttn.base64.decode(up.frm_payload)) == "B100001001E500D701")
              publish({f_port = 1, bytes = bytes})
            end)
            """, bridge: bridge)
        try script.handle(LuaMessage(json: try Fixtures.bytes("v3-up-decoded.json"), deviceID: "eui-70b3d52dd600035a"))
        #expect(bridge.published.first?.downlink.contains("\"frm_payload\":\"sQAAEAHlANcB\"") == true)
    }

    @Test("every uplink fixture converts", arguments: [
        "v3-up-decoded.json", "v3-up-legacy-shape.json", "v3-up-no-decoder.json", "v3-up-multi-gateway.json",
        "v3-up-mac-only.json", "v3-up-normalized.json", "v2-up.json",
    ])
    func allFixtures(name: String) throws {
        let script = try makeScript("""
            setMessageHandler(function()
              local m = getLastMessage()
              assert(type(m) == "table")
              \(luaSame)
              assert(same(ttn.json.decode(ttn.json.encode(m)), m), "round trip")
            end)
            """)
        try script.handle(LuaMessage(json: try Fixtures.bytes(name), deviceID: "d"))
    }

    @Test("JSON conventions: null sentinel, empty arrays, escapes, integers and floats")
    func jsonConventions() throws {
        let script = try makeScript(#"""
            local t = ttn.json.decode([[{"a":null,"b":[],"c":{},"d":"\u00e9\ud83d\ude00\n","e":3,"f":3.0,"g":-1e3,"h":9007199254740993}]])
            assert(t.a == ttn.null and t.a ~= nil)
            assert(ttn.json.encode(t.b) == "[]" and ttn.json.encode(t.c) == "{}")
            assert(t.d == "é😀\n")
            assert(math.type(t.e) == "integer" and math.type(t.f) == "float" and t.g == -1000)
            assert(t.h == 9007199254740993, "int64 precision kept")
            assert(ttn.json.encode({1, 2, 3}) == "[1,2,3]")
            assert(ttn.json.encode({x = ttn.null}) == '{"x":null}')
            assert(ttn.json.encode("a\"b") == '"a\\"b"')
            assert(not pcall(ttn.json.decode, '{"a":'))
            assert(not pcall(ttn.json.decode, '[1,]'))
            assert(not pcall(ttn.json.decode, [["\ud800"]]))
            for _, bad in ipairs({"01", "1.", ".5", "1e", "-", "+1", "0x10", "1 2", "nul", "[1}", '"a', "\"\1\""}) do
              assert(not pcall(ttn.json.decode, bad), bad)
            end
            local big = ttn.json.decode("1" .. ("0"):rep(70))
            assert(math.type(big) == "float" and big == 1e70, "a long integer is a float, not truncated")
            assert(ttn.json.decode("-9223372036854775808") == math.mininteger)
            assert(math.type(ttn.json.decode("9223372036854775808")) == "float")
            assert(ttn.json.encode(3.0) == "3.0" and math.type(ttn.json.decode(ttn.json.encode(3.0))) == "float")
            assert(ttn.json.encode(0.1) == "0.1" and ttn.json.encode(-2.5e-8) == "-2.5e-08")
            assert(tostring(ttn.null) == "null" and ttn.json.encode({ttn.null}) == "[null]")
            assert(ttn.json.encode(ttn.json.array()) == "[]" and ttn.json.encode(ttn.json.array({1})) == "[1]")
            assert(not pcall(ttn.json.array, setmetatable({}, {})))
            assert(not pcall(ttn.json.encode, print))
            local deep = {} for i = 1, 300 do deep = {deep} end
            assert(not pcall(ttn.json.encode, deep))
            assert(not pcall(ttn.json.decode, ("["):rep(300) .. ("]"):rep(300)))
            local cyclic = {} cyclic.self = cyclic
            assert(not pcall(ttn.json.encode, cyclic))
            setMessageHandler(function() end)
            """#)
        #expect(script.hasMessageHandler)
    }

    @Test("getAllMessages returns the host's history as tables")
    func allMessages() throws {
        let bridge = MemoryBridge(messages: [Array(#"{"n":1}"#.utf8), Array(#"{"n":2}"#.utf8)])
        let script = try makeScript("""
            setMessageHandler(function()
              local all = getAllMessages()
              assert(#all == 2 and all[1].n == 1 and all[2].n == 2)
              assert(ttn.getAllMessages == getAllMessages)
              publish({f_port = 1, bytes = {#all}})
            end)
            """, bridge: bridge)
        try script.handle(emptyUplink)
        #expect(bridge.published.count == 1)
    }

    @Test("print and ttn.log go to the logger")
    func logging() throws {
        let capture = LogCapture()
        let logger = Logger(label: "t") { _ in capture }
        let script = try makeScript("print('hello', 42) ttn.log('from', 'ttn') setMessageHandler(function() end)", logger: logger)
        #expect(capture.messages == ["hello 42", "from ttn"])
        _ = script
    }

    @Test("globals persist between invocations")
    func persistentGlobals() throws {
        let bridge = MemoryBridge()
        let script = try makeScript("""
            count = 0
            setMessageHandler(function() count = count + 1; publish({f_port = 1, bytes = {count}}) end)
            """, bridge: bridge)
        for _ in 0..<3 { try script.handle(emptyUplink) }
        #expect(bridge.published.last?.downlink.contains("\"frm_payload\":\"Aw==\"") == true)
    }

    @Test("sandbox escapes are refused", arguments: [
        "io.open('/etc/passwd')", "os.execute('true')", "os.exit(1)", "require('os')", "package.loadlib('x', 'y')",
        "dofile('/etc/passwd')", "loadfile('/etc/passwd')", "debug.getregistry()",
        "string.dump(print)", "collectgarbage('count')", "os.getenv('HOME')", "os.remove('/tmp/x')",
        // load is text-only: a crafted binary chunk header is refused (string.dump, which would make one, is gone).
        "error(select(2, load('\\27LuaT\\0\\25\\147\\r\\n\\26\\n')))", "load('return 1', 'x', 'b')",
        "setmetatable({}, {__gc = function() while true do end end})", "string.upper = nil", "ttn.publish = print",
        "getmetatable('').__index.upper = nil", "local s = getmetatable('').__index", "debug.sethook()", "require('debug')",
        "rawget(string, 'dump')(print)", "coroutine.wrap(string.dump)(print)",
    ])
    func sandbox(escape: String) throws {
        let error = #expect(throws: LuaError.self) { try makeScript("\(escape)\nsetMessageHandler(function() end)") }
        #expect(error?.kind == .runtime)
        #expect(error?.message.contains("test.lua:1:") == true, "\(error?.message ?? "")")
    }

    /// Escape attempts, each as a script top level that must run to the end: it asserts what the script may see.
    static let escapes: [(String, String)] = [
        ("the debug library and the other hidden globals", #"""
            for _, name in ipairs({"debug", "io", "package", "require", "dofile", "loadfile", "collectgarbage", "warn",
                                   "__ttn_publish", "__ttn_log", "__ttn_set_device", "__ttn_all"}) do
              assert(_ENV[name] == nil and rawget(_ENV, name) == nil, name)
            end
            assert(not pcall(load("return debug.getregistry()")))
            """#),
        ("the registry and metatables through getmetatable", #"""
            assert(getmetatable("") == false)
            local ok, err = pcall(function() return getmetatable("").__index end)
            assert(not ok and err:find("index a boolean"), err)
            assert(("").__index == nil and ("x").dump == nil)
            for _, v in ipairs({ttn, ttn.json, ttn.base64, string, table, math, os, coroutine, utf8, _G, ttn.null,
                                ttn.json.decode("[1]"), getLastMessage, 1, true}) do
              local mt = getmetatable(v)
              assert(mt == nil or mt == false, tostring(v))
            end
            """#),
        ("rawget and rawset on _ENV, _G and the libraries", #"""
            assert(rawequal(_G, _ENV))
            assert(rawget(_ENV, "string") == nil and rawget(string, "upper") == nil, "libraries are empty read-only proxies")
            assert(next(ttn) == nil and next(string) == nil)
            rawset(_ENV, "type", function() return "table" end)
            rawset(_G, "tostring", nil)
            rawset(_ENV, "math", {type = function() return "integer" end})
            rawset(string, "upper", function() return "pwned" end)
            rawset(ttn, "publish", function() error("pwned") end)
            assert(("a"):upper() == "A", "string methods use the real library")
            assert(string.upper("a") == "pwned", "the script's own proxy, changed only for itself")
            """#),
        ("setmetatable on the shared libraries and finalizers", #"""
            for _, t in ipairs({string, table, math, os, coroutine, utf8, ttn, ttn.json, _G, ttn.json.decode("[1]")}) do
              local ok, err = pcall(setmetatable, t, {__index = function() return "pwned" end})
              assert(not ok and err:find("protected metatable"), err)
            end
            assert(not pcall(setmetatable, {}, {__gc = false}))
            -- A __gc added after setmetatable never makes a finalizer (it would run at lua_close, without limits).
            local mt = {}
            lateFinalized = setmetatable({}, mt)
            mt.__gc = function() publish({f_port = 99, bytes = {1}}, "finalizer") end
            """#),
        ("load with mode b and handcrafted binary chunks", #"""
            local ok, err = pcall(load, "return 1", "x", "b")
            assert(not ok and err:find("only text chunks"), err)
            local chunk = "\27LuaT\0\25\147\r\n\26\n\4\8\8xV\0\0\0\0\0\0\0\0\0\0\0\40w@\1\128\128\128\0\1\2\131\0\0\0"
            for _, mode in ipairs({"bt", "t", nil}) do
              local f, message = load(chunk, "x", mode)
              assert(f == nil and message:find("binary chunk"), message)
            end
            local f, message = load("\27Lua")
            assert(f == nil and message:find("binary chunk"), message)
            assert(not pcall(load, function() return "\27Lua" end), "a reader function is refused")
            assert(string.dump == nil)
            """#),
        ("load with a custom environment", #"""
            local hidden = {"debug", "io", "package", "require", "dofile", "loadfile", "collectgarbage", "__ttn_publish", "__ttn_all"}
            for _, env in ipairs({{}, _ENV, setmetatable({}, {__index = _G}), {string = string, _G = _G}}) do
              for _, name in ipairs(hidden) do assert(load("return " .. name, "x", "t", env)() == nil, name) end
              assert(load("return string and string.dump", "x", "t", env)() == nil)
            end
            assert(not pcall(load("return x", "x", "t", nil)), "a nil environment has no globals at all")
            assert(type(load("return upper", "x", "t", "")()) == "function", "a string environment reaches string functions only")
            assert(load("return _ENV", "x", "t", "")() == "")
            """#),
        ("string.dump and collectgarbage", #"""
            assert(string.dump == nil and ("").dump == nil and collectgarbage == nil)
            assert(not pcall(function() return string.dump(print) end))
            assert(not pcall(function() collectgarbage("stop") end))
            """#),
        ("coroutine tricks", #"""
            assert(not pcall(coroutine.yield), "no yield outside a coroutine")
            local sorter = coroutine.wrap(function() table.sort({3, 2, 1}, function(a, b) coroutine.yield() return a < b end) end)
            assert(not pcall(sorter), "no yield across a C call")
            local selfish
            selfish = coroutine.create(function() return coroutine.resume(selfish) end)
            local ok, inner = coroutine.resume(selfish)
            assert(ok and inner == false, "a coroutine cannot resume itself")
            assert(not pcall(coroutine.close, coroutine.running()))
            local function nest(n) return coroutine.wrap(function() if n == 0 then return 0 end return nest(n - 1)() + 1 end) end
            local deepOk, deep = pcall(nest(100000))
            assert(not deepOk and tostring(deep):find("C stack overflow"), tostring(deep))
            local function recurse() return pcall(recurse) end
            assert(recurse() ~= nil)
            kept = coroutine.wrap(function() while true do coroutine.yield(getLastMessage()) end end)
            assert(kept() == nil, "no message at the top level")
            """#),
    ]

    @Test("escape attempts are contained: the script's own API and a healthy script beside it are unaffected",
          arguments: escapes.map(\.0))
    func containedEscapes(name: String) throws {
        let attempt = try #require(Self.escapes.first { $0.0 == name }?.1)
        let bridge = MemoryBridge()
        let healthySource = """
            setMessageHandler(function()
              local m = getLastMessage()
              assert(type(string) == "table" and string.upper("abc") == "ABC" and ("x"):rep(3) == "xxx" and debug == nil)
              assert(math.type(m.uplink_message.f_cnt) == "integer" and tostring(1) == "1")
              publish({f_port = 1, bytes = ttn.payloadBytes(m)})
            end)
            """
        let healthy = try makeScript(healthySource, name: "healthy.lua", bridge: bridge)
        var attacker: LuaScript? = try makeScript("""
            \(attempt)
            setMessageHandler(function()
              local m = getLastMessage()
              if kept then assert(kept() == m, "a kept coroutine sees this invocation's message") end
              publish({f_port = 2, bytes = ttn.payloadBytes(m)})
            end)
            """, name: "attacker.lua", bridge: bridge)
        let uplink = LuaMessage(json: try Fixtures.bytes("v3-up-decoded.json"), deviceID: "dev")
        try attacker?.handle(uplink)
        try healthy.handle(uplink)
        let fresh = try makeScript(healthySource, name: "fresh.lua", bridge: bridge)
        try fresh.handle(uplink)
        attacker = nil  // lua_close: no finalizer may run
        let sent = bridge.published
        #expect(sent.count == 3, "\(sent)")
        let payload = "\"frm_payload\":\"sQAAEAHlANcB\""
        #expect(sent.filter { $0.downlink.contains(payload) }.count == 3, "every script read the right payload: \(sent)")
        #expect(sent.map { $0.downlink.contains("\"f_port\":2") } == [true, false, false], "\(sent)")
        #expect(!sent.contains { $0.deviceID == "finalizer" })
    }

    @Test("an error object with an endless __tostring cannot stall the host, which never calls it")
    func errorObjectToString() throws {
        let script = try makeScript("""
            setMessageHandler(function() error(setmetatable({}, {__tostring = function() while true do end end})) end)
            """, limits: tightLimits)
        let error = #expect(throws: LuaError.self) { try script.handle(emptyUplink) }
        #expect(error?.kind == .runtime)
        #expect(error?.message.contains("table") == true, "\(error?.message ?? "")")
    }

    @Test("a coroutine made at load and resumed by a later invocation is still under the time limit")
    func keptCoroutineLimit() throws {
        let bridge = MemoryBridge()
        let script = try makeScript("""
            stuck = coroutine.wrap(function() coroutine.yield() while true do end end)
            stuck()
            calls = 0
            setMessageHandler(function()
              calls = calls + 1
              if calls == 1 then pcall(stuck) end
              publish({f_port = 1, bytes = {calls}})
            end)
            """, name: "kept.lua", bridge: bridge, limits: tightLimits)
        let error = #expect(throws: LuaError.self) { try script.handle(emptyUplink) }
        #expect(error?.kind == .timeLimit, "\(error?.message ?? "")")
        try script.handle(emptyUplink)
        #expect(bridge.published.count == 1, "the next invocation runs")
    }

    @Test("binary chunks are refused")
    func binaryChunk() {
        let chunk: [UInt8] = [0x1B] + Array("LuaT".utf8) + [0, 0x19, 0x93, 0x0D, 0x0A, 0x1A, 0x0A]
        let error = #expect(throws: LuaError.self) {
            try LuaScript(name: "bin.lua", source: chunk, limits: LuaLimits(), bridge: MemoryBridge(), logger: quietLogger)
        }
        #expect(error?.kind == .syntax)
        #expect(error?.message.contains("binary chunk") == true)
    }

    @Test("a text-only load works in the script's environment; binary chunks are named in the refusal")
    func textLoad() throws {
        _ = try makeScript(#"""
            x = 41
            assert(load("x = x + 1; return x")() == 42)
            local f, err = load("\27LuaT\0\25\147\r\n\26\n")
            assert(f == nil and err:find("binary chunk"), err)
            assert(load("return y", "chunk", "t", {y = 7})() == 7)
            setMessageHandler(function() end)
            """#)
    }

    @Test("scripts own their globals; the API and libraries they read cannot be broken by assignments")
    func environment() throws {
        let bridge = MemoryBridge()
        let script = try makeScript("""
            type, error, tostring, ipairs = "sensor", 1, false, 0  -- would break the API if it shared these
            getLastMessage = function() return {} end
            assert(_G == _ENV and getmetatable(_ENV) == false and getmetatable("") == false)
            local names = {}
            for k in pairs(ttn) do names[#names + 1] = k end
            assert(#names >= 10, "pairs over the read-only ttn table")
            assert(not pcall(function() ttn.json.decode = nil end))
            assert(tostring == false and string.format("%d", 3) == "3")
            setMessageHandler(function() publish({f_port = 1, bytes = ttn.payloadBytes(ttn.getLastMessage())}) end)
            """, bridge: bridge)
        try script.handle(LuaMessage(json: try Fixtures.bytes("v3-up-decoded.json"), deviceID: "d"))
        #expect(bridge.published.first?.downlink.contains("sQAAEAHlANcB") == true)
    }

    @Test("os keeps only time, clock, date and difftime")
    func osSubset() throws {
        _ = try makeScript("""
            assert(type(os.time()) == "number" and type(os.clock()) == "number" and os.date("%Y") and os.difftime(2, 1) == 1)
            assert(os.execute == nil and io == nil and debug == nil and package == nil)
            setMessageHandler(function() end)
            """)
    }

    @Test("each limit aborts the invocation with file and line; the same state handles the next message", arguments: [
        ("while true do end", [LuaError.Kind.timeLimit]),
        ("while true do pcall(function() while true do end end) end", [.timeLimit]),
        ("local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(100) .. i end", [.memoryLimit, .timeLimit]),
        // Deep recursion ends in "stack overflow", or in the memory cap when that is smaller than Lua's stack limit.
        ("local function f() return f() + 1 end f()", [.runtime, .memoryLimit]),
        ("local x = nil; x.field = 1", [.runtime]),
    ])
    func limits(body: String, kinds: [LuaError.Kind]) throws {
        let bridge = MemoryBridge()
        let script = try makeScript("""
            calls = 0
            setMessageHandler(function()
              calls = calls + 1
              if calls == 1 then
                \(body)
              end
              publish({f_port = 1, bytes = {calls}})
            end)
            """, name: "bad.lua", bridge: bridge, limits: kinds.contains(.timeLimit) ? tightLimits : memoryOnlyLimits)
        let error = #expect(throws: LuaError.self) { try script.handle(emptyUplink) }
        let kind = try #require(error?.kind)
        #expect(kinds.contains(kind), "\(error?.message ?? "")")
        #expect(error?.script == "bad.lua" && error?.message.hasPrefix("bad.lua:") == true, "\(error?.message ?? "")")
        if kind != .memoryLimit { #expect(error?.line != nil, "\(error?.message ?? "")") }
        try script.handle(emptyUplink)
        #expect(bridge.published.count == 1, "the next message is handled")
    }

    @Test("a limit cannot be swallowed by pcall inside coroutines either")
    func limitInCoroutines() throws {
        let script = try makeScript("""
            setMessageHandler(function()
              while true do
                local co = coroutine.wrap(function() while true do pcall(function() while true do end end) end end)
                pcall(co)
              end
            end)
            """, name: "co.lua", limits: tightLimits)
        let error = #expect(throws: LuaError.self) { try script.handle(emptyUplink) }
        #expect(error?.kind == .timeLimit)
        #expect(error?.line != nil, "\(error?.message ?? "")")
    }

    @Test("json.encode's output counts against the memory cap")
    func encodeUnderCap() throws {
        let script = try makeScript("""
            local s = ("x"):rep(1024 * 1024)
            local t = {}
            for i = 1, 64 do t[i] = s end
            setMessageHandler(function() local json = ttn.json.encode(t) end)
            """, limits: memoryOnlyLimits)
        let error = #expect(throws: LuaError.self) { try script.handle(emptyUplink) }
        #expect(error?.kind == .memoryLimit, "\(error?.message ?? "")")
    }

    @Test("a limit caught by coroutine.resume still fails the invocation, at the top level too")
    func limitCaughtByResume() throws {
        let body = "return pcall(coroutine.resume, coroutine.create(function() while true do end end))"
        let script = try makeScript("setMessageHandler(function() \(body) end)", name: "resume.lua", limits: tightLimits)
        let error = #expect(throws: LuaError.self) { try script.handle(emptyUplink) }
        #expect(error?.kind == .timeLimit)
        #expect(error?.message.hasPrefix("resume.lua") == true)
        let topLevel = "pcall(coroutine.resume, coroutine.create(function() while true do end end))"
        let load = #expect(throws: LuaError.self) { try makeScript("\(topLevel)\nsetMessageHandler(function() end)", limits: tightLimits) }
        #expect(load?.kind == .timeLimit)
    }

    @Test("an instruction budget stops a loop that the clock would not")
    func instructionBudget() throws {
        var limits = tightLimits
        limits.timeLimit = .seconds(60)
        limits.instructionLimit = 100_000
        let script = try makeScript("setMessageHandler(function() for i = 1, 1e9 do end end)", limits: limits)
        let error = #expect(throws: LuaError.self) { try script.handle(emptyUplink) }
        #expect(error?.kind == .instructionLimit)
    }

    @Test("an endless top level fails the load, also inside pcall")
    func endlessTopLevel() {
        let error = #expect(throws: LuaError.self) { try makeScript("pcall(function() while true do end end)", limits: tightLimits) }
        #expect(error?.kind == .timeLimit)
    }

    /// A host whose `publish` tells a waiting thread that the script is running.
    final class RunningSignal: LuaHostBridge {
        let running = DispatchSemaphore(value: 0)
        let calls = Locked(0)

        func allMessages() -> [[UInt8]] { [] }

        func publish(_ downlink: String, deviceID: String, queue: DownlinkQueue?) throws -> String {
            calls.withLock { $0 += 1 }
            running.signal()
            return "running"
        }
    }

    @Test("interrupt() from another thread aborts a running invocation", .timeLimit(.minutes(1)))
    func interrupt() throws {
        var limits = tightLimits
        // Only limits how long a test whose interrupt is lost keeps running; it ends as .timeLimit, not .interrupted.
        limits.timeLimit = .seconds(30)
        limits.instructionLimit = Int.max
        let bridge = RunningSignal()
        // The handler says it runs (publish), and only then loops forever.
        let script = try LuaScript(
            name: "endless.lua",
            source: Array("setMessageHandler(function() publish('{\"port\":1}'); while true do end end)".utf8),
            limits: limits, bridge: bridge, logger: quietLogger
        )
        let interrupter = script.interrupter
        let running = bridge.running
        Thread.detachNewThread {
            running.wait()  // the invocation has started: the interrupt lands in its endless loop
            interrupter.interrupt()
        }
        let error = #expect(throws: LuaError.self) { try script.handle(emptyUplink) }
        running.signal()  // releases the thread should the handler have ended without publishing
        #expect(error?.kind == .interrupted, "\(error?.message ?? "")")
        #expect(bridge.calls.withLock { $0 } == 1, "the handler ran up to its loop, once")
    }

    @Test("a script without a handler says so")
    func noHandler() throws {
        let script = try makeScript("x = 1")
        let error = #expect(throws: LuaError.self) { try script.handle(emptyUplink) }
        #expect(error?.kind == .noHandler)
        #expect(error?.message.contains("setMessageHandler") == true)
    }

    @Test("a malformed uplink is a runtime error of that invocation only")
    func malformedUplink() throws {
        let script = try makeScript("setMessageHandler(function() local m = getLastMessage() end)")
        let error = #expect(throws: LuaError.self) { try script.handle(LuaMessage(json: Array("{\"a\":".utf8), deviceID: "d")) }
        #expect(error?.message.contains("invalid JSON") == true)
        try script.handle(emptyUplink)
    }
}

@Suite("Reloading a script")
struct SlotTests {
    @Test("a syntax error on reload keeps the old version; a good one replaces it")
    func reloadRule() throws {
        let bridge = MemoryBridge()
        let slot = try LuaScriptSlot(
            name: "r.lua", source: Array("setMessageHandler(function() publish({f_port = 1, bytes = {1}}) end)".utf8),
            limits: LuaLimits(), bridge: bridge, logger: quietLogger
        )
        let syntax = #expect(throws: LuaError.self) { try slot.load(source: Array("setMessageHandler(function( end".utf8)) }
        #expect(syntax?.kind == .syntax)
        #expect(syntax?.message.hasPrefix("r.lua:1:") == true)
        let failing = #expect(throws: LuaError.self) { try slot.load(source: Array("error('top level fails')".utf8)) }
        #expect(failing?.kind == .runtime)
        try slot.handle(emptyUplink)
        #expect(bridge.published.last?.downlink.contains("AQ==") == true, "old version still runs")
        try slot.load(source: Array("setMessageHandler(function() publish({f_port = 1, bytes = {2}}) end)".utf8))
        try slot.handle(emptyUplink)
        #expect(bridge.published.last?.downlink.contains("Ag==") == true, "new version runs")
    }

    @Test("a state left full by a memory bomb is rebuilt and keeps working")
    func rebuildAfterMemoryBomb() throws {
        let bridge = MemoryBridge()
        let slot = try LuaScriptSlot(name: "m.lua", source: Array("""
            hoard = {}
            setMessageHandler(function()
              if #hoard == 0 then for i = 1, 1e9 do hoard[i] = ('x'):rep(64) .. i end end
              publish({f_port = 1, bytes = {7}})
            end)
            """.utf8), limits: memoryOnlyLimits, bridge: bridge, logger: quietLogger)
        let error = #expect(throws: LuaError.self) { try slot.handle(emptyUplink) }
        #expect(error?.kind == .memoryLimit)
        #expect(slot.memoryInUse < memoryOnlyLimits.memoryLimit / 2, "rebuilt: the hoard is gone")
        #expect(throws: LuaError.self) { try slot.handle(emptyUplink) }  // the fresh state fills up again
    }
}
