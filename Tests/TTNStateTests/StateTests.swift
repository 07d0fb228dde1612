import CSQLite
import Foundation
import TTNState
import Testing

@Suite("Script state")
struct StateTests {
    @Test("set, get, delete; keys sorted bytewise, with a prefix")
    func basics() throws {
        try withStateDirectory { directory in
            let state = try StateDatabase(directory: directory).namespace("lua/a.lua")
            for key in ["b", "ab", "a", "Z", "c", "é", "e\u{301}"] { try state.set(key, json: "\"\(key)\"") }
            #expect(try state.get("a") == "\"a\"")
            #expect(try state.get("missing") == nil)
            // "e\u{301}" (65 cc 81) and "é" (c3 a9) are two keys, in byte order.
            #expect(try state.keys() == ["Z", "a", "ab", "b", "c", "e\u{301}", "é"])
            #expect(try state.get("é") == "\"é\"" && state.get("e\u{301}") == "\"e\u{301}\"")
            #expect(try state.keys(prefix: "a") == ["a", "ab"])
            #expect(try state.keys(prefix: "x") == [])
            try state.commit()
            try state.delete("ab")
            try state.set("aa", json: "1")
            #expect(try state.get("ab") == nil)
            #expect(try state.keys(prefix: "a") == ["a", "aa"])
            try state.commit()
            #expect(try state.keys(prefix: "a") == ["a", "aa"])
            try state.set("a", json: "2")
            #expect(try state.get("a") == "2")
        }
    }

    @Test("an invocation's reads see its own writes; others see them after commit, and after a reopen")
    func commitVisibility() throws {
        try withStateDirectory { directory in
            let database = try StateDatabase(directory: directory)
            let writer = database.namespace("lua/a.lua"), reader = database.namespace("lua/a.lua")
            try writer.set("k", json: "{\"n\":1}")
            #expect(try writer.get("k") == "{\"n\":1}")
            #expect(try reader.get("k") == nil)
            #expect(try reader.keys() == [])
            try writer.commit()
            #expect(try reader.get("k") == "{\"n\":1}")
            #expect(writer.pendingWrites.isEmpty)
            try writer.set("uncommitted", json: "1")
            database.close()

            let reopened = try StateDatabase(directory: directory)
            #expect(try reopened.namespace("lua/a.lua").get("k") == "{\"n\":1}")
            #expect(try reopened.namespace("lua/a.lua").get("uncommitted") == nil)
        }
    }

    @Test("rollback discards the invocation's writes and deletes")
    func rollback() throws {
        try withStateDirectory { directory in
            let state = try StateDatabase(directory: directory).namespace("n")
            try state.set("kept", json: "1")
            try state.commit()
            try state.set("kept", json: "2")
            try state.set("new", json: "3")
            try state.delete("kept")
            state.rollback()
            #expect(try state.get("kept") == "1")
            #expect(try state.get("new") == nil)
            #expect(try state.keys() == ["kept"])
            #expect(state.pendingWrites.isEmpty)
        }
    }

    @Test("pending writes: in the order first made, nil for a delete")
    func pendingWrites() throws {
        try withStateDirectory { directory in
            let state = try StateDatabase(directory: directory).namespace("n")
            try state.set("b", json: "1")
            try state.set("a", json: "2")
            try state.delete("c")
            try state.set("b", json: "3")
            #expect(state.pendingWrites.map { "\($0.key)=\($0.json ?? "nil")" } == ["b=3", "a=2", "c=nil"])
        }
    }

    @Test("namespaces are isolated")
    func isolation() throws {
        try withStateDirectory { directory in
            let database = try StateDatabase(directory: directory)
            let a = database.namespace("lua/a.lua"), b = database.namespace("swift/b")
            try a.set("k", json: "\"a\"")
            try b.set("k", json: "\"b\"")
            try a.commit()
            try b.commit()
            try b.delete("k")
            try b.commit()
            #expect(try a.get("k") == "\"a\"")
            #expect(try b.get("k") == nil)
            #expect(try database.namespace("lua/a.lua").keys() == ["k"])
        }
    }

