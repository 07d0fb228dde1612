import Dispatch
import Foundation
import Logging
import TestSupport
import Testing
import TTNCore
import TTNLua
import TTNSync

@testable import TTNHost
@testable import TTNMQTT

@Suite("Handler timers, events and downlink tracking against the broker", .enabled(if: Broker.shouldRun), .serialized, .timeLimit(.minutes(2)))
struct HostTimerEventTests {
    /// One application for the whole suite, whose tests run one at a time: the test broker has 80 applications
    /// for every suite running in parallel (scripts/start-broker).
    static let app = Broker.application()

    /// Every MQTT event kind, its fixture, and the field only that fixture has.
    static let eventFixtures: [(kind: String, fixture: String, field: String)] = [
        ("join", "v3-join-accept.json", "join_accept"),
        ("up/normalized", "v3-up-normalized.json", "uplink_normalized"),
        ("down/queued", "v3-down-queued.json", "downlink_queued"),
        ("down/sent", "v3-down-sent.json", "downlink_sent"),
        ("down/ack", "v3-down-ack.json", "downlink_ack"),
        ("down/nack", "v3-down-nack.json", "downlink_nack"),
        ("down/failed", "v3-down-failed.json", "downlink_failed"),
        ("down/invalidated", "v3-down-invalidated.json", "downlink_queue_invalidated"),
        ("location/solved", "v3-location-solved.json", "location_solved"),
        ("service/data", "v3-service-data.json", "service_data"),
    ]

    /// The ticks of a 0.2 s timer (log lines starting with `prefix`) in about 2 s, and the most that fit the time
    /// that really passed (a loaded machine, or a sanitizer, oversleeps): one per 0.2 s, plus one at each end of the
    /// window. About 10 are expected; the lower bound is loose, as a loaded machine delays ticks (and never piles
    /// them up). Ticks are counted where they run, in the log: their downlinks can reach the network side in a burst
    /// after a stall of the broker or of the test's receiver.
    private func ticks(_ log: LogCapture, _ prefix: String) async throws -> (fired: Int, most: Int) {
        func count() -> Int { log.messages.count { $0.hasPrefix(prefix) } }
        let first = count()
        let start = ContinuousClock.now
        try await Task.sleep(for: .seconds(2))
        let fired = count() - first
        return (fired, Int((ContinuousClock.now - start).timeInterval / 0.2) + 2)
    }

    @Test("ttn.every(0.2) fires about 10 times in 2 s; after a reload only the new version's timer fires")
    func repeatingTimerAndReload() async throws {
        let app = Self.app
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        let script = """
            ttn.every(0.2, function()
              local n = ttn.store.incr("ticks")
              ttn.log("tick old:" .. n)
              publish({f_port = 1, bytes = {1}, correlation_ids = {"old:" .. n}}, "dev")
            end)
            """
        let scripts = try scriptDirectory(["ticker.lua": script])
        let log = LogCapture()
        let configuration = try stateHostConfiguration(application: app, scripts: scripts, state: temporaryStateDirectory(), log: log)
        try await withRunningHost(configuration: configuration) { host in
            #expect(await eventually { !network.markers("old:").isEmpty }, "the timer fires")
            let (fired, most) = try await ticks(log, "tick old:")
            #expect((5...most).contains(fired), "fired \(fired) times in about 2 s at 0.2 s; at most \(most) fit the time")

            try script.replacingOccurrences(of: "old:", with: "new:")
                .write(to: scripts.appendingPathComponent("ticker.lua"), atomically: true, encoding: .utf8)
            #expect(await eventually { !network.markers("new:").isEmpty }, "the new version's timer fires")
            let (firedNew, mostNew) = try await ticks(log, "tick new:")
            #expect((5...mostNew).contains(firedNew), "the new version's timer fired \(firedNew) times in about 2 s at 0.2 s: once per tick")
        }
        try await network.waitForEndMarker(application: app)
        let ids = network.correlationIDs.filter { $0.hasPrefix("old:") || $0.hasPrefix("new:") }
        let firstNew = try #require(ids.firstIndex { $0.hasPrefix("new:") })
        let oldAfterNew = ids[firstNew...].filter { $0.hasPrefix("old:") }
        #expect(oldAfterNew.isEmpty, "the old version's timer stopped at the reload: \(ids)")
        // One counter in the state across the reload: each tick, of either version, counted once.
        let numbers = ids.compactMap { Int($0.dropFirst(4)) }
        #expect(numbers == Array(1...numbers.count), "\(ids)")
        #expect(log.messages.filter { $0 == "Script reloaded" }.count == 1)
    }

