import CSQLite
import Foundation
import Synchronization
import Testing

@testable import TTNState

@Suite("Outbox")
struct OutboxTests {
    @Test("emitted records enter the outbox with their invocation's commit, in order, and never with a rollback")
    func transactional() throws {
        try withStateDirectory { directory in
            let database = try StateDatabase(directory: directory)
            let state = database.namespace("lua/a.lua")
            let first = try state.emit(to: "warehouse", value: "{\"t\":1}", application: "app", script: "a.lua", device: "dev-1")
            try state.set("count", json: "1")
            #expect(try database.outbox.pending(sink: "warehouse", limit: 10).isEmpty)
            try state.commit()

            _ = try state.emit(to: "warehouse", value: "{\"t\":2}", application: "app", script: "a.lua", device: "dev-1")
            try state.set("count", json: "2")
            state.rollback()

            let second = try state.emit(to: "warehouse", value: "{\"t\":3}", application: "app", script: "a.lua", device: nil)
            _ = try state.emit(to: "archive", value: "[]", application: "app", script: "a.lua", device: nil)
            try state.commit()
            try database.flush()  // the group of commits, which the timer would commit within 5 ms

            let records = try database.outbox.pending(sink: "warehouse", limit: 10)
            #expect(records.map(\.id) == [first, second])
            #expect(records.map(\.value) == ["{\"t\":1}", "{\"t\":3}"])
            #expect(records[0].device == "dev-1" && records[1].device == nil)
            #expect(records[0].application == "app" && records[0].script == "a.lua" && records[0].attempts == 0)
            #expect(records[0].time.hasSuffix("Z") && records[0].time.count == 24)
            #expect(try database.outbox.pending(sink: "archive", limit: 10).map(\.value) == ["[]"])
            #expect(try state.get("count") == "1")
            #expect(first != second)
        }
    }

    @Test("the commit of a group tells the observer which sinks got records")
    func observer() throws {
        try withStateDirectory { directory in
            let database = try StateDatabase(directory: directory)
            let told = RecordedSinks()
            database.observeEmits { told.append($0) }
            let state = database.namespace("n")
            try state.set("k", json: "1")
            try state.commit()
            _ = try state.emit(to: "a", value: "1", application: "app", script: "s", device: nil)
            _ = try state.emit(to: "b", value: "1", application: "app", script: "s", device: nil)
            try state.commit()
            try database.flush()
            // The timer of the group may have committed it first, and tells the observer after it let go of the lock.
            waitUntil(timeout: .seconds(10)) { !told.all.isEmpty }
            #expect(told.all == [["a", "b"]])
        }
    }

    @Test("records of the open group of commits are not handed out; once it is committed they are, and their sinks are told")
    func openGroup() throws {
        try withStateDirectory { directory in
            let database = try StateDatabase(directory: directory)
            let emit = PendingEmit(id: "r1", sink: "s", application: "a", script: "x", device: nil, time: "t", value: "1", createdAt: 0)
            // One hold of the database's lock, so that its timer cannot commit the group in between.
            let (whileOpen, announcedWhileOpen, afterCommit, announced) = try database.withStore { store throws(StateError) in
                try store.apply("n", [], emits: [emit])
                let whileOpen = try store.committedOutboxRecords(sink: "s", limit: 10)
                let announcedWhileOpen = store.takeSinksWithNewRecords()
                try store.flush()
                return (whileOpen, announcedWhileOpen, try store.committedOutboxRecords(sink: "s", limit: 10), store.takeSinksWithNewRecords())
            }
            #expect(whileOpen.isEmpty)
            #expect(announcedWhileOpen.isEmpty)
            #expect(afterCommit.map(\.id) == ["r1"])
            #expect(announced == ["s"])
        }
    }

