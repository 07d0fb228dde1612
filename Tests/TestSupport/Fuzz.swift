import Foundation

// Shared by the fuzz tests of TTNMQTTTests and TTNLuaTests: a seeded generator, a byte-level mutator
// for real messages, and random JSON written with random (valid) spelling.

/// SplitMix64: fast, and the same seed gives the same cases on every machine.
public struct FuzzRandom: RandomNumberGenerator {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A number in 0..<n (n > 0).
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }

    /// True `percent` times in a hundred.
    public mutating func chance(_ percent: Int) -> Bool { below(100) < percent }

    public mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
}

/// The seed and size of a fuzz run. `TTN_FUZZ_SEED` (decimal or 0x-hex) replays a run, `TTN_FUZZ_CASES` sets
/// the number of cases, `TTN_FUZZ_CASE` runs one case only. Without a seed each process draws one at random, so
/// every run explores new inputs; the seed is printed and is part of every failure message.
public struct FuzzRun: Sendable, CustomStringConvertible {
    public let name: String
    public let seed: UInt64
    public let cases: Int
    public let onlyCase: Int?

    private static let environment = ProcessInfo.processInfo.environment

    /// One seed per test process, shared by all fuzz tests, so one variable replays them all.
    public static let processSeed: UInt64 = {
        guard let text = environment["TTN_FUZZ_SEED"]?.trimmingCharacters(in: .whitespaces), !text.isEmpty else {
            return UInt64.random(in: 0...UInt64.max)
        }
        let parsed = text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
        guard let parsed else { fatalError("TTN_FUZZ_SEED is not a 64-bit number: \(text)") }
        return parsed
    }()

    public init(_ name: String, defaultCases: Int = 100_000) {
        self.name = name
        seed = Self.processSeed
        let env = Self.environment
        cases = env["TTN_FUZZ_CASES"].flatMap { Int($0) }.map { max($0, 1) } ?? defaultCases
        onlyCase = env["TTN_FUZZ_CASE"].flatMap { Int($0) }
        print("fuzz \(name): TTN_FUZZ_SEED=\(seed) TTN_FUZZ_CASES=\(cases)\(onlyCase.map { " TTN_FUZZ_CASE=\($0)" } ?? "")")
        if env["SWT_SWIFT_ERROR_BACKTRACING_ENABLED"] == nil && onlyCase == nil {
            // Swift Testing records a backtrace at every thrown error, and the JSON decoding under test throws at
            // every failed type probe: about three times the run time.
            print("fuzz \(name): SWT_SWIFT_ERROR_BACKTRACING_ENABLED=0 (as scripts/test sets) makes this run about 3x faster")
        }
    }

    /// The cases to run: all of them, or the one `TTN_FUZZ_CASE` names.
    public var indices: [Int] { onlyCase.map { [$0] } ?? Array(0..<cases) }

    /// The generator of case `index`: independent of the other cases, so one case replays alone.
    public func random(case index: Int) -> FuzzRandom {
        var mixer = FuzzRandom(seed: seed ^ Self.fnv1a(name))
        let state = mixer.next() ^ UInt64(truncatingIfNeeded: index) &* 0xD1B5_4A32_D192_ED03
        var scrambler = FuzzRandom(seed: state)
        return FuzzRandom(seed: scrambler.next())
    }

    /// How to replay case `index`.
    public func replay(_ index: Int) -> String {
        "replay: TTN_FUZZ_SEED=\(seed) TTN_FUZZ_CASE=\(index) swift test --filter \(name)"
    }

    public var description: String { "TTN_FUZZ_SEED=\(seed) TTN_FUZZ_CASES=\(cases)" }

    /// A stable hash (Swift's Hasher is seeded per process).
    private static func fnv1a(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
        return hash
    }
}

/// Collects the first few failures of a fuzz run (the rest are only counted), so one bug does not print
/// a hundred thousand issues.
public struct FuzzFailures {
    public private(set) var messages: [String] = []
    public private(set) var count = 0
    public let limit: Int

    public init(limit: Int = 5) { self.limit = limit }

    public mutating func add(_ message: @autoclosure () -> String) {
        count += 1
        if messages.count < limit { messages.append(message()) }
    }
}

