import Foundation
import Testing

import TTNSinks

@testable import TTNMQTT

/// The mqtt sink, publishing as the broker's network user (the only one allowed to write below `v3/`), watched by
/// a ``NetworkSide`` subscriber.
@Suite("MQTT sink against a broker", .enabled(if: Broker.shouldRun), .timeLimit(.minutes(2)))
struct SinkMQTTTests {
    private static func record(_ number: Int, device: String? = "dev-1") -> SinkRecord {
        SinkRecord(
            id: "rec-\(number)", application: "my-app", script: "decode.lua", device: device,
            time: "2026-12-04T20:49:10.123Z", value: #"{"n":\#(number)}"#
        )
    }

    /// A topic prefix of this test's own, so that parallel tests never see each other's messages.
    private static func prefix() -> String { "v3/sinks-\(UUID().uuidString.prefix(8).lowercased())" }

    /// `timeout` defaults to 10 s, stretched for the sanitizer runs (TTN_TEST_TIME_SCALE) as every wait here is.
    private static func configuration(
        port: Int, prefix: String, password: String = Broker.networkPassword, timeout: Duration = .seconds(10) * Broker.timeScale
    ) -> MQTTSinkConfiguration {
        MQTTSinkConfiguration(
            host: "127.0.0.1", port: port, topic: "\(prefix)/{app}/{device}/{script}", username: Broker.networkUser,
            password: password, timeout: timeout
        )
    }

    private static func published(_ messages: [ReceivedMessage]) -> [String] {
        messages.map { "\($0.topic) \(String(decoding: $0.payload, as: UTF8.self))" }
    }

    @Test("each value is published to its topic, in order, and deliver returns once all were acknowledged")
    func delivered() async throws {
        let prefix = Self.prefix()
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["\(prefix)/#"])
        defer { network.close() }
        let sink = try MQTTSink(name: "ha", configuration: Self.configuration(port: try Broker.requirePort(), prefix: prefix))
        try await sink.deliver([Self.record(1), Self.record(2, device: nil), Self.record(3)])
        try await sink.deliver([Self.record(4)])
        await sink.shutdown()

        #expect(
            Self.published(await network.waitForMessages(4)) == [
                "\(prefix)/my-app/dev-1/decode.lua {\"n\":1}", "\(prefix)/my-app/unknown/decode.lua {\"n\":2}",
                "\(prefix)/my-app/dev-1/decode.lua {\"n\":3}", "\(prefix)/my-app/dev-1/decode.lua {\"n\":4}",
            ]
        )
    }

    @Test("a wrong password fails the delivery with the broker's refusal")
    func wrongPassword() async throws {
        let sink = try MQTTSink(name: "ha", configuration: Self.configuration(port: try Broker.requirePort(), prefix: Self.prefix(), password: "wrong"))
        let error = await #expect(throws: SinkError.self) { try await sink.deliver([Self.record(1)]) }
        await sink.shutdown()
        #expect(
            error?.message
                == "sink ha: publishing to 127.0.0.1:\(try Broker.requirePort()) failed: The server refused username 'ttn-network' (CONNACK 5: not authorized)."
        )
    }

    @Test("TLS with the broker's CA file, host name checked")
    func tls() async throws {
        let prefix = Self.prefix()
        let network = try NetworkSide(port: try Broker.requirePort(), watching: ["\(prefix)/#"])
        defer { network.close() }
        var configuration = Self.configuration(port: try #require(Broker.tlsPort), prefix: prefix)
        configuration.host = "localhost"
        configuration.tls = true
        let caFile: String = try #require(Broker.caFile)
        configuration.caFile = caFile
        let sink = try MQTTSink(name: "ha", configuration: configuration)
        try await sink.deliver([Self.record(1)])
        await sink.shutdown()
        #expect(Self.published(await network.waitForMessages(1)) == ["\(prefix)/my-app/dev-1/decode.lua {\"n\":1}"])
    }

    @Test("a broker down at the first delivery fails it; once the broker is up, the next delivery goes through")
    func brokerDownAtStart() async throws {
        let runDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("broker-\(UUID().uuidString)")
        defer { PrivateBroker.stop(in: runDirectory) }
        let port = try await PrivateBroker.freePort(in: runDirectory)
        let prefix = Self.prefix()
        let sink = try MQTTSink(name: "ha", configuration: Self.configuration(port: port, prefix: prefix))
        let error = await #expect(throws: SinkError.self) { try await sink.deliver([Self.record(1)]) }
        #expect(error?.message.hasPrefix("sink ha: publishing to 127.0.0.1:\(port) failed: Could not connect") == true, "\(String(describing: error))")

        _ = try await PrivateBroker.start(in: runDirectory, port: port)
        let network = try NetworkSide(port: port, watching: ["\(prefix)/#"])
        defer { network.close() }
        try await sink.deliver([Self.record(1)])
        await sink.shutdown()
        #expect(Self.published(await network.waitForMessages(1)) == ["\(prefix)/my-app/dev-1/decode.lua {\"n\":1}"])
    }

    @Test("a broker that goes away fails the delivery at the timeout; after its restart the retry arrives, once")
    func brokerGoesAway() async throws {
        let runDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("broker-\(UUID().uuidString)")
        defer { PrivateBroker.stop(in: runDirectory) }
        let port = try await PrivateBroker.start(in: runDirectory)
        let prefix = Self.prefix()
        let network = try NetworkSide(port: port, watching: ["\(prefix)/#"])
        defer { network.close() }
        // Scaled for the sanitizer runs, where a reconnect and its publish can take longer than a second.
        let timeout = Duration.seconds(1) * Broker.timeScale
        let sink = try MQTTSink(name: "ha", configuration: Self.configuration(port: port, prefix: prefix, timeout: timeout))
        try await sink.deliver([Self.record(1)])

        PrivateBroker.stop(in: runDirectory)
        let error = await #expect(throws: SinkError.self) { try await sink.deliver([Self.record(2)]) }
        #expect(
            error?.message.hasPrefix("sink ha: the broker 127.0.0.1:\(port) did not acknowledge 1 message(s) within \(timeout.timeInterval) seconds") == true,
            "\(String(describing: error))"
        )

        _ = try await PrivateBroker.start(in: runDirectory, port: port)
        #expect(await eventually(timeout: .seconds(20)) { network.connection.isConnected })
        try await sink.deliver([Self.record(2)])
        try await sink.deliver([Self.record(3)])
        await sink.shutdown()
        // The failed delivery's copy of record 2 went with the dropped connection: record 3 follows the retry directly.
        #expect(
            Self.published(await network.waitForMessages(3)) == [
                "\(prefix)/my-app/dev-1/decode.lua {\"n\":1}", "\(prefix)/my-app/dev-1/decode.lua {\"n\":2}",
                "\(prefix)/my-app/dev-1/decode.lua {\"n\":3}",
            ]
        )
    }
}
