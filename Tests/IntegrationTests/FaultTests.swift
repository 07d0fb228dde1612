import Foundation
import Testing

@testable import TTNMQTT

@Suite("Broker faults", .enabled(if: Broker.shouldRun), .timeLimit(.minutes(3)))
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
        let port = try PrivateBroker.start(in: runDirectory)
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
            _ = try PrivateBroker.start(in: runDirectory, port: port)
            #expect(await eventually(timeout: .seconds(20)) { client.isConnected && connects.count == cycle + 1 })
        }

        #expect(counters.all == Array(0..<next), "in order, each exactly once")
        let after = Self.resources()
        #expect(after.files <= before.files + 2, "file descriptors: \(before.files) before, \(after.files) after")
        #expect(after.threads <= before.threads + 2, "threads: \(before.threads) before, \(after.threads) after")
    }
}
