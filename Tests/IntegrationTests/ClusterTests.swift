import Foundation
import TTNCore
import TTNNATS
import TTNSync
import Testing

@testable import TTNMQTT

/// `ttn-host ingest` and `ttn-host work` as processes, on the test broker and the 3-node NATS cluster that
/// scripts/test starts (scripts/start-nats): uplinks go in on the network side, the workers' script counts each in
/// `ttn.store` and answers it with a downlink naming its frame counter and the count, and the network side checks
/// that every uplink was answered once, in order per device, and counted once, through killed ingestors and
/// workers and a restarted NATS node.
@Suite(
    "Cluster: ingest and work on NATS JetStream", .enabled(if: NATSCluster.shouldRun), .serialized,
    // The waits stretch with TTN_TEST_TIME_SCALE (sanitizer runs), so does the bound on the whole test.
    .timeLimit(.minutes(Int(10 * Broker.timeScale)))
)
struct ClusterTests {
    static let ackWait = 3
    static let partitions = 8

    /// Frames per device in the failure test: 400 (20,000 uplinks) unless TTN_TEST_CLUSTER_FRAMES says fewer, as the
    /// ThreadSanitizer pass does, whose five sanitized processes on two cores would take many minutes for 20,000.
    static let framesPerDevice = ProcessInfo.processInfo.environment["TTN_TEST_CLUSTER_FRAMES"].flatMap(Int.init) ?? 400

