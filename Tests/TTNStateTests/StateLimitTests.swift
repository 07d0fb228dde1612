import CSQLite
import TTNState
import Testing

@Suite("Script state limits")
struct StateLimitTests {
    @Test("key limits: empty, at and past the limit")
    func keyLimits() throws {
        try withStateDirectory { directory in
            let state = try StateDatabase(directory: directory).namespace("n")
            #expect(stateError { try state.set("", json: "1") }?.kind == .invalidKey)
            #expect(stateError { _ = try state.get("") }?.kind == .invalidKey)
            let longest = "😀" + String(repeating: "k", count: 252)
            try state.set(longest, json: "1")
            let error = stateError { try state.set(longest + "k", json: "1") }
            #expect(error?.kind == .keyTooLong)
            #expect(error?.message.contains("257 bytes; the limit is 256 bytes") == true)
            #expect(stateError { try state.delete(longest + "k") }?.kind == .keyTooLong)
            #expect(stateError { _ = try state.increment(longest + "k", by: .integer(1)) }?.kind == .keyTooLong)
            #expect(try state.keys() == [longest])
        }
    }

    @Test("value limit: the JSON text's UTF-8 bytes")
    func valueLimit() throws {
        try withStateDirectory { directory in
            let state = try StateDatabase(directory: directory).namespace("n")
            let largest = "\"é" + String(repeating: "v", count: 65_536 - 4) + "\""
            try state.set("k", json: largest)
            let error = stateError { try state.set("x", json: largest + " ") }
            #expect(error?.kind == .valueTooLarge)
            #expect(error?.message == "store: value of key \"x\" is 65537 bytes encoded; the limit is 65536 (64 KiB): store less under one key, or split it over several")
            try state.commit()
            #expect(try state.get("k") == largest)
        }
    }

    @Test("namespace limit: keys + values, checked at the write; replacing or deleting frees the old size")
    func namespaceLimit() throws {
        try withStateDirectory { directory in
            let limits = StateLimits(namespaceBytes: 100)
            let database = try StateDatabase(directory: directory, limits: limits)
            let state = database.namespace("n")
            let value = { (bytes: Int) in "\"" + String(repeating: "v", count: bytes - 2) + "\"" }
            try state.set("a", json: value(49))  // 50
            try state.set("b", json: value(49))  // 100: exactly full
            let error = stateError { try state.set("c", json: "1") }
            #expect(error?.kind == .namespaceFull)
            #expect(error?.message.contains("the limit is 100 bytes (raise it with --state-limit-mb") == true)
            try state.set("a", json: value(10))  // replaced before commit: 61
            try state.set("c", json: value(38))  // 100
            #expect(stateError { try state.set("d", json: "1") }?.kind == .namespaceFull)
            try state.commit()
            #expect(stateError { try state.set("d", json: "1") }?.kind == .namespaceFull)
            try state.set("b", json: value(47))  // committed entry replaced: 98
            try state.set("d", json: "1")  // 100
            try state.commit()
            // Another namespace has its own total.
            try database.namespace("m").set("a", json: value(99))
            database.close()

            let reopened = try StateDatabase(directory: directory, limits: limits)
            let again = reopened.namespace("n")
            #expect(try reopened.namespaces() == [NamespaceSummary(name: "n", keys: 4, bytes: 100)])
            #expect(stateError { try again.set("e", json: "1") }?.kind == .namespaceFull)
            try again.delete("d")
            try again.set("e", json: "1")
            #expect(stateError { _ = try again.increment("e", by: .integer(10)) }?.kind == .namespaceFull)
            #expect(try again.increment("e", by: .integer(1)) == .integer(2))
        }
    }

    @Test("expired rows are deleted when they would fill a namespace, and on open")
    func expiredRowsFreeSpace() throws {
        try withStateDirectory { directory in
            let limits = StateLimits(namespaceBytes: 100)
            let database = try StateDatabase(directory: directory, limits: limits)
            let state = database.namespace("n")
            let big = "\"" + String(repeating: "x", count: 77) + "\""  // 80 bytes with its one-byte key
            try state.set("a", json: big, ttl: .milliseconds(50))
            try state.commit()
            waitPast(.milliseconds(50))
            try state.set("b", json: big)  // fits once the expired row is gone
            try state.commit()
            #expect(try state.keys() == ["b"])
            #expect(stateError { try state.set("c", json: big) }?.kind == .namespaceFull)
            try state.delete("b")
            try state.set("c", json: big, ttl: .milliseconds(50))
            try state.commit()
            database.close()
            waitPast(.milliseconds(50))
            let reopened = try StateDatabase(directory: directory, limits: limits)
            var handle: OpaquePointer?, statement: OpaquePointer?
            #expect(sqlite3_open(directory + "/state.sqlite", &handle) == SQLITE_OK)
            defer { sqlite3_close(handle) }
            #expect(sqlite3_prepare_v2(handle, "SELECT count(*) FROM kv", -1, &statement, nil) == SQLITE_OK)
            defer { sqlite3_finalize(statement) }
            #expect(sqlite3_step(statement) == SQLITE_ROW)
            #expect(sqlite3_column_int(statement, 0) == 0)
            try reopened.namespace("n").set("e", json: big)
        }
    }

    @Test("a view's limit check sees what another view of its namespace committed meanwhile")
    func limitAcrossViews() throws {
        try withStateDirectory { directory in
            let database = try StateDatabase(directory: directory, limits: StateLimits(namespaceBytes: 12))
            let first = database.namespace("n"), second = database.namespace("n")
            try first.set("a", json: "1234")  // 5
            try second.set("a", json: "1234567")  // 8
            try second.commit()
            // first's "a" (5) will replace the committed one (8): 5 + 7 fit.
            try first.set("b", json: "123456")
            try first.commit()
            #expect(try database.namespaces() == [NamespaceSummary(name: "n", keys: 2, bytes: 12)])
            #expect(stateError { try first.set("c", json: "") }?.kind == .namespaceFull)
        }
    }
}
