import Foundation
import Logging
import ServiceLifecycle
import TTNCore
import TTNHost
import TTNMQTT
import TTNSync
import TestSupport
import Testing

/// An uplink of `device` with frame counter `fCnt`, received at `receivedAt`, with an `as:up:` id of its own.
func timedUplinkJSON(
    application: String = "my-app", device: String, fCnt: Int, session: String = "c2Vzc2lvbi0x", receivedAt: Timestamp = .now
) -> [UInt8] {
    let received = receivedAt.description
    return Array(
        (#"{"end_device_ids":{"device_id":"\#(device)","application_ids":{"application_id":"\#(application)"}},"#
            + #""correlation_ids":["as:up:\#(UUID().uuidString)"],"received_at":"\#(received)","#
            + #""uplink_message":{"session_key_id":"\#(session)","f_port":1,"f_cnt":\#(fCnt),"frm_payload":"AQ==","received_at":"\#(received)"}}"#)
            .utf8
    )
}

/// What a closure handler saw: device, frame counter and whether it was backfilled, in order.
final class Seen: Sendable {
    struct Entry: Sendable, Hashable {
        let device: String
        let fCnt: Int
        let backfilled: Bool
    }

    private let entries = Locked<[Entry]>([])

    func register(on host: HandlerHost) {
        host.register(name: "record") { [entries] in
            guard let uplink = host.getLastMessage() else { return }
            entries.withLock {
                $0.append(Entry(device: uplink.deviceID ?? "?", fCnt: uplink.uplinkMessage?.fCnt ?? 0, backfilled: uplink.isBackfilled))
            }
        }
    }

    var all: [Entry] { entries.withLock { $0 } }
    var count: Int { entries.withLock { $0.count } }
    func of(_ device: String) -> [Entry] { all.filter { $0.device == device } }
}

@Suite("Backfill from the Storage Integration", .enabled(if: Broker.shouldRun), .serialized, .timeLimit(.minutes(4)))
struct BackfillTests {
    static let devices = ["dev-a", "dev-b", "dev-c"]

    /// A host of `application` on the broker at `port`, reconnecting quickly, backfilling from `standIn` in pages of 4,
    /// rechecking after 2 s.
    static func configuration(
        application: String = "my-app", port: Int, standIn: StorageStandIn, stateDirectory: String?
    ) -> HandlerHost.Configuration {
        var configuration = hostConfiguration(application: application, port: port)
        configuration.client.minimumReconnectDelay = .milliseconds(100)
        configuration.client.maximumReconnectDelay = .milliseconds(500)
        configuration.stateDirectory = stateDirectory
        var backfill = BackfillConfiguration(apiURL: standIn.url)
        backfill.recheckDelay = .seconds(2)
        // Small pages, so that a catch-up takes several requests, each starting at the last one's newest uplink.
        backfill.pageLimit = 4
        configuration.backfill = backfill
        return configuration
    }

    /// How long the broker stays down: 30 s, or TTN_TEST_OUTAGE_SECONDS for a quicker run by hand.
    static var outage: Int { ProcessInfo.processInfo.environment["TTN_TEST_OUTAGE_SECONDS"].flatMap(Int.init) ?? 30 }

    @Test("the broker down for 30 s: every uplink of the outage reaches the handler once, in order per device, marked backfilled")
    func outage() async throws {
        let brokerDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("backfill-broker-\(UUID().uuidString)")
        defer { PrivateBroker.stop(in: brokerDirectory) }
        let port = try await PrivateBroker.start(in: brokerDirectory)
        let standIn = try await StorageStandIn(applications: ["my-app"], broker: port)
        defer { standIn.stop() }
        let seen = Seen()
        var fCnt = 0

        try await withRunningHost(configuration: Self.configuration(port: port, standIn: standIn, stateDirectory: nil), register: seen.register) { host in
            // Before: live uplinks, which the stand-in also captures from the broker.
            let network = try NetworkSide(port: port)
            for _ in 0..<5 {
                for device in Self.devices { try network.publishUplink(application: "my-app", device: device, json: timedUplinkJSON(device: device, fCnt: fCnt)) }
                fCnt += 1
            }
            #expect(await eventually { seen.count == 15 }, "live before the outage: \(seen.count)")
            #expect(try await StorageStandIn.poll(timeout: .seconds(20)) { try await standIn.count(application: "my-app") == 15 },
                    "the stand-in captured what the broker carried")
            network.close()

            // The outage: TTN keeps storing what the devices send, over the time the broker is away.
            PrivateBroker.stop(in: brokerDirectory)
            #expect(await eventually { !host.isConnected })
            let rounds = 6
            for round in 0..<rounds {
                for device in Self.devices { try await standIn.store(timedUplinkJSON(device: device, fCnt: fCnt)) }
                fCnt += 1
                if round < rounds - 1 { try await Task.sleep(for: .seconds(Self.outage / rounds)) }
            }
            let outageFrames = 5..<fCnt
            _ = try await PrivateBroker.start(in: brokerDirectory, port: port)

            // Live again at once, while the catch-up runs: these wait for the fetched ones.
            #expect(await eventually(timeout: .seconds(20)) { host.isConnected })
            let after = try NetworkSide(port: port)
            for _ in 0..<3 {
                for device in Self.devices { try after.publishUplink(application: "my-app", device: device, json: timedUplinkJSON(device: device, fCnt: fCnt)) }
                fCnt += 1
            }
            let total = Self.devices.count * fCnt
            #expect(await eventually(timeout: .seconds(30)) { seen.count >= total }, "seen \(seen.count) of \(total): \(host.statistics)")
            after.close()
            // The recheck (2 s later) asks again and finds only uplinks handled already.
            #expect(await eventually(timeout: .seconds(20)) { host.statistics.backfillAlreadyHandled >= outageFrames.count * Self.devices.count })

            for device in Self.devices {
                let entries = seen.of(device)
                #expect(entries.map(\.fCnt) == Array(0..<fCnt), "\(device): every frame once, in order")
                #expect(entries.filter { outageFrames.contains($0.fCnt) }.allSatisfy { $0.backfilled }, "\(device): the outage's uplinks are marked")
                #expect(entries.filter { $0.fCnt < outageFrames.lowerBound }.allSatisfy { !$0.backfilled }, "\(device): live before")
            }
            #expect(seen.count == total, "nothing handled twice")
            let statistics = host.statistics
            #expect(statistics.reconnects == 1)
            #expect(statistics.backfilled >= outageFrames.count * Self.devices.count)
            #expect(statistics.unrecovered == 0 && statistics.backfillFailures == 0, "\(statistics)")
            let requests = try await standIn.requests()
            #expect(requests.contains { $0.parameters["after"] != nil && $0.status == 200 }, "asked since the last uplink: \(requests)")
        }
    }

    @Test("a reconnect before any uplink fetches from the first connection on, not a day of history")
    func reconnectBeforeAnyUplink() async throws {
        let brokerDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("backfill-broker-\(UUID().uuidString)")
        defer { PrivateBroker.stop(in: brokerDirectory) }
        let port = try await PrivateBroker.start(in: brokerDirectory)
        let standIn = try await StorageStandIn(applications: ["my-app"])
        defer { standIn.stop() }
        // An hour ago, well inside backfill-max-age: what a catch-up without a lower bound would replay.
        try await standIn.store(timedUplinkJSON(device: "old", fCnt: 1, receivedAt: Timestamp.now.adding(.seconds(-3600))))
        let seen = Seen()
        try await withRunningHost(configuration: Self.configuration(port: port, standIn: standIn, stateDirectory: nil), register: seen.register) { host in
            PrivateBroker.stop(in: brokerDirectory)
            #expect(await eventually { !host.isConnected })
            try await standIn.store(timedUplinkJSON(device: "new", fCnt: 0))
            _ = try await PrivateBroker.start(in: brokerDirectory, port: port)
            #expect(await eventually(timeout: .seconds(20)) { seen.count == 1 }, "\(seen.all) \(host.statistics)")
            #expect(seen.all.map(\.device) == ["new"], "only what came after the first connection")
            let after = try #require(try await standIn.requests().first?.parameters["after"].flatMap { Timestamp(rfc3339: $0) })
            #expect(after > Timestamp.now.adding(.seconds(-600)), "asked from the first connection on: \(after)")
        }
    }

    @Test("a host restarted after a stop backfills from its last handled uplink, and runs nothing twice")
    func restart() async throws {
        let port = try Broker.requirePort()
        let app = Broker.application()
        let standIn = try await StorageStandIn(applications: [app])
        defer { standIn.stop() }
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("backfill-state-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: state) }
        let configuration = Self.configuration(application: app, port: port, standIn: standIn, stateDirectory: state)
        let device = "restart-\(UUID().uuidString.prefix(8).lowercased())"

        let first = Seen()
        try await withRunningHost(configuration: configuration, register: first.register) { _ in
            let network = try NetworkSide(port: port)
            defer { network.close() }
            for fCnt in 0..<5 {
                let json = timedUplinkJSON(application: app, device: device, fCnt: fCnt)
                try await standIn.store(json)
                try network.publishUplink(application: app, device: device, json: json)
            }
            #expect(await eventually { first.of(device).count == 5 })
        }
        // While it was stopped.
        for fCnt in 5..<9 { try await standIn.store(timedUplinkJSON(application: app, device: device, fCnt: fCnt)) }

        let second = Seen()
        try await withRunningHost(configuration: configuration, register: second.register) { host in
            #expect(await eventually { second.of(device).count == 4 }, "\(second.all) \(host.statistics)")
            let network = try NetworkSide(port: port)
            defer { network.close() }
            try network.publishUplink(application: app, device: device, json: timedUplinkJSON(application: app, device: device, fCnt: 9))
            #expect(await eventually { second.of(device).count == 5 })
            #expect(second.of(device).map(\.fCnt) == Array(5...9))
            #expect(second.of(device).map(\.backfilled) == [true, true, true, true, false])
            #expect(host.statistics.gaps == 0)
            let requests = try await standIn.requests()
            #expect(requests.first?.parameters["after"].flatMap { Timestamp(rfc3339: $0) } != nil, "\(requests)")
        }
    }

    @Test("a gap in a device's frame counter is fetched; an application without the integration says how to activate it")
    func gapsAndNoIntegration() async throws {
        let port = try Broker.requirePort()
        let app = Broker.application()
        let standIn = try await StorageStandIn(applications: [app])
        defer { standIn.stop() }
        let device = "gap-\(UUID().uuidString.prefix(8).lowercased())"
        let seen = Seen()
        let configuration = Self.configuration(application: app, port: port, standIn: standIn, stateDirectory: nil)
        try await withRunningHost(configuration: configuration, register: seen.register) { host in
            let network = try NetworkSide(port: port)
            defer { network.close() }
            for fCnt in 0..<6 {
                let json = timedUplinkJSON(application: app, device: device, fCnt: fCnt)
                try await standIn.store(json)
                // Frames 2 and 3 never come over MQTT (QoS 0 lost them).
                if fCnt != 2 && fCnt != 3 { try network.publishUplink(application: app, device: device, json: json) }
            }
            #expect(await eventually(timeout: .seconds(20)) { seen.of(device).count == 6 }, "\(seen.all) \(host.statistics)")
            let entries = seen.of(device)
            #expect(entries.map(\.fCnt).prefix(3) == [0, 1, 4], "the gap's frames come after the uplink that showed it: \(entries)")
            #expect(Set(entries.map(\.fCnt)) == Set(0..<6))
            #expect(entries.filter(\.backfilled).map(\.fCnt) == [2, 3], "\(entries)")
            #expect(host.statistics.gaps == 1 && host.statistics.missingUplinks == 2 && host.statistics.backfilled == 2)
            #expect(host.isBackfillActive)
        }

        let capture = LogCapture()
        let without = Broker.application()
        var withoutIntegration = Self.configuration(application: without, port: port, standIn: standIn, stateDirectory: nil)
        withoutIntegration.client.logger = Logger(label: "test") { _ in capture }
        let other = "gap-\(UUID().uuidString.prefix(8).lowercased())"
        try await withRunningHost(configuration: withoutIntegration) { host in
            let network = try NetworkSide(port: port)
            defer { network.close() }
            for fCnt in [0, 3] {
                try network.publishUplink(application: without, device: other, json: timedUplinkJSON(application: without, device: other, fCnt: fCnt))
            }
            #expect(await eventually(timeout: .seconds(20)) { host.statistics.unrecovered == 2 }, "\(host.statistics)")
            #expect(host.statistics.gaps == 1 && host.statistics.backfillFailures == 1)
            #expect(!host.isBackfillActive, "turned off by the 404")
            let lines = capture.messages.filter { $0.contains("not activated") }
            #expect(lines.count == 1, "one line saying how to activate it: \(capture.messages)")
            #expect(lines.first?.contains("Integrations > Storage Integration") == true)
        }
    }
}
