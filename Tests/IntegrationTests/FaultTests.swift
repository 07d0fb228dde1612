import Foundation
import Testing

@testable import TTNHost
@testable import TTNMQTT

// Serialized: each test counts the threads and file descriptors of the whole process.
@Suite("Broker faults", .enabled(if: Broker.shouldRun), .serialized, .timeLimit(.minutes(3)))
struct FaultTests {
    /// Open file descriptors and threads of this process.
    private static func resources() -> (files: Int, threads: Int) {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
        let threads = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? -1
        return (files, threads)
    }

    @Test("the broker killed and restarted 10 times: reconnect, resubscribe, no loss while up, no duplicates, no leaks")
    func tenRestarts() async throws {
        let runDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("broker-\(UUID().uuidString)")
        let port = try await PrivateBroker.start(in: runDirectory)
        defer { PrivateBroker.stop(in: runDirectory) }

        let client = PrivateBroker.client(port: port)
        let counters = Recorder<Int>()
        let connects = Recorder<Int>()
        client.setConnectBehavior { _, _, _, rc in connects.append(rc) }
        client.setMessageHandler { counters.append(client.getLastMessage()?.uplinkMessage?.fCnt ?? -1) }
        try await client.connect()
        defer { client.disconnect() }
        client.startBackground()
        #expect(await eventually { connects.count == 1 })
        let before = Self.resources()

        var next = 0
        for cycle in 1...10 {
            let network = try NetworkSide(port: port)
            let batch = next..<(next + 20)
            for counter in batch {
                try network.publishUplink(
                    application: "my-app", device: "dev",
                    json: Array(#"{"end_device_ids":{"device_id":"dev"},"uplink_message":{"f_cnt":\#(counter)}}"#.utf8)
                )
            }
            next = batch.upperBound
            let expected = next
            #expect(await eventually { counters.count == expected }, "cycle \(cycle): every uplink published while connected arrives")
            network.close()

            PrivateBroker.stop(in: runDirectory)
            #expect(await eventually { !client.isConnected })
            _ = try await PrivateBroker.start(in: runDirectory, port: port)
            #expect(await eventually(timeout: .seconds(20)) { client.isConnected && connects.count == cycle + 1 })
        }

        #expect(counters.all == Array(0..<next), "in order, each exactly once")
        let after = Self.resources()
        #expect(after.files <= before.files + 2, "file descriptors: \(before.files) before, \(after.files) after")
        #expect(after.threads <= before.threads + 2, "threads: \(before.threads) before, \(after.threads) after")
    }

    @Test("the broker away for 60 s: the host reconnects, subscribes again, resumes; a downlink published meanwhile goes out after")
    func brokerAwayOneMinute() async throws {
        let runDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("broker-\(UUID().uuidString)")
        let port = try await PrivateBroker.start(in: runDirectory, persistent: true)
        defer { PrivateBroker.stop(in: runDirectory) }
        // The network side's downlink watcher has a persistent session, which the broker keeps across its restart,
        // so it receives what the host sends after reconnecting, whichever of the two reconnects first.
        let watched = runDirectory.appendingPathComponent("downlinks.txt").path
        let watcher = try ChildProcess(
            try Broker.executable("mosquitto_sub"),
            [
                "-h", "127.0.0.1", "-p", "\(port)", "-u", Broker.networkUser, "-P", Broker.networkPassword, "-q", "1", "-c",
                "-i", "watcher-\(UUID().uuidString.prefix(8))", "-t", "v3/my-app@ttn/devices/+/down/#", "-v",
            ],
            environment: [:], output: watched
        )
        defer { watcher.stop() }
        @Sendable func downlinks() -> String { (try? String(contentsOfFile: watched, encoding: .utf8)) ?? "" }

        let handled = Recorder<Int>()
        let brokerDown = DispatchSemaphore(value: 0)
        let sentWhileDown = Recorder<String>()
        var configuration = hostConfiguration(application: "my-app", port: port)
        // Quicker than the default (1 s doubling to 30 s), to bound the test's time after the restart.
        configuration.client.minimumReconnectDelay = .milliseconds(100)
        configuration.client.maximumReconnectDelay = .seconds(2)
        try await withRunningHost(configuration: configuration) { host in
            host.register(name: "record") { handled.append(host.getLastMessage()?.uplinkMessage?.fCnt ?? -1) }
            host.register(name: "answer") {
                guard host.getLastMessage()?.uplinkMessage?.fCnt == 99 else { return }
                brokerDown.wait()
                do {
                    try host.publish(#"{"downlinks":[{"f_port":1,"frm_payload":"AQ==","correlation_ids":["sent-while-down"]}]}"#)
                    sentWhileDown.append("sent")
                } catch {
                    sentWhileDown.append("\(error)")
                }
            }
        } _: { host in
            for _ in 0..<100 where !downlinks().contains("probe") {
                try host.publish(#"{"downlinks":[{"f_port":1,"frm_payload":"AQ==","correlation_ids":["probe"]}]}"#, to: "dev")
                try await Task.sleep(for: .milliseconds(100))
            }
            try #require(downlinks().contains("probe"), "the watcher is subscribed")
            let before = Self.resources()

            try await stream(0..<100, port: port) { handled.count == 100 }
            PrivateBroker.stop(in: runDirectory)
            let stoppedAt = ContinuousClock.now
            #expect(await eventually { !host.isConnected })
            brokerDown.signal()
            #expect(await eventually { sentWhileDown.count == 1 })
            #expect(sentWhileDown.all == ["sent"], "a QoS 1 downlink is accepted while the connection is down")

            try await Task.sleep(until: stoppedAt + .seconds(60), clock: .continuous)
            _ = try await PrivateBroker.start(in: runDirectory, port: port, persistent: true)
            #expect(await eventually(timeout: .seconds(30)) { host.isConnected })
            try await stream(100..<200, port: port) { handled.count == 200 }
            #expect(await eventually { downlinks().contains("sent-while-down") }, "the downlink went out after the reconnect")

            let after = Self.resources()
            #expect(after.files <= before.files + 2, "file descriptors: \(before.files) before, \(after.files) after")
            #expect(after.threads <= before.threads + 2, "threads: \(before.threads) before, \(after.threads) after")
        }
        #expect(handled.all == Array(0..<200), "in order, each exactly once")
        #expect(downlinks().components(separatedBy: "sent-while-down").count == 2, "sent once")
    }

    /// Publishes uplinks with `counters` at a steady pace (one every 20 ms) from a fresh network side, which it
    /// closes once `done` holds.
    private func stream(_ counters: Range<Int>, port: Int, until done: @escaping @Sendable () -> Bool) async throws {
        let network = try NetworkSide(port: port)
        defer { network.close() }
        for counter in counters {
            try network.publishUplink(application: "my-app", device: "dev", json: uplinkJSON(counter: counter))
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(await eventually(done), "every uplink of \(counters) was handled")
    }
}
