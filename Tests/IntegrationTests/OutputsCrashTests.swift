import Foundation
import TTNState
import Testing

@testable import TTNMQTT

/// The outbox's promise, end to end with real parts: `ttn-host run --config FILE` as a child process, the test broker
/// playing TTN, scripts/http-receiver answering 503 for a minute, a file, and a second mosquitto for the mqtt sink.
/// The host is killed with SIGKILL in the middle of a 5,000-uplink stream and restarted on the same state directory.
///
/// No wait here is for delivery by the clock: the minute of 503 is a scenario duration, and every other wait is for a
/// record observed in the outbox, in a sink's output or in the host's log.
@Suite("Outputs across a minute of 503 and a SIGKILL (process)", .enabled(if: Broker.shouldRun), .serialized, .timeLimit(.minutes(5)))
struct OutputsCrashTests {
    static let app = Broker.application()

    /// Emits `{f = f_cnt}` to every sink, keeps the ids `ttn.emit` returned under `f:<f_cnt>`, and fails after all
    /// that for every f_cnt with f_cnt % 50 == 7: those invocations' records and keys must vanish together.
    static let script = """
        setMessageHandler(function()
          local f = math.tointeger(getLastMessage().uplink_message.f_cnt)
          local w = ttn.emit("warehouse", {f = f})
          local a = ttn.emit("archive", {f = f})
          local h = ttn.emit("homeassistant", {f = f})
          ttn.store.set(string.format("f:%d", f), {w = w, a = a, h = h})
          if f % 50 == 7 then error("boom at " .. f) end
        end)
        """

    static let streamLength = 5_000
    static let killAfterUplink = 2_500
    /// The warehouse records that must be waiting in the outbox (the receiver refuses them all) before the kill.
    static let committedBeforeKill = 1_000
    static let failingFor: Duration = .seconds(60)
    /// f_cnt of the probes that show a started host is handling uplinks, per run; and of the end marker.
    static let probeBases = [1_000_000, 2_000_000]
    static let endMarker = 9_000_000

    /// One envelope as a sink delivered it.
    struct Arrival: Hashable {
        let f: Int
        let id: String
    }

    private static func binary() throws -> String {
        try #require(Broker.environment["TTN_HOST_BINARY"], "scripts/test sets TTN_HOST_BINARY to the built ttn-host")
    }

    private static func contents(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    /// The file sink's envelopes. A line that is not a whole envelope fails the test: the sink must never leave one.
    private static func archived(_ path: String) throws -> [Arrival] {
        try contents(path).split(separator: "\n").map { line in
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
            return try arrival(object)
        }
    }

    private static func arrival(_ envelope: [String: Any]) throws -> Arrival {
        let value = try #require(envelope["value"] as? [String: Any], "\(envelope)")
        return Arrival(f: try #require((value["f"] as? NSNumber)?.intValue, "\(envelope)"), id: try #require(envelope["id"] as? String, "\(envelope)"))
    }

    /// The f values the mqtt sink published (its values carry no id).
    private static func published(_ network: NetworkSide) -> [Int] {
        network.messages.filter { $0.topic == "v3/crash/dev" }.compactMap { message in
            let object = try? JSONSerialization.jsonObject(with: Data(message.payload)) as? [String: Any]
            return (object?["f"] as? NSNumber)?.intValue
        }
    }

    /// Records of `sink` waiting in the outbox of `state`, read beside the running host; 0 before it made its database.
    private static func waiting(_ sink: String, in state: URL) -> Int {
        guard let outbox = try? Outbox(directory: state.path) else { return 0 }
        defer { outbox.close() }
        return (try? outbox.summaries())?.first { $0.sink == sink }?.pending ?? 0
    }

    /// Starts `ttn-host run --config` and publishes probes (f_cnt from `probeBase`) until one of them is archived,
    /// which shows the host subscribed and handling.
    private static func start(
        config: URL, environment: [String: String], log: String, network: NetworkSide, archive: String, probeBase: Int
    ) async throws -> ChildProcess {
        let host = try ChildProcess(try binary(), ["run", "--config", config.path], environment: environment, output: log)
        @Sendable func probeArchived() -> Bool {
            ((try? archived(archive)) ?? []).contains { $0.f >= probeBase && $0.f < probeBase + 1_000_000 }
        }
        var probes = 0
        while !probeArchived() && probes < Int(100 * Broker.timeScale) {
            try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: probeBase + probes))
            probes += 1
            _ = await eventually(timeout: .milliseconds(100), probeArchived)
        }
        do {
            try #require(probeArchived(), "the host handles uplinks and archives their records: \(contents(log).suffix(5_000))")
        } catch {
            host.stop()
            throw error
        }
        return host
    }

