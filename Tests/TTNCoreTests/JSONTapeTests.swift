import Foundation
import TestSupport
import Testing

@testable import TTNCore

@Suite("JSON tape parser")
struct JSONTapeTests {
    @Test("valid JSON texts parse", arguments: [
        "{}", "[]", "0", "-0", "1.5e-3", "-12E+2", "\"\"", "true", "false", "null", " \t\r\n{ \"a\" : [ 1 , 2 ] } \n",
        #""\u00e9\ud83d\ude00\n\"\\\/\b\f\r\t""#, "\"é😀\"", #"{"a":{"b":{"c":[[],[{}]]}}}"#,
    ])
    func valid(text: String) throws {
        _ = try JSONTape(Array(text.utf8))
    }

    @Test("invalid JSON texts are refused with a reason", arguments: [
        "", " ", "{", "}", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "[1 2]", "01", "1.", ".5", "-", "1e", "+1", "0x10",
        "tru", "nul", "True", "NaN", "Infinity", "'a'", "\"abc", "\"a\u{01}b\"", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"",
        "\"\\udc00\"", "\"\\ud800\\u0041\"", "{} {}", "[] x",
    ])
    func invalid(text: String) {
        #expect(throws: JSONTape.SyntaxError.self) { try JSONTape(Array(text.utf8)) }
    }

    @Test("invalid UTF-8 inside strings is refused: stray, truncated, overlong and surrogate sequences", arguments: [
        [0x80], [0xC0, 0x80], [0xC3], [0xE0, 0x80, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xF8, 0x88, 0x80, 0x80],
        [0xFF], [0xE2, 0x82],
    ] as [[UInt8]])
    func invalidUTF8(sequence: [UInt8]) {
        let text = Array("\"a".utf8) + sequence + Array("b\"".utf8)
        #expect(throws: JSONTape.SyntaxError.self) { try JSONTape(text) }
    }