    @Test("records survive a reopen; delivered ones leave; failures count; buried ones come back with resend, ids kept")
    func lifecycle() throws {
        try withStateDirectory { directory in
            var ids: [String] = []
            do {
                let database = try StateDatabase(directory: directory)
                let state = database.namespace("n")
                for n in 1...3 { ids.append(try state.emit(to: "s", value: "\(n)", application: "app", script: "x", device: nil)) }
                try state.commit()
                database.close()
            }
            let database = try StateDatabase(directory: directory)
            let outbox = database.outbox
            let pending = try outbox.pending(sink: "s", limit: 2)
            #expect(pending.map(\.id) == Array(ids.prefix(2)))
            try outbox.delivered([pending[0]])
            try outbox.failed([pending[1]], error: "503 Service Unavailable")
            try outbox.failed([pending[1]], error: "timeout")
            let retried = try outbox.pending(sink: "s", limit: 10)
            #expect(retried.map(\.id) == Array(ids.suffix(2)))
            #expect(retried[0].attempts == 2 && retried[0].lastError == "timeout")

            try outbox.bury([retried[0]], reason: "2 failed deliveries")
            #expect(try outbox.pending(sink: "s", limit: 10).map(\.id) == [ids[2]])
            let dead = try outbox.deadLetters()
            #expect(dead.map(\.record.id) == [ids[1]] && dead[0].reason == "2 failed deliveries" && dead[0].record.attempts == 2)
            #expect(try outbox.summaries() == [OutboxSummary(sink: "s", pending: 1, deadLetters: 1, oldestPending: retried[1].time)])

            #expect(try outbox.resend(sink: "s", ids: ["no-such-id"]) == 0)
            #expect(try outbox.resend(sink: "s") == 1)
            let again = try outbox.pending(sink: "s", limit: 10)
            #expect(again.map(\.id) == [ids[2], ids[1]])
            #expect(again[1].attempts == 0 && again[1].value == "2")
            #expect(try outbox.deadLetters().isEmpty)
        }
    }

    @Test("ttn-host outbox's own connection works beside the host's database, and sees its commits")
    func besideTheHost() throws {
        try withStateDirectory { directory in
            #expect(try Outbox(directory: directory) == nil)
            let database = try StateDatabase(directory: directory)
            let state = database.namespace("n")
            _ = try state.emit(to: "s", value: "1", application: "app", script: "x", device: nil)
            try state.commit()
            try database.flush()
            let beside = try #require(try Outbox(directory: directory))
            defer { beside.close() }
            let record = try #require(try beside.pending(sink: "s", limit: 1).first)
            try beside.bury([record], reason: "test")
            #expect(try database.outbox.deadLetters().map(\.record.id) == [record.id])
            #expect(try beside.resend() == 1)
            #expect(try database.outbox.pending(sink: "s", limit: 1).map(\.id) == [record.id])
        }
    }

    @Test("emit limits: value size and records per invocation, each naming the limit")
    func limits() throws {
        try withStateDirectory { directory in
            let database = try StateDatabase(directory: directory, limits: StateLimits(valueBytes: 8, emitsPerInvocation: 2))
            let state = database.namespace("n")
            let large = stateError { _ = try state.emit(to: "s", value: "\"123456789\"", application: "a", script: "x", device: nil) }
            #expect(large?.kind == .valueTooLarge && large?.message.contains("the limit is 8 bytes") == true)
            _ = try state.emit(to: "s", value: "1", application: "a", script: "x", device: nil)
            _ = try state.emit(to: "s", value: "2", application: "a", script: "x", device: nil)
            let many = stateError { _ = try state.emit(to: "s", value: "3", application: "a", script: "x", device: nil) }
            #expect(many?.kind == .emitLimit && many?.message.contains("at most 2 records") == true)
        }
    }

    @Test("a database of schema version 1 gains the outbox, keeping its keys")
    func migration() throws {
        try withStateDirectory { directory in
            do {
                let database = try StateDatabase(directory: directory)
                let state = database.namespace("n")
                try state.set("kept", json: "7")
                try state.commit()
                database.close()
            }
            var handle: OpaquePointer?
            #expect(sqlite3_open(directory + "/state.sqlite", &handle) == SQLITE_OK)
            #expect(sqlite3_exec(handle, "DROP TABLE outbox; DROP TABLE dead_letters; PRAGMA user_version = 1", nil, nil, nil) == SQLITE_OK)
            sqlite3_close(handle)
            let database = try StateDatabase(directory: directory)
            let state = database.namespace("n")
            #expect(try state.get("kept") == "7")
            _ = try state.emit(to: "s", value: "1", application: "a", script: "x", device: nil)
            try state.commit()
            try database.flush()
            #expect(try database.outbox.pending(sink: "s", limit: 5).count == 1)
        }
    }
}

/// The sink sets an observer was told, in order.
private final class RecordedSinks: Sendable {
    private let sets = Mutex<[Set<String>]>([])
    func append(_ sinks: Set<String>) { sets.withLock { $0.append(sinks) } }
    var all: [Set<String>] { sets.withLock { $0 } }
}
