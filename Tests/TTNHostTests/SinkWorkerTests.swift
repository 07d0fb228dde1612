import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TTNHost
import TTNSinks
import TTNState
import Testing

/// The delivery workers over a real outbox, with sinks that fail as told: broker-free.
@Suite("Sink delivery workers")
struct SinkWorkerTests {
    static let fast = DeliveryPolicy(minimumRetryDelay: .milliseconds(5), maximumRetryDelay: .milliseconds(20))

    @Test("records arrive in emit order, once each, after the failures; every failure is counted")
    func orderAfterFailures() async throws {
        try await withOutputs(sinks: [(ScriptedSink(name: "s", failures: 3, batchLimit: 2), Self.fast)]) { outputs, sinks, database in
            let ids = try emit(5, to: "s", in: database)
            #expect(await waitUntil { sinks[0].delivered.count == 5 }, "\(sinks[0].delivered)")
            #expect(sinks[0].delivered.map(\.id) == ids)
            #expect(sinks[0].batches.allSatisfy { $0 <= 2 })
            #expect(sinks[0].attempts == 3 + sinks[0].batches.count)
            #expect(outputs.statistics["s"]?.failedAttempts == 3 && outputs.statistics["s"]?.delivered == 5)
            #expect(await waitUntil { (try? database.outbox.summaries()) == [] })
        }
    }

    @Test("after max-attempts failed deliveries a record is a dead letter, counted, with the last error as its reason")
    func maxAttempts() async throws {
        var policy = Self.fast
        policy.maxAttempts = 2
        let sink = ScriptedSink(name: "down", failures: .max, batchLimit: 10)
        try await withOutputs(sinks: [(sink, policy)]) { outputs, _, database in
            let ids = try emit(2, to: "down", in: database)
            #expect(await waitUntil { (try? database.outbox.deadLetters().count) == 2 })
            let letters = try database.outbox.deadLetters()
            #expect(letters.map(\.record.id) == ids)
            #expect(letters.allSatisfy { $0.reason.contains("max-attempts 2") && $0.reason.contains("receiver says no") && $0.record.attempts == 2 })
            #expect(sink.attempts == 2)
            #expect(outputs.statistics["down"]?.deadLettered == 2)
            #expect(try database.outbox.pending(sink: "down", limit: 10).isEmpty)
        }
    }

    @Test("past max-age, a failed record goes to the dead letters at once")
    func maxAge() async throws {
        var policy = Self.fast
        policy.maxAge = .milliseconds(1)
        let sink = ScriptedSink(name: "old", failures: .max, batchLimit: 10)
        try await withOutputs(sinks: [(sink, policy)]) { _, _, database in
            _ = try emit(1, to: "old", in: database)
            #expect(await waitUntil { (try? database.outbox.deadLetters().count) == 1 })
            #expect(try database.outbox.deadLetters().first?.reason.contains("max-age") == true)
            #expect(sink.attempts == 1)
        }
    }

    @Test("a sink that fails does not hold up another sink")
    func independentSinks() async throws {
        let down = ScriptedSink(name: "down", failures: .max, batchLimit: 10)
        let up = ScriptedSink(name: "up", failures: 0, batchLimit: 10)
        try await withOutputs(sinks: [(down, Self.fast), (up, Self.fast)]) { _, _, database in
            let ids = try emit(3, to: "up", in: database)
            _ = try emit(3, to: "down", in: database)
            #expect(await waitUntil { up.delivered.map(\.id) == ids })
            #expect(down.delivered.isEmpty)
            #expect(try database.outbox.pending(sink: "down", limit: 10).count == 3)
        }
    }

    @Test("graceful shutdown delivers what waits before it returns")
    func drainsAtShutdown() async throws {
        let sink = ScriptedSink(name: "s", failures: 0, batchLimit: 1)
        let database = try StateDatabase(directory: temporaryDirectory())
        defer { database.close() }
        let outputs = Outputs(database: database, sinks: [(sink: sink, policy: Self.fast)], logger: Logger(label: "test"))
        let group = ServiceGroup(services: [outputs], logger: Logger(label: "test"))
        let ids = try emit(20, to: "s", in: database)
        let running = Task { try await group.run() }
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(sink.delivered.map(\.id) == ids)
        #expect(sink.isShutDown)
    }
}

/// Emits `count` records to `sink`, one committed invocation each; returns their ids.
private func emit(_ count: Int, to sink: String, in database: StateDatabase) throws -> [String] {
    let state = database.namespace("lua/test.lua")
    return try (0..<count).map { n in
        let id = try state.emit(to: sink, value: "{\"n\":\(n)}", application: "app", script: "test.lua", device: "dev")
        try state.commit()
        return id
    }
}

/// Runs `body` with outputs for `sinks` running over a fresh database, then shuts them down.
private func withOutputs(
    sinks: [(ScriptedSink, DeliveryPolicy)], _ body: (Outputs, [ScriptedSink], StateDatabase) async throws -> Void
) async throws {
    let database = try StateDatabase(directory: temporaryDirectory())
    defer { database.close() }
    let outputs = Outputs(database: database, sinks: sinks.map { (sink: $0.0, policy: $0.1) }, logger: Logger(label: "test"))
    let group = ServiceGroup(services: [outputs], logger: Logger(label: "test"))
    let running = Task { try await group.run() }
    try await body(outputs, sinks.map(\.0), database)
    await group.triggerGracefulShutdown()
    try await running.value
}

private func temporaryDirectory() -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("ttn-outputs-\(UUID().uuidString)").path
}

/// Polls `condition` until it holds or 60 s pass; the bound only limits how long a failing test waits. It is
/// generous because the unit tests share the cooperative pool (two threads here) with the CPU-bound fuzz tests,
/// which can hold both threads, and so the workers, for many seconds.
private func waitUntil(_ condition: @Sendable () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + .seconds(60)
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return condition()
}

/// A sink whose first `failures` deliveries throw; it records what it accepted.
private final class ScriptedSink: Sink {
    let name: String
    let batchLimit: Int
    private let state: Mutex<(failuresLeft: Int, attempts: Int, delivered: [SinkRecord], batches: [Int], shutDown: Bool)>

    init(name: String, failures: Int, batchLimit: Int) {
        self.name = name
        self.batchLimit = batchLimit
        state = Mutex((failures, 0, [], [], false))
    }

    var delivered: [SinkRecord] { state.withLock { $0.delivered } }
    var batches: [Int] { state.withLock { $0.batches } }
    var attempts: Int { state.withLock { $0.attempts } }
    var isShutDown: Bool { state.withLock { $0.shutDown } }

    func deliver(_ records: [SinkRecord]) async throws(SinkError) {
        let fails = state.withLock { state in
            state.attempts += 1
            guard state.failuresLeft == 0 else {
                state.failuresLeft -= 1
                return true
            }
            state.delivered += records
            state.batches.append(records.count)
            return false
        }
        if fails { throw SinkError("sink \(name): the receiver says no") }
    }

    func shutdown() async { state.withLock { $0.shutDown = true } }
}