    @Test(
        """
        HTTP receiver failing with 503 for a minute, ttn-host killed with SIGKILL in the middle of 5,000 uplinks and \
        restarted: every committed record arrives at every sink with the id it was committed with, and no record of \
        a failed invocation arrives
        """
    )
    func everyRecordArrives() async throws {
        let testStart = ContinuousClock.now
        let app = Self.app
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("outputs-crash-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let scripts = try scriptDirectory(["crash.lua": Self.script])
        let state = directory.appendingPathComponent("state")
        let archive = directory.appendingPathComponent("archive.jsonl").path

        let receiver = try await HTTPReceiver()
        defer { receiver.stop() }
        try await receiver.setMode("fail", status: 503)
        let failingSince = ContinuousClock.now

        // The mqtt sink's own broker, a second mosquitto, watched by a subscriber that must be in place first.
        let brokerDirectory = directory.appendingPathComponent("broker")
        defer { PrivateBroker.stop(in: brokerDirectory) }
        let mqttPort = try await PrivateBroker.start(in: brokerDirectory)
        let homeassistant = try NetworkSide(port: mqttPort, watching: ["v3/crash/#"])
        defer { homeassistant.close() }
        try #require(
            try await publishUntil({ homeassistant.messages.contains { $0.topic == "v3/crash/-ready" } }) {
                try homeassistant.publish(topic: "v3/crash/-ready", payload: [1])
            },
            "the subscriber on the second broker is in place"
        )

        let network = try NetworkSide(port: try Broker.requirePort())
        defer { network.close() }

        let config = directory.appendingPathComponent("ttn-host.yaml")
        try """
            state-dir: \(state.path)
            limits:
              queue-limit-mb: 512
            applications:
              \(app):
                host: 127.0.0.1
                port: \(try Broker.requirePort())
                tls: false
                api-key: ${CRASH_TEST_API_KEY}
                scripts: \(scripts.path)
            sinks:
              warehouse:
                type: http
                url: \(receiver.url())
                batch: 100
                timeout: 5s
                retry-min-delay: 100ms
                retry-max-delay: 1s
              archive:
                type: file
                path: \(archive)
              homeassistant:
                type: mqtt
                host: 127.0.0.1
                port: \(mqttPort)
                topic: "v3/crash/{device}"
                username: \(Broker.networkUser)
                password: ${CRASH_TEST_MQTT_PASSWORD}
            """.write(to: config, atomically: true, encoding: .utf8)
        // Everything comes from the file: no TTN_* variable may win over it.
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("TTN_") }
        environment["CRASH_TEST_API_KEY"] = Broker.apiKey
        environment["CRASH_TEST_MQTT_PASSWORD"] = Broker.networkPassword