/// Bytes shown for a failure message: printable ASCII as is, everything else as \xNN, cut at `limit`.
public func fuzzDescribe(_ bytes: [UInt8], limit: Int = 600) -> String {
    var text = ""
    for byte in bytes.prefix(limit) {
        if byte >= 0x20 && byte < 0x7F && byte != UInt8(ascii: "\\") {
            text.append(Character(Unicode.Scalar(byte)))
        } else {
            text += "\\x" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
        }
    }
    return bytes.count > limit ? text + "... (\(bytes.count) bytes)" : text
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}

// MARK: - Mutation of real messages

/// Byte-level mutation of real messages: bit flips, truncation, deletion, duplication, splices between
/// messages, and insertion of tokens that parsers get wrong.
public struct FuzzMutator {
    public let corpus: [[UInt8]]
    /// How deep the nesting mutation nests. The default has the JSON parser's limit (256 nested containers) on
    /// both sides, and depths far beyond any limit, for parsers that recurse without one (30,000 fit a 64 KiB
    /// message).
    public let nestingDepths: [Int]

    public static let defaultNestingDepths = [2, 50, 253, 254, 255, 256, 257, 300, 600, 2000, 30000]

    public init(corpus: [[UInt8]], nestingDepths: [Int] = defaultNestingDepths) {
        precondition(!corpus.isEmpty, "a mutator needs at least one message")
        self.corpus = corpus
        self.nestingDepths = nestingDepths
    }