    @Test("a timer runs between a busy handler's uplinks, never during one")
    func timerBetweenUplinks() async throws {
        let app = Self.app
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        // The handler marks itself inside (a global and the store: its open invocation's writes) for ~100 ms.
        let script = """
            inside = false
            setMessageHandler(function()
              local f = getLastMessage().uplink_message.f_cnt
              inside = true
              ttn.store.set("inside", true)
              local start = os.clock()
              while os.clock() - start < 0.1 do end
              publish({f_port = 1, bytes = {1}, correlation_ids = {"u:" .. f}})
              ttn.store.delete("inside")
              inside = false
            end)
            ttn.every(0.1, function()
              local n = ttn.store.incr("ticks")
              local violated = inside or ttn.store.get("inside") ~= nil
              if violated then ttn.store.incr("violations") end
              publish({f_port = 2, bytes = {2}, correlation_ids = {"t:" .. n .. ":" .. tostring(violated)}}, "dev")
            end)
            """
        let state = temporaryStateDirectory()
        var configuration = try stateHostConfiguration(
            application: app, scripts: try scriptDirectory(["busy.lua": script]), state: state, log: LogCapture()
        )
        // Only the spin's own end may end it, however loaded (or fast) the machine is.
        configuration.luaLimits.timeLimit = .seconds(10)
        configuration.luaLimits.instructionLimit = 1_000_000_000_000
        let uplinks = 20
        try await withRunningHost(configuration: configuration) { host in
            #expect(await eventually { !network.markers("t:").isEmpty }, "the timer ticks")
            // Faster than the handler takes them, so it stays busy while the timer keeps firing.
            for counter in 0..<uplinks {
                try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: counter))
                try await Task.sleep(for: .milliseconds(60))
            }
            #expect(await eventually(timeout: .seconds(30)) { network.markers("u:").count == uplinks })
            let ticks = network.markers("t:").count
            #expect(await eventually { network.markers("t:").count > ticks }, "the timer still ticks after the burst")
        }
        let ids = network.correlationIDs.filter { $0.hasPrefix("u:") || $0.hasPrefix("t:") }
        #expect(network.markers("u:") == (0..<uplinks).map(String.init))
        #expect(network.markers("t:").allSatisfy { $0.hasSuffix(":false") }, "no tick ran during an uplink: \(ids)")
        let firstUplink = try #require(ids.firstIndex(of: "u:0")), lastUplink = try #require(ids.firstIndex(of: "u:\(uplinks - 1)"))
        let ticksDuringBurst = ids[firstUplink..<lastUplink].filter { $0.hasPrefix("t:") }.count
        #expect(ticksDuringBurst >= 1, "the timer ran between the busy handler's uplinks: \(ids)")
        try withState(state, "lua/busy.lua") { state throws in
            #expect(try state.get("violations") == nil)
            #expect(try state.get("inside") == nil)
            let ticks = try state.get("ticks").flatMap { Int($0) } ?? 0
            #expect(ticks >= ticksDuringBurst)
        }
    }

    /// Publishes each kind's fixture on device `dev`'s event topic, again every 300 ms for the kinds not in
    /// `answered()` yet, until all are (or 20 s passed).
    static func publishEvents(application: String, from network: NetworkSide, until answered: @escaping @Sendable () -> Set<String>) async throws {
        let total = eventFixtures.count
        let deadline = ContinuousClock.now + .seconds(20) * Broker.timeScale
        while answered().count < total && ContinuousClock.now < deadline {
            for (kind, fixture, _) in eventFixtures where !answered().contains(kind) {
                try network.publish(topic: "v3/\(application)@ttn/devices/dev/\(kind)", payload: Fixtures.bytes(fixture))
            }
            _ = await eventually(timeout: .milliseconds(300)) { answered().count == total }
        }
    }

    @Test("each of the 10 MQTT event kinds reaches the Lua handler registered for it, with the event as TTN sent it")
    func everyEventKind() async throws {
        let app = Self.app
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        let fields = Self.eventFixtures.map { "[\"\($0.kind)\"] = \"\($0.field)\"" }.joined(separator: ", ")
        let script = """
            local fields = { \(fields) }
            for kind, field in pairs(fields) do
              setEventHandler(kind, function()
                local event = getLastEvent()
                assert(type(event[field]) == "table", kind .. ": no " .. field)
                publish({f_port = 1, bytes = {1}, correlation_ids = {"event:" .. kind .. ":" .. event.end_device_ids.device_id}})
              end)
            end
            """
        let configuration = try stateHostConfiguration(
            application: app, scripts: try scriptDirectory(["events.lua": script]), state: temporaryStateDirectory(), log: LogCapture()
        )
        let answered: @Sendable () -> Set<String> = { Set(network.markers("event:").map { String($0.split(separator: ":")[0]) }) }
        try await withRunningHost(configuration: configuration) { host in
            #expect(await eventually { host.handlerNames.contains("events.lua") })
            // Published again until answered: the host subscribes to each kind's topic once the script asked for it.
            try await Self.publishEvents(application: app, from: network, until: answered)
            let statistics = try #require(host.statistics.handlers["events.lua"])
            #expect(statistics.failed == 0, "\(statistics)")
        }
        #expect(answered() == Set(Self.eventFixtures.map(\.kind)), "answered: \(answered().sorted())")
        #expect(network.markers("event:").allSatisfy { $0.hasSuffix(":dev1") || $0.hasSuffix(":eui-70b3d57ed0061a2b") })
    }

    @Test("publish's id comes back: a down/ack carrying ttn-host:<id> gives ttn.downlinkID() == that id")
    func downlinkIDRoundTrip() async throws {
        let app = Self.app
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        let script = """
            setMessageHandler(function()
              local id = publish({f_port = 1, bytes = {1}, correlation_ids = {"sent"}})
              assert(type(id) == "string" and #id > 0, "publish returns an id")
              ttn.store.set("sent", id)
            end)
            setEventHandler("down/ack", function()
              local got, sent = ttn.downlinkID(), ttn.store.get("sent")
              publish({f_port = 2, bytes = {2}, correlation_ids = {"ack:" .. tostring(got == sent) .. ":" .. tostring(got) .. ":" .. tostring(sent)}})
            end)
            """
        let configuration = try stateHostConfiguration(
            application: app, scripts: try scriptDirectory(["ids.lua": script]), state: temporaryStateDirectory(), log: LogCapture()
        )
        try await withRunningHost(configuration: configuration) { host in
            #expect(await eventually { host.handlerNames.contains("ids.lua") })
            try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: 1))
            #expect(await eventually { network.messages.contains { downlinkCorrelationIDs($0).contains("sent") } })
            let downlink = try #require(network.messages.first { downlinkCorrelationIDs($0).contains("sent") })
            let id = try #require(hostDownlinkID(downlink), "the downlink carries ttn-host:<id>: \(downlinkCorrelationIDs(downlink))")
            // The network side answers as TTN does, echoing the downlink's correlation ids (until the host is subscribed).
            try await publishUntil({ !network.markers("ack:").isEmpty }) {
                try network.publish(topic: "v3/\(app)@ttn/devices/dev/down/ack", payload: eventPayload("v3-down-ack.json", downlinkID: id))
            }
            let answers = network.markers("ack:")
            #expect(!answers.isEmpty && answers.allSatisfy { $0 == "true:\(id):\(id)" }, "\(answers), sent \(id)")
            // An ack of a downlink the host did not send has no id.
            let before = answers.count
            try network.publish(topic: "v3/\(app)@ttn/devices/dev/down/ack", payload: Fixtures.bytes("v3-down-ack.json"))
            #expect(await eventually { network.markers("ack:").count > before })
            #expect(network.markers("ack:").last == "false:nil:\(id)")
        }
    }

    @Test("a downlink TTN never answers is lost after the timeout: down/lost with its id, counted once; an answered one is not")
    func lostDownlink() async throws {
        let app = Self.app
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        let script = """
            setMessageHandler(function()
              local f = getLastMessage().uplink_message.f_cnt
              local id = publish({f_port = 1, bytes = {1}, correlation_ids = {"fcnt:" .. f}})
              print("SENT " .. f .. " " .. id)
            end)
            setEventHandler("down/lost", function()
              local e = getLastEvent()
              print("LOST " .. e.downlink_id .. " " .. e.end_device_ids.device_id .. " " .. e.downlink.f_port .. " " .. tostring(ttn.downlinkID()))
            end)
            """
        let log = LogCapture()
        var configuration = try stateHostConfiguration(
            application: app, scripts: try scriptDirectory(["lost.lua": script]), state: temporaryStateDirectory(), log: log
        )
        configuration.downlinkTimeout = .seconds(1) * Broker.timeScale
        @Sendable func lines(_ prefix: String) -> [[String]] {
            log.messages.filter { $0.hasPrefix(prefix) }.map { $0.split(separator: " ").dropFirst().map(String.init) }
        }
        try await withRunningHost(configuration: configuration) { host in
            #expect(await eventually { host.handlerNames.contains("lost.lua") })
            // Answered: the network side queues it at once, echoing its correlation ids.
            try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: 1))
            #expect(await eventually { network.messages.contains { downlinkCorrelationIDs($0).contains("fcnt:1") } })
            let answered = try #require(network.messages.first { downlinkCorrelationIDs($0).contains("fcnt:1") }.flatMap(hostDownlinkID))
            try network.publish(topic: "v3/\(app)@ttn/devices/dev/down/queued", payload: eventPayload("v3-down-queued.json", downlinkID: answered))
            // Never answered; sent after the first, so its loss is reported after the first's would be (oldest first).
            try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: 2))
            #expect(await eventually { network.messages.contains { downlinkCorrelationIDs($0).contains("fcnt:2") } })
            let unanswered = try #require(network.messages.first { downlinkCorrelationIDs($0).contains("fcnt:2") }.flatMap(hostDownlinkID))

            #expect(await eventually { !lines("LOST ").isEmpty }, "the down/lost handler ran: \(log.messages)")
            let sent = Dictionary(lines("SENT ").map { ($0[0], $0[1]) }) { first, _ in first }
            #expect(sent == ["1": answered, "2": unanswered], "publish returned the id the downlink carried")
            #expect(lines("LOST ") == [[unanswered, "dev", "1", unanswered]])
            #expect(host.statistics.downlinksLost == 1)
            #expect(log.messages.filter { $0.hasPrefix("Downlink lost") }.count == 1)
            #expect(host.tracker.count == 0, "nothing is followed any more")
        }
    }

    @Test("down/lost of a downlink published in the v2 form carries it as sent, in the v3 form; a Swift handler gets it")
    func lostV2Downlink() async throws {
        let app = Self.app
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        var configuration = try stateHostConfiguration(application: app, scripts: nil, state: temporaryStateDirectory(), log: LogCapture())
        configuration.downlinkTimeout = .seconds(1) * Broker.timeScale
        let published = Recorder<String>(), lost = Recorder<TTNEvent>()
        try await withRunningHost(configuration: configuration) { host in
            host.register(name: "v2") {
                if let id = try? host.publish(#"{"port":7,"confirmed":false,"payload_raw":"AAE="}"#) { published.append(id) }
            }
            host.setEventHandler(.downlinkLost, for: "v2") { lost.append($0) }
        } _: { host in
            try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: 1))
            #expect(await eventually { lost.count == 1 }, "down/lost arrives")
            let id = try #require(published.all.first)
            let event = try #require(lost.all.first)
            #expect(event.kind == .downlinkLost && event.deviceID == "dev" && event.hostDownlinkID == id)
            let json = jsonObject(Array(event.json.utf8))
            #expect(json["downlink_id"] as? String == id)
            #expect((json["end_device_ids"] as? [String: Any])?["device_id"] as? String == "dev")
            let downlink = json["downlink"] as? [String: Any]
            #expect(downlink?["f_port"] as? Int == 7, "\(event.json)")
            #expect(downlink?["frm_payload"] as? String == "AAE=", "\(event.json)")
            #expect(host.statistics.downlinksLost == 1)
        }
    }

    @Test("Swift closures: setEventHandler(.downlinkAck) gets the event of the id publish returned; every(_:on:) ticks")
    func swiftClosures() async throws {
        let app = Self.app
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["v3/\(app)@ttn/devices/+/down/#"])
        defer { network.close() }
        let state = temporaryStateDirectory()
        let configuration = try stateHostConfiguration(application: app, scripts: nil, state: state, log: LogCapture())
        let published = Recorder<String>(), acks = Recorder<TTNEvent>(), ticks = Recorder<Int>(), failures = Recorder<String>()
        try await withRunningHost(configuration: configuration) { host in
            host.register(name: "swift") {
                do {
                    published.append(try host.publish(#"{"downlinks":[{"f_port":1,"frm_payload":"AQ==","correlation_ids":["swift"]}]}"#))
                } catch {
                    failures.append("publish: \(error)")
                }
            }
            host.setEventHandler(.downlinkAck, for: "swift") { event in
                acks.append(event)
                do { try host.store?.increment("acks") } catch { failures.append("store in event: \(error)") }
            }
            host.every(.milliseconds(200), on: "swift") {
                do {
                    ticks.append(try host.store?.increment("ticks") ?? -1)
                } catch {
                    failures.append("store in timer: \(error)")
                }
            }
        } _: { host in
            #expect(await eventually { ticks.count >= 3 }, "the timer ticks")
            try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: 1))
            #expect(await eventually { network.messages.contains { downlinkCorrelationIDs($0).contains("swift") } })
            let downlink = try #require(network.messages.first { downlinkCorrelationIDs($0).contains("swift") })
            let id = try #require(hostDownlinkID(downlink))
            // The downlink may arrive before the closure recorded what publish returned.
            #expect(await eventually { published.count == 1 })
            #expect(published.all == [id], "publish returned the id the downlink carries")
            try await publishUntil({ acks.count > 0 }) {
                try network.publish(topic: "v3/\(app)@ttn/devices/dev/down/ack", payload: eventPayload("v3-down-ack.json", downlinkID: id))
            }
            let ack = try #require(acks.all.first)
            #expect(ack.kind == .downlinkAck && ack.deviceID == "dev")
            #expect(ack.hostDownlinkID == id)
        }
        #expect(failures.all.isEmpty, "\(failures.all)")
        #expect(ticks.all == Array(1...ticks.count), "each tick counted once in the store: \(ticks.all)")
        try withState(state, "swift/swift") { state throws in
            #expect(try state.get("ticks") == "\(ticks.count)")
            #expect(try state.get("acks") == "\(acks.count)")
        }
    }

    @Test("a timer a handler starts while the host drains its queues at shutdown does not outlive the host's run")
    func timerStartedDuringShutdown() async throws {
        let app = Self.app
        let network = try NetworkSide(port: try Broker.requirePort())
        defer { network.close() }
        let log = LogCapture()
        let configuration = try stateHostConfiguration(application: app, scripts: nil, state: temporaryStateDirectory(), log: log)
        let host = HandlerHost(configuration: configuration)
        let started = Recorder<Int>(), ticks = Recorder<Int>()
        // The handler waits until the shutdown began, then starts timers, as a handler draining its queue may.
        let shutdownBegan = DispatchSemaphore(value: 0)
        try await withRunningHost(host) { host in
            host.register(name: "late") {
                started.append(1)
                shutdownBegan.wait()
                host.every(.milliseconds(100), on: "late") { ticks.append(1) }
                host.after(.milliseconds(100), on: "late") { ticks.append(2) }
            }
        } _: { host in
            try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: 1))
            #expect(await eventually { started.count == 1 })
            Task.detached {
                _ = await eventually { log.messages.contains("Shutting down: handling the queued uplinks") }
                shutdownBegan.signal()
            }
        }
        #expect(log.messages.contains("Shutting down: handling the queued uplinks"))
        #expect(host.statistics.handlers["late"]?.handled == 1, "the handler ran to its end during the shutdown")
        #expect(host.timers.count == 0, "no timer runs on after the host stopped")
    }

    @Test("the event kinds a handler wants stay subscribed while the downlink sweep runs beside the changes")
    func subscriptionsBesideSweep() async throws {
        let app = Self.app
        let network = try NetworkSide(port: try Broker.requirePort())
        defer { network.close() }
        var configuration = try stateHostConfiguration(application: app, scripts: nil, state: temporaryStateDirectory(), log: LogCapture())
        // The sweep runs every timeout / 4: here every millisecond, each time updating the subscriptions.
        configuration.downlinkTimeout = .milliseconds(4)
        let spy = SubscriptionSpy(MQTTUplinkSource(configuration: configuration.client))
        let acks = Recorder<TTNEvent>()
        try await withRunningHost(HandlerHost(configuration: configuration, source: spy, downlinks: spy)) { host in
            host.register(name: "a") {}
            host.register(name: "b") {}
        } _: { host in
            // Two handlers change what they want at the same moment, on two threads, while the sweep runs; once
            // both changes returned, the source's last request must be what both want.
            let both: Set<TTNEvent.Kind> = [.downlinkAck, .downlinkNack]
            let wrong = Recorder<String>()
            for round in 0..<300 {
                let wanted = round.isMultiple(of: 2)
                let record: @Sendable (TTNEvent) -> Void = { acks.append($0) }
                let body: (@Sendable (TTNEvent) -> Void)? = wanted ? record : nil
                let start = DispatchSemaphore(value: 0)
                await withTaskGroup(of: Void.self) { group in
                    for (name, kind) in [("a", TTNEvent.Kind.downlinkAck), ("b", .downlinkNack)] {
                        group.addTask {
                            await onOwnThread(named: "toggle-\(name)") {
                                start.wait()
                                host.setEventHandler(kind, for: name, body)
                            }
                        }
                    }
                    start.signal()
                    start.signal()
                }
                let last = spy.calls.last ?? []
                if last != (wanted ? both : []) { wrong.append("round \(round): asked for \(last.map(\.rawValue).sorted())") }
            }
            #expect(wrong.all.isEmpty, "\(wrong.count) rounds ended with the wrong subscriptions: \(wrong.all.prefix(5))")
            host.setEventHandler(.downlinkAck, for: "a") { acks.append($0) }
            host.setEventHandler(.downlinkNack, for: "b") { acks.append($0) }
            #expect(spy.calls.last == both)
            try await publishUntil({ acks.count >= 2 }) {
                for (kind, fixture) in [("down/ack", "v3-down-ack.json"), ("down/nack", "v3-down-nack.json")] {
                    try network.publish(topic: "v3/\(app)@ttn/devices/dev/\(kind)", payload: Fixtures.bytes(fixture))
                }
            }
            #expect(Set(acks.all.map(\.kind)) == [.downlinkAck, .downlinkNack], "the wanted events arrive")
        }
    }
}

