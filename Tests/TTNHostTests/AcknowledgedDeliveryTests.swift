import Foundation
import TTNCore
import TTNMQTT
import TTNSync
import Testing

@testable import TTNHost

/// A source that delivers only what a test hands it, and a downlink path that records what it is given: the host's
/// two seams with nothing behind them, to test what the host does between them.
final class HandOverSource: UplinkSource, DownlinkPath {
    private let receiver = Locked<(any UplinkReceiver)?>(nil)
    private let sent = Locked<[String]>([])
    private let started = DispatchSemaphore(value: 0)

    func start(delivering receiver: any UplinkReceiver) throws(TTNError) {
        self.receiver.withLock { $0 = receiver }
        started.signal()
    }

    func stop() {}
    var isRunning: Bool { receiver.withLock { $0 != nil } }
    var peerName: String { "the test" }
    var statistics: UplinkSourceStatistics { UplinkSourceStatistics() }
    func isTransient(_ error: TTNError) -> Bool { false }
    func receiveEvents(_ kinds: Set<TTNEvent.Kind>) {}

    func send(_ downlink: String, to deviceID: String, queue: DownlinkQueue?, correlationID: String?) throws(TTNError) {
        sent.withLock { $0.append(correlationID ?? "-") }
    }

    /// The correlation ids of the downlinks sent so far, oldest first.
    var correlationIDs: [String] { sent.withLock { $0 } }

    /// Hands `uplink` over as a burst of its own, and waits until it is settled.
    func handOver(_ uplink: Uplink) async -> Bool {
        await withCheckedContinuation { continuation in
            let receiver = receiver.withLock { $0 }!
            receiver.receive(uplink) { handled in continuation.resume(returning: handled) }
            receiver.endOfBurst()
        }
    }

    func waitUntilStarted() async {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                self.started.wait()
                continuation.resume()
            }
        }
    }
}

@Suite("Acknowledged delivery", .timeLimit(.minutes(1)))
struct AcknowledgedDeliveryTests {
    static func uplink(device: String, fCnt: Int, id: String) throws -> Uplink {
        let json = """
            {"end_device_ids":{"device_id":"\(device)","application_ids":{"application_id":"app"}},\
            "correlation_ids":["as:up:\(id)"],"received_at":"2026-12-05T10:00:00Z",\
            "uplink_message":{"session_key_id":"s1","f_port":1,"f_cnt":\(fCnt),"frm_payload":"AQ=="}}
            """
        return try Uplink(json: Array(json.utf8), topic: "v3/app@ttn/devices/\(device)/up")
    }

    /// Runs a host on a hand-over source with two closures, one answering every uplink with a downlink, until `body`
    /// returns.
    func withHost(repeatableIDs: Bool, _ body: (HandOverSource, Locked<[Int]>) async throws -> Void) async throws {
        var configuration = HandlerHost.Configuration(
            client: MQTTClient.Configuration(applicationID: "app", apiKey: "NNSXS.KEY")
        )
        configuration.repeatableDownlinkIDs = repeatableIDs
        configuration.downlinkTimeout = .zero
        let source = HandOverSource()
        let host = HandlerHost(configuration: configuration, source: source, downlinks: source)
        let ran = Locked<[Int]>([])
        host.register(name: "answer") {
            ran.withLock { $0.append(host.getLastMessage()?.uplinkMessage?.fCnt ?? -1) }
            _ = try? host.publish(#"{"downlinks":[{"f_port":1,"frm_payload":"AA=="}]}"#)
        }
        host.register(name: "second") {}
        let running = Task { try await host.run() }
        await source.waitUntilStarted()
        try await body(source, ran)
        running.cancel()
        _ = try? await running.value
    }

    @Test("an uplink is settled as handled once every handler ran it, after its downlink went out")
    func settledAfterHandlers() async throws {
        try await withHost(repeatableIDs: false) { source, ran in
            for fCnt in 0..<3 {
                let handled = await source.handOver(try Self.uplink(device: "dev", fCnt: fCnt, id: "U\(fCnt)"))
                #expect(handled)
                // Settled only after the answering handler ran, so its run and downlink are already recorded.
                #expect(ran.withLock { $0 } == Array(0...fCnt))
                #expect(source.correlationIDs.count == fCnt + 1)
            }
            // Without repeatable ids every downlink gets a new one, even for the same uplink again.
            _ = await source.handOver(try Self.uplink(device: "dev", fCnt: 0, id: "U0"))
            #expect(Set(source.correlationIDs).count == 4)
        }
    }

    @Test("with repeatable ids, the same uplink handled again sends its downlink under the same id; another uplink gets another")
    func repeatableIDs() async throws {
        try await withHost(repeatableIDs: true) { source, _ in
            let first = try Self.uplink(device: "dev", fCnt: 7, id: "SAME")
            #expect(await source.handOver(first))
            #expect(await source.handOver(first))
            #expect(await source.handOver(try Self.uplink(device: "dev", fCnt: 8, id: "OTHER")))
            #expect(await source.handOver(try Self.uplink(device: "dev2", fCnt: 7, id: "SAME")))
            let ids = source.correlationIDs
            try #require(ids.count == 4)
            #expect(ids[0] == ids[1])
            #expect(ids[0].hasPrefix("ttn-host:") && ids[0].count == "ttn-host:".count + 16)
            #expect(Set(ids).count == 3)
        }
    }

    @Test("a host takes work from a shared stream only while it has handlers")
    func acceptingWork() {
        let source = HandOverSource()
        let host = HandlerHost(
            configuration: .init(client: MQTTClient.Configuration(applicationID: "app", apiKey: "NNSXS.KEY")), source: source, downlinks: source
        )
        #expect(!host.isAcceptingWork)
        host.register(name: "one") {}
        #expect(host.isAcceptingWork)
        host.remove(name: "one")
        #expect(!host.isAcceptingWork)
    }
}
