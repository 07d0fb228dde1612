import Foundation
import Synchronization
import Testing
import TestSupport

@testable import TTNState

@Suite("State shared by processes: one document per namespace, compare-and-set")
struct SharedDocumentStateTests {
    let store = MemoryDocumentStore()

    func state(_ name: String = "lua/a.lua", limits: StateLimits = StateLimits()) -> SharedDocumentState {
        SharedDocumentState(name: name, store: store, limits: limits)
    }

    /// The committed value of `key` in namespace `name`, read by a fresh invocation.
    func committed(_ key: String, in name: String = "lua/a.lua") throws -> String? {
        let reader = state(name)
        _ = try reader.begin(nil)
        defer { reader.rollback() }
        return try reader.get(key)
    }

    @Test("an invocation sees its own writes; they land together at commit, and a rollback leaves nothing")
    func transactions() throws {
        let a = state()
        #expect(try a.begin(nil))
        try a.set("x", json: "\"one\"", ttl: nil)
        #expect(try a.increment("n", by: .integer(2)) == .integer(2))
        #expect(try a.get("x") == "\"one\"")
        #expect(try committed("x") == nil, "nothing lands before the commit")
        try a.commit()
        #expect(try committed("x") == "\"one\"")
        #expect(try committed("n") == "2")

        _ = try a.begin(nil)
        try a.set("x", json: "\"two\"", ttl: nil)
        try a.delete("n")
        #expect(a.rollback() == nil, "a script's own failure is not an outage")
        #expect(try committed("x") == "\"one\"")
        #expect(try committed("n") == "2")
        #expect(store.saves == 1)
    }

    @Test("two workers writing different keys both land: the second commit is rebased on the first")
    func rebase() throws {
        let a = state(), b = state()
        _ = try a.begin(nil)
        _ = try b.begin(nil)
        _ = try a.increment("device-a", by: .integer(1))
        _ = try b.increment("device-b", by: .integer(1))
        try a.commit()
        try b.commit()
        #expect(try committed("device-a") == "1")
        #expect(try committed("device-b") == "1")
    }

    @Test("two workers incrementing one key: the second commit is a conflict, and run again it counts both")
    func conflict() throws {
        let a = state(), b = state()
        _ = try a.begin(nil)
        _ = try b.begin(nil)
        _ = try a.increment("total", by: .integer(1))
        _ = try b.increment("total", by: .integer(1))
        try a.commit()
        #expect(throws: StateError.self) { try b.commit() }
        do {
            try b.commit()
        } catch {
            Issue.record("a commit after a conflict has nothing left to write, got \(error)")
        }
        _ = try b.begin(nil)
        #expect(try b.increment("total", by: .integer(1)) == .integer(2))
        try b.commit()
        #expect(try committed("total") == "2")
    }

    @Test("listing keys makes any concurrent commit a conflict")
    func listedKeys() throws {
        let a = state(), b = state()
        _ = try a.begin(nil)
        _ = try b.begin(nil)
        #expect(try a.keys(prefix: nil).isEmpty)
        try a.set("count", json: "0", ttl: nil)
        try b.set("other", json: "1", ttl: nil)
        try b.commit()
        let error = #expect(throws: StateError.self) { try a.commit() }
        #expect(error?.kind == .conflict)
    }

    @Test("work committed once is skipped when it is delivered again, by the same worker or another")
    func redelivery() throws {
        let work = StateWork(id: "dev-1/as:up:01/7", deviceID: "dev-1")
        let a = state(), b = state()
        #expect(try a.begin(work))
        _ = try a.increment("dev-1", by: .integer(1))
        try a.commit()
        #expect(try b.begin(work) == false, "the same uplink again: its writes landed already")
        b.rollback()
        #expect(try b.begin(StateWork(id: "dev-1/as:up:02/8", deviceID: "dev-1")))
        _ = try b.increment("dev-1", by: .integer(1))
        try b.commit()
        #expect(try a.begin(work) == false, "an older uplink delivered again after a newer one (a consumer that lost its leader)")
        a.rollback()
        #expect(try b.begin(StateWork(id: "dev-1/as:up:01/7", deviceID: "dev-2")), "another device's work is not this one")
        b.rollback()
        #expect(try committed("dev-1") == "2")
    }

    @Test("a device's work at or below a committed stream sequence is skipped, however many came between")
    func redeliveryBySequence() throws {
        let a = state()
        for sequence in UInt64(1)...20 {
            #expect(try a.begin(StateWork(id: "w\(sequence)", deviceID: "dev", sequence: sequence)))
            _ = try a.increment("dev", by: .integer(1))
            try a.commit()
        }
        #expect(try a.begin(StateWork(id: "w3", deviceID: "dev", sequence: 3)) == false, "delivered again, 17 works later")
        a.rollback()
        #expect(try a.begin(StateWork(id: "copy-of-w20", deviceID: "dev", sequence: 21)), "a new sequence is new work")
        a.rollback()
        #expect(try a.begin(StateWork(id: "w2", deviceID: "other", sequence: 2)), "another device's sequence is its own")
        a.rollback()
        #expect(try committed("dev") == "20")
    }

