import Foundation
import TestSupport
import Testing
import TTNCore

@testable import TTNHost
@testable import TTNMQTT

/// What a source handed its receiver, in order.
enum Arrival: Sendable, Equatable {
    case uplink(device: String)
    case event(TTNEvent.Kind, device: String)
}

/// A host's stand-in: records every uplink and event a source delivers.
final class RecordingReceiver: UplinkReceiver {
    let arrivals = Recorder<Arrival>()
    func receive(_ uplink: Uplink) { arrivals.append(.uplink(device: uplink.deviceID ?? "?")) }
    func receive(_ event: TTNEvent) { arrivals.append(.event(event.kind, device: event.deviceID)) }
    func endOfBurst() {}
}

/// Sees every message the MQTT connection under a source receives, before any user sorts them out: what the
/// connection is subscribed to, not only what a user was handed.
final class WireSpy: ConnectionObserver {
    let topics = Recorder<String>()
    func connectionDidReceive(_ message: ReceivedMessage) { topics.append(message.topic) }
    func connectionDidSubscribe(sessionPresent: Bool) {}
    func connectionDidFinishBurst() {}
    func connectionDidPublish(messageID: Int) {}
}

@Suite("Event topics subscribed per kind, only while wanted", .enabled(if: Broker.shouldRun), .timeLimit(.minutes(2)))
struct EventSubscriptionTests {
    static func configuration(_ application: String, port: Int) -> MQTTClient.Configuration {
        var configuration = MQTTClient.Configuration(applicationID: application, apiKey: Broker.apiKey)
        configuration.server = .init(host: "127.0.0.1", port: port)
        return configuration
    }

    /// A source of `application` wanting `kinds`, started with a recording receiver, and a spy on its connection.
    /// The source opens the connection, so it returns once the broker granted the subscriptions.
    static func startSource(
        _ application: String, port: Int, wanting kinds: Set<TTNEvent.Kind>
    ) throws -> (MQTTUplinkSource, RecordingReceiver, WireSpy) {
        let receiver = RecordingReceiver(), spy = WireSpy()
        let source = MQTTUplinkSource(configuration: configuration(application, port: port))
        source.receiveEvents(kinds)
        try source.start(delivering: receiver)
        guard let connection = source.link.connection else {
            source.stop()
            throw TTNError.notConnected
        }
        connection.addObserver(spy)
        return (source, receiver, spy)
    }

    /// Removes the spy and stops the source of ``startSource(_:port:wanting:)``.
    static func stop(_ source: MQTTUplinkSource, _ spy: WireSpy) {
        if let connection = source.link.connection { _ = connection.removeObserver(spy) }
        source.stop()
    }

    /// Publishes `kind`'s fixture on `device`'s event topic, as TTN would.
    static func publish(_ kind: TTNEvent.Kind, device: String, application: String, from network: NetworkSide) throws {
        let fixtures: [TTNEvent.Kind: String] = [.downlinkAck: "v3-down-ack.json", .downlinkNack: "v3-down-nack.json"]
        let fixture = fixtures[kind] ?? "v3-down-queued.json"
        try network.publish(topic: "v3/\(application)@ttn/devices/\(device)/\(kind.rawValue)", payload: Fixtures.bytes(fixture))
    }

    /// Sends a downlink through `source` and waits until the network side saw it. The broker handles a connection's
    /// packets in order, so by then it has handled every (un)subscription the source's connection sent before.
    /// `network` must watch the application's `down/push` topics.
    static func barrier(_ source: MQTTUplinkSource, _ network: NetworkSide, tag: String) async throws {
        let downlink = #"{"downlinks":[{"f_port":1,"frm_payload":"AQ==","correlation_ids":["\#(tag)"]}]}"#
        try source.send(downlink, to: "barrier", queue: nil, correlationID: nil)
        let seen = await eventually { network.messages.contains { String(decoding: $0.payload, as: UTF8.self).contains(tag) } }
        try #require(seen, "the barrier downlink \(tag) reached the network side")
    }

    @Test("wanting down/ack only: a down/nack published before a down/ack is not even received, the ack is")
    func oneKindOnly() async throws {
        let app = Broker.application(), port = try Broker.requirePort()
        let network = try NetworkSide(port: port)
        defer { network.close() }
        let (source, receiver, spy) = try Self.startSource(app, port: port, wanting: [.downlinkAck])
        defer { Self.stop(source, spy) }

        try Self.publish(.downlinkNack, device: "dev1", application: app, from: network)
        try Self.publish(.downlinkAck, device: "dev1", application: app, from: network)
        // Both come from one publisher connection, in order: a nack that came at all would come before the ack.
        // The spy and the source hear each message one after the other: wait for both.
        #expect(await eventually { receiver.arrivals.count >= 1 && spy.topics.count >= 1 })
        #expect(receiver.arrivals.all == [.event(.downlinkAck, device: "dev1")])
        #expect(spy.topics.all == ["v3/\(app)@ttn/devices/dev1/down/ack"], "down/nack is not subscribed at all")
    }