    @Test("keys and values keep every byte: NULs, escapes, emoji, across a reopen")
    func bytes() throws {
        try withStateDirectory { directory in
            let key = "k\u{0}ey😀", json = "\"a\\u0000b\u{0}😀\\ud83d\\ude00\""
            let database = try StateDatabase(directory: directory)
            let state = database.namespace("n\u{0}s")
            try state.set(key, json: json)
            try state.set("k", json: "")
            try state.commit()
            database.close()
            let reopened = try StateDatabase(directory: directory)
            let again = reopened.namespace("n\u{0}s")
            #expect(try again.get(key) == json)
            #expect(try again.get("k") == "")
            #expect(try again.get("k\u{0}") == nil)
            #expect(try again.keys() == ["k", key])
            #expect(try reopened.namespaces() == [NamespaceSummary(name: "n\u{0}s", keys: 2, bytes: key.utf8.count + json.utf8.count + 1)])
        }
    }

    @Test("a key expires after its ttl; a set without ttl clears it; ttl <= 0 deletes")
    func expiry() throws {
        try withStateDirectory { directory in
            let database = try StateDatabase(directory: directory)
            let state = database.namespace("n")
            let ttl = Duration.milliseconds(50)
            try state.set("short", json: "1", ttl: ttl)
            try state.set("cleared", json: "1", ttl: ttl)
            try state.set("long", json: "1", ttl: .seconds(3600))
            try state.commit()
            try state.set("cleared", json: "2")
            try state.commit()
            try state.set("pending", json: "1", ttl: ttl)
            waitPast(ttl)
            #expect(try state.get("short") == nil)
            #expect(try state.get("pending") == nil)
            #expect(try state.get("cleared") == "2")
            #expect(try state.get("long") == "1")
            #expect(try state.keys() == ["cleared", "long"])
            #expect(try database.namespaces().map(\.keys) == [2])
            #expect(try state.increment("short", by: .integer(1)) == .integer(1))
            try state.set("long", json: "1", ttl: .zero)
            #expect(try state.get("long") == nil)
        }
    }

