import Foundation
import Logging
import TTNMQTT

/// `type: mqtt`: publishes each record's ``SinkRecord/value`` (the JSON itself, not the envelope) at QoS 1 to
/// another broker, on the topic that ``MQTTSinkConfiguration/topic`` makes for it.
///
/// A delivery returns once the broker acknowledged every message of the batch (PUBACK). The connection opens at
/// the first delivery, so the sink can start while the broker is down; until it is up, deliveries throw. When the
/// broker does not acknowledge a batch within ``MQTTSinkConfiguration/timeout``, the delivery throws and the
/// connection is dropped with whatever it still held, so a retry is not followed later by a second copy of the
/// batch from the old connection's queue; the next delivery connects again.
public final class MQTTSink: Sink {
    public let name: String
    public let configuration: MQTTSinkConfiguration
    public let batchLimit: Int
    private let publisher: MQTTPublisher

    /// - Parameters:
    ///   - name: the sink's name in the configuration, used in errors and logs.
    ///   - batchLimit: the most records one delivery publishes. Default 100.
    /// - Throws: ``SinkError`` for a topic with MQTT wildcards, a port out of range or an unreadable CA file.
    public init(
        name: String, configuration: MQTTSinkConfiguration, batchLimit: Int = 100, logger: Logger = Logger(label: "ttn.sinks")
    ) throws(SinkError) {
        if configuration.topic.isEmpty || configuration.topic.contains(where: { $0 == "+" || $0 == "#" }) {
            throw SinkError("sink \(name): topic '\(configuration.topic)' must be a topic name without the wildcards + and #")
        }
        if !(1...65535).contains(configuration.port) {
            throw SinkError("sink \(name): port \(configuration.port) is out of range; use 1883 (plain) or 8883 (TLS)")
        }
        if let caFile = configuration.caFile, !FileManager.default.isReadableFile(atPath: caFile) {
            throw SinkError("sink \(name): the CA file \(caFile) cannot be read; give the path of a PEM file")
        }
        self.name = name
        self.configuration = configuration
        self.batchLimit = max(1, batchLimit)
        publisher = MQTTPublisher(
            host: configuration.host, port: configuration.port, username: configuration.username, password: configuration.password,
            tls: configuration.tls, caFile: configuration.caFile, clientID: nil, connectTimeout: configuration.timeout,
            logger: logger
        )
    }

    /// The topic of `record`: the configured one with `{device}`, `{app}` and `{script}` filled in.
    public func topic(for record: SinkRecord) -> String {
        configuration.topic
            .replacingOccurrences(of: "{device}", with: record.device ?? "unknown")
            .replacingOccurrences(of: "{app}", with: record.application)
            .replacingOccurrences(of: "{script}", with: record.script)
    }

    public func deliver(_ records: [SinkRecord]) async throws(SinkError) {
        let messages = records.map { MQTTPublisher.Message(topic: topic(for: $0), payload: Array($0.value.utf8)) }
        let publisher = publisher
        let broker = "\(configuration.host):\(configuration.port)"
        do {
            guard try await withTimeLimit(configuration.timeout, { try await publisher.publish(messages) }) != nil else {
                await publisher.close()
                throw SinkError(
                    "sink \(name): the broker \(broker) did not acknowledge \(messages.count) message(s) within \(configuration.timeout); "
                        + "the connection was dropped and the next delivery connects again"
                )
            }
        } catch let error as SinkError {
            throw error
        } catch let error as TTNError {
            throw SinkError("sink \(name): publishing to \(broker) failed: \(error.message)")
        } catch {
            throw SinkError("sink \(name): publishing to \(broker) failed: \(error)")
        }
    }

    public func shutdown() async {
        await publisher.close()
    }
}
