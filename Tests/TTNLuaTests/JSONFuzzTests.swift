import TestSupport
import Logging
import TTNSync
import Testing

@testable import TTNLua
@testable import TTNMQTT

/// Fuzzing the JSON parser and the Lua decoding behind `getLastMessage()`, through the path an uplink takes:
/// `LuaScript.handle`.
///
/// Inputs: real messages mutated at the byte level, random JSON with random spelling (and mutations of it), and
/// short runs of tokens parsers get wrong. Each must either become a Lua value, exactly when it is JSON by the
/// grammar (checked by an independent recognizer, with the parser's nesting limit), of the type its first
/// character says, that encodes and decodes back to the same value; or fail that invocation with "invalid JSON"
/// and a byte offset inside the input. Inputs that the client's `JSONTape` accepts run a second time with its
/// tape, as the host passes it: that path must decode to the same type without error. The
/// seed is printed; `TTN_FUZZ_SEED` replays a run, `TTN_FUZZ_CASES` sets the count (default 100,000).
@Suite("Fuzzing the Lua JSON decoder")
struct LuaJSONFuzzTests {
    /// The handler: decode, report the type, and check the round trip through ttn.json.encode and decode.
    static let script = """
        local encode, decode, null = ttn.json.encode, ttn.json.decode, ttn.null
        \(luaSame)
        setMessageHandler(function()
          local m = getLastMessage()  -- a malformed message raises "invalid JSON: ... at byte N" here
          local kind = m == null and "null" or type(m)
          local ok, text = pcall(encode, m)
          if ok then
            local decoded, back = pcall(decode, text)
            if not decoded then error("ROUNDTRIP: " .. text .. " does not decode: " .. tostring(back), 0) end
            if not same(back, m) then error("ROUNDTRIP: " .. text .. " decodes to another value", 0) end
          elseif not tostring(text):find("infinity", 1, true) then  -- 1e999 reads as inf, which JSON cannot write
            error("ROUNDTRIP: the decoded value does not encode: " .. tostring(text), 0)
          end
          ttn.log(kind)
        end)
        """

    static let snippets = [
        #"{"a":null,"b":[],"c":{},"d":"\u00e9\ud83d\ude00\n","e":3,"f":3.0,"g":-1e3,"h":9007199254740993}"#,
        "[1,2,3]", "\"text\"", "42", "-0.0", "true", "null", "[[[]]]", #"{"":{"":[{}]}}"#, "1e308", "-9223372036854775808",
    ].map { Array($0.utf8) }