    public static let tokens: [[UInt8]] = {
        var text = [
            "\"", "\\", "\\u", "\\u00", "\\u0000", "\\ud800", "\\udc00", "\\ud83d\\ude00", "\\ud800\\u0041", "\\x",
            "\\\"", "\\/", "-", "--1", "-0", "0", "01", "00", "1e999", "-1e999", "1e-999", "1.", ".5", "1e", "1e+", "1E+2",
            "2.0", "1.5", "-1", "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
            "18446744073709551616", "1" + String(repeating: "0", count: 400), "0." + String(repeating: "0", count: 400) + "1",
            "123456789012345678901234567890e-10", "true", "false", "null", "nul", "tru", "NaN", "Infinity", "-Infinity",
            "[", "]", "{", "}", ",", ":", "[]", "{}", "\"\"", "[[]]", "{\"\":{}}", ",,", "::", "\"\\u0000\"",
            "\"f_port\":", "\"frm_payload\":", "\"uplink_message\":{", "\"end_device_ids\":", "\"decoded_payload\":",
            "\"rx_metadata\":[", "\"downlinks\":[", "\"port\":", "\"payload_raw\":", "\"payload_fields\":",
            "\"metadata\":", "\"frequency\":", "\"gateways\":[", "\"schedule\":", "\"priority\":\"HIGH\"",
            "\"f_port\":0", "\"f_port\":224", "\"port\":1.0", "\"frm_payload\":\"=\"", "\"frm_payload\":\"A\"",
            " ", "\t", "\n", "\r\n", "\u{2028}", "é", "😀",
        ].map { Array($0.utf8) }
        text += [
            [0], [0xFF], [0xFE], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82], [0xEF, 0xBB, 0xBF],
            [0x7F], [0x80], [0xF0, 0x9F, 0x98], [0x01], [0x1F],
        ]
        return text
    }()

    static let interestingBytes: [UInt8] = [0, 0x01, 0x1F, 0x20, 0x22, 0x2C, 0x2D, 0x2E, 0x30, 0x39, 0x3A, 0x45, 0x5B, 0x5C, 0x5D, 0x65, 0x7B, 0x7D, 0x7F, 0x80, 0xBF, 0xC0, 0xED, 0xFF]

    /// A message of the corpus with one to four mutations.
    public func mutant(_ random: inout FuzzRandom) -> [UInt8] {
        var bytes = random.pick(corpus)
        for _ in 0...random.below(4) { bytes = mutate(bytes, &random) }
        return bytes
    }

    /// One mutation of `input`.
    public func mutate(_ input: [UInt8], _ random: inout FuzzRandom) -> [UInt8] {
        var bytes = input
        let position = bytes.isEmpty ? 0 : random.below(bytes.count + 1)
        switch random.below(13) {
        case 0 where !bytes.isEmpty:  // flip a bit
            let index = random.below(bytes.count)
            bytes[index] ^= UInt8(1) << UInt8(random.below(8))
        case 1 where !bytes.isEmpty:  // replace a byte
            bytes[random.below(bytes.count)] = random.chance(50) ? random.pick(Self.interestingBytes) : UInt8(truncatingIfNeeded: random.next())
        case 2 where !bytes.isEmpty:  // delete a range
            let start = random.below(bytes.count)
            bytes.removeSubrange(start..<min(bytes.count, start + 1 + random.below(16)))
        case 3:  // truncate
            bytes.removeSubrange(position...)
        case 4, 5:  // insert a token anywhere
            bytes.insert(contentsOf: random.pick(Self.tokens), at: position)
        case 6:  // insert a token after a structural character, where a value or key starts
            bytes.insert(contentsOf: random.pick(Self.tokens), at: valueStart(bytes, from: position) ?? position)
        case 7:  // replace a scalar value (a number, string or literal after ':' or '[' or ',') with a token
            guard let start = valueStart(bytes, from: position) else { break }
            let end = bytes.withUnsafeBufferPointer { buffer in
                var end = start
                while end < buffer.count, buffer[end] != 0x2C, buffer[end] != 0x7D, buffer[end] != 0x5D { end += 1 }
                return end
            }
            bytes.replaceSubrange(start..<end, with: random.pick(Self.tokens))
        case 8 where !bytes.isEmpty:  // duplicate a range
            let start = random.below(bytes.count)
            let range = start..<min(bytes.count, start + 1 + random.below(64))
            bytes.insert(contentsOf: Array(bytes[range]), at: random.below(bytes.count + 1))
        case 9:  // splice: the head of this message and the tail of another
            let other = random.pick(corpus)
            bytes = Array(bytes[..<position]) + Array(other[random.below(other.count + 1)...])
        case 10:  // deep nesting, mostly in place of a value, so that the document stays JSON
            let nest = Self.nest(depth: random.pick(nestingDepths), &random)
            if random.chance(70), let start = valueStart(bytes, from: position) {
                let end = bytes.withUnsafeBufferPointer { buffer in
                    var end = start
                    while end < buffer.count, buffer[end] != 0x2C, buffer[end] != 0x7D, buffer[end] != 0x5D { end += 1 }
                    return end
                }
                bytes.replaceSubrange(start..<end, with: nest)
            } else {
                bytes.insert(contentsOf: nest, at: position)
            }
        case 11:  // invalid UTF-8 or a NUL inside a string
            let at = next(of: [0x22], in: bytes, from: position).map { $0 + 1 } ?? position
            bytes.insert(contentsOf: random.pick([[0], [0xFF], [0xC3], [0xED, 0xB0, 0x80], [0xC1, 0xBF], [0xF8, 0x88, 0x80, 0x80, 0x80]]), at: at)
        default:  // replace with a random spelling of random JSON
            var writer = FuzzJSONWriter()
            writer.write(FuzzJSON.random(&random, depth: 2), &random)
            bytes.insert(contentsOf: writer.bytes, at: position)
        }
        return bytes
    }

    /// `depth` arrays or objects around a value, closed (mostly) or not.
    public static func nest(depth: Int, _ random: inout FuzzRandom) -> [UInt8] {
        var open: [UInt8] = [], close: [UInt8] = []
        for _ in 0..<depth {
            if random.chance(70) {
                open.append(UInt8(ascii: "["))
                close.append(UInt8(ascii: "]"))
            } else {
                open += Array("{\"k\":".utf8)
                close.append(UInt8(ascii: "}"))
            }
        }
        guard random.chance(80) else { return open }
        return open + random.pick([Array("1".utf8), Array("[]".utf8), Array("{}".utf8), Array("\"s\"".utf8), Array("null".utf8)]) + close.reversed()
    }

    /// Just after the first ':', '[' or ',' from `position` on (wrapping around), where a value starts.
    private func valueStart(_ bytes: [UInt8], from position: Int) -> Int? {
        next(of: [0x3A, 0x5B, 0x2C], in: bytes, from: position).map { $0 + 1 }
    }

    /// The index of the first byte from `position` on (wrapping around) that is one of `targets`.
    private func next(of targets: [UInt8], in bytes: [UInt8], from position: Int) -> Int? {
        bytes.withUnsafeBufferPointer { buffer in
            targets.withUnsafeBufferPointer { targets in
                guard !buffer.isEmpty else { return nil }
                let start = position % buffer.count
                var index = start
                repeat {
                    let byte = buffer[index]
                    for target in targets where byte == target { return index }
                    index += 1
                    if index == buffer.count { index = 0 }
                } while index != start
                return nil
            }
        }
    }
}