    @Test(
        "20,000 uplinks from 50 devices through two ingestors and three workers, with an ingestor and a worker SIGKILLed and a NATS node restarted, are each handled exactly once, in order per device"
    )
    func exactlyOnceThroughFailures() async throws {
        let devices = 50, perDevice = Self.framesPerDevice
        let total = devices * perDevice
        let run = try await ClusterRun()
        defer { run.killAll() }
        let ingestors = try (1...2).map { try run.ingestor($0) }
        let workers = try (1...3).map { try run.worker($0) }
        try await run.waitUntilRunning(ingestors + workers)
        let downlinks = try DownlinkLog(port: run.port, application: run.application)
        defer { downlinks.close() }
        let network = try NetworkSide(port: run.port)
        defer { network.close() }

        // Uplink i is frame i / 50 of device i % 50: every device's frames go out in order, the devices interleaved.
        // Publishing waits while more than `window` uplinks are unanswered: the broker drops QoS 0 messages to a
        // subscriber with 1,000 packets queued (mosquitto's default max_queued_messages), and the ingestors and this
        // network side subscribe with QoS 0. It also keeps the failures below in the middle of the traffic, rather
        // than after a burst that is already in the stream.
        let window = 500, batch = 100
        // The failures come after a quarter, a half and three quarters of the uplinks (5,000, 10,000, 15,000).
        let quarter = max(batch, total / 4 / batch * batch)
        let base = Timestamp.now
        let started = ContinuousClock.now
        let events = Recorder<String>()
        var stalls = 0
        var restart: Task<Void, any Error>?
        var ingestorKilled: ContinuousClock.Instant?
        @Sendable func seconds() -> String { String(format: "%.1f s", (ContinuousClock.now - started).timeInterval) }
        for first in stride(from: 0, to: total, by: batch) {
            // Not an assertion: a pipeline that lost downlinks must not stall the publisher for ever.
            if !(await eventually(timeout: .seconds(30)) { first - downlinks.total <= window }) { stalls += 1 }
            for index in first..<min(first + batch, total) {
                let device = Self.device(index % devices), fCnt = index / devices
                try network.publishUplink(
                    application: run.application, device: device,
                    json: timedUplinkJSON(application: run.application, device: device, fCnt: fCnt, receivedAt: base.adding(.milliseconds(index)))
                )
            }
            let published = min(first + batch, total)
            if published == quarter {
                ingestorKilled = ContinuousClock.now
                ingestors[0].process.stop()
                events.append("ingestor 1 SIGKILLed at \(seconds()) (\(downlinks.total) downlinks)")
            } else if published == 2 * quarter {
                workers[0].process.stop()
                events.append("worker 1 SIGKILLed at \(seconds()) (\(downlinks.total) downlinks)")
            } else if published == 3 * quarter {
                events.append("node 2 stopping at \(seconds()) (\(downlinks.total) downlinks)")
                restart = Task {
                    try await NATSCluster.node("stop", 2)
                    events.append("node 2 stopped at \(seconds())")
                    try await NATSCluster.node("start", 2)
                    events.append("node 2 started at \(seconds())")
                }
            }
        }
        let publishTime = seconds()
        try await restart?.value
        let complete = await eventually(timeout: .seconds(180)) { downlinks.distinct >= total }
        let completeTime = seconds()
        // Duplicates would come after an ack wait: an uplink or downlink delivered again.
        try await Task.sleep(for: .seconds(2 * Self.ackWait))

        // At most one downlink may reach the network twice: the one the killed ingestor had sent, which the broker
        // took, when it died before telling the stream; the other ingestor sends it again after the ack wait
        // (docs/cluster.md, "What a crash can repeat"). It must have arrived just before the kill.
        let excused = downlinks.repeated.filter { repeated in
            ingestorKilled.map { repeated.firstArrival > $0 - .seconds(2) && repeated.firstArrival < $0 + .milliseconds(500) } ?? false
        }
        let report = downlinks.check(devices: (0..<devices).map(Self.device), frames: perDevice, excusing: Set(excused.map(\.key)))
        let streams = await NATSCluster.streams()
        let counters = try run.storeCounters()
        let miscounted = (0..<devices).map(Self.device).filter { counters[$0] != perDevice }
        let summary = """
            cluster run of \(run.application): published \(total) in \(publishTime) (\(stalls) stalls), \
            \(report.received) downlinks (\(report.distinct) distinct) \(complete ? "complete" : "INCOMPLETE") at \(completeTime), \
            duplicates \(report.duplicates) (excused \(excused.map(\.key))), missing \(report.missing), out of order \(report.outOfOrder), \
            undecodable \(report.undecodable), counted wrong \(report.miscounted); store counters wrong: \(miscounted.map { "\($0)=\(counters[$0] ?? 0)" }); \
            streams: \(streams[run.uplinkStream]?.description ?? "?") / down: \(streams[run.downlinkStream]?.description ?? "?"); \
            \(events.all.joined(separator: "; ")); logs in \(run.directory)
            """
        print(summary)
        #expect(complete, "every uplink answered: \(summary)")
        #expect(report.problems.isEmpty, "per device exactly frames 0...\(perDevice - 1), once each, in order: \(report.problems.prefix(10)); \(summary)")
        #expect(report.received == total + excused.count && report.undecodable == 0, "\(summary)")
        #expect(excused.count <= 1, "at most the one downlink in flight at the ingestor's death is sent twice: \(summary)")
        #expect(miscounted.isEmpty, "each device's store counter counted each of its uplinks once: \(summary)")
        if let uplinks = streams[run.uplinkStream], let down = streams[run.downlinkStream] {
            // The uplink stream may hold a second copy of an uplink whose publish was retried while node 2's
            // restart moved the stream's leader; the counters above show it was handled once.
            #expect(uplinks.lastSequence >= total, "every uplink in the stream: \(uplinks)")
            #expect(down.lastSequence == total, "one copy of each downlink in the downlink stream: \(down)")
        }

        let survivors = [ingestors[1], workers[1], workers[2]]
        let statuses = await run.terminate(survivors)
        for (host, status) in zip(survivors, statuses) {
            #expect(status == 0, "\(host.name) exits 0 after SIGTERM, not \(status): \(host.tail())")
        }
        print("cluster run of \(run.application): \(survivors.map(\.stopReport).joined(separator: "; "))")
    }