    @Test("a worker that committed an uplink's writes in the meantime makes a later commit of the same uplink a no-op")
    func redeliveryDuringInvocation() throws {
        let work = StateWork(id: "dev-1/as:up:01/7", deviceID: "dev-1")
        let slow = state(), fast = state()
        #expect(try slow.begin(work))
        #expect(try fast.begin(work))
        _ = try slow.increment("dev-1", by: .integer(1))
        _ = try fast.increment("dev-1", by: .integer(1))
        try fast.commit()
        try slow.commit()
        #expect(try committed("dev-1") == "1")
        #expect(store.saves == 1)
    }

    @Test("a commit whose answer was lost after it landed is not written twice")
    func lostAnswer() throws {
        let a = state()
        _ = try a.begin(nil)
        _ = try a.increment("n", by: .integer(1))
        store.loseNextAnswer()
        try a.commit()
        #expect(try committed("n") == "1")
        #expect(store.saves == 1)
    }

    @Test("an unreachable store: the call fails as unavailable, and the rollback reports the outage")
    func outage() throws {
        let a = state()
        store.setUnreachable(true)
        #expect(try a.begin(nil), "a timer's invocation reads nothing before its first call")
        let error = #expect(throws: StateError.self) { try a.get("x") }
        #expect(error?.kind == .unavailable)
        #expect(a.rollback()?.kind == .unavailable)
        let begin = #expect(throws: StateError.self) { try a.begin(StateWork(id: "w", deviceID: "d")) }
        #expect(begin?.kind == .unavailable)
        store.setUnreachable(false)
        _ = try a.begin(nil)
        try a.set("x", json: "1", ttl: nil)
        try a.commit()
        #expect(try committed("x") == "1")
    }

    @Test("limits: key, value and namespace as for SQLite, and the document must fit the store")
    func limits() throws {
        let a = state(limits: StateLimits(keyBytes: 8, valueBytes: 16, namespaceBytes: 35))
        _ = try a.begin(nil)
        #expect(throws: StateError.self) { try a.set("", json: "1", ttl: nil) }
        #expect((#expect(throws: StateError.self) { try a.set("123456789", json: "1", ttl: nil) })?.kind == .keyTooLong)
        #expect((#expect(throws: StateError.self) { try a.set("k", json: String(repeating: "1", count: 17), ttl: nil) })?.kind == .valueTooLarge)
        try a.set("a", json: String(repeating: "1", count: 16), ttl: nil)
        try a.set("b", json: String(repeating: "2", count: 16), ttl: nil)
        #expect((#expect(throws: StateError.self) { try a.set("c", json: "3", ttl: nil) })?.kind == .namespaceFull)
        try a.delete("b")
        try a.set("c", json: "3", ttl: nil)
        try a.commit()
        #expect(try committed("c") == "3")

        let small = SharedDocumentState(name: "lua/b.lua", store: MemoryDocumentStore(documentLimit: 64), limits: StateLimits())
        _ = try small.begin(nil)
        try small.set("k", json: String(repeating: "1", count: 100), ttl: nil)
        let error = #expect(throws: StateError.self) { try small.commit() }
        #expect(error?.kind == .namespaceFull)
        #expect(error?.message.contains("max_payload") == true)
    }

    @Test("increment keeps integers, refuses non-numbers, and a TTL expires a key")
    func incrementAndExpiry() throws {
        let a = state()
        _ = try a.begin(nil)
        try a.set("s", json: "\"text\"", ttl: nil)
        #expect((#expect(throws: StateError.self) { _ = try a.increment("s", by: .integer(1)) })?.kind == .notANumber)
        #expect(try a.increment("f", by: .double(0.5)) == .double(0.5))
        try a.set("gone", json: "1", ttl: .milliseconds(1))
        try a.set("zero", json: "1", ttl: .zero)
        try a.commit()
        Thread.sleep(forTimeInterval: 0.01)
        _ = try a.begin(nil)
        #expect(try a.get("gone") == nil)
        #expect(try a.get("zero") == nil)
        #expect(try a.keys(prefix: nil) == ["f", "s"])
        a.rollback()
    }

    @Test("a document survives encoding with any keys and values, keys distinct by their bytes")
    func documentRoundTrip() throws {
        let run = FuzzRun("state document", defaultCases: 2_000)
        var random = FuzzRandom(seed: run.seed)
        let pieces = ["a", "é", "e\u{301}", "\"", "\\", "\u{0}", "😀", " ", "{", "\n", "/", "."]
        for index in 0..<run.cases {
            var document = StateDocument()
            for _ in 0..<random.below(6) {
                let key = (0..<(1 + random.below(4))).map { _ in random.pick(pieces) }.joined()
                let json = (0..<random.below(5)).map { _ in random.pick(pieces) }.joined()
                document.entries[ExactKey(key)] = .init(json: json, expiresAt: random.chance(30) ? Int64(random.below(1 << 30)) : nil)
            }
            if random.chance(50) {
                document.done["dev-\(random.below(3))"] = .init(ids: ["w\(index)", "v\(index)"], seq: random.chance(50) ? UInt64(index) : nil, at: Int64(index))
            }
            document.commits = (0..<random.below(3)).map { "c\($0)" }
            let decoded = try StateDocument(decoding: document.encoded(), namespace: "n")
            #expect(decoded == document, "\(run) case \(index)")
        }
        #expect(throws: StateError.self) { try StateDocument(decoding: Array("not json".utf8), namespace: "n") }
    }
}
