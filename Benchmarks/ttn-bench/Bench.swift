// The measuring side of scripts/bench: runs a HandlerHost (the library behind ttn-host) with one handler,
// waits until that handler has seen the expected number of uplinks, and prints one line of results.
//
//   ttn-bench lua DIR COUNT | swift COUNT      (broker from TTN_HOST / TTN_PORT / TTN_API_KEY / TTN_APP_ID;
//                                              TTN_BENCH_POLL_MS: how often to look at the host, default 5)
//   ttn-bench emit DIR FILE DISTINCT COUNT     (the Lua host with Outputs over TTN_STATE_DIR's database and the file
//                                              sink "archive" writing FILE: waits for the outbox to drain, then
//                                              checks that FILE holds COUNT records, each f_cnt of 0..<DISTINCT
//                                              equally often: the uplink file of DISTINCT uplinks, sent COUNT/DISTINCT times)
//   ttn-bench decode FILE COUNT                (no broker: decodes the uplink in FILE COUNT times)
//   ttn-bench script FILE.lua UPLINK COUNT     (no broker: runs the script's handler COUNT times)
//   ttn-bench probe HOST PORT USER PASSWORD UPLINKS.jsonl RATE COUNT            (the latency run's network side;
//                                              TTN_BENCH_DUMP=FILE: each answered uplink's send time and latency)
//   ttn-bench floor HOST PORT USER PASSWORD COUNT   (the latency floor: answers from libmosquitto's callback)
//   ttn-bench publish HOST PORT USER PASSWORD UPLINKS.jsonl RATE COUNT REPEAT   (the memory run's network side)
//   ttn-bench cluster-worker SERVERS APP DELAY_MS COUNT    (a worker on NATS whose Swift closure waits DELAY_MS)
//   ttn-bench cluster-fill SERVERS APP UPLINK.json DEVICES COUNT   (the cluster run's uplinks, into the stream)
import Foundation
import Logging
import ServiceLifecycle
import TTNSync
import TTNHost
import TTNLua
import TTNMQTT
import TTNSinks
import TTNState

struct BenchError: Error, CustomStringConvertible {
    let description: String
}

/// Accumulates a decoded field, as the Lua benchmark handler does.
final class Accumulator: Sendable {
    private let total = Locked(0.0)
    func add(_ value: Double) { total.withLock { $0 += value } }
    var value: Double { total.withLock { $0 } }
}

/// Writes a line to standard output at once (the script waits for these lines).
func emit(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

func residentMegabytes() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
    else { return -1 }
    return (Double(line.split(separator: " ")[1]) ?? -1) / 1024
}

/// Times the client's per-uplink JSON work without MQTT: the check on arrival (`Uplink(json:)`, whose tape a Lua
/// handler reads the uplink through), reading `decodedPayload` as the Swift benchmark handler does, decoding every
/// typed field, and checking a downlink as `publish` does before it sends one.
func measureDecoding(file: String, count: Int) throws {
    let json = Array(try Data(contentsOf: URL(fileURLWithPath: file)))
    let topic = "v3/my-app@ttn/devices/bench-device/up"
    func microseconds(_ body: () throws -> Void) rethrows -> Double {
        let start = ContinuousClock.now
        for _ in 0..<count { try body() }
        let elapsed = ContinuousClock.now - start
        return elapsed.timeInterval * 1e6 / Double(count)
    }
    var checksum = 0.0
    let arrival = try microseconds { _ = try Uplink(json: json, topic: topic) }
    let payload = try microseconds {
        if case .number(let value)? = try Uplink(json: json, topic: topic).decodedPayload?["temperature"] { checksum += value }
    }
    let typed = try microseconds { checksum += Double(try Uplink(json: json, topic: topic).uplinkMessage?.rxMetadata?.count ?? 0) }
    // A downlink as the latency run's handler sends it, checked and refused only for want of a connection.
    let client = MQTTClient("my-app", "EUI", "KEY")
    let downlink = #"{"downlinks":[{"f_port":1,"frm_payload":"AQ==","correlation_ids":["bench:120"]}]}"#
    let downlinkCheck = microseconds { if (try? client.publish(downlink, to: "bench-device")) == nil { checksum += 1 } }
    emit(
        "RESULT bytes=\(json.count) arrival_us=\(arrival) with_decoded_payload_us=\(payload) "
            + "all_fields_us=\(typed) downlink_check_us=\(downlinkCheck) checksum=\(checksum)"
    )
}

