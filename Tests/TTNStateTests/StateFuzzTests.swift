import Foundation
import TTNState
import TestSupport
import Testing

/// Random sequences of writes, commits, rollbacks and reopens, checked after every step against a dictionary model.
/// Small limits, so that every limit is reached; keys and values of arbitrary Unicode (NULs, combining marks,
/// emoji), compared by their bytes.
@Suite("Script state fuzz")
struct StateFuzzTests {
    static let limits = StateLimits(keyBytes: 24, valueBytes: 200, namespaceBytes: 450)

    @Test("random sets, deletes, increments, commits, rollbacks and reopens agree with a dictionary model")
    func agreesWithModel() throws {
        let run = FuzzRun("StateFuzzTests/agreesWithModel", defaultCases: 2000)
        try withStateDirectory { directory in
            var database = try StateDatabase(directory: directory, limits: Self.limits)
            var failures = FuzzFailures()
            for index in run.indices {
                var random = run.random(case: index)
                let name = "fuzz/\(index)"
                var state = database.namespace(name)
                var model = Model()
                let keys = Self.keys(&random)
                var trace: [String] = []
                for _ in 0..<(5 + random.below(25)) {
                    let key = random.pick(keys)
                    let step: String
                    switch random.below(100) {
                    case 0..<40:
                        let json = Self.value(&random)
                        let ttl: Duration? = random.chance(10) ? .seconds(3600) : random.chance(3) ? .zero : nil
                        step = "set \(key.debugDescription) \(json.debugDescription) ttl \(ttl.map { "\($0)" } ?? "nil")"
                        let expected = model.set(Array(key.utf8), json: ttl == .zero ? nil : json, valueBytes: json.utf8.count)
                        trace.append(step)
                        if let problem = Self.compare(expected, { () throws(StateError) in try state.set(key, json: json, ttl: ttl); return true }) {
                            failures.add("\(run.replay(index)): \(trace.joined(separator: "; ")): \(problem)")
                        }
                    case 40..<55:
                        step = "delete \(key.debugDescription)"
                        trace.append(step)
                        let expected = model.set(Array(key.utf8), json: nil, valueBytes: 0)
                        if let problem = Self.compare(expected, { () throws(StateError) in try state.delete(key); return true }) {
                            failures.add("\(run.replay(index)): \(trace.joined(separator: "; ")): \(problem)")
                        }
                    case 55..<70:
                        let amount = Self.amount(&random)
                        trace.append("increment \(key.debugDescription) by \(amount)")
                        let expected = model.increment(Array(key.utf8), by: amount)
                        if let problem = Self.compare(expected, { () throws(StateError) in try state.increment(key, by: amount) }) {
                            failures.add("\(run.replay(index)): \(trace.joined(separator: "; ")): \(problem)")
                        }
                    case 70..<84:
                        trace.append("commit")
                        try state.commit()
                        model.commit()
                    case 84..<98:
                        trace.append("rollback")
                        state.rollback()
                        model.rollback()
                    default:
                        trace.append("reopen")
                        database.close()
                        database = try StateDatabase(directory: directory, limits: Self.limits)
                        state = database.namespace(name)
                        model.rollback()
                    }
                    if let problem = try Self.mismatch(state, model, keys, &random) {
                        failures.add("\(run.replay(index)): \(trace.joined(separator: "; ")): \(problem)")
                    }
                    if failures.count > 0 { break }
                }
                try state.commit()
                model.commit()
                let live = model.committed.count, bytes = model.committed.reduce(0) { $0 + $1.key.count + $1.value.utf8.count }
                let summary = try database.namespaces()
                if summary != (live > 0 ? [NamespaceSummary(name: name, keys: live, bytes: bytes)] : []) {
                    failures.add("\(run.replay(index)): \(trace.joined(separator: "; ")): namespaces() \(summary), model \(live) keys, \(bytes) bytes")
                }
                // Each case starts from an empty database, so that namespaces() stays short.
                if try database.forget(name) != live { failures.add("\(run.replay(index)): forget did not count \(live) keys") }
                if failures.count > 0 { break }
            }
            for message in failures.messages { Issue.record("\(message)") }
        }
    }

