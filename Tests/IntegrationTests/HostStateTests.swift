import Foundation
import Logging
import TestSupport
import Testing
import TTNLua
import TTNState

@testable import TTNHost
@testable import TTNMQTT

/// A fresh state directory (not created yet: the host creates it).
func temporaryStateDirectory() -> URL {
    FileManager.default.temporaryDirectory.appendingPathComponent("state-\(UUID().uuidString)")
}

/// A host of `application` with scripts from `scripts`, its state in `state`, logging into `log`.
func stateHostConfiguration(application: String, scripts: URL?, state: URL, log: LogCapture) throws -> HandlerHost.Configuration {
    var configuration = hostConfiguration(application: application, port: try Broker.requirePort(), scripts: scripts)
    configuration.stateDirectory = state.path
    configuration.client.logger = Logger(label: "state-test") { _ in log }
    return configuration
}

/// The JSON body of a message as a dictionary (empty when it is not a JSON object).
func jsonObject(_ payload: [UInt8]) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any]) ?? [:]
}

/// The correlation ids of a downlink the host sent (`{"downlinks":[{"correlation_ids":[...]}]}`), in order.
func downlinkCorrelationIDs(_ message: ReceivedMessage) -> [String] {
    let first = (jsonObject(message.payload)["downlinks"] as? [Any])?.first as? [String: Any]
    return (first?["correlation_ids"] as? [Any])?.compactMap { $0 as? String } ?? []
}

/// The host's id of a downlink it sent: `X` of its correlation id `ttn-host:X`.
func hostDownlinkID(_ message: ReceivedMessage) -> String? {
    downlinkCorrelationIDs(message).first { $0.hasPrefix("ttn-host:") }.map { String($0.dropFirst("ttn-host:".count)) }
}

/// A TTN event fixture, with `ttn-host:<id>` added to its top-level `correlation_ids` when `downlinkID` is given, as
/// TTN echoes a downlink's correlation ids in its events.
func eventPayload(_ fixture: String, downlinkID: String? = nil) throws -> [UInt8] {
    var event = try #require(try JSONSerialization.jsonObject(with: Data(Fixtures.bytes(fixture))) as? [String: Any])
    if let downlinkID {
        event["correlation_ids"] = ((event["correlation_ids"] as? [Any]) ?? []) + ["ttn-host:\(downlinkID)"]
    }
    return [UInt8](try JSONSerialization.data(withJSONObject: event))
}

extension NetworkSide {
    /// Every correlation id of every downlink received so far, in arrival order.
    var correlationIDs: [String] { messages.flatMap(downlinkCorrelationIDs) }

    /// The correlation ids received so far that start with `prefix`, without it, in arrival order.
    func markers(_ prefix: String) -> [String] {
        correlationIDs.filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
    }

    /// The barrier for "nothing more came": once the host has stopped (which waited for the broker to acknowledge
    /// each of its downlinks), a marker published now arrives after all of them.
    func waitForEndMarker(application: String) async throws {
        let tag = "end-of-test-\(UUID().uuidString)"
        try publish(topic: "v3/\(application)@ttn/devices/marker/down/push", payload: Array(tag.utf8))
        let arrived = await eventually { self.messages.contains { String(decoding: $0.payload, as: UTF8.self) == tag } }
        try #require(arrived, "the end-of-test marker arrives")
    }
}

/// Calls `publish` (which publishes an event or an uplink), and again every 200 ms, until `answered` holds or 10 s
/// passed: for what the host receives only once a subscription it asked for is in effect. Returns whether it held.
@discardableResult
func publishUntil(_ answered: @escaping @Sendable () -> Bool, _ publish: () throws -> Void) async throws -> Bool {
    let deadline = ContinuousClock.now + .seconds(10) * Broker.timeScale
    while !answered() && ContinuousClock.now < deadline {
        try publish()
        _ = await eventually(timeout: .milliseconds(200), answered)
    }
    return answered()
}

/// Reads namespace `namespace` of the state in `directory` (no host may use it now).
func withState<Result>(_ directory: URL, _ namespace: String, _ body: (ScriptState) throws -> Result) throws -> Result {
    let database = try openWhenReleased(directory)
    defer { database.close() }
    return try body(database.namespace(namespace))
}

