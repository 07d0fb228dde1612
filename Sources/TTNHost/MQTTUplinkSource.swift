import Logging
import TTNCore
import TTNMQTT
import TTNSync

/// The TTN MQTT connection as a host's source of uplinks and path for downlinks.
///
/// Uplinks are checked on the network thread as they arrive and handed to the receiver there, which queues
/// them for the handlers. It shares the connection layer with ``MQTTClient``, and a client for the same
/// application in the same process shares the MQTT connection, but neither drives the other's queues.
public final class MQTTUplinkSource: UplinkSource, DownlinkPath, ApplicationConnectionReceiver {
    /// The application and server to connect to.
    public let configuration: MQTTClient.Configuration
    private let link: ApplicationConnection
    /// Weak: the host that receives owns this source.
    private let receiver = Locked<WeakReceiver>(WeakReceiver())

    private struct WeakReceiver {
        weak var value: (any UplinkReceiver)?
    }

    public init(configuration: MQTTClient.Configuration) {
        self.configuration = configuration
        var logger = configuration.logger
        logger[metadataKey: "ttn.app_id"] = "\(configuration.applicationID)"
        self.link = ApplicationConnection(logger: logger)
    }

    public func start(delivering receiver: any UplinkReceiver) throws(TTNError) {
        self.receiver.withLock { $0.value = receiver }
        try link.connect(configuration, receiver: self)
    }

    public func stop() { link.disconnect() }

    public var isRunning: Bool { link.isConnected }

    public var statistics: UplinkSourceStatistics {
        let statistics = link.statistics
        return UplinkSourceStatistics(
            uplinks: statistics.uplinks, malformed: statistics.malformed, oversized: statistics.oversized,
            unexpectedTopics: statistics.unexpectedTopics
        )
    }

    /// Nothing listens yet, no answer yet, the name does not resolve yet: a broker coming up later fixes these.
    public func isTransient(_ error: TTNError) -> Bool {
        [TTNError.Kind.unreachable, .timeout, .unknownHost].contains(error.kind)
    }

    public func send(_ downlink: String, to deviceID: String, queue: DownlinkQueue?) throws(TTNError) -> Int {
        try link.publish(DownlinkRequest.parse(downlink, queue: queue), to: deviceID)
    }

    // MARK: The connection's calls, on its network thread

    package func connectionDidReceiveUplink(_ message: ReceivedMessage) {
        guard let uplink = link.decode(message) else { return }
        receiver.withLock { $0.value }?.receive(uplink)
    }

    package func connectionDidFinishBurst() {
        receiver.withLock { $0.value }?.endOfBurst()
    }

    package func connectionDidSubscribe(sessionPresent: Bool) {}

    package func connectionDidReceiveEvent(_ event: TTNEvent) {}

    package func connectionDidAcknowledge(messageID: Int) {}
}
