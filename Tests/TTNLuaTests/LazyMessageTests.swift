import TestSupport
import Testing
import TTNMQTT

@testable import TTNLua

/// `getLastMessage()` hands out lazy tables that decode each object or array on first use. A script must not be
/// able to tell: every way of reading or writing a table sees what an eager decode (`getAllMessages()`, which
/// goes through `ttn.json.decode`) gives, whether the containers come from the host's outline or from a scan.
@Suite("getLastMessage() decodes lazily, unnoticed")
struct LazyMessageTests {
    /// One check per invocation, each on a message no earlier check has decoded; `e` is the eager decode.
    static let checks = [
        "assert(same(e, m))",
        "local k, v = next(m); assert(k ~= nil and same(v, e[k]))",
        "local n = 0; for k, v in pairs(m) do n = n + 1; assert(same(v, e[k])) end; for _ in pairs(e) do n = n - 1 end; assert(n == 0)",
        "assert(rawget(m, 'uplink_message') ~= nil and rawget(m, 'uplink_message').f_cnt == e.uplink_message.f_cnt)",
        "assert(rawlen(m.correlation_ids) == #e.correlation_ids)",
        "assert(#m.correlation_ids == #e.correlation_ids and #m.correlation_ids > 0)",
        "assert(getmetatable(m) == getmetatable(e) and getmetatable(m.correlation_ids) == getmetatable(e.correlation_ids))",
        "assert(tostring(m.correlation_ids):match('^json.array: ') and tostring(m):match('^table: '))",
        "assert(same(ttn.json.decode(ttn.json.encode(m)), e))",
        "assert(ttn.json.encode(m.correlation_ids) == ttn.json.encode(e.correlation_ids))",
        "assert(ttn.json.array(m.correlation_ids) == m.correlation_ids and #m.correlation_ids == #e.correlation_ids)",
        "assert(table.concat(m.correlation_ids, ',') == table.concat(e.correlation_ids, ','))",
        "table.insert(m.correlation_ids, 'x'); assert(#m.correlation_ids == #e.correlation_ids + 1 and m.correlation_ids[1] == e.correlation_ids[1])",
        "assert(select('#', table.unpack(m.correlation_ids)) == #e.correlation_ids)",
        "local seen = 0; for i, v in ipairs(m.correlation_ids) do seen = i; assert(v == e.correlation_ids[i]) end; assert(seen == #e.correlation_ids)",
        "m.added = 1; assert(m.added == 1 and same(m.uplink_message, e.uplink_message))",
        "rawset(m, 'added', 1); assert(same(m.uplink_message, e.uplink_message))",
        "m.uplink_message = nil; assert(m.uplink_message == nil and next(m) ~= nil)",
        "setmetatable(m, {}); assert(same(m.uplink_message, e.uplink_message))",
        "local up = m.uplink_message; kept = up.rx_metadata",  // read again by the next check
        "assert(same(kept, e.uplink_message.rx_metadata))",  // a table kept from the last invocation
        "assert(m.missing == nil and m.uplink_message.missing == nil and m[1] == nil)",
        "assert(getLastMessage() == m)",
        // Objects decode member by member: a member the script removed or replaced stays so, whole decode or not.
        "assert(m.received_at == e.received_at); m.received_at = nil; assert(m.received_at == nil and rawget(m, 'received_at') == nil)",
        "local up = m.uplink_message; m.uplink_message = nil; assert(m.uplink_message == nil); e.uplink_message = nil; assert(same(m, e))",
        "m.uplink_message = 5; assert(m.uplink_message == 5); e.uplink_message = 5; assert(same(m, e))",
        "local up = m.uplink_message; up.f_cnt = nil; up.f_port = 'x'; assert(up.f_cnt == nil and up.f_port == 'x'); "
            + "e.uplink_message.f_cnt = nil; e.uplink_message.f_port = 'x'; assert(same(m, e))",
        "m.uplink_message.f_cnt = nil; local n = 0; for k in pairs(m.uplink_message) do assert(k ~= 'f_cnt'); n = n + 1 end; "
            + "e.uplink_message.f_cnt = nil; for _ in pairs(e.uplink_message) do n = n - 1 end; assert(n == 0)",
        "m[1] = 'one'; m[true] = 'yes'; assert(m[1] == 'one' and m[true] == 'yes' and same(m.uplink_message, e.uplink_message))",
    ]