    @Test("with two ingestors running, every uplink is published once and handled once")
    func twoIngestorsDeduplicate() async throws {
        let devices = 10, perDevice = 50
        let total = devices * perDevice
        let run = try await ClusterRun()
        defer { run.killAll() }
        let (ingestors, worker) = try await run.twoIngestorsAndAWorker()
        let downlinks = try DownlinkLog(port: run.port, application: run.application)
        defer { downlinks.close() }
        let network = try NetworkSide(port: run.port)
        defer { network.close() }

        let base = Timestamp.now
        let started = ContinuousClock.now
        for index in 0..<total {
            let device = Self.device(index % devices), fCnt = index / devices
            try network.publishUplink(
                application: run.application, device: device,
                json: timedUplinkJSON(application: run.application, device: device, fCnt: fCnt, receivedAt: base.adding(.milliseconds(index)))
            )
        }
        let complete = await eventually(timeout: .seconds(60)) { downlinks.distinct >= total }
        let completeTime = ContinuousClock.now - started
        try await Task.sleep(for: .seconds(2 * Self.ackWait))
        let report = downlinks.check(devices: (0..<devices).map(Self.device), frames: perDevice)
        let counters = try run.storeCounters()
        #expect(
            (0..<devices).map(Self.device).allSatisfy { counters[$0] == perDevice },
            "each device's store counter counted each of its uplinks once: \(counters)"
        )
        let summary = """
            \(report.received) downlinks (\(report.distinct) distinct) of \(total) after \(String(format: "%.1f s", completeTime.timeInterval)), \
            duplicates \(report.duplicates), missing \(report.missing), out of order \(report.outOfOrder); logs in \(run.directory)
            """
        print("cluster run of \(run.application): \(summary)")
        #expect(complete && report.received == total && report.problems.isEmpty, "\(report.problems.prefix(10)); \(summary)")

        let statuses = await run.terminate(ingestors + [worker])
        for (host, status) in zip(ingestors + [worker], statuses) {
            #expect(status == 0, "\(host.name) exits 0 after SIGTERM, not \(status): \(host.tail())")
        }
        let counts = ingestors.map { $0.logLine("Ingestor stopped") }
        print("cluster run of \(run.application): \((ingestors + [worker]).map(\.stopReport).joined(separator: "; "))")
        for (host, line) in zip(ingestors, counts) {
            let line = try #require(line, "\(host.name) logs what it put into the stream: \(host.tail())")
            #expect(line.number("published") + line.number("duplicates") == total, "\(host.name) took every uplink: \(line.fields)")
            #expect(line.number("lost") == 0, "\(host.name): \(line.fields)")
        }
        #expect(counts.map { $0?.number("published") ?? 0 }.reduce(0, +) == total, "the stream took each uplink once: \(counts.map { $0?.fields ?? [:] })")
        for ingestor in ingestors {
            #expect(ingestor.refusedPublishes.isEmpty, "\(ingestor.name): the stream took every message at once: \(ingestor.refusedPublishes.prefix(3))")
        }
        if let uplinks = await NATSCluster.streams()[run.uplinkStream] {
            #expect(uplinks.lastSequence == total, "one copy of each uplink in the stream: \(uplinks)")
        }
    }

    @Test("a worker given another --partitions than the stream has exits 2, naming the option, and leaves the stream as it was")
    func partitionsMismatchRefused() async throws {
        let run = try await ClusterRun()
        defer { run.killAll() }
        let ingestor = try run.ingestor(1)
        try await run.waitUntilRunning([ingestor])
        let worker = try run.worker(1, partitions: Self.partitions / 2)
        let refused = await eventually(timeout: .seconds(30)) { worker.text.contains("the same --partitions") }
        #expect(refused, "the worker says what to do: \(worker.tail())")
        if refused { #expect(await worker.process.exitStatus() == 2, "\(worker.tail())") }
        let connection = try NATSConnection(NATSConfiguration(servers: run.urls.split(separator: ",").map(String.init), name: "cluster test"))
        defer { connection.close() }
        let subjects = try connection.jetStream().streamSubjects(run.uplinkStream)
        #expect(subjects?.count == Self.partitions, "the stream keeps its partitions: \(subjects ?? [])")
        #expect(await run.terminate([ingestor]) == [0])
    }

    static func device(_ number: Int) -> String { String(format: "dev-%02d", number) }
}

/// One test's application on the cluster: its temporary folder (the script, state folders, logs) and the
/// ttn-host processes it started.
final class ClusterRun: Sendable {
    let application: String
    let port: Int
    let urls: String
    let binary: String
    let directory: String
    private let started = Locked<[ClusterHost]>([])

    var uplinkStream: String { "ttn-\(application)" }
    var downlinkStream: String { "ttn-\(application)-down" }