    @Test("getLastMessage() decodes what is JSON and cleanly refuses the rest")
    func decoder() throws {
        let run = FuzzRun("LuaJSONFuzzTests/decoder")
        let log = LastLine()
        let bridge = MemoryBridge()
        let limits = LuaLimits(timeLimit: .seconds(30), instructionLimit: 1_000_000_000_000, memoryLimit: 64 * 1024 * 1024)
        let script = try makeScript(Self.script, name: "fuzz.lua", bridge: bridge, limits: limits, logger: Logger(label: "fuzz") { _ in log })
        let fixtures = try ["v3-up-decoded.json", "v3-up-multi-gateway.json", "v3-up-mac-only.json", "v3-up-normalized.json",
                            "v2-up.json", "v3-down-push-decoded.json", "v3-service-data.json", "v3-down-nack.json"].map { try Fixtures.bytes($0) }
        let mutator = FuzzMutator(corpus: fixtures + Self.snippets)
        var failures = FuzzFailures()
        var decoded = 0, refused = 0, withTape = 0
        for index in run.indices {
            var random = run.random(case: index)
            var input: [UInt8]
            var mustBeJSON = false
            switch random.below(100) {
            case 0..<40:
                input = mutator.mutant(&random)
            case 40..<70:
                var writer = FuzzJSONWriter()
                writer.write(FuzzJSON.random(&random, depth: random.below(5)), &random)
                input = writer.bytes
                mustBeJSON = true
            case 70..<85:
                var writer = FuzzJSONWriter()
                writer.write(FuzzJSON.random(&random, depth: 3), &random)
                input = mutator.mutate(writer.bytes, &random)
            case 85..<90:  // nesting around the parser's limit
                input = FuzzMutator.nest(depth: JSONTape.maximumDepth - 5 + random.below(10), &random)
            default:
                input = []
                for _ in 0...random.below(6) { input += random.pick(FuzzMutator.tokens) }
            }
            let isJSON = fuzzIsJSON(input, maximumDepth: JSONTape.maximumDepth)
            let context = { "case \(index), \(run.replay(index)), input: \(fuzzDescribe(input))" }
            if mustBeJSON && !isJSON { failures.add("the writer wrote what the recognizer refuses (a test bug); \(context())") }
            do {
                try script.handle(LuaMessage(json: input, deviceID: "d"))
                decoded += 1
                if !isJSON { failures.add("decoded \(log.last ?? "?") from input that is not JSON; \(context())") }
                if let expected = Self.kind(of: input), log.last != expected {
                    failures.add("decoded a \(log.last ?? "?"), not a \(expected); \(context())")
                }
                if let tape = try? JSONTape(input) {
                    let parsedHere = log.last
                    do {
                        try script.handle(LuaMessage(tape: tape, deviceID: "d"))
                        withTape += 1
                        if log.last != parsedHere {
                            failures.add("with the host's tape: a \(log.last ?? "?"), parsed here: a \(parsedHere ?? "?"); \(context())")
                        }
                    } catch {
                        failures.add("with the host's tape: \(error.message); \(context())")
                    }
                }
            } catch {
                refused += 1
                if isJSON {
                    failures.add("refused JSON: \(error.message); \(context())")
                } else if error.kind != .runtime || !error.message.contains("invalid JSON") || error.message.contains("ROUNDTRIP") {
                    failures.add("refused with \(error.kind) '\(error.message)', not an invalid JSON error; \(context())")
                } else if let offset = Self.offset(in: error.message), offset > input.count {
                    failures.add("the error names byte \(offset) of a \(input.count)-byte input; \(context())")
                }
            }
        }
        for message in failures.messages { Issue.record("\(run.name): \(message)") }
        #expect(failures.count == 0, "\(failures.count) failing cases of \(run.indices.count); \(run)")
        let minimum = run.indices.count / 10
        #expect(decoded >= minimum && refused >= minimum, "decoded \(decoded), refused \(refused); \(run)")
        #expect(withTape >= minimum, "\(withTape) cases with the host's tape; \(run)")
        // The state is unharmed: a healthy uplink is handled, and the decoded tables did not pile up.
        try script.handle(emptyUplink)
        #expect(log.last == "table")
        #expect(script.memoryInUse < 16 * 1024 * 1024, "\(script.memoryInUse) bytes in use")
    }

    /// The Lua type the first non-space character announces.
    static func kind(of input: [UInt8]) -> String? {
        guard let first = input.first(where: { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }) else { return nil }
        switch first {
        case UInt8(ascii: "{"), UInt8(ascii: "["): return "table"
        case UInt8(ascii: "\""): return "string"
        case UInt8(ascii: "t"), UInt8(ascii: "f"): return "boolean"
        case UInt8(ascii: "n"): return "null"
        default: return "number"
        }
    }

    /// N of "at byte N" in a decoder error.
    static func offset(in message: String) -> Int? {
        guard let range = message.range(of: "at byte ") else { return nil }
        return Int(message[range.upperBound...].prefix { $0.isNumber })
    }
}

/// A log handler that keeps only the last message: what the fuzz handler reported.
final class LastLine: LogHandler, @unchecked Sendable {
    // @unchecked Sendable: `line` sits behind a lock; the LogHandler properties are set once, before logging.
    private let line = Locked<String?>(nil)
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) { line.withLock { $0 = "\(event.message)" } }

    var last: String? { line.withLock { $0 } }
}