    /// The keys of one case: a few that collide in Swift's eyes but not in bytes, some random, some at and past
    /// the key limit, and the empty key.
    static func keys(_ random: inout FuzzRandom) -> [String] {
        var keys = ["a", "ab", "é", "e\u{301}", "k\u{0}", "k", "😀"]
        for _ in 0..<4 { keys.append(FuzzJSON.randomString(&random, maximumLength: 8)) }
        keys.append("😀" + String(repeating: "k", count: limits.keyBytes - 4))
        keys.append("😀" + String(repeating: "k", count: limits.keyBytes - 3))
        keys.append("")
        return keys
    }

    /// A JSON text: a number, random JSON, a string of escapes and emoji, or one of about the value limit's size.
    static func value(_ random: inout FuzzRandom) -> String {
        switch random.below(10) {
        case 0, 1:
            return random.pick(["0", "-1", "7", "9223372036854775807", "-9223372036854775808", "1.5", "-2.25e1", "1e308", "1e999", " 3 \n", "-0"])
        case 2: return FuzzJSON.randomNumberText(&random)
        case 3, 4, 5:
            var writer = FuzzJSONWriter()
            writer.write(FuzzJSON.random(&random, depth: 2), &random)
            return String(decoding: writer.bytes, as: UTF8.self)
        case 6, 7:
            let pieces = ["\\u0000", "\u{0}", "😀", "\\ud83d\\ude00", "é", "e\u{301}", "\\\"", "x"]
            return "\"" + (0..<random.below(12)).map { _ in random.pick(pieces) }.joined() + "\""
        default:
            let bytes = limits.valueBytes - 2 + random.below(4)
            return "\"😀" + String(repeating: "a", count: bytes - 6) + "\""
        }
    }

    static func amount(_ random: inout FuzzRandom) -> StateNumber {
        random.chance(75)
            ? .integer(random.pick([1, -1, 0, 42, .max, .min, Int64(random.below(1000)) - 500]))
            : .double(random.pick([0.5, -1.25, 1e308, 3]))
    }

    /// nil when `operation` did what the model expected: returned its value, or threw an error of its kind.
    static func compare<Value: Equatable>(_ expected: Expected<Value>, _ operation: () throws(StateError) -> Value) -> String? {
        do throws(StateError) {
            let value = try operation()
            return expected == .success(value) ? nil : "returned \(value), model \(expected)"
        } catch {
            return expected == .failure(error.kind) ? nil : "threw \(error.kind) (\(error.message)), model \(expected)"
        }
    }

    /// What differs between the state and the model, read every way.
    static func mismatch(_ state: ScriptState, _ model: Model, _ keys: [String], _ random: inout FuzzRandom) throws -> String? {
        for key in keys where !key.isEmpty && key.utf8.count <= limits.keyBytes {
            let actual = try state.get(key), expected = model.value(Array(key.utf8))
            if actual.map({ Array($0.utf8) }) != expected.map({ Array($0.utf8) }) {
                return "get(\(key.debugDescription)) = \(actual?.debugDescription ?? "nil"), model \(expected?.debugDescription ?? "nil")"
            }
        }
        let prefix = random.chance(50) ? "" : random.pick(["a", "e", "é", "k", "😀", String(random.pick(keys).prefix(1))])
        let actual = try state.keys(prefix: prefix).map { Array($0.utf8) }
        let expected = model.visible.keys.filter { $0.starts(with: prefix.utf8) }.sorted { $0.lexicographicallyPrecedes($1) }
        if actual != expected {
            return "keys(prefix: \(prefix.debugDescription)) = \(actual.map { String(decoding: $0, as: UTF8.self) }), model \(expected.map { String(decoding: $0, as: UTF8.self) })"
        }
        let pending = state.pendingWrites
        let same = pending.count == model.order.count && zip(pending, model.order).allSatisfy { write, key in
            switch (write.json, model.pending[key]!) {
            case (nil, nil): write.key.utf8.elementsEqual(key)
            case (let json?, let expected?): write.key.utf8.elementsEqual(key) && json.utf8.elementsEqual(expected.utf8)
            default: false
            }
        }
        return same ? nil : "pendingWrites \(pending), model \(model.order.map { String(decoding: $0, as: UTF8.self) })"
    }
}

