import CMosquitto
import Foundation
import Synchronization

/// The network side of the latency and memory runs: publishes uplinks at a fixed rate, as TTN would, and times
/// each downlink the handler sends back (it carries the correlation id `bench:<f_cnt>`) on one monotonic clock.
///
/// It is written against libmosquitto directly, with its own network thread, so that the probe never delays
/// its own timestamps: the thread that notes an arrival never waits for a lock the publishing loop holds.
final class NetworkSide {
    private let sentAt: UnsafeMutableBufferPointer<UInt64>
    private let receivedAt: UnsafeMutableBufferPointer<UInt64>
    private let received = Atomic(0)
    private let handle: OpaquePointer

    /// Connects as the network side (`user`/`password` of the test broker) and subscribes to every downlink.
    init(host: String, port: Int, user: String, password: String, count: Int) throws {
        sentAt = .allocate(capacity: count)
        receivedAt = .allocate(capacity: count)
        sentAt.initialize(repeating: 0)
        receivedAt.initialize(repeating: 0)
        mosquitto_lib_init()
        guard let handle = mosquitto_new("bench-network", true, nil) else { throw BenchError(description: "mosquitto_new failed") }
        self.handle = handle
        mosquitto_user_data_set(handle, Unmanaged.passUnretained(self).toOpaque())
        mosquitto_username_pw_set(handle, user, password)
        try check(mosquitto_int_option(handle, MOSQ_OPT_TCP_NODELAY, 1), "int_option")  // send each uplink at once
        mosquitto_message_callback_set(handle) { _, context, message in
            guard let context, let message else { return }
            Unmanaged<NetworkSide>.fromOpaque(context).takeUnretainedValue().record(message.pointee)
        }
        try check(mosquitto_connect(handle, host, Int32(port), 30), "connect")
        try check(mosquitto_subscribe(handle, nil, "v3/my-app@ttn/devices/+/down/#", 1), "subscribe")
        try check(mosquitto_loop_start(handle), "loop_start")
    }

    deinit {
        mosquitto_disconnect(handle)
        mosquitto_loop_stop(handle, false)
        mosquitto_destroy(handle)
        sentAt.deallocate()
        receivedAt.deallocate()
    }

    /// Publishes `uplinks` in order, `repeat` times, at `rate` per second, each one on time.
    func publish(_ uplinks: [[UInt8]], topic: String, rate: Double, repeat repetitions: Int = 1) throws {
        Thread.sleep(forTimeInterval: 0.5)  // let the subscription settle
        let interval = 1e9 / rate
        let start = Self.now()
        for round in 0..<repetitions {
            for (index, uplink) in uplinks.enumerated() {
                Self.wait(until: start + UInt64(Double(round * uplinks.count + index) * interval))
                if round == 0 { sentAt[index] = Self.now() }
                let code = uplink.withUnsafeBytes { (bytes) -> Int32 in
                    mosquitto_publish(handle, nil, topic, Int32(bytes.count), bytes.baseAddress, 0, false)
                }
                try check(code, "publish")
            }
        }
    }

    /// Waits up to 30 s for the downlinks answering every `answerEvery`-th uplink of the first round. Returns
    /// the latencies in milliseconds, sorted, and how many downlinks are missing.
    func latencies(of count: Int, answerEvery: Int) -> (milliseconds: [Double], missing: Int) {
        let expected = (count + answerEvery - 1) / answerEvery
        let deadline = Self.now() + 30_000_000_000
        while received.load(ordering: .acquiring) < expected && Self.now() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        let milliseconds = stride(from: 0, to: count, by: answerEvery).compactMap { index -> Double? in
            let arrival = receivedAt[index]
            return arrival == 0 ? nil : Double(arrival - sentAt[index]) / 1e6
        }
        if let file = ProcessInfo.processInfo.environment["TTN_BENCH_DUMP"] { dump(to: file, count: count, answerEvery: answerEvery) }
        return (milliseconds.sorted(), expected - milliseconds.count)
    }