/// Opens the state the host just closed. Its lock is a `flock`, held by an open file description, and a child
/// process that another test spawns at that very moment holds a copy of it from its fork until its exec, where
/// close-on-exec drops it: so a lock still held is asked again for up to two seconds, stretched by TTN_TEST_TIME_SCALE.
private func openWhenReleased(_ directory: URL) throws -> StateDatabase {
    let deadline = ContinuousClock.now + .seconds(2) * Broker.timeScale
    var opened: StateDatabase?
    while opened == nil {
        do {
            opened = try StateDatabase(directory: directory.path)
        } catch {
            guard error.kind == .inUse, ContinuousClock.now < deadline else { throw error }
            Thread.sleep(forTimeInterval: 0.01)
        }
    }
    return opened!
}

@Suite("Handler state (ttn.store, host.store) against the broker", .enabled(if: Broker.shouldRun), .serialized, .timeLimit(.minutes(2)))
struct HostStateTests {
    /// One application for the whole suite, whose tests run one at a time: the test broker has 80 applications
    /// for every suite running in parallel (scripts/start-broker).
    static let app = Broker.application()

    static let counterScript = """
        setMessageHandler(function()
          local n = ttn.store.incr("n")
          publish({f_port = 1, bytes = {1}, correlation_ids = {"count:" .. n}})
        end)
        """

    @Test("a Lua counter counts 1...N, and after its file is rewritten (reloaded) the new version continues at N+1")
    func counterSurvivesReload() async throws {
        let app = Self.app
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        let scripts = try scriptDirectory(["counter.lua": Self.counterScript])
        let state = temporaryStateDirectory()
        let log = LogCapture()
        let configuration = try stateHostConfiguration(application: app, scripts: scripts, state: state, log: log)
        @Sendable func reloads() -> Int { log.messages.filter { $0 == "Script reloaded" }.count }
        try await withRunningHost(configuration: configuration) { host in
            #expect(await eventually { host.handlerNames.contains("counter.lua") })
            for counter in 0..<5 { try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: counter)) }
            #expect(await eventually { network.markers("count:").count == 5 })
            #expect(network.markers("count:") == (1...5).map(String.init))