/// A host's MQTT source that records what the host asks it to subscribe to, in the order the source gets it.
final class SubscriptionSpy: UplinkSource, DownlinkPath {
    let source: MQTTUplinkSource
    private let received = Locked<[Set<TTNEvent.Kind>]>([])

    init(_ source: MQTTUplinkSource) { self.source = source }

    /// Every ``receiveEvents(_:)`` call's kinds, oldest first.
    var calls: [Set<TTNEvent.Kind>] { received.withLock { $0.map { $0 } } }

    func receiveEvents(_ kinds: Set<TTNEvent.Kind>) {
        received.withLock { calls in
            calls.append(kinds)
            source.receiveEvents(kinds)
        }
    }

    func start(delivering receiver: any UplinkReceiver) throws(TTNError) { try source.start(delivering: receiver) }
    func stop() { source.stop() }
    var isRunning: Bool { source.isRunning }
    var peerName: String { source.peerName }
    var statistics: UplinkSourceStatistics { source.statistics }
    func isTransient(_ error: TTNError) -> Bool { source.isTransient(error) }
    func send(_ downlink: String, to deviceID: String, queue: DownlinkQueue?, correlationID: String?) throws(TTNError) {
        try source.send(downlink, to: deviceID, queue: queue, correlationID: correlationID)
    }
}
