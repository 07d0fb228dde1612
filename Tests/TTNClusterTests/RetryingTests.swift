import TTNNATS
import Testing

@testable import TTNCluster

@Suite("Retrying and remembering")
struct RetryingTests {
    @Test("errors that pass by themselves are tried again until success; others are thrown at once")
    func retries() throws {
        var attempts = 0
        let value = try Retrying.within(.seconds(5)) { () throws(NATSError) -> Int in
            attempts += 1
            if attempts < 3 { throw NATSError(.timeout, "no answer") }
            return 42
        }
        #expect(value == 42 && attempts == 3)

        attempts = 0
        let error = #expect(throws: NATSError.self) {
            try Retrying.within(.seconds(5)) { () throws(NATSError) in
                attempts += 1
                throw NATSError(.invalid, "bad request")
            }
        }
        #expect(error?.kind == .invalid && attempts == 1)
    }

    @Test("a passing error that lasts past the limit is thrown")
    func limit() {
        var attempts = 0
        let error = #expect(throws: NATSError.self) {
            try Retrying.within(.milliseconds(350)) { () throws(NATSError) in
                attempts += 1
                throw NATSError(.notFound, "no responders")
            }
        }
        #expect(error?.kind == .notFound)
        // 100 + 200 ms of pauses fit in 350 ms; a third pause (400 ms) does not.
        #expect(attempts == 3)
    }

    @Test("recent ids keep the last ones inserted, forgetting the oldest")
    func recentIDs() {
        var ids = RecentIDs(capacity: 3)
        for id in ["a", "b", "c", "a"] { ids.insert(id) }
        #expect(ids.contains("a") && ids.contains("b") && ids.contains("c"))
        ids.insert("d")
        #expect(!ids.contains("a") && ids.contains("b") && ids.contains("d"))
        ids.insert("e")
        ids.insert("f")
        #expect(!ids.contains("b") && !ids.contains("c") && ids.contains("d") && ids.contains("e") && ids.contains("f"))
    }
}