    /// Writes a line per answered uplink, `f_cnt sent_ms latency_ms` (sent since the first uplink; latency -1 when
    /// no downlink came), so it shows whether slow downlinks come alone or in stretches.
    private func dump(to file: String, count: Int, answerEvery: Int) {
        let lines = stride(from: 0, to: count, by: answerEvery).map { index in
            let latency = receivedAt[index] == 0 ? -1 : Double(receivedAt[index] - sentAt[index]) / 1e6
            return "\(index) \(Double(sentAt[index] - sentAt[0]) / 1e6) \(latency)"
        }
        do {
            try (lines.joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        } catch {
            FileHandle.standardError.write(Data("probe: cannot write \(file): \(error)\n".utf8))
        }
    }

    /// Runs on libmosquitto's thread: notes when the downlink for `bench:<n>` arrived.
    private func record(_ message: mosquitto_message) {
        let arrival = Self.now()
        let payload = UnsafeBufferPointer(start: message.payload.assumingMemoryBound(to: UInt8.self), count: Int(message.payloadlen))
        guard let index = number(after: "\"bench:", in: payload), index < receivedAt.count, receivedAt[index] == 0 else { return }
        receivedAt[index] = arrival
        received.add(1, ordering: .releasing)
    }

    private func check(_ code: Int32, _ operation: String) throws {
        guard code == MOSQ_ERR_SUCCESS.rawValue else {
            throw BenchError(description: "probe: mosquitto_\(operation) failed: \(String(cString: mosquitto_strerror(code)))")
        }
    }

    private static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    /// Sleeps until 100 µs before `target`, then spins, so each uplink leaves on time.
    private static func wait(until target: UInt64) {
        let sleepUntil = target > 100_000 ? target - 100_000 : 0
        if now() < sleepUntil {
            var time = timespec(tv_sec: Int(sleepUntil / 1_000_000_000), tv_nsec: Int(sleepUntil % 1_000_000_000))
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &time, nil)
        }
        while now() < target {}
    }
}

/// The decimal digits right after the first `marker` in `payload`, as a number (0 when none follow); nil when
/// `marker` is not there.
func number(after marker: String, in payload: UnsafeBufferPointer<UInt8>) -> Int? {
    let marker = Array(marker.utf8)
    guard let found = payload.indices.first(where: { payload[$0...].starts(with: marker) }) else { return nil }
    return payload[(found + marker.count)...].prefix(while: { (48...57).contains($0) }).reduce(0) { $0 * 10 + Int($1 - 48) }
}

/// The network side's arguments: `HOST PORT USER PASSWORD UPLINKS.jsonl RATE COUNT`.
private func connectNetworkSide(_ arguments: [String], usage: String) throws -> (NetworkSide, [[UInt8]], Double) {
    guard arguments.count == 8, let port = Int(arguments[2]), let rate = Double(arguments[6]), let count = Int(arguments[7]) else {
        throw BenchError(description: "usage: \(usage)")
    }
    let lines = try String(contentsOfFile: arguments[5], encoding: .utf8).split(separator: "\n").prefix(count)
    guard lines.count == count else { throw BenchError(description: "\(arguments[5]) has fewer than \(count) uplinks") }
    let probe = try NetworkSide(host: arguments[1], port: port, user: arguments[3], password: arguments[4], count: count)
    return (probe, lines.map { Array($0.utf8) }, rate)
}

private let benchTopic = "v3/my-app@ttn/devices/bench-device/up"

/// `ttn-bench probe HOST PORT USER PASSWORD UPLINKS.jsonl RATE COUNT`: publishes COUNT uplinks at RATE and prints
/// `LATENCY n= p50_ms= p99_ms= max_ms=` for the downlinks answering every 10th.
func runLatencyProbe(_ arguments: [String]) throws {
    let (probe, uplinks, rate) = try connectNetworkSide(arguments, usage: "ttn-bench probe HOST PORT USER PASSWORD UPLINKS.jsonl RATE COUNT")
    try probe.publish(uplinks, topic: benchTopic, rate: rate)
    let (latencies, missing) = probe.latencies(of: uplinks.count, answerEvery: 10)
    guard missing == 0, let worst = latencies.last else {
        throw BenchError(description: "probe: \(missing) of \(missing + latencies.count) downlinks did not arrive")
    }
    func percentile(_ fraction: Double) -> Double { latencies[min(latencies.count - 1, Int(fraction * Double(latencies.count)))] }
    emit(String(format: "LATENCY n=%d p50_ms=%.3f p99_ms=%.3f max_ms=%.3f", latencies.count, percentile(0.5), percentile(0.99), worst))
}

/// `ttn-bench publish HOST PORT USER PASSWORD UPLINKS.jsonl RATE COUNT REPEAT`: publishes the first COUNT uplinks
/// REPEAT times at a steady RATE (the memory run).
func runSteadyPublisher(_ arguments: [String]) throws {
    guard let repetitions = arguments.last.flatMap(Int.init) else { throw BenchError(description: "publish: REPEAT missing") }
    let (probe, uplinks, rate) = try connectNetworkSide(
        Array(arguments.dropLast()), usage: "ttn-bench publish HOST PORT USER PASSWORD UPLINKS.jsonl RATE COUNT REPEAT"
    )
    try probe.publish(uplinks, topic: benchTopic, rate: rate, repeat: repetitions)
}