            try Self.counterScript.replacingOccurrences(of: "\"count:\"", with: "\"v2:\"")
                .write(to: scripts.appendingPathComponent("counter.lua"), atomically: true, encoding: .utf8)
            #expect(await eventually { reloads() == 1 }, "the new version was loaded: \(log.messages)")
            for counter in 5..<8 { try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: counter)) }
            #expect(await eventually { network.markers("v2:").count == 3 })
        }
        #expect(network.markers("count:") == (1...5).map(String.init))
        #expect(network.markers("v2:") == (6...8).map(String.init), "the reloaded version continues the count")
        #expect(try withState(state, "lua/counter.lua") { try $0.get("n") } == "8")
    }

    @Test("an invocation that writes and then raises an error leaves nothing; the next one sees no trace of it")
    func errorRollsBack() async throws {
        try await rollbackCheck(
            failure: """
                assert(ttn.store.get("k") == "written before the failure", "an invocation sees its own writes")
                error("failing on purpose")
                """,
            limits: LuaLimits()
        )
    }

    @Test("an invocation that writes and then runs past its time limit leaves nothing")
    func timeLimitRollsBack() async throws {
        try await rollbackCheck(
            failure: "while true do end",
            limits: LuaLimits(timeLimit: .milliseconds(50), instructionLimit: 1_000_000_000_000, memoryLimit: 8 << 20)
        )
    }

    /// Runs rollback.lua for the uplinks f_cnt 1, which writes `k` and `n` and then fails by running `failure`, and 2,
    /// which answers with what it reads of them and writes `after`; then checks the database.
    private func rollbackCheck(failure: String, limits: LuaLimits) async throws {
        let script = """
            setMessageHandler(function()
              local f = getLastMessage().uplink_message.f_cnt
              if f == 1 then
                ttn.store.set("k", "written before the failure")
                ttn.store.incr("n")
                \(failure)
              end
              ttn.store.set("after", f)
              publish({f_port = 1, bytes = {1}, correlation_ids = {"k:" .. tostring(ttn.store.get("k")) .. ":n:" .. tostring(ttn.store.get("n"))}})
            end)
            """
        let app = Self.app
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        let state = temporaryStateDirectory()
        let log = LogCapture()
        var configuration = try stateHostConfiguration(
            application: app, scripts: try scriptDirectory(["rollback.lua": script]), state: state, log: log
        )
        configuration.luaLimits = limits
        try await withRunningHost(configuration: configuration) { host in
            #expect(await eventually { host.handlerNames.contains("rollback.lua") })
            try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: 1))
            try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: 2))
            #expect(await eventually { network.markers("k:").count == 1 })
            #expect(network.markers("k:") == ["nil:n:nil"], "the failed invocation's writes are not seen by the next")
            // The answer goes out before its invocation is counted.
            #expect(await eventually { host.statistics.handlers["rollback.lua"]?.handled == 2 })
            let statistics = try #require(host.statistics.handlers["rollback.lua"])
            #expect(statistics.handled == 2 && statistics.failed == 1, "\(statistics)")
        }
        let failed = log.messages.filter { $0.hasPrefix("Lua handler failed") }
        #expect(failed.count == 1, "\(log.messages)")
        try withState(state, "lua/rollback.lua") { state throws in
            #expect(try state.get("k") == nil)
            #expect(try state.get("n") == nil)
            #expect(try state.get("after") == "2", "the successful invocation's write landed")
            #expect(try state.keys() == ["after"])
        }
    }

    @Test("two scripts writing the same key never see each other's values")
    func namespacesAreSeparate() async throws {
        let app = Self.app
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        func script(_ name: String) -> String {
            """
            setMessageHandler(function()
              local f = getLastMessage().uplink_message.f_cnt
              local seen = ttn.store.get("shared")
              ttn.store.set("shared", "\(name)" .. f)
              publish({f_port = 1, bytes = {1}, correlation_ids = {"\(name):" .. f .. ":" .. tostring(seen)}})
            end)
            """
        }
        let state = temporaryStateDirectory()
        let configuration = try stateHostConfiguration(
            application: app, scripts: try scriptDirectory(["a.lua": script("a"), "b.lua": script("b")]), state: state, log: LogCapture()
        )
        let uplinks = 20
        try await withRunningHost(configuration: configuration) { host in
            #expect(await eventually { host.handlerNames.contains("a.lua") && host.handlerNames.contains("b.lua") })
            for counter in 1...uplinks { try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: counter)) }
            #expect(await eventually { network.markers("a:").count == uplinks && network.markers("b:").count == uplinks })
        }
        for name in ["a", "b"] {
            let expected = (1...uplinks).map { "\($0):\($0 == 1 ? "nil" : "\(name)\($0 - 1)")" }
            #expect(network.markers("\(name):") == expected, "\(name).lua sees only its own writes")
            try withState(state, "lua/\(name).lua") { state throws in
                #expect(try state.get("shared") == "\"\(name)\(uplinks)\"")
                #expect(try state.keys() == ["shared"])
            }
        }
    }

    @Test("a Swift closure's host.store counter is in the database after the host stopped")
    func swiftStore() async throws {
        let app = Self.app
        let network = try NetworkSide(port: try Broker.requirePort())
        defer { network.close() }
        let state = temporaryStateDirectory()
        let configuration = try stateHostConfiguration(application: app, scripts: nil, state: state, log: LogCapture())
        let counts = Recorder<Int>(), failures = Recorder<String>()
        let uplinks = 12
        try await withRunningHost(configuration: configuration) { host in
            host.register(name: "tally") {
                do {
                    let store = try #require(host.store, "host.store inside the closure")
                    counts.append(try store.increment("n"))
                    try store.set("last", host.getLastMessage()?.uplinkMessage?.fCnt ?? -1)
                } catch {
                    failures.append("\(error)")
                }
            }
        } _: { host in
            #expect(host.store == nil, "no store outside a handler")
            for counter in 0..<uplinks { try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: counter)) }
            #expect(await eventually { counts.count == uplinks })
        }
        #expect(failures.all.isEmpty, "\(failures.all)")
        #expect(counts.all == Array(1...uplinks))
        try withState(state, "swift/tally") { state throws in
            #expect(try state.get("n") == "\(uplinks)")
            #expect(try state.get("last") == "\(uplinks - 1)")
        }
    }
}