    /// The workers' script: counts each uplink of a device in `ttn.store` under the device id, and answers it with one
    /// downlink whose frm_payload is "<f_cnt>:<count>" as text; prints nothing.
    static let script = """
        setMessageHandler(function()
          local message = getLastMessage()
          local count = ttn.store.incr(message.end_device_ids.device_id, 1)
          local text = tostring(message.uplink_message.f_cnt) .. ":" .. tostring(count)
          local bytes = {}
          for i = 1, #text do bytes[i] = text:byte(i) end
          publish({f_port = 1, bytes = bytes})
        end)
        """

    init() async throws {
        port = try Broker.requirePort()
        urls = try NATSCluster.requireURLs()
        _ = try #require(NATSCluster.runDirectory, "No NATS cluster: scripts/test sets TTN_NATS_RUN_DIR")
        binary = try #require(Broker.environment["TTN_HOST_BINARY"], "scripts/test sets TTN_HOST_BINARY to the built ttn-host")
        application = try await NATSCluster.application()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("cluster-\(application)-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: "\(directory)/scripts", withIntermediateDirectories: true)
        try Self.script.write(toFile: "\(directory)/scripts/answer.lua", atomically: true, encoding: .utf8)
    }

    private func clusterArguments(partitions: Int = ClusterTests.partitions) -> [String] {
        [
            "--app-id", application, "--log-format", "json",
            "--nats", urls, "--partitions", "\(partitions)", "--replicas", "3", "--ack-wait", "\(ClusterTests.ackWait)",
        ]
    }

    /// `ttn-host ingest` number `number`, with its own state folder; it backfills from the Storage Integration at
    /// `backfillFrom` (rechecking a gap after a second), or not at all.
    func ingestor(_ number: Int, backfillFrom apiURL: String? = nil) throws -> ClusterHost {
        let backfill = apiURL.map { ["--backfill", "auto", "--api-url", $0, "--backfill-recheck", "1"] } ?? ["--backfill", "off"]
        let broker = ["--host", "127.0.0.1", "--port", "\(port)", "--state-dir", "\(directory)/state-\(number)"]
        return try start("ingestor \(number)", ["ingest"] + clusterArguments() + broker + backfill, apiKey: Broker.apiKey)
    }

    /// Ingestors 1 and 2 (backfilling from `backfillFrom`, if given) and worker 1, once all three run.
    func twoIngestorsAndAWorker(backfillFrom apiURL: String? = nil) async throws -> (ingestors: [ClusterHost], worker: ClusterHost) {
        let ingestors = try (1...2).map { try ingestor($0, backfillFrom: apiURL) }
        let worker = try worker(1)
        try await waitUntilRunning(ingestors + [worker])
        return (ingestors, worker)
    }

    /// `ttn-host work` number `number`, running the answering script, told the stream has `partitions` partitions;
    /// it is given no API key and no broker, which it never uses.
    func worker(_ number: Int, partitions: Int = ClusterTests.partitions) throws -> ClusterHost {
        try start("worker \(number)", ["work"] + clusterArguments(partitions: partitions) + ["--scripts", "\(directory)/scripts"])
    }

    private func start(_ name: String, _ arguments: [String], apiKey: String? = nil) throws -> ClusterHost {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("TTN_") }
        environment["TTN_API_KEY"] = apiKey
        let log = "\(directory)/\(name.replacingOccurrences(of: " ", with: "-")).log"
        let host = ClusterHost(name: name, process: try ChildProcess(binary, arguments, environment: environment, output: log), log: log)
        started.withLock { $0.append(host) }
        return host
    }