// MARK: - Random JSON with random spelling

/// A JSON document as written: numbers keep their text, objects their member order (keys may repeat).
public indirect enum FuzzJSON {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([FuzzJSON])
    case object([(String, FuzzJSON)])

    /// A random value; objects have unique keys.
    public static func random(_ random: inout FuzzRandom, depth: Int) -> FuzzJSON {
        switch random.below(depth > 0 ? 8 : 5) {
        case 0: return .null
        case 1: return .bool(random.chance(50))
        case 2: return .number(randomNumberText(&random))
        case 3, 4: return .string(randomString(&random))
        case 5: return .array((0..<random.below(5)).map { _ in FuzzJSON.random(&random, depth: depth - 1) })
        default:
            var keys = Set<String>()
            var members: [(String, FuzzJSON)] = []
            for _ in 0..<random.below(6) {
                let key = randomString(&random, maximumLength: 8)
                if keys.insert(key).inserted { members.append((key, FuzzJSON.random(&random, depth: depth - 1))) }
            }
            return .object(members)
        }
    }

    /// A number by the JSON grammar, -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, sometimes with many digits.
    /// Its value is whatever `Double(text)` says (correctly rounded); it may be infinite (1e999).
    public static func randomNumberText(_ random: inout FuzzRandom) -> String {
        func digits(_ count: Int, leadingNonZero: Bool) -> String {
            var text = ""
            for i in 0..<count { text.append(Character(Unicode.Scalar(UInt8(ascii: "0") + UInt8(i == 0 && leadingNonZero ? 1 + random.below(9) : random.below(10))))) }
            return text
        }
        switch random.below(10) {
        case 0: return random.pick(["0", "-0", "1", "-1", "0.0", "-0.0", "1e-320", "5e-324", "2.2250738585072014e-308", "1.7976931348623157e308",
                                    "9007199254740993", "9223372036854775807", "-9223372036854775808", "18446744073709551615", "0.1", "1e22", "1e23",
                                    "8.98846567431158e307", "4.9406564584124654e-324", "123456789012345678901234567890", "1e999", "-1e-999"])
        case 1, 2, 3: return String(random.below(2001) - 1000)
        default:
            var text = random.chance(30) ? "-" : ""
            text += random.chance(20) ? "0" : digits(1 + random.below(random.chance(10) ? 30 : 6), leadingNonZero: true)
            if random.chance(50) { text += "." + digits(1 + random.below(random.chance(10) ? 30 : 6), leadingNonZero: false) }
            if random.chance(25) { text += random.pick(["e", "E"]) + random.pick(["", "+", "-"]) + digits(1 + random.below(3), leadingNonZero: false) }
            return text
        }
    }

    /// A random string: ASCII, characters that must be escaped, and non-ASCII of one to four UTF-8 bytes.
    public static func randomString(_ random: inout FuzzRandom, maximumLength: Int = 24) -> String {
        var scalars = String.UnicodeScalarView()
        for _ in 0..<random.below(maximumLength + 1) {
            let value: UInt32
            switch random.below(12) {
            case 0: value = random.pick([0x22, 0x5C, 0x2F, 0x00, 0x0A, 0x0D, 0x09, 0x08, 0x0C, 0x1F, 0x7F])
            case 1: value = random.pick([0xE9, 0x4E2D, 0x2028, 0xFEFF, 0xFFFD, 0x1F600, 0x10FFFF, 0x0301])
            case 2: value = UInt32(0x80 + random.below(0xD800 - 0x80))
            case 3: value = UInt32(0x10000 + random.below(0x100000))
            default: value = UInt32(0x20 + random.below(0x5F))
            }
            scalars.append(Unicode.Scalar(value)!)
        }
        return String(scalars)
    }
}