    @Test("nesting is limited, so hostile input cannot exhaust the stack")
    func depth() throws {
        let limit = JSONTape.maximumDepth
        _ = try JSONTape(Array((String(repeating: "[", count: limit) + String(repeating: "]", count: limit)).utf8))
        #expect(throws: JSONTape.SyntaxError.self) {
            try JSONTape(Array((String(repeating: "[", count: limit + 1) + String(repeating: "]", count: limit + 1)).utf8))
        }
        #expect(throws: JSONTape.SyntaxError.self) { try JSONTape(Array(String(repeating: "[", count: 100_000).utf8)) }
    }

    @Test("a text with more elements than the parser first makes room for reads the same", arguments: [1, 100, 5000])
    func dense(count: Int) throws {
        // One digit and a comma per element: four times denser than the room made for a TTN uplink.
        let numbers = (0..<count).map { $0 % 10 }
        let tape = try JSONTape(Array("{\"n\":[\(numbers.map(String.init).joined(separator: ","))],\"s\":\"x\"}".utf8))
        #expect(tape.elements.count == count + 5)
        #expect(tape.jsonValue(at: 0) == .object(["n": .array(numbers.map { .number(Double($0)) }), "s": .string("x")]))
    }

    @Test("the tape: each value and key in document order, where it starts and ends, its size, the element after it")
    func tape() throws {
        let tape = try JSONTape(Array(#"{"a":{"b":[1,2]},"c":"x","d":[]}"#.utf8))
        // kind, start..<end, count, and the index of the element after it
        #expect(tape.elements.map { "\($0.kind) \($0.start)..<\($0.end) \($0.count) \($0.next)" } == [
            "object 0..<32 3 11", "string 2..<3 0 2", "object 5..<16 1 7", "string 7..<8 0 4", "array 10..<15 2 7",
            "number 11..<12 0 6", "number 13..<14 0 7", "string 18..<19 0 8", "string 22..<23 0 9", "string 26..<27 0 10",
            "array 29..<31 0 11",
        ])
        #expect(try JSONTape(Array(" 1 ".utf8)).elements.map { [$0.start, $0.end, $0.next] } == [[1, 2, 1]])
        #expect(try JSONTape(Array("[null,true,false]".utf8)).elements.map { "\($0.kind)" } == ["array", "null", "true", "false"])
    }

    @Test("strings resolve escapes and compare by content")
    func strings() throws {
        let tape = try JSONTape(Array(#"{"k\u0065y":"caf\u00e9 \ud83d\ude00 \"q\" \\ \/","plain":"é"}"#.utf8))
        let value = try #require(tape.member("key", of: 0))
        #expect(tape.string(at: value) == "café 😀 \"q\" \\ /")
        #expect(tape.string(at: try #require(tape.member("plain", of: 0))) == "é")
        #expect(tape.member("ke", of: 0) == nil)
    }

    @Test("several members found in one walk: by whole name, escaped or not, the last of a repeated one")
    func severalMembers() throws {
        let tape = try JSONTape(Array(#"{"f_cnt":1,"f_po\u0072t":2,"f_cn":3,"":4,"f_cnt2":5,"f_cnt":6}"#.utf8))
        let found = tape.members(["f_port", "", "f_cnt", "absent"], of: 0)
        #expect(found.indices.map { found[$0].flatMap(tape.integer(at:)) } == [2, 4, 6, nil])
        #expect(tape.members(["f_cnt"], of: 2)[0] == nil, "not an object")
    }

    @Test("integers: exact within 64 bits, nil beyond or with a fraction")
    func integers() throws {
        func integer(_ text: String) throws -> Int64? { try JSONTape(Array(text.utf8)).integer(at: 0) }
        #expect(try integer("-9223372036854775808") == Int64.min)
        #expect(try integer("9223372036854775807") == Int64.max)
        #expect(try integer("9223372036854775808") == nil)
        #expect(try integer("-9223372036854775809") == nil)
        #expect(try integer("1.0") == 1)
        #expect(try integer("2e3") == 2000)
        #expect(try integer("1.5") == nil)
    }

    @Test("doubles: nil when out of range")
    func doubles() throws {
        func double(_ text: String) throws -> Double? { try JSONTape(Array(text.utf8)).double(at: 0) }
        #expect(try double("21.5") == 21.5)
        #expect(try double("-0.000123") == -0.000123)
        #expect(try double("123456789012345678901234567890") == 123456789012345678901234567890.0)
        #expect(try double("1e999") == nil)
        #expect(try double("-1e999") == nil)
    }

    @Test("doubles: every number reads as the standard library converts its text, on the fast path or off it")
    func doublesAgree() throws {
        func double(_ text: String) throws -> Double? { try JSONTape(Array(text.utf8)).double(at: 0) }
        let edges = [
            "0", "-0", "0.0", "-0.0", "9007199254740991", "9007199254740992", "9007199254740993", "0.1", "0.3",
            "1e22", "1e23", "1e-22", "1e-23", "123456789012345e-22", "4.9e-324", "2.2250738585072014e-308",
            "1.7976931348623157e308", "3.4", "21.5", "1E+2", "1e-0", "5e-1", "0.000000000000000000001",
        ]
        for text in edges { #expect(try double(text) == Double(text), "\(text)") }
        // Seeded: TTN_FUZZ_SEED replays a run, TTN_FUZZ_CASE one number of it.
        let run = FuzzRun("JSONTapeTests/doublesAgree", defaultCases: 20_000)
        var failures = FuzzFailures()
        var compared = 0
        for index in run.indices {
            var random = run.random(case: index)
            let digits = String(random.next() >> UInt64(random.below(64)))
            let point = random.below(digits.count + 1)
            var text = digits
            if point < digits.count { text.insert(".", at: text.index(text.startIndex, offsetBy: max(1, point))) }
            if random.chance(50) { text += "e\(random.below(61) - 30)" }
            if random.chance(50) { text = "-" + text }
            guard !text.contains(".e"), !(text.hasSuffix(".")), (try? JSONTape(Array(text.utf8))) != nil else { continue }
            compared += 1
            let ours = try double(text), standard = Double(text)
            if ours != standard {
                failures.add("\(text): read as \(String(describing: ours)), the standard library says \(String(describing: standard)); \(run.replay(index))")
            }
        }
        for message in failures.messages { Issue.record("\(run.name): \(message)") }
        #expect(failures.count == 0, "\(failures.count) numbers of \(compared) read differently; \(run)")
        #expect(compared >= run.indices.count / 2, "only \(compared) of \(run.indices.count) generated numbers were JSON; \(run)")
    }

    @Test("every fixture reads as Foundation's JSONDecoder reads it", arguments: try FileManager.default
        .contentsOfDirectory(atPath: Fixtures.directory.path).filter { $0.hasSuffix(".json") }.sorted())
    func agreesWithFoundation(name: String) throws {
        let bytes = try Fixtures.bytes(name)
        let ours = try JSONTape(bytes).jsonValue(at: 0)
        let foundation = try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
        #expect(ours == foundation)
    }
}