    @Test("after receiveEvents([]) the event topic is unsubscribed: an uplink published after a down/ack arrives alone")
    func noKinds() async throws {
        let app = Broker.application(), port = try Broker.requirePort()
        let network = try NetworkSide(port: port, watching: ["v3/\(app)@ttn/devices/+/down/push"])
        defer { network.close() }
        let (source, receiver, spy) = try Self.startSource(app, port: port, wanting: [.downlinkAck])
        defer { Self.stop(source, spy) }

        try Self.publish(.downlinkAck, device: "dev1", application: app, from: network)
        #expect(await eventually { receiver.arrivals.count == 1 }, "wanted, the ack arrives")

        source.receiveEvents([])
        try await Self.barrier(source, network, tag: "unsubscribed")
        let wireBefore = spy.topics.count
        try Self.publish(.downlinkAck, device: "dev2", application: app, from: network)
        try network.publishUplink(application: app, device: "dev2", json: uplinkJSON(device: "dev2", counter: 1))
        #expect(await eventually { receiver.arrivals.count >= 2 && spy.topics.count > wireBefore })
        #expect(receiver.arrivals.all == [.event(.downlinkAck, device: "dev1"), .uplink(device: "dev2")])
        let wireAfter = Array(spy.topics.all.dropFirst(wireBefore))
        #expect(wireAfter == ["v3/\(app)@ttn/devices/dev2/up"], "the connection no longer receives down/ack")
    }

    @Test("the wanted kinds are subscribed again after the broker restarts, including a change made while it was down")
    func afterRestart() async throws {
        let runDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("broker-\(UUID().uuidString)")
        let port = try await PrivateBroker.start(in: runDirectory)
        defer { PrivateBroker.stop(in: runDirectory) }
        var configuration = Self.configuration("my-app", port: port)
        configuration.minimumReconnectDelay = .milliseconds(50)
        configuration.maximumReconnectDelay = .milliseconds(400)
        let receiver = RecordingReceiver()
        let source = MQTTUplinkSource(configuration: configuration)
        source.receiveEvents([.downlinkAck, .downlinkQueued])
        try source.start(delivering: receiver)
        defer { source.stop() }

        PrivateBroker.stop(in: runDirectory)
        #expect(await eventually { !source.isRunning })
        source.receiveEvents([.downlinkAck, .downlinkNack])
        _ = try await PrivateBroker.start(in: runDirectory, port: port)
        // Running again means the reconnect's subscriptions were granted.
        #expect(await eventually(timeout: .seconds(20)) { source.isRunning })

        let network = try NetworkSide(port: port)
        defer { network.close() }
        for kind in [TTNEvent.Kind.downlinkQueued, .downlinkNack, .downlinkAck] {
            try Self.publish(kind, device: "dev1", application: "my-app", from: network)
        }
        #expect(await eventually { receiver.arrivals.count >= 2 })
        #expect(receiver.arrivals.all == [.event(.downlinkNack, device: "dev1"), .event(.downlinkAck, device: "dev1")])
    }

    @Test("two users of one connection: each sees the kinds it asked for; the source giving up down/ack leaves it to the client")
    func sharedConnection() async throws {
        let app = Broker.application(), port = try Broker.requirePort()
        let network = try NetworkSide(port: port, watching: ["v3/\(app)@ttn/devices/+/down/push"])
        defer { network.close() }
        let client = MQTTClient(configuration: Self.configuration(app, port: port))
        try await client.connect()
        defer { client.disconnect() }
        let clientEvents = Recorder<Arrival>()
        let events = client.events
        let collector = Task { for await event in events { clientEvents.append(.event(event.kind, device: event.deviceID)) } }
        defer { collector.cancel() }

        let receiver = RecordingReceiver()
        let source = MQTTUplinkSource(configuration: Self.configuration(app, port: port))
        source.receiveEvents([.downlinkAck])
        try source.start(delivering: receiver)
        defer { source.stop() }
        let connection = try #require(source.link.connection)
        #expect(connection === client.link.connection, "one MQTT connection for both")
        // The client's subscriptions went out on the same connection before the barrier.
        try await Self.barrier(source, network, tag: "both-subscribed")

        try Self.publish(.downlinkNack, device: "dev1", application: app, from: network)
        try Self.publish(.downlinkAck, device: "dev1", application: app, from: network)
        #expect(await eventually { clientEvents.count >= 2 && receiver.arrivals.count >= 1 })
        #expect(clientEvents.all == [.event(.downlinkNack, device: "dev1"), .event(.downlinkAck, device: "dev1")])
        #expect(receiver.arrivals.all == [.event(.downlinkAck, device: "dev1")], "the client's nack is not the source's")

        source.receiveEvents([])
        try await Self.barrier(source, network, tag: "source-gave-up")
        try Self.publish(.downlinkAck, device: "dev2", application: app, from: network)
        try network.publishUplink(application: app, device: "dev2", json: uplinkJSON(device: "dev2", counter: 1))
        #expect(await eventually { clientEvents.count >= 3 && receiver.arrivals.count >= 2 })
        let expected: [Arrival] = [
            .event(.downlinkNack, device: "dev1"), .event(.downlinkAck, device: "dev1"), .event(.downlinkAck, device: "dev2"),
        ]
        #expect(clientEvents.all == expected, "the client still receives down/ack")
        #expect(receiver.arrivals.all == [.event(.downlinkAck, device: "dev1"), .uplink(device: "dev2")])
    }
}