/// Writes a `FuzzJSON` with random whitespace and random (valid) escapes, so parsers see many spellings of
/// the same value.
public struct FuzzJSONWriter {
    public private(set) var bytes: [UInt8] = []
    /// Percent chance of whitespace between tokens, and of escaping a character that need not be escaped.
    public var whitespace = 8
    public var escapes = 5

    public init(whitespace: Int = 8, escapes: Int = 5) {
        self.whitespace = whitespace
        self.escapes = escapes
    }

    public mutating func write(_ value: FuzzJSON, _ random: inout FuzzRandom) {
        space(&random)
        switch value {
        case .null: append("null")
        case .bool(let flag): append(flag ? "true" : "false")
        case .number(let text): append(text)
        case .string(let text): string(text, &random)
        case .array(let elements):
            bytes.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                write(element, &random)
            }
            space(&random)
            bytes.append(UInt8(ascii: "]"))
        case .object(let members):
            bytes.append(UInt8(ascii: "{"))
            for (index, (key, member)) in members.enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                space(&random)
                string(key, &random)
                space(&random)
                bytes.append(UInt8(ascii: ":"))
                write(member, &random)
            }
            space(&random)
            bytes.append(UInt8(ascii: "}"))
        }
        space(&random)
    }

    private mutating func append(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    private mutating func append(_ text: String) {
        var text = text
        text.withUTF8 { bytes.append(contentsOf: $0) }
    }

    private mutating func space(_ random: inout FuzzRandom) {
        guard whitespace > 0, random.chance(whitespace) else { return }
        for _ in 0...random.below(3) { bytes.append(random.pick([0x20, 0x09, 0x0A, 0x0D])) }
    }

    private mutating func string(_ text: String, _ random: inout FuzzRandom) {
        bytes.append(0x22)
        for scalar in text.unicodeScalars {
            let value = scalar.value
            switch value {
            case 0x22: append("\\\"")
            case 0x5C: append("\\\\")
            case 0x08: append("\\b")
            case 0x0C: append("\\f")
            case 0x0A: append("\\n")
            case 0x0D: append("\\r")
            case 0x09: append("\\t")
            case 0x2F where escapes > 0 && random.chance(20): append("\\/")
            case _ where value < 0x20 || (escapes > 0 && random.chance(escapes)):
                let upper = random.chance(50)
                if value >= 0x10000 {
                    let offset = value - 0x10000
                    unicodeEscape(0xD800 + (offset >> 10), upper: upper)
                    unicodeEscape(0xDC00 + (offset & 0x3FF), upper: upper)
                } else {
                    unicodeEscape(value, upper: upper)
                }
            case 0..<0x80: bytes.append(UInt8(value))
            case 0x80..<0x800:
                bytes.append(UInt8(0xC0 | (value >> 6)))
                bytes.append(UInt8(0x80 | (value & 0x3F)))
            case 0x800..<0x10000:
                bytes.append(UInt8(0xE0 | (value >> 12)))
                bytes.append(UInt8(0x80 | ((value >> 6) & 0x3F)))
                bytes.append(UInt8(0x80 | (value & 0x3F)))
            default:
                bytes.append(UInt8(0xF0 | (value >> 18)))
                bytes.append(UInt8(0x80 | ((value >> 12) & 0x3F)))
                bytes.append(UInt8(0x80 | ((value >> 6) & 0x3F)))
                bytes.append(UInt8(0x80 | (value & 0x3F)))
            }
        }
        bytes.append(0x22)
    }

    private mutating func unicodeEscape(_ value: UInt32, upper: Bool) {
        let digits: StaticString = "0123456789abcdef0123456789ABCDEF"
        bytes.append(0x5C)
        bytes.append(0x75)
        digits.withUTF8Buffer { digits in
            for shift in stride(from: 12, through: 0, by: -4) {
                bytes.append(digits[Int((value >> UInt32(shift)) & 0xF) + (upper ? 16 : 0)])
            }
        }
    }
}

// MARK: - The JSON grammar, as an oracle