        // Run 1: half the stream at full speed, killed once enough records wait in the outbox.
        let firstLog = directory.appendingPathComponent("run-1.log").path
        let first = try await Self.start(
            config: config, environment: environment, log: firstLog, network: network, archive: archive, probeBase: Self.probeBases[0]
        )
        defer { first.stop() }
        for counter in 0..<Self.killAfterUplink {
            try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: counter))
        }
        let enoughWaiting = await eventually(timeout: .seconds(30)) { Self.waiting("warehouse", in: state) >= Self.committedBeforeKill }
        first.signal(SIGKILL)
        #expect(await first.exitStatus() == 128 + SIGKILL)
        try #require(enoughWaiting, "\(Self.committedBeforeKill) records wait for the failing receiver: \(Self.contents(firstLog).suffix(5_000))")
        let waitingAtKill = Self.waiting("warehouse", in: state)

        // Run 2: the same configuration and state directory, the rest of the stream, then the end marker.
        let secondLog = directory.appendingPathComponent("run-2.log").path
        let second = try await Self.start(
            config: config, environment: environment, log: secondLog, network: network, archive: archive, probeBase: Self.probeBases[1]
        )
        defer { second.stop() }
        for counter in Self.killAfterUplink..<Self.streamLength {
            try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: counter))
        }
        try network.publishUplink(application: app, device: "dev", json: uplinkJSON(counter: Self.endMarker))

        // The receiver refuses for a whole minute (a duration of the scenario, not a wait for delivery), and both
        // runs were refused while it did.
        try await Task.sleep(until: failingSince + Self.failingFor, clock: .continuous)
        for log in [firstLog, secondLog] {
            #expect(Self.contents(log).contains("answered 503 Service Unavailable"), "the receiver's 503 reached the host: \(Self.contents(log).suffix(3_000))")
        }
        #expect(try receiver.received().isEmpty, "nothing recorded while the receiver failed")
        try await receiver.setMode("ok")

        // The end marker was handled after every uplink, and each sink delivers in emit order: once it arrived
        // everywhere, everything committed before it arrived too.
        @Sendable func markerEverywhere() -> Bool {
            ((try? receiver.received()) ?? []).contains { (($0.envelope["value"] as? [String: Any])?["f"] as? NSNumber)?.intValue == Self.endMarker }
                && ((try? Self.archived(archive)) ?? []).contains { $0.f == Self.endMarker }
                && Self.published(homeassistant).contains(Self.endMarker)
        }
        #expect(await eventually(timeout: .seconds(120), markerEverywhere), "the end marker reached every sink: \(Self.contents(secondLog).suffix(5_000))")
        second.signal(SIGTERM)
        let status = await second.exitStatus()
        #expect(status == 0, "exit status \(status): \(Self.contents(secondLog).suffix(5_000))")
        // Invocations failed in both runs (run 1 handled past f_cnt 7 before the kill).
        #expect(Self.contents(firstLog).contains("boom at 7 "), "run 1 ran failing invocations")
        #expect(Self.contents(secondLog).contains("boom at 4957 "), "run 2 ran failing invocations")

        // What was committed: the keys of the invocations that succeeded, with the ids of their records.
        let namespace = "\(app)/lua/crash.lua"
        let committed: [Int: [String: String]] = try withState(state, namespace) { state in
            var committed: [Int: [String: String]] = [:]
            for key in try state.keys(prefix: "f:") {
                let f = try #require(Int(key.dropFirst(2)), "\(key)")
                let json = try #require(try state.get(key), "\(key)")
                committed[f] = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: String], "\(json)")
            }
            return committed
        }
        let outbox = try #require(try Outbox(directory: state.path))
        let left = try outbox.summaries()
        outbox.close()
        #expect(left.allSatisfy { $0.pending == 0 && $0.deadLetters == 0 }, "the outbox is empty, no dead letters: \(left)")

        let stream = Set(0..<Self.streamLength)
        let committedStream = Set(committed.keys).intersection(stream)
        #expect(!committed.keys.contains { $0 % 50 == 7 }, "a failed invocation kept nothing")
        // Run 1 handled uplinks in order until the kill: what it committed is a prefix of its half, failures left out.
        let firstHalf = committedStream.filter { $0 < Self.killAfterUplink }
        let reached = (firstHalf.max() ?? -1) + 1
        #expect(firstHalf == Set((0..<reached).filter { $0 % 50 != 7 }), "run 1 committed a prefix of its uplinks: \(firstHalf.sorted())")
        #expect(reached < Self.killAfterUplink, "killed in the middle of handling: run 1 reached f_cnt \(reached) of \(Self.killAfterUplink)")
        // The outbox held one warehouse record per invocation run 1 committed (its probes too), no more, no fewer.
        let firstProbes = committed.keys.filter { $0 >= Self.probeBases[0] && $0 < Self.probeBases[0] + 1_000_000 }
        #expect(firstHalf.count + firstProbes.count == waitingAtKill, "\(firstHalf.count) + \(firstProbes.count) committed, \(waitingAtKill) waited")
        // Run 2 was never killed: it committed every uplink of its half that did not fail.
        let secondHalf = Set((Self.killAfterUplink..<Self.streamLength).filter { $0 % 50 != 7 })
        #expect(secondHalf.isSubset(of: committedStream), "run 2 committed all of its half; missing: \(secondHalf.subtracting(committedStream).sorted().prefix(20))")
        #expect(committed[Self.endMarker] != nil)

        // HTTP: every committed record, each with the id it was committed with, and nothing else.
        let received = try receiver.received()
        let overHTTP = try received.map { try Self.arrival($0.envelope) }
        Self.checkArrivals(overHTTP, committed: committed, idKey: "w", sink: "warehouse")
        for (request, envelopes) in Dictionary(grouping: received, by: \.request) {
            let firstID = envelopes.first?.envelope["id"] as? String
            #expect(envelopes.allSatisfy { $0.idempotencyKey == firstID }, "request \(request): Idempotency-Key is the first id")
            #expect(envelopes.count <= 100)
        }
        #expect(received.allSatisfy { $0.envelope["app"] as? String == app && $0.envelope["script"] as? String == "crash.lua" && $0.envelope["device"] as? String == "dev" })

        // File: the same.
        let inFile = try Self.archived(archive)
        Self.checkArrivals(inFile, committed: committed, idKey: "a", sink: "archive")

        // MQTT: the same values (the mqtt sink publishes values, without ids).
        let overMQTT = Self.published(homeassistant)
        #expect(Set(overMQTT) == Set(committed.keys), "homeassistant: missing \(Set(committed.keys).subtracting(overMQTT).sorted().prefix(20)), unexpected \(Set(overMQTT).subtracting(committed.keys).sorted().prefix(20))")

        print(
            """
            OutputsCrashTests: \(committed.count) records committed (\(committedStream.count) of the \(Self.streamLength)-uplink stream, \
            \(firstHalf.count) before the kill at f_cnt \(reached) with \(waitingAtKill) waiting; probes and the end marker besides); \
            duplicates: http \(overHTTP.count - Set(overHTTP).count), file \(inFile.count - Set(inFile).count), \
            mqtt \(overMQTT.count - Set(overMQTT).count); \(received.count) envelopes in \(Set(received.map(\.request)).count) requests; \
            test took \(ContinuousClock.now - testStart)
            """
        )
    }

    /// `arrivals` hold exactly the committed records, each with the id stored for it under `idKey`: any duplicate
    /// repeats the id of the record it repeats, and no f arrives that was not committed (failed invocations included).
    private static func checkArrivals(_ arrivals: [Arrival], committed: [Int: [String: String]], idKey: String, sink: String) {
        let values = Set(arrivals.map(\.f))
        let missing = Set(committed.keys).subtracting(values)
        let unexpected = values.subtracting(committed.keys)
        #expect(missing.isEmpty, "\(sink): \(missing.count) committed records never arrived: \(missing.sorted().prefix(20))")
        #expect(unexpected.isEmpty, "\(sink): records that were never committed arrived: \(unexpected.sorted().prefix(20))")
        #expect(!values.contains { $0 % 50 == 7 }, "\(sink): a record of a failed invocation arrived")
        let wrongIDs = arrivals.filter { arrival in committed[arrival.f].map { $0[idKey] != arrival.id } ?? false }
        #expect(wrongIDs.isEmpty, "\(sink): arrived with another id than the one committed: \(wrongIDs.prefix(10))")
        #expect(Set(arrivals.map(\.id)).count == values.count, "\(sink): one id per record")
    }
}
