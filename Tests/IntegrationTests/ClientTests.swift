import Foundation
import TestSupport
import Testing

@testable import TTNMQTT

@Suite("Swift API and robustness against the broker", .enabled(if: Broker.shouldRun), .timeLimit(.minutes(1)))
struct ClientIntegrationTests {
    @Test("connect() async and the uplinks sequence deliver typed uplinks in order")
    func asyncUplinks() async throws {
        let port = try Broker.requirePort()
        let app = Broker.application()
        let network = try NetworkSide(port: port)
        defer { network.close() }
        var configuration = MQTTClient.Configuration(applicationID: app, apiKey: Broker.apiKey)
        configuration.server = .init(host: "127.0.0.1", port: port)
        let client = MQTTClient(configuration: configuration)
        try await client.connect()
        defer { client.disconnect() }
        let uplinks = client.uplinks
        for counter in 0..<20 {
            try network.publishUplink(
                application: app, device: "dev",
                json: Array(#"{"end_device_ids":{"device_id":"dev"},"uplink_message":{"f_cnt":\#(counter)}}"#.utf8)
            )
        }
        var counters: [Int] = []
        for await uplink in uplinks {
            counters.append(uplink.uplinkMessage?.fCnt ?? -1)
            if counters.count == 20 { break }
        }
        #expect(counters == Array(0..<20))
    }

    @Test("malformed uplinks are counted and skipped; the next good one arrives")
    func malformedSkipped() async throws {
        let port = try Broker.requirePort()
        let app = Broker.application()
        let network = try NetworkSide(port: port)
        defer { network.close() }
        let client = Broker.client(app)
        try client.connect(to: port)
        defer { client.disconnect() }
        client.startBackground()
        for bad in ["{", "[]", "\u{FF}", #"{"uplink_message": {"f_cnt": "x"}}"#] {
            try network.publishUplink(application: app, device: "dev", json: Array(bad.utf8))
        }
        try network.publishUplink(application: app, device: "dev", json: Fixtures.bytes("v3-up-decoded.json"))
        #expect(await eventually { client.getAllMessages().count == 1 })
        #expect(client.statistics.malformed == 4)
        #expect(client.statistics.uplinks == 1)
    }

    @Test("events: downlink outcomes and joins arrive typed by topic")
    func events() async throws {
        let port = try Broker.requirePort()
        let app = Broker.application()
        let network = try NetworkSide(port: port)
        defer { network.close() }
        let client = Broker.client(app)
        try client.connect(to: port)
        defer { client.disconnect() }
        let events = client.events
        let received = Recorder<TTNEvent>()
        let collector = Task {
            for await event in events { received.append(event) }
        }
        defer { collector.cancel() }
        // The events subscription is made in the background; publish until it is in place.
        let queued = try Fixtures.bytes("v3-down-queued.json")
        for _ in 0..<100 where received.count == 0 {
            try network.publish(topic: "v3/\(app)@ttn/devices/dev1/down/queued", payload: queued)
            try await Task.sleep(for: .milliseconds(100))
        }
        let event = try #require(received.all.first)
        #expect(event.kind == .downlinkQueued)
        #expect(event.deviceID == "dev1")
        #expect(event.correlationIDs.contains("my-correlation-id"))
    }

    // Here, not in TTNMQTTTests: resolving the name asks the system's resolver, and the unit tests stay off the network.
    @Test("an unknown host fails fast with a clear error")
    func unknownHost() {
        let client = MQTTClient("my-app", "EUI", "KEY")
        let error = #expect(throws: TTNError.self) { try client.customConnect("no-such-host.invalid", 1883) }
        #expect(error?.kind == .unknownHost)
        #expect(!client.isConnected)
    }

    @Test("after the broker restarts the client reconnects, subscribes again and receives")
    func resubscribeAfterRestart() async throws {
        let runDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("broker-\(UUID().uuidString)")
        let port = try await PrivateBroker.start(in: runDirectory)
        defer { PrivateBroker.stop(in: runDirectory) }

        let client = PrivateBroker.client(port: port)
        let connects = Recorder<Int>()
        client.setConnectBehavior { _, _, _, rc in connects.append(rc) }
        try await client.connect()
        defer { client.disconnect() }
        client.startBackground()
        #expect(await eventually { connects.count == 1 })

        PrivateBroker.stop(in: runDirectory)
        #expect(await eventually { !client.isConnected })
        _ = try await PrivateBroker.start(in: runDirectory, port: port)
        #expect(await eventually(timeout: .seconds(20)) { client.isConnected && connects.count == 2 })

        let network = try NetworkSide(port: port)
        defer { network.close() }
        try network.publishUplink(application: "my-app", device: "dev", json: Fixtures.bytes("v3-up-decoded.json"))
        #expect(await eventually { client.getAllMessages().count == 1 }, "the subscription must be back")
    }
}

/// A broker of the test's own, for tests that stop and restart it (scripts/start-broker in another folder).
enum PrivateBroker {
    /// Starts the broker; `persistent` keeps the sessions of clients that asked for one across a restart.
    static func start(in directory: URL, port: Int? = nil, persistent: Bool = false) async throws -> Int {
        let persistence = persistent ? "persistence true\npersistence_location \(directory.path)/" : nil
        let status = await spawn("scripts/start-broker", directory.path, port: port, extraConfig: persistence)?.exitStatus()
        try #require(status == 0, "scripts/start-broker failed")
        let text = try String(contentsOf: directory.appendingPathComponent("env"), encoding: .utf8)
        let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("TTN_BROKER_PORT=") })
        return try #require(Int(line.dropFirst("TTN_BROKER_PORT=".count)))
    }

    /// A port for a broker that `start(in: directory, port:)` starts later; nothing listens on it yet.
    static func freePort(in directory: URL) async throws -> Int {
        let port = try await start(in: directory)
        stop(in: directory)
        return port
    }

    /// A client of `my-app` on a private broker, reconnecting quickly (50 ms, doubling to 400 ms).
    static func client(port: Int) -> MQTTClient {
        var configuration = MQTTClient.Configuration(applicationID: "my-app", apiKey: Broker.apiKey)
        configuration.server = .init(host: "127.0.0.1", port: port)
        configuration.minimumReconnectDelay = .milliseconds(50)
        configuration.maximumReconnectDelay = .milliseconds(400)
        return MQTTClient(configuration: configuration)
    }

    /// Stops the broker; quick, so it may block (and run in a `defer`).
    static func stop(in directory: URL) {
        _ = spawn("scripts/stop-broker", directory.path)?.wait()
    }

    /// Starts a script of the repository.
    private static func spawn(_ script: String, _ argument: String, port: Int? = nil, extraConfig: String? = nil) -> ChildProcess? {
        // Not the shared test broker's settings, which scripts/test exported.
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("TTN_BROKER_") }
        environment["TTN_BROKER_PORT"] = port.map(String.init)
        environment["TTN_BROKER_EXTRA_CONFIG"] = extraConfig
        let path = Broker.repository.appendingPathComponent(script).path
        return try? ChildProcess(path, [argument], environment: environment)
    }
}