/// Whether `bytes` is one JSON text by RFC 8259: a value with optional whitespace around it. A string's bytes must
/// be UTF-8 (checked by the standard library); a `\u` escape of a high surrogate must be followed by one of a low
/// surrogate, and a low one may not stand alone. Every object or array counts one level of nesting; more than
/// `maximumDepth` levels is refused.
public func fuzzIsJSON(_ bytes: [UInt8], maximumDepth: Int) -> Bool {
    bytes.withUnsafeBufferPointer { buffer in
        var recognizer = JSONRecognizer(bytes: buffer, maximumDepth: maximumDepth)
        return recognizer.document()
    }
}

private struct JSONRecognizer {
    let bytes: UnsafeBufferPointer<UInt8>
    let maximumDepth: Int
    var index = 0
    var depth = 0

    init(bytes: UnsafeBufferPointer<UInt8>, maximumDepth: Int) {
        self.bytes = bytes
        self.maximumDepth = maximumDepth
    }

    mutating func document() -> Bool {
        guard value() else { return false }
        space()
        return index == bytes.count
    }

    private var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    private mutating func space() {
        while let byte = current, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { index += 1 }
    }

    private mutating func value() -> Bool {
        space()
        guard let byte = current else { return false }
        switch byte {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            depth += 1
            defer { depth -= 1 }
            guard depth <= maximumDepth else { return false }
            return byte == UInt8(ascii: "{") ? object() : array()
        case UInt8(ascii: "\""): return string()
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return number()
        case UInt8(ascii: "t"): return literal("true")
        case UInt8(ascii: "f"): return literal("false")
        case UInt8(ascii: "n"): return literal("null")
        default: return false
        }
    }

    private mutating func literal(_ word: StaticString) -> Bool {
        word.withUTF8Buffer { word in
            guard bytes.count - index >= word.count else { return false }
            for offset in 0..<word.count where bytes[index + offset] != word[offset] { return false }
            index += word.count
            return true
        }
    }

    private mutating func object() -> Bool {
        index += 1
        space()
        if current == UInt8(ascii: "}") { index += 1; return true }
        while true {
            space()
            guard current == UInt8(ascii: "\""), string() else { return false }
            space()
            guard current == UInt8(ascii: ":") else { return false }
            index += 1
            guard value() else { return false }
            space()
            switch current {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"): index += 1; return true
            default: return false
            }
        }
    }

    private mutating func array() -> Bool {
        index += 1
        space()
        if current == UInt8(ascii: "]") { index += 1; return true }
        while true {
            guard value() else { return false }
            space()
            switch current {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"): index += 1; return true
            default: return false
            }
        }
    }

    private mutating func string() -> Bool {
        index += 1
        let start = index
        while let byte = current {
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                return String(validating: UnsafeBufferPointer(rebasing: bytes[start..<index - 1]), as: UTF8.self) != nil
            case 0..<0x20: return false
            case UInt8(ascii: "\\"):
                guard let escape = current else { return false }
                index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                     UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    continue
                case UInt8(ascii: "u"):
                    guard let code = hex4() else { return false }
                    if (0xDC00...0xDFFF).contains(code) { return false }
                    if (0xD800...0xDBFF).contains(code) {
                        guard current == UInt8(ascii: "\\"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "u") else { return false }
                        index += 2
                        guard let low = hex4(), (0xDC00...0xDFFF).contains(low) else { return false }
                    }
                default: return false
                }
            default: continue
            }
        }
        return false
    }

    private mutating func hex4() -> UInt32? {
        guard bytes.count - index >= 4 else { return nil }
        var code: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            index += 1
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            code = code << 4 | UInt32(digit)
        }
        return code
    }

    private mutating func digits() -> Int {
        let start = index
        while let byte = current, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") { index += 1 }
        return index - start
    }

    private mutating func number() -> Bool {
        if current == UInt8(ascii: "-") { index += 1 }
        if current == UInt8(ascii: "0") {
            index += 1
            if let byte = current, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") { return false }
        } else if digits() == 0 {
            return false
        }
        if current == UInt8(ascii: ".") {
            index += 1
            guard digits() > 0 else { return false }
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            index += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
            guard digits() > 0 else { return false }
        }
        return true
    }
}