/// What an operation should do: return a value, or throw an error of a kind.
enum Expected<Value: Equatable>: Equatable {
    case success(Value)
    case failure(StateError.Kind)
}

/// What the state should hold: committed values and the open invocation's writes, by key bytes.
struct Model {
    var committed: [[UInt8]: String] = [:]
    /// nil: deleted.
    var pending: [[UInt8]: String?] = [:]
    var order: [[UInt8]] = []

    func value(_ key: [UInt8]) -> String? {
        if let write = pending[key] { return write }
        return committed[key]
    }

    var visible: [[UInt8]: String] {
        var visible = committed
        for (key, write) in pending { visible[key] = write }
        return visible
    }

    /// A set (a delete when `json` is nil), with the checks of the limits in their order.
    mutating func set(_ key: [UInt8], json: String?, valueBytes: Int) -> Expected<Bool> {
        let limits = StateFuzzTests.limits
        if key.isEmpty { return .failure(.invalidKey) }
        if key.count > limits.keyBytes { return .failure(.keyTooLong) }
        if valueBytes > limits.valueBytes { return .failure(.valueTooLarge) }
        if let json {
            let size = key.count + json.utf8.count, current = value(key).map { key.count + $0.utf8.count } ?? 0
            let total = visible.reduce(0) { $0 + $1.key.count + $1.value.utf8.count } - current + size
            if size > current, total > limits.namespaceBytes { return .failure(.namespaceFull) }
        }
        if pending.index(forKey: key) == nil { order.append(key) }
        pending[key] = .some(json)
        return .success(true)
    }

    mutating func increment(_ key: [UInt8], by amount: StateNumber) -> Expected<StateNumber> {
        if key.isEmpty { return .failure(.invalidKey) }
        if key.count > StateFuzzTests.limits.keyBytes { return .failure(.keyTooLong) }
        var number = StateNumber.integer(0)
        if let json = value(key) {
            guard let stored = Self.number(json) else { return .failure(.notANumber) }
            number = stored
        }
        let result: StateNumber
        switch (number, amount) {
        case (.integer(let a), .integer(let b)):
            let (sum, overflow) = a.addingReportingOverflow(b)
            if overflow { return .failure(.notANumber) }
            result = .integer(sum)
        default:
            let sum = Self.double(number) + Self.double(amount)
            if !sum.isFinite { return .failure(.notANumber) }
            result = .double(sum)
        }
        if case .failure(let kind) = set(key, json: result.description, valueBytes: result.description.utf8.count) { return .failure(kind) }
        return .success(result)
    }

    mutating func commit() {
        for (key, write) in pending { committed[key] = write }
        rollback()
    }

    mutating func rollback() {
        pending = [:]
        order = []
    }

    /// The number a JSON text holds, by the oracle of the JSON grammar.
    static func number(_ json: String) -> StateNumber? {
        let text = json.trimmingCharacters(in: CharacterSet(charactersIn: " \t\n\r"))
        guard let first = text.utf8.first, first == UInt8(ascii: "-") || (0x30...0x39).contains(first),
              fuzzIsJSON(Array(text.utf8), maximumDepth: 1) else { return nil }
        if !text.contains(where: { ".eE".contains($0) }), let integer = Int64(text) { return .integer(integer) }
        return Double(text).map(StateNumber.double)
    }

    static func double(_ number: StateNumber) -> Double {
        switch number {
        case .integer(let value): Double(value)
        case .double(let value): value
        }
    }
}