    @Test("increment keeps the key's ttl")
    func incrementKeepsExpiry() throws {
        try withStateDirectory { directory in
            let state = try StateDatabase(directory: directory).namespace("n")
            let ttl = Duration.milliseconds(300)
            try state.set("counter", json: "1", ttl: ttl)
            try state.commit()
            let result = try state.increment("counter", by: .integer(1))
            try state.commit()
            waitPast(ttl)
            // 1 means the machine was too slow to increment before the key expired: then there is nothing to check.
            if result == .integer(2) { #expect(try state.get("counter") == nil) }
        }
    }

    @Test("increment: integers, floats, missing keys")
    func increment() throws {
        try withStateDirectory { directory in
            let state = try StateDatabase(directory: directory).namespace("n")
            #expect(try state.increment("i", by: .integer(5)) == .integer(5))
            #expect(try state.increment("i", by: .integer(-7)) == .integer(-2))
            #expect(try state.get("i") == "-2")
            #expect(try state.increment("i", by: .double(0.5)) == .double(-1.5))
            #expect(try state.get("i") == "-1.5")
            try state.set("f", json: " 2.0 ")
            #expect(try state.increment("f", by: .integer(1)) == .double(3))
            #expect(try state.get("f") == "3.0")
            try state.set("e", json: "1e3")
            #expect(try state.increment("e", by: .integer(1)) == .double(1001))
            try state.set("big", json: "9223372036854775808")
            #expect(try state.increment("big", by: .integer(0)) == .double(9.223372036854775808e18))
            #expect(try state.increment("new", by: .double(0.25)) == .double(0.25))
            try state.commit()
            #expect(try state.get("new") == "0.25")
            #expect(StateNumber.integer(-3).description == "-3" && StateNumber.double(1e300).description == "1e+300")
        }
    }

    @Test("increment refuses non-numbers, overflow and non-finite amounts, naming the key", arguments: [
        "\"12\"", "{}", "[1]", "true", "null", "012", "1.", "-", "NaN", "0x10", "1 2", "",
    ])
    func incrementRefuses(json: String) throws {
        try withStateDirectory { directory in
            let state = try StateDatabase(directory: directory).namespace("n")
            try state.set("k", json: json)
            let error = stateError { _ = try state.increment("k", by: .integer(1)) }
            #expect(error?.kind == .notANumber)
            #expect(error?.message.contains("\"k\"") == true)
            #expect(try state.get("k") == json)
        }
    }

    @Test("increment overflow is an error, not a wrap")
    func incrementOverflow() throws {
        try withStateDirectory { directory in
            let state = try StateDatabase(directory: directory).namespace("n")
            try state.set("max", json: String(Int64.max))
            let error = stateError { _ = try state.increment("max", by: .integer(1)) }
            #expect(error?.kind == .notANumber)
            #expect(error?.message.contains("overflowed") == true)
            #expect(try state.get("max") == String(Int64.max))
            try state.set("huge", json: "1.7e308")
            #expect(stateError { _ = try state.increment("huge", by: .double(1.7e308)) }?.kind == .notANumber)
            #expect(stateError { _ = try state.increment("x", by: .double(.nan)) }?.kind == .notANumber)
            #expect(try state.increment("min", by: .integer(.min)) == .integer(.min))
        }
    }

    @Test("a second open of a directory in use fails, naming it; it opens after close()")
    func inUse() throws {
        try withStateDirectory { directory in
            let first = try StateDatabase(directory: directory)
            let state = first.namespace("n")
            try state.set("k", json: "1")
            try state.commit()
            let error = stateError { _ = try StateDatabase(directory: directory) }
            #expect(error?.kind == .inUse)
            #expect(error?.message.contains(directory) == true && error?.message.contains("--state-dir") == true)
            first.close()
            #expect(stateError { _ = try state.get("k") }?.kind == .database)
            #expect(stateError { try state.commit() }?.kind == .database)
            #expect(stateError { _ = try first.namespaces() }?.kind == .database)
            let second = try StateDatabase(directory: directory)
            #expect(try second.namespace("n").get("k") == "1")
        }
    }

    @Test("forget deletes one namespace and counts its live keys")
    func forget() throws {
        try withStateDirectory { directory in
            let database = try StateDatabase(directory: directory)
            let a = database.namespace("a"), b = database.namespace("b")
            for key in ["x", "y", "z"] { try a.set(key, json: "1") }
            try a.set("gone", json: "1", ttl: .milliseconds(1))
            try b.set("x", json: "1")
            try a.commit()
            try b.commit()
            waitPast(.milliseconds(1))
            #expect(try database.forget("a") == 3)
            #expect(try a.keys() == [])
            #expect(try b.keys() == ["x"])
            #expect(try database.forget("nothing") == 0)
            // Its total is zero again.
            let limits = StateLimits(namespaceBytes: 2)
            try withStateDirectory { other in
                let small = try StateDatabase(directory: other, limits: limits)
                try small.namespace("a").set("k", json: "1")
                try small.namespace("a").commit()
                try small.forget("a")
                try small.namespace("a").set("j", json: "1")
            }
        }
    }

    @Test("namespaces: name, live keys and bytes, by name")
    func namespaces() throws {
        try withStateDirectory { directory in
            let database = try StateDatabase(directory: directory)
            let b = database.namespace("swift/b"), a = database.namespace("lua/a.lua")
            try b.set("k", json: "\"v\"")
            try a.set("key", json: "12")
            try a.set("é", json: "[1,2]")
            try a.set("old", json: "1", ttl: .milliseconds(1))
            try a.commit()
            try b.commit()
            try b.set("uncommitted", json: "1")
            waitPast(.milliseconds(1))
            #expect(try database.namespaces() == [
                NamespaceSummary(name: "lua/a.lua", keys: 2, bytes: 3 + 2 + 2 + 5),
                NamespaceSummary(name: "swift/b", keys: 1, bytes: 1 + 3),
            ])
        }
    }

    @Test("a database of a newer schema version is refused, saying so")
    func schemaVersion() throws {
        try withStateDirectory { directory in
            try StateDatabase(directory: directory).close()
            var handle: OpaquePointer?
            #expect(sqlite3_open(directory + "/state.sqlite", &handle) == SQLITE_OK)
            #expect(sqlite3_exec(handle, "PRAGMA user_version = 99", nil, nil, nil) == SQLITE_OK)
            sqlite3_close(handle)
            let error = stateError { _ = try StateDatabase(directory: directory) }
            #expect(error?.kind == .database)
            #expect(error?.message.contains("schema version 99") == true)
        }
    }

    @Test("a commit that fails writes nothing, says why, and discards the invocation's writes")
    func failedCommit() throws {
        try withStateDirectory { directory in
            let database = try StateDatabase(directory: directory, limits: StateLimits(namespaceBytes: 10))
            let state = database.namespace("n")
            try state.set("a", json: "1")
            try state.commit()
            try database.flush()  // ends the group of commits, which holds SQLite's write lock for a few milliseconds
            var handle: OpaquePointer?
            #expect(sqlite3_open(directory + "/state.sqlite", &handle) == SQLITE_OK)
            let trigger = "CREATE TRIGGER refuse BEFORE INSERT ON kv WHEN NEW.key = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
            #expect(sqlite3_exec(handle, trigger, nil, nil, nil) == SQLITE_OK)
            sqlite3_close(handle)
            try state.set("b", json: "22")
            try state.delete("a")
            try state.set("poison", json: "3")
            let error = stateError { try state.commit() }
            #expect(error?.kind == .database)
            #expect(error?.message.contains("poisoned") == true)
            #expect(state.pendingWrites.isEmpty)
            #expect(try state.keys() == ["a"])
            // The namespace's total is still that of "a" (2 bytes): 8 more fit, 9 would not.
            #expect(stateError { try state.set("c", json: "12345678") }?.kind == .namespaceFull)
            try state.set("c", json: "1234567")
            try state.commit()
            #expect(try state.keys() == ["a", "c"])
        }
    }

    @Test("committed invocations are grouped for a few milliseconds, then written without another commit")
    func groupedCommits() throws {
        try withStateDirectory { directory in
            let database = try StateDatabase(directory: directory)
            defer { database.close() }
            let state = database.namespace("n")
            for value in 1...3 {
                try state.set("k\(value)", json: "\(value)")
                try state.commit()
            }
            // Another connection, as a process reading the file would: it sees only what SQLite committed.
            var handle: OpaquePointer?
            #expect(sqlite3_open(directory + "/state.sqlite", &handle) == SQLITE_OK)
            defer { sqlite3_close(handle) }
            func rows() -> Int32 {
                var statement: OpaquePointer?
                guard sqlite3_prepare_v2(handle, "SELECT count(*) FROM kv", -1, &statement, nil) == SQLITE_OK else { return -1 }
                defer { sqlite3_finalize(statement) }
                return sqlite3_step(statement) == SQLITE_ROW ? sqlite3_column_int(statement, 0) : -1
            }
            // The group's timer writes it with no further commit (generous bound: the window is 5 ms).
            waitUntil(timeout: .seconds(5)) { rows() == 3 }
            #expect(rows() == 3)
        }
    }

    @Test("a commit without writes starts no transaction: it returns while another connection holds the write lock")
    func emptyCommit() throws {
        try withStateDirectory { directory in
            let database = try StateDatabase(directory: directory)
            let state = database.namespace("n")
            try state.set("k", json: "1")
            state.rollback()
            var handle: OpaquePointer?
            #expect(sqlite3_open(directory + "/state.sqlite", &handle) == SQLITE_OK)
            defer { sqlite3_close(handle) }
            #expect(sqlite3_exec(handle, "BEGIN IMMEDIATE", nil, nil, nil) == SQLITE_OK)
            let started = ContinuousClock.now
            try state.commit()
            // A transaction would wait for the lock (busy_timeout, seconds) and then fail.
            #expect(ContinuousClock.now - started < .seconds(2))
            sqlite3_exec(handle, "ROLLBACK", nil, nil, nil)
        }
    }

    @Test("views of different namespaces commit concurrently")
    func concurrentCommits() async throws {
        try await withStateDirectory { directory in
            let database = try StateDatabase(directory: directory)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for task in 0..<4 {
                    group.addTask {
                        let state = database.namespace("swift/\(task)")
                        for round in 0..<100 {
                            _ = try state.increment("count", by: .integer(1))
                            try state.set("k\(round)", json: "\(round)")
                            try state.commit()
                            _ = try database.namespaces()
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try database.namespaces().map { "\($0.name) \($0.keys)" } == (0..<4).map { "swift/\($0) 101" })
            #expect(try database.namespace("swift/3").get("count") == "100")
        }
    }
}
