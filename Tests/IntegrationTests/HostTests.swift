import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TestSupport
import Testing
import TTNLua
import TTNSync

@testable import TTNHost
@testable import TTNMQTT

/// Runs a host against the test broker for the duration of `body`, then shuts it down gracefully.
func withRunningHost(
    application: String, scripts: URL? = nil,
    register: (HandlerHost) -> Void = { _ in }, _ body: (HandlerHost) async throws -> Void
) async throws {
    let configuration = try hostConfiguration(application: application, port: Broker.requirePort(), scripts: scripts)
    try await withRunningHost(configuration: configuration, register: register, body)
}

/// A host of `application` on the broker at `port`, with a 2 s shutdown deadline.
func hostConfiguration(application: String, port: Int, scripts: URL? = nil) -> HandlerHost.Configuration {
    var client = MQTTClient.Configuration(applicationID: application, apiKey: Broker.apiKey)
    client.server = .init(host: "127.0.0.1", port: port)
    var configuration = HandlerHost.Configuration(client: client, scriptDirectory: scripts?.path)
    configuration.shutdownDeadline = .seconds(2)
    return configuration
}

/// Runs a host made from `configuration` for the duration of `body`, then shuts it down gracefully.
func withRunningHost(
    configuration: HandlerHost.Configuration,
    register: (HandlerHost) -> Void = { _ in }, _ body: (HandlerHost) async throws -> Void
) async throws {
    try await withRunningHost(HandlerHost(configuration: configuration), register: register, body)
}

/// Runs `host` for the duration of `body`, then shuts it down gracefully.
func withRunningHost(
    _ host: HandlerHost, register: (HandlerHost) -> Void = { _ in }, _ body: (HandlerHost) async throws -> Void
) async throws {
    register(host)
    let group = ServiceGroup(services: [host], logger: Logger(label: "test-host"))
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        #expect(await eventually { host.isConnected })
        do {
            try await body(host)
        } catch {
            await group.triggerGracefulShutdown()
            throw error
        }
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
    }
}