    /// Runs each of `checks` once, in an invocation of its own for `json`; `m` is `getLastMessage()` and `e` the
    /// eager decode of the same uplink (`getAllMessages()[1]`, which goes through `ttn.json.decode`).
    static func run(_ checks: [String], on json: [UInt8], withTape: Bool) throws {
        let source = """
            \(luaSame)
            local checks = {\(checks.map { "function(m, e) \($0) end" }.joined(separator: ",\n"))}
            local run = 0
            setMessageHandler(function()
              run = run + 1
              checks[run](getLastMessage(), getAllMessages()[1])
            end)
            """
        let script = try makeScript(source, bridge: MemoryBridge(messages: [json]))
        let message = withTape ? LuaMessage(tape: try JSONTape(json), deviceID: "d") : LuaMessage(json: json, deviceID: "d")
        for _ in checks {
            try script.handle(message)
        }
    }

    @Test("each way to read or write a table sees the eager decode", arguments: [
        ("v3-up-decoded.json", true), ("v3-up-decoded.json", false), ("v3-up-multi-gateway.json", true),
        ("v3-up-multi-gateway.json", false),
    ])
    func indistinguishable(fixture: String, withTape: Bool) throws {
        try Self.run(Self.checks, on: try Fixtures.bytes(fixture), withTape: withTape)
    }

    @Test("member by member: repeated and escaped names, large objects and null read as eagerly decoded", arguments: [true, false])
    func unusualObjects(withTape: Bool) throws {
        let large = (0..<70).map { "\"k\($0)\":\($0)" }.joined(separator: ",")
        let json = Array(#"{"d":1,"n":null,"d":{"x":2},"a\u0062":3,"\"q\"":4,"big":{\#(large)},"s":"x","e":{}}"#.utf8)
        let checks = [
            "assert(same(m.d, e.d) and m.d.x == 2)",  // the last of repeated names, as an eager decode keeps
            #"assert(m.ab == 3 and m['"q"'] == 4 and m['a\\u0062'] == nil)"#,
            "assert(m.big.k69 == 69 and m.big.k0 == 0 and same(m.big, e.big))",  // over 64 members: decoded whole
            "assert(m.n == ttn.null and m.s == 'x' and same(m.e, e.e) and next(m.e) == nil)",
            "m.d = nil; assert(m.d == nil); e.d = nil; assert(same(m, e))",  // both members named d stay removed
            "m.ab = nil; m.big.k3 = 'three'; e.ab = nil; e.big.k3 = 'three'; assert(same(m, e))",
            "assert(m.nope == nil and m[1] == nil and m[2.5] == nil and m[false] == nil); assert(same(m, e))",
        ]
        try Self.run(checks, on: json, withTape: withTape)
    }

    @Test("a message whose JSON is replaced after the host parsed it is parsed anew, never read through the old tape")
    func replacedJSON() throws {
        var message = LuaMessage(tape: try JSONTape(Array(#"{"a":{"b":[1,2]},"c":"x"}"#.utf8)), deviceID: "d")
        message.json = Array(#"{"c":"longer than the first text's member","a":{"b":[3]}}"#.utf8)
        let script = try makeScript("""
            setMessageHandler(function()
              local m = getLastMessage()
              assert(m.a.b[1] == 3 and #m.a.b == 1 and m.c == "longer than the first text's member")
            end)
            """)
        try script.handle(message)
    }
}