/// Checks the emit run's file: one JSON line per record, whose value's `f` is the uplink's f_cnt; `count` lines, each
/// f_cnt of 0..<distinct in `count / distinct` of them. Returns `lines=… missing=… duplicates=… unexpected=…
/// verified=yes|NO` (missing: records short of that; duplicates: records past it).
func verifyArchive(_ path: String, distinct: Int, count: Int) throws -> String {
    // Read a megabyte at a time rather than mapped: the memory run's peak RSS must not count the file.
    guard let file = FileHandle(forReadingAtPath: path) else { throw BenchError(description: "cannot open \(path)") }
    defer { try? file.close() }
    let each = count / distinct
    var seen = [Int32](repeating: 0, count: distinct)
    var lines = 0, unexpected = 0
    let key = Array(#""f":"#.utf8)
    var buffer: [UInt8] = []
    while true {
        let chunk = try file.read(upToCount: 1 << 20) ?? Data()
        buffer.append(contentsOf: chunk)
        // Whole lines only, but all of the rest at the end of the file.
        guard let cut = chunk.isEmpty ? (buffer.isEmpty ? nil : buffer.count) : buffer.lastIndex(of: UInt8(ascii: "\n")).map({ $0 + 1 })
        else {
            if chunk.isEmpty { break } else { continue }
        }
        buffer.withUnsafeBufferPointer { bytes in
            var start = 0
            while start < cut {
                var end = start
                while end < cut && bytes[end] != UInt8(ascii: "\n") { end += 1 }
                lines += 1
                // The value is the envelope's last member, and "f" its only member of that name.
                var f: Int?
                var index = start
                search: while index + key.count <= end {
                    for (offset, byte) in key.enumerated() where bytes[index + offset] != byte {
                        index += 1
                        continue search
                    }
                    var digit = index + key.count, value = 0, digits = 0
                    while digit < end, bytes[digit] >= UInt8(ascii: "0"), bytes[digit] <= UInt8(ascii: "9") {
                        value = value * 10 + Int(bytes[digit] - UInt8(ascii: "0"))
                        digit += 1
                        digits += 1
                    }
                    if digits > 0 { f = value }
                    break
                }
                if let f, f < distinct {
                    seen[f] += 1
                } else {
                    unexpected += 1
                }
                start = end + 1
            }
        }
        buffer.removeFirst(cut)
        if chunk.isEmpty { break }
    }
    let missing = seen.reduce(0) { $0 + max(0, each - Int($1)) }
    let duplicates = seen.reduce(0) { $0 + max(0, Int($1) - each) }
    let verified = lines == count && missing == 0 && duplicates == 0 && unexpected == 0
    return "lines=\(lines) missing=\(missing) duplicates=\(duplicates) unexpected=\(unexpected) verified=\(verified ? "yes" : "NO")"
}

/// A bridge for a script run without a host: no history, and downlinks are refused.
struct DetachedBridge: LuaHostBridge {
    func allMessages() -> [[UInt8]] { [] }
    func publish(_ downlink: String, deviceID: String, queue: DownlinkQueue?) throws -> String {
        throw BenchError(description: "no host to publish to")
    }
}

/// Times one Lua handler invocation alone, as the host runs it: with the uplink's tape from its check on arrival,
/// and the decoding of what the script reads into Lua tables.
func measureScript(file: String, uplink: String, count: Int) throws {
    let source = Array(try Data(contentsOf: URL(fileURLWithPath: file)))
    let arrived = try Uplink(json: Array(try Data(contentsOf: URL(fileURLWithPath: uplink))))
    let message = LuaMessage(tape: arrived.tape!, deviceID: "bench-device")
    let script = try LuaScript(name: file, source: source, limits: LuaLimits(), bridge: DetachedBridge(), logger: Logger(label: "bench"))
    let start = ContinuousClock.now
    for _ in 0..<count { try script.handle(message) }
    let elapsed = ContinuousClock.now - start
    let microseconds = elapsed.timeInterval * 1e6 / Double(count)
    emit("RESULT invocations=\(count) microseconds_per_invocation=\(microseconds)")
}

@main
struct Bench {
    static func main() async throws {
        let arguments = Array(CommandLine.arguments.dropFirst())
        let environment = ProcessInfo.processInfo.environment
        guard let mode = arguments.first, let count = Int(arguments.last ?? "") else {
            throw BenchError(description: "usage: [TTN_STATE_DIR=DIR] ttn-bench lua DIR COUNT | swift COUNT | decode FILE COUNT | probe ...")
        }
        if mode == "decode" { return try measureDecoding(file: arguments[1], count: count) }
        if mode == "probe" { return try runLatencyProbe(arguments) }
        if mode == "floor" { return try runLatencyFloor(arguments) }
        if mode == "publish" { return try runSteadyPublisher(arguments) }
        if mode == "script" { return try measureScript(file: arguments[1], uplink: arguments[2], count: count) }
        if mode == "cluster-worker" { return try await runClusterWorker(arguments) }
        if mode == "cluster-fill" { return try runClusterFill(arguments) }
        var client = MQTTClient.Configuration(
            applicationID: environment["TTN_APP_ID"] ?? "my-app", apiKey: environment["TTN_API_KEY"] ?? ""
        )
        client.server = .init(host: environment["TTN_HOST"] ?? "127.0.0.1", port: Int(environment["TTN_PORT"] ?? "") ?? 1883)
        var logger = Logger(label: "ttn.mqtt")
        logger.logLevel = .warning
        client.logger = logger
        let scripts = ["lua", "emit", "burst"].contains(mode) ? arguments[1] : nil
        var configuration = HandlerHost.Configuration(client: client, scriptDirectory: scripts)
        // Measure throughput, not the drop policy; the burst run keeps the default budget, to show that it holds.
        if mode != "burst" { configuration.handlerQueueBytes = 1 << 40 }
        configuration.stateDirectory = environment["TTN_STATE_DIR"]
        // The emit run: the outputs over the state database, with one file sink that never rotates.
        var outputs: Outputs?
        var archive: String?
        if mode == "emit" {
            guard arguments.count == 5, let directory = environment["TTN_STATE_DIR"] else {
                throw BenchError(description: "usage: TTN_STATE_DIR=DIR ttn-bench emit SCRIPTS FILE DISTINCT COUNT")
            }
            archive = arguments[2]
            let database = try StateDatabase(directory: directory)
            let sink = SinkConfiguration(name: "archive", kind: .file(FileSinkConfiguration(path: arguments[2], maxSize: nil)))
            outputs = try Outputs(database: database, sinks: [sink], drainTime: .seconds(60), logger: logger)
        }
        let host = outputs.map { HandlerHost(configuration: configuration, outputs: $0) } ?? HandlerHost(configuration: configuration)
        let accumulator = Accumulator()
        if mode == "swift" {
            host.register(name: "accumulate") {
                if case .number(let value)? = host.getLastMessage()?.decodedPayload?["temperature"] { accumulator.add(value) }
            }
        }
        // Every 5 ms: often enough to time a run of seconds to 0.2 %, rarely enough not to compete with it. Each
        // look wakes threads of this process, though, which shows in the latency run's tail; that run is timed by
        // its probe, so scripts/bench sets TTN_BENCH_POLL_MS=100 for it.
        let pollInterval = Duration.milliseconds(Int(environment["TTN_BENCH_POLL_MS"] ?? "") ?? 5)
        // Outputs before the host: a group stops its services in reverse order, so the outputs deliver the last records.
        let group = ServiceGroup(services: outputs.map { [$0, host] } ?? [host], logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            while !(host.isConnected && !host.handlerNames.isEmpty) { try await Task.sleep(for: .milliseconds(10)) }
            emit("READY")
            var first: ContinuousClock.Instant?
            var lastProgress = ContinuousClock.now
            // Records emitted (one per handled uplink) and not yet delivered: the outbox's backlog.
            func outboxWaiting(_ handled: Int) -> Int { max(0, handled - (outputs?.statistics["archive"]?.delivered ?? handled)) }
            var outboxMost = 0
            var mostWaiting = 0
            while true {
                let handler = host.statistics.handlers.values.first
                let handled = handler?.handled ?? 0
                if handled > 0 && first == nil { first = .now }
                outboxMost = max(outboxMost, outboxWaiting(handled))
                mostWaiting = max(mostWaiting, handler?.waiting ?? 0)
                // A dropped uplink is never handled: counted with the handled ones, the run still ends.
                if handled + (handler?.dropped ?? 0) >= count { break }
                if ContinuousClock.now - lastProgress > .milliseconds(250) {
                    // Memory over a long run, and the backlog that explains a step in it.
                    emit(
                        "PROGRESS handled=\(handled) rss_mb=\(residentMegabytes()) waiting=\(handler?.waiting ?? 0) "
                            + "outbox=\(outboxWaiting(handled))"
                    )
                    lastProgress = .now
                }
                try await Task.sleep(for: pollInterval)
            }
            let elapsed = ContinuousClock.now - (first ?? .now)
            let resident = residentMegabytes()
            // The emit run: every uplink counted above committed its record; wait until the sink took them all.
            var emitFields = ""
            if let outputs, let archive {
                let drainStart = ContinuousClock.now
                while (outputs.statistics["archive"]?.delivered ?? 0) < count {
                    if ContinuousClock.now - drainStart > .seconds(600) { break }
                    try await Task.sleep(for: pollInterval)
                }
                let drain = (ContinuousClock.now - drainStart).timeInterval * 1000
                let left = try outputs.database.outbox.summaries().reduce(0) { $0 + $1.pending + $1.deadLetters }
                let statistics = outputs.statistics["archive"]
                let check = try verifyArchive(archive, distinct: Int(arguments[3]) ?? count, count: count)
                emitFields = " drain_ms=\(drain) outbox_max=\(outboxMost) outbox_left=\(left) delivered=\(statistics?.delivered ?? 0) "
                    + "failed_deliveries=\(statistics?.failedAttempts ?? 0) \(check)"
            }
            let statistics = host.statistics
            guard let handler = statistics.handlers.values.first else { throw BenchError(description: "no handler ran") }
            let seconds = elapsed.timeInterval
            emit(
                "RESULT handled=\(handler.handled) dropped=\(handler.dropped) failed=\(handler.failed) "
                    + "malformed=\(statistics.malformed) seconds=\(seconds) rss_mb=\(resident) "
                    + "sum=\(accumulator.value) most_waiting=\(mostWaiting)" + emitFields
            )
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }
}