func scriptDirectory(_ files: [String: String]) throws -> URL {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("scripts-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    for (name, text) in files { try text.write(to: directory.appendingPathComponent(name), atomically: true, encoding: .utf8) }
    return directory
}

func uplinkJSON(device: String = "dev", counter: Int, temperature: Double = 20) -> [UInt8] {
    Array(#"{"end_device_ids":{"device_id":"\#(device)"},"uplink_message":{"f_cnt":\#(counter),"f_port":1,"frm_payload":"AQ==","decoded_payload":{"temperature":\#(temperature)}}}"#.utf8)
}

/// A script that answers every uplink with a downlink carrying its f_cnt as a correlation id.
let echoScript = """
    setMessageHandler(function()
      local m = getLastMessage()
      publish({f_port = 7, bytes = {1}, correlation_ids = {"fcnt:" .. m.uplink_message.f_cnt}})
    end)
    """

@Suite("ttn-host against the broker", .enabled(if: Broker.shouldRun), .timeLimit(.minutes(2)))
struct HostTests {
    @Test("closures and a script see every uplink in order; the script's downlink arrives in v3 form")
    func everyHandlerInOrder() async throws {
        let app = Broker.application()
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        let first = Recorder<Int>(), second = Recorder<Int>()
        try await withRunningHost(application: app, scripts: try scriptDirectory(["echo.lua": echoScript])) { host in
            host.register(name: "first") { first.append(host.getLastMessage()?.uplinkMessage?.fCnt ?? -1) }
            host.register(name: "second") { second.append(host.getLastMessage()?.uplinkMessage?.fCnt ?? -1) }
        } _: { host in
            #expect(await eventually { host.handlerNames.contains("echo.lua") })
            for counter in 0..<50 { try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: counter)) }
            #expect(await eventually { first.count == 50 && second.count == 50 && network.messages.count == 50 })
        }
        #expect(first.all == Array(0..<50))
        #expect(second.all == Array(0..<50))
        let downlinks = network.messages
        #expect(downlinks.allSatisfy { $0.topic == "v3/\(app)@ttn/devices/dev/down/push" })
        let ids = try downlinks.map { message -> String in
            let body = try JSONDecoder().decode(JSONValue.self, from: Data(message.payload))
            #expect(body["downlinks"]?[0]?["f_port"] == .number(7))
            #expect(body["downlinks"]?[0]?["frm_payload"] == .string("AQ=="))
            return body["downlinks"]?[0]?["correlation_ids"]?[0]?.stringValue ?? ""
        }
        #expect(ids == (0..<50).map { "fcnt:\($0)" })
    }

    @Test("getLastMessage() is the triggering uplink while two handlers run at once")
    func triggeringUplink() async throws {
        let app = Broker.application()
        let network = try NetworkSide(port: try Broker.requirePort())
        defer { network.close() }
        let mismatches = Recorder<String>(), runs = Recorder<Int>()
        try await withRunningHost(application: app) { host in
            for name in ["slow-a", "slow-b"] {
                host.register(name: name) {
                    let before = host.getLastMessage()?.uplinkMessage?.fCnt
                    usleep(3_000)  // more uplinks arrive meanwhile
                    let after = host.getLastMessage()?.uplinkMessage?.fCnt
                    if before != after { mismatches.append("\(name): \(String(describing: before)) then \(String(describing: after))") }
                    runs.append(after ?? -1)
                }
            }
        } _: { _ in
            for counter in 0..<40 { try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: counter)) }
            #expect(await eventually { runs.count == 80 })
        }
        #expect(mismatches.all.isEmpty, "\(mismatches.all)")
    }

    @Test("a script edited, broken, fixed and deleted while uplinks flow; the other handlers lose nothing")
    func scriptLifecycle() async throws {
        let app = Broker.application()
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        let directory = try scriptDirectory(["echo.lua": echoScript])
        let file = directory.appendingPathComponent("echo.lua")
        let counted = Recorder<Int>()
        let log = LogCapture()
        var configuration = hostConfiguration(application: app, port: try Broker.requirePort(), scripts: directory)
        configuration.client.logger = Logger(label: "script-lifecycle") { _ in log }
        @Sendable func answers() -> [String] { network.messages.map { String(decoding: $0.payload, as: UTF8.self) } }
        /// The answer to the uplink with f_cnt `counter`, if one arrived.
        @Sendable func answer(to counter: Int) -> String? { answers().first { $0.contains("\"fcnt:\(counter)\"") } }
        @Sendable func rejections() -> Int { log.messages.filter { $0.contains("Script change rejected") }.count }
        var counter = 0
        var afterDelete = 0..<0
        try await withRunningHost(configuration: configuration) { host in
            host.register(name: "counter") { counted.append(host.getLastMessage()?.uplinkMessage?.fCnt ?? -1) }
        } _: { host in
            #expect(await eventually { host.handlerNames.contains("echo.lua") })
            func send(_ count: Int) throws -> Range<Int> {
                let first = counter
                for _ in 0..<count {
                    try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: counter))
                    counter += 1
                }
                return first..<counter
            }
            _ = try send(10)
            // Edited: now answers on port 8.
            try echoScript.replacingOccurrences(of: "f_port = 7", with: "f_port = 8").write(to: file, atomically: true, encoding: .utf8)
            #expect(await eventually {
                try? network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: 1000))
                return answers().contains { $0.contains("\"f_port\":8") }
            })
            // Broken: a syntax error keeps the port-8 version running. The uplinks go out only once the host has
            // logged that it rejected the broken version, so the answers below come after the rejection.
            let rejectedBefore = rejections()
            try "setMessageHandler(function( end".write(to: file, atomically: true, encoding: .utf8)
            #expect(await eventually { rejections() > rejectedBefore }, "the broken version was seen and rejected: \(log.messages)")
            let afterBreak = try send(5)
            #expect(await eventually { afterBreak.allSatisfy { answer(to: $0) != nil } }, "every uplink after the rejection is answered")
            for sent in afterBreak {
                #expect(answer(to: sent)?.contains("\"f_port\":8") == true, "fcnt \(sent): \(answer(to: sent) ?? "no answer")")
            }
            // Fixed: the next good version (port 9) replaces the running one.
            try echoScript.replacingOccurrences(of: "f_port = 7", with: "f_port = 9").write(to: file, atomically: true, encoding: .utf8)
            #expect(await eventually {
                try? network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: 1000))
                return answers().contains { $0.contains("\"f_port\":9") }
            })
            // Deleted: no answers to the uplinks sent after it (uplinks queued before it may still be answered).
            // Whether any came is decided below, once the host has stopped.
            try FileManager.default.removeItem(at: file)
            #expect(await eventually { !host.handlerNames.contains("echo.lua") })
            afterDelete = try send(5)
            let sent = counter
            #expect(await eventually { counted.all.filter { $0 < 1000 }.count == sent })
        }
        #expect(counted.all.filter { $0 < 1000 } == Array(0..<20))
        // The barrier for "no answer": the host has stopped, which handled or removed everything queued and waited
        // for the broker to acknowledge every downlink it sent. A marker published now reaches the watcher after
        // all of them (one broker, one subscription, in order), so once it is here every answer the host ever
        // sent is here too.
        #expect(!log.messages.contains { $0.contains("not acknowledged") }, "every downlink reached the broker before the host stopped")
        try network.publish(topic: "v3/\(app)@ttn/devices/marker/down/push", payload: Array("end-of-test marker".utf8))
        #expect(await eventually { answers().contains("end-of-test marker") }, "the marker arrives")
        #expect(afterDelete.count == 5)
        for sent in afterDelete {
            #expect(answer(to: sent) == nil, "fcnt \(sent) was sent after echo.lua was deleted, yet answered: \(answer(to: sent) ?? "")")
        }
    }

    @Test("a stuck handler stalls neither the connection nor the others; it keeps the newest uplinks, in order, and counts the rest")
    func stuckHandler() async throws {
        let app = Broker.application()
        let network = try NetworkSide(port: try Broker.requirePort())
        defer { network.close() }
        let uplinks = 100, limit = 10
        // A byte budget that holds `limit` of these uplinks and not one more (their sizes differ by a digit or two).
        let footprint = try Uplink(json: uplinkJSON(counter: uplinks - 1)).memoryFootprint
        let budget = limit * footprint + footprint / 2
        let healthy = Recorder<Int>()
        // What the stuck handler started, in order; it blocks in its first invocation until the gate opens.
        let started = Recorder<Int>()
        let gate = DispatchSemaphore(value: 0)
        let open = Locked(false)
        // The stuck handler's waiting uplinks, sampled by the healthy handler at each of its invocations.
        let waitingSamples = Recorder<Int>()
        try await withRunningHost(application: app) { host in
            host.register(name: "stuck", queueBytes: budget) {
                started.append(host.getLastMessage()?.uplinkMessage?.fCnt ?? -1)
                if !open.withLock({ $0 }) { gate.wait() }
            }
            host.register(name: "healthy") {
                healthy.append(host.getLastMessage()?.uplinkMessage?.fCnt ?? -1)
                waitingSamples.append(host.statistics.handlers["stuck"]?.waiting ?? -1)
            }
        } _: { host in
            for counter in 0..<uplinks { try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: counter)) }
            // Every uplink was routed to both handlers once the healthy one has seen them all; the stuck one has
            // begun its first invocation (and cannot finish it) once it recorded it.
            #expect(await eventually { healthy.count == uplinks && started.count == 1 }, "healthy saw \(healthy.count): \(host.statistics)")
            #expect(healthy.all == Array(0..<uplinks), "the healthy handler saw every uplink, in order, while the other was stuck")
            #expect(host.isConnected)
            let stuck = try #require(host.statistics.handlers["stuck"])
            #expect(stuck.handled == 0 && started.count == 1, "blocked in its first invocation: \(stuck)")
            // One running, the rest waiting or dropped; more than limit + 1 arrived, so some were dropped.
            #expect(stuck.waiting <= limit, "never more than its limit waits: \(stuck)")
            #expect(stuck.dropped + stuck.waiting + 1 == uplinks, "every routed uplink is running, waiting or dropped: \(stuck)")
            #expect(stuck.dropped >= uplinks - limit - 1, "\(uplinks) uplinks for 1 running and \(limit) waiting: \(stuck)")
            #expect(waitingSamples.all.allSatisfy { $0 <= limit }, "waiting, sampled at every healthy invocation: \(waitingSamples.all)")

            open.withLock { $0 = true }
            gate.signal()
            #expect(await eventually {
                host.statistics.handlers["stuck"].map { $0.handled + $0.dropped == uplinks && $0.waiting == 0 } == true
            }, "after the release every uplink is handled or dropped: \(host.statistics)")
            let after = try #require(host.statistics.handlers["stuck"])
            #expect(after.dropped == stuck.dropped, "nothing more is dropped once the handler runs again")
            #expect(after.handled == started.count, "handled: \(after), started: \(started.all)")
            // Drop-oldest: what ran after the release is the newest uplinks, contiguous and in order, ending with
            // the last one sent; the uplink it was stuck on is older than all of them.
            let ran = started.all
            let waited = Array(ran.dropFirst())
            #expect(waited.count == stuck.waiting, "exactly what waited ran: \(ran)")
            #expect(waited == Array((uplinks - waited.count)..<uplinks), "the newest uplinks, in order: \(ran)")
            #expect(ran.first.map { first in waited.allSatisfy { first < $0 } } == true, "the first is the oldest: \(ran)")
        }
    }

    @Test("hostile scripts fail every invocation, contained; the healthy script and closure beside them see every uplink")
    func hostileScripts() async throws {
        let app = Broker.application()
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        let hostile = [
            "endless.lua": "setMessageHandler(function() while true do end end)",
            "bomb.lua": "setMessageHandler(function() local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(100) .. i end end)",
            "recursion.lua": "local function f() return f() + 1 end\nsetMessageHandler(function() f() end)",
            "error.lua": "setMessageHandler(function() error('broken on purpose') end)",
        ]
        var configuration = hostConfiguration(
            application: app, port: try Broker.requirePort(), scripts: try scriptDirectory(hostile.merging(["echo.lua": echoScript]) { $1 })
        )
        configuration.luaLimits = LuaLimits(timeLimit: .milliseconds(50), instructionLimit: 1_000_000_000_000, memoryLimit: 8 * 1024 * 1024)
        configuration.shutdownDeadline = .seconds(30)
        let uplinks = 20
        let seen = Recorder<Int>()
        try await withRunningHost(configuration: configuration) { host in
            host.register(name: "closure") { seen.append(host.getLastMessage()?.uplinkMessage?.fCnt ?? -1) }
        } _: { host in
            #expect(await eventually { host.handlerNames.count == hostile.count + 2 })
            for counter in 0..<uplinks { try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: counter)) }
            #expect(await eventually(timeout: .seconds(30)) { host.statistics.handlers.values.allSatisfy { $0.handled == uplinks } })
            let handlers = host.statistics.handlers
            for name in hostile.keys { #expect(handlers[name]?.failed == uplinks, "\(name): \(String(describing: handlers[name]))") }
            #expect(handlers["echo.lua"]?.failed == 0 && handlers["echo.lua"]?.dropped == 0)
            #expect(await eventually { network.messages.count == uplinks })
        }
        #expect(seen.all == Array(0..<uplinks))
        #expect(Set(network.messages.map { String(decoding: $0.payload, as: UTF8.self) }).count == uplinks)
    }

    @Test("malformed, truncated, non-UTF-8 and oversized uplinks, and a topic of the wrong shape, are skipped and counted")
    func badInput() async throws {
        let app = Broker.application()
        let network = try NetworkSide(port: try Broker.requirePort())
        defer { network.close() }
        let seen = Recorder<Int>()
        try await withRunningHost(application: app) { host in
            host.register(name: "seen") { seen.append(host.getLastMessage()?.uplinkMessage?.fCnt ?? -1) }
        } _: { host in
            let malformed: [[UInt8]] = [
                Array("{".utf8), Array("[1]".utf8), Array(#"{"uplink_message":{"f_cnt":"x"}}"#.utf8),
                Array(#"{"a":""#.utf8) + [0xFF, 0xFE] + Array(#""}"#.utf8),  // not UTF-8
                Array(uplinkJSON(counter: 2).prefix(60)),  // truncated
            ]
            for bad in malformed { try network.publishUplink(application: app, device: "dev", json: bad) }
            try network.publishUplink(application: app, device: "dev", json: Array(repeating: UInt8(ascii: " "), count: 1_000_000))
            // An empty device id matches the uplink filter's `+` but is no device topic.
            try network.publish(topic: "v3/\(app)@ttn/devices//up", payload: uplinkJSON(counter: 3))
            try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: 1))
            #expect(await eventually { seen.count == 1 })
            #expect(host.statistics.malformed == malformed.count)
            #expect(host.statistics.oversized == 1)
            #expect(host.statistics.unexpectedTopics == 1)
        }
        #expect(seen.all == [1])
    }
}
