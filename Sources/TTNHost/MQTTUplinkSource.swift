import Logging
import TTNCore
import TTNMQTT
import TTNSync

/// The TTN MQTT connection as a host's source of uplinks and path for downlinks.
///
/// Uplinks are checked on the network thread as they arrive and handed to the receiver there, which queues
/// them for the handlers; so are the events of the kinds asked for with ``receiveEvents(_:)``. It shares the
/// connection layer with ``MQTTClient``, and a client for the same application in the same process shares the MQTT
/// connection, but neither drives the other's queues nor sees the events only the other asked for.
public final class MQTTUplinkSource: UplinkSource, DownlinkPath, ApplicationConnectionReceiver {
    /// The application and server to connect to.
    public let configuration: MQTTClient.Configuration
    /// This user's view of the connection; internal for tests, which look at the shared MQTT connection under it.
    let link: ApplicationConnection
    /// Weak: the host that receives owns this source.
    private let receiver = Locked<WeakReceiver>(WeakReceiver())
    /// Set once ``start(delivering:)`` connected: a subscription after it is a reconnect.
    private let started = Locked(false)
    private let reconnects = Locked(0)

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
        started.withLock { $0 = false }
        try link.connect(configuration, receiver: self)
        started.withLock { $0 = true }
    }

    public func stop() { link.disconnect() }

    /// Subscribes to the event topics of `kinds` (and unsubscribes from the others), now if running, and on every
    /// start and reconnect; the receiver gets only events of these kinds.
    public func receiveEvents(_ kinds: Set<TTNEvent.Kind>) { link.receiveEvents(kinds) }

    public var isRunning: Bool { link.isConnected }
    public var peerName: String { "the MQTT broker" }

    public var statistics: UplinkSourceStatistics {
        let statistics = link.statistics
        return UplinkSourceStatistics(
            uplinks: statistics.uplinks, malformed: statistics.malformed, oversized: statistics.oversized,
            unexpectedTopics: statistics.unexpectedTopics, reconnects: reconnects.withLock { $0 }
        )
    }

    /// Nothing listens yet, no answer yet, the name does not resolve yet: a broker coming up later fixes these.
    public func isTransient(_ error: TTNError) -> Bool {
        [TTNError.Kind.unreachable, .timeout, .unknownHost].contains(error.kind)
    }

    public func send(_ downlink: String, to deviceID: String, queue: DownlinkQueue?, correlationID: String?) throws(TTNError) {
        _ = try publish(downlink, to: deviceID, queue: queue, correlationID: correlationID)
    }

    /// Sends as ``send(_:to:queue:correlationID:)`` does, for a caller that must know when the broker has the
    /// downlink (a buffered one dies with the process).
    /// - Returns: the MQTT message id, for ``waitForAcknowledgement(of:timeout:)``.
    public func sendForAcknowledgement(
        _ downlink: String, to deviceID: String, queue: DownlinkQueue?, correlationID: String?
    ) throws(TTNError) -> Int {
        try publish(downlink, to: deviceID, queue: queue, correlationID: correlationID)
    }

    /// Waits until the broker acknowledged (PUBACK) the downlink of ``sendForAcknowledgement(_:to:queue:correlationID:)``
    /// with `messageID`, or `timeout` passed; false then. One not acknowledged when the connection drops is sent again
    /// after the reconnect.
    public func waitForAcknowledgement(of messageID: Int, timeout: Duration) -> Bool {
        link.waitForAcknowledgement(of: messageID, timeout: timeout)
    }

    private func publish(_ downlink: String, to deviceID: String, queue: DownlinkQueue?, correlationID: String?) throws(TTNError) -> Int {
        var request = try DownlinkRequest.parse(downlink, queue: queue)
        if let correlationID { request = try request.addingCorrelationID(correlationID) }
        return try link.publish(request, to: deviceID)
    }

    // MARK: The connection's calls, on its network thread

    package func connectionDidReceiveUplink(_ message: ReceivedMessage) {
        guard let uplink = link.decode(message) else { return }
        receiver.withLock { $0.value }?.receive(uplink)
    }

    package func connectionDidFinishBurst() {
        receiver.withLock { $0.value }?.endOfBurst()
    }

    package func connectionDidSubscribe(sessionPresent: Bool) {
        guard started.withLock({ $0 }) else { return }
        reconnects.withLock { $0 += 1 }
        receiver.withLock { $0.value }?.sourceDidReconnect()
    }

    package func connectionDidReceiveEvent(_ event: TTNEvent) {
        receiver.withLock { $0.value }?.receive(event)
    }

    package func connectionDidAcknowledge(messageID: Int) {}
}