    /// Waits until every host logs that it runs: "Host running" (an ingestor: subscribed to TTN; a worker: after
    /// "Reading the stream", reading every partition).
    func waitUntilRunning(_ hosts: [ClusterHost]) async throws {
        let running = await eventually(timeout: .seconds(60)) {
            hosts.allSatisfy { host in
                let text = host.text
                return text.contains(#""message":"Host running""#)
                    && (!host.name.hasPrefix("worker") || text.contains(#""message":"Reading the stream""#))
            }
        }
        try #require(running, "every ingestor and worker runs: \(hosts.map { "\($0.name): \($0.tail())" })")
    }

    /// SIGTERM to every host at once; their exit statuses, in order.
    func terminate(_ hosts: [ClusterHost]) async -> [Int32] {
        hosts.forEach { $0.process.signal(SIGTERM) }
        var statuses: [Int32] = []
        for host in hosts { statuses.append(await host.process.exitStatus()) }
        return statuses
    }

    /// The workers' counters: the store of answer.lua in the state bucket, read as the cluster has it now.
    func storeCounters() throws -> [String: Int] {
        try #require(try committedStoreCounters(), "the script's state document is in the bucket")
    }

    /// ``storeCounters()``, or nil while the script's state document is not in the bucket.
    func committedStoreCounters() throws -> [String: Int]? {
        let connection = try NATSConnection(NATSConfiguration(servers: urls.split(separator: ",").map(String.init), name: "cluster test"))
        defer { connection.close() }
        let bucket = try connection.jetStream().keyValue(bucket: "ttn-\(application)-state", create: nil)
        guard let entry = try bucket.get("lua/answer=2Elua") else { return nil }
        let document = try #require(try JSONSerialization.jsonObject(with: Data(entry.value)) as? [String: Any])
        var counters: [String: Int] = [:]
        for item in document["entries"] as? [[String: Any]] ?? [] {
            if let key = item["k"] as? String, let value = (item["v"] as? String).flatMap(Int.init) { counters[key] = value }
        }
        return counters
    }

    /// Kills whatever still runs: for a `defer`, so that a failed test leaves no process behind.
    func killAll() {
        started.withLock { $0 }.forEach { $0.process.stop() }
    }
}

/// One ttn-host process of a ``ClusterRun`` and its JSON log.
struct ClusterHost: Sendable {
    let name: String
    let process: ChildProcess
    let log: String

    var text: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// The last lines of the log, for failure messages.
    func tail(_ lines: Int = 30) -> String { text.split(separator: "\n").suffix(lines).joined(separator: "\n") }

    /// The log lines of publishes the stream did not take (an ingestor's).
    var refusedPublishes: [Substring] { text.split(separator: "\n").filter { $0.contains("Stream did not take a message") } }

    /// The last log line with `message`, parsed.
    func logLine(_ message: String) -> LogLine? {
        text.split(separator: "\n").reversed().lazy.compactMap { LogLine(String($0)) }.first { $0.message == message }
    }

    /// What the host said it did when it stopped, and how many warnings and errors it logged.
    var stopReport: String {
        let lines = text.split(separator: "\n").compactMap { LogLine(String($0)) }
        let stopped = lines.filter { ["Ingestor stopped", "Handler stopped", "Host stopped; every queued uplink was handled"].contains($0.message) }
        let warnings = lines.filter { $0.level == "warning" || $0.level == "error" }
        var kinds: [String: Int] = [:]
        for line in warnings { kinds[line.message, default: 0] += 1 }
        let said = stopped.map { line in
            "\(line.message) " + line.fields.filter { $0.key != "ttn.app_id" }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }
        return "\(name): \(said.joined(separator: ", ")); warnings and errors: \(kinds.isEmpty ? "none" : "\(kinds)")"
    }
}

/// One line of ttn-host's `--log-format json` output: its level, message and metadata (as strings).
struct LogLine {
    let level: String
    let message: String
    let fields: [String: String]

    init?(_ line: String) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
            let message = object["message"] as? String
        else { return nil }
        self.message = message
        level = object["level"] as? String ?? ""
        var fields: [String: String] = [:]
        for (key, value) in object where !["time", "level", "label", "message"].contains(key) { fields[key] = "\(value)" }
        self.fields = fields
    }

    /// A numeric field, or -1.
    func number(_ key: String) -> Int { fields[key].flatMap(Int.init) ?? -1 }
}

/// The network side's view of one application's downlinks, as the ttn-network user: each decoded on arrival to
/// its device (from the topic), and the f_cnt and store count the workers' script put into its frm_payload.
final class DownlinkLog: ConnectionObserver {
    private let connection: MosquittoConnection
    private let state = Locked(State())

    private struct State {
        var byDevice: [String: [Int]] = [:]
        var answers: [String: [(fCnt: Int, count: Int)]] = [:]
        var received = 0
        var distinct = Set<String>()
        var undecodable: [String] = []
        /// Downlinks whose count is not their f_cnt + 1.
        var miscounted: [String] = []
        var firstArrival: [String: ContinuousClock.Instant] = [:]
        var repeated: [Repeated] = []
    }

    /// A downlink that arrived more than once ("<device>:<f_cnt>"), and when it first did.
    struct Repeated {
        let key: String
        let firstArrival: ContinuousClock.Instant
    }

    init(port: Int, application: String) throws {
        connection = try NetworkSide.connection(port: port, filters: ["v3/\(application)@ttn/devices/+/down/#"], name: "downlinks")
        connection.addObserver(self)
    }

    /// Downlinks received, duplicates included.
    var total: Int { state.withLock { $0.received } }
    /// Different (device, f_cnt) pairs received.
    var distinct: Int { state.withLock { $0.distinct.count } }
    /// Every second (or later) arrival of a downlink.
    var repeated: [Repeated] { state.withLock { $0.repeated } }
    /// The (f_cnt, count) pairs of `device`'s downlinks, in the order they arrived.
    func answers(of device: String) -> [(fCnt: Int, count: Int)] { state.withLock { $0.answers[device] ?? [] } }

    func close() { connection.close() }

    struct Report {
        var received = 0, distinct = 0, duplicates = 0, missing = 0, outOfOrder = 0, undecodable = 0, miscounted = 0
        /// One line per device that did not get exactly frames 0..<frames in order.
        var problems: [String] = []
    }

    /// Compares what arrived with frames 0..<`frames` of each of `devices`, once each, in order, each counted as
    /// frame + 1; a second arrival of a downlink in `excused` ("<device>:<f_cnt>") is left out.
    func check(devices: [String], frames: Int, excusing excused: Set<String> = []) -> Report {
        let state = state.withLock { $0 }
        var report = Report(
            received: state.received, distinct: state.distinct.count, undecodable: state.undecodable.count, miscounted: state.miscounted.count
        )
        let expected = Array(0..<frames)
        for device in devices {
            var seen = Set<Int>()
            let got = (state.byDevice[device] ?? []).filter { seen.insert($0).inserted || !excused.contains("\(device):\($0)") }
            let duplicates = got.count - Set(got).count
            let missing = Set(expected).subtracting(got).sorted()
            let backwards = zip(got, got.dropFirst()).filter { $0.1 <= $0.0 }
            report.duplicates += duplicates
            report.missing += missing.count
            report.outOfOrder += backwards.count
            if got != expected {
                report.problems.append(
                    "\(device): \(got.count) downlinks, duplicates \(duplicates), missing \(missing.prefix(10)), backwards \(backwards.prefix(5).map { "\($0.0)->\($0.1)" })"
                )
            }
        }
        report.problems += state.undecodable.prefix(3).map { "undecodable: \($0)" }
        report.problems += state.miscounted.prefix(3).map { "counted wrong: \($0)" }
        return report
    }

    func connectionDidReceive(_ message: ReceivedMessage) {
        // v3/<app>@ttn/devices/<device>/down/push: {"downlinks":[{"frm_payload":"<base64 of "<f_cnt>:<count>">",...}]}
        let topic = message.topic.split(separator: "/")
        let numbers = (try? JSONSerialization.jsonObject(with: Data(message.payload)) as? [String: Any])
            .flatMap { ($0["downlinks"] as? [[String: Any]])?.first?["frm_payload"] as? String }
            .flatMap { Data(base64Encoded: $0) }
            .map { String(decoding: $0, as: UTF8.self).split(separator: ":").compactMap { Int($0) } }
        let now = ContinuousClock.now
        state.withLock { state in
            state.received += 1
            guard topic.count >= 5, let numbers, numbers.count == 2 else {
                return state.undecodable.append("\(message.topic) \(String(decoding: message.payload, as: UTF8.self))")
            }
            let device = String(topic[3]), fCnt = numbers[0], count = numbers[1]
            let key = "\(device):\(fCnt)"
            if count != fCnt + 1 { state.miscounted.append("\(key) counted \(count)") }
            state.byDevice[device, default: []].append(fCnt)
            state.answers[device, default: []].append((fCnt, count))
            if state.distinct.insert(key).inserted {
                state.firstArrival[key] = now
            } else if let first = state.firstArrival[key] {
                state.repeated.append(Repeated(key: key, firstArrival: first))
            }
        }
    }

    func connectionDidFinishBurst() {}
    func connectionDidSubscribe(sessionPresent: Bool) {}
    func connectionDidPublish(messageID: Int) {}
}
