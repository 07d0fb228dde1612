@_exported import TTNCore
import Dispatch
import Foundation
import Logging
import TTNSync

/// A client for one The Things Stack (TTN v3) application, with the API of the Python `ttnmqtt` package.
///
/// ```swift
/// let client = MQTTClient("my-app", "70B3D57ED0000000", "NNSXS.XXXX...", "my-device")
/// client.setMessageHandler { print(client.getLastMessage()?.decodedPayload ?? "no payload") }
/// try client.connect()
/// client.startBackground()
/// try client.publish(#"{"port": 1, "confirmed": false, "payload_raw": "AA=="}"#)
/// ```
///
/// The network loop runs on its own thread from `connect()` on, so keepalive and reconnects never depend on
/// your code. Message handlers and behaviours run in order on a separate serial queue, never on the network
/// thread; they start running when you call ``start()`` or ``startBackground()``, as the seed's loop does.
/// Several clients for the same broker, application and key in one process share one connection.
public final class MQTTClient: Sendable {
    /// `(client, userdata, flags, rc)`, as paho's `on_connect`.
    public typealias ConnectBehavior = @Sendable (MQTTClient, (any Sendable)?, ConnectFlags, Int) -> Void
    /// `(client, userdata, message)`, as paho's `on_message`.
    public typealias MessageBehavior = @Sendable (MQTTClient, (any Sendable)?, MQTTMessage) -> Void
    /// `(client, userdata, mid)`, as paho's `on_publish`.
    public typealias PublishBehavior = @Sendable (MQTTClient, (any Sendable)?, Int) -> Void

    struct State {
        var configuration: Configuration
        var messageHandler: (@Sendable () -> Void)?
        var connectBehavior: ConnectBehavior?
        var messageBehavior: MessageBehavior?
        var publishBehavior: PublishBehavior?
        var userData: (any Sendable)?
        var uplinkStreams: [UUID: AsyncStream<Uplink>.Continuation] = [:]
        var eventStreams: [UUID: AsyncStream<TTNEvent>.Continuation] = [:]
        var blockedStarts: [DispatchSemaphore] = []
    }

    /// Counters of what the client received and skipped.
    public struct Statistics: Sendable, Hashable {
        /// Uplinks received and decoded.
        public var uplinks = 0
        /// Messages skipped because their JSON was malformed or not an uplink.
        public var malformed = 0
        /// Messages dropped because the delivery queue was full.
        public var dropped = 0
        /// Messages on topics that are not this application's device topics.
        public var unexpectedTopics = 0
        /// Messages skipped because they were larger than ``Configuration/maximumMessageSize``.
        public var oversized = 0
    }

    /// What the serial delivery queue hands to the user's callbacks, in arrival order.
    enum Delivery: Sendable {
        case connected(ConnectFlags)
        case message(ReceivedMessage, Uplink?)
        case published(Int)
    }

    let state: Locked<State>
    let logger: Logger
    let delivery: DeliveryQueue<Delivery>
    /// The uplinks the default message behaviour kept.
    let history: UplinkHistory
    /// The connection layer: topics, decoding, checked downlinks and their acknowledgements.
    let link: ApplicationConnection

    /// A client for `configuration`. Nothing happens on the network until ``connect()``.
    public init(configuration: Configuration) {
        var logger = configuration.logger
        logger[metadataKey: "ttn.app_id"] = "\(configuration.applicationID)"
        self.logger = logger
        self.state = Locked(State(configuration: configuration))
        self.history = UplinkHistory(limit: configuration.historyLimit)
        self.link = ApplicationConnection(logger: logger)
        let dropLogger = logger
        let weakSelf = WeakClient()
        self.delivery = DeliveryQueue(
            label: "ttn.mqtt.delivery.\(configuration.applicationID)", limit: configuration.deliveryQueueLimit,
            paused: true,
            onDrop: { _, total in
                if total == 1 || total.isMultiple(of: 1000) {
                    dropLogger.warning(
                        "Message handler too slow: oldest waiting message dropped",
                        metadata: ["dropped.total": "\(total)"]
                    )
                }
            },
            handler: { delivery in weakSelf.client?.deliver(delivery) }
        )
        weakSelf.client = self
    }

    /// The seed's constructor: `mqtt(APPID, APPEUI, PSW, DEVID)`.
    ///
    /// - Parameters:
    ///   - appID: the application id from the TTN console.
    ///   - appEUI: the seed's application EUI; The Things Stack v3 does not need it, it is kept for reference.
    ///   - accessKey: an API key with the rights to read traffic and write downlinks.
    ///   - deviceID: the device that ``publish(_:)`` sends to; optional, see ``setDeviceID(_:)``.
    public convenience init(_ appID: String, _ appEUI: String, _ accessKey: String, _ deviceID: String? = nil) {
        var configuration = Configuration(applicationID: appID, apiKey: accessKey, deviceID: deviceID)
        configuration.applicationEUI = appEUI
        self.init(configuration: configuration)
    }

    /// The configuration, including changes made by ``setDeviceID(_:)`` and ``customConnect(_:_:)``.
    public var configuration: Configuration { state.withLock { $0.configuration } }

    /// Whether the client has a connection that is up right now.
    public var isConnected: Bool { link.isConnected }

    /// What was received and skipped so far.
    public var statistics: Statistics {
        var statistics = link.statistics
        statistics.dropped = delivery.droppedCount
        return statistics
    }

    // MARK: Connecting

    /// Connects to the configured server (default `eu1.cloud.thethings.network:8883`, TLS) and subscribes to the
    /// application's uplinks. Blocks until the server accepted the subscription.
    ///
    /// A second client for the same broker, application and key uses the existing connection.
    /// - Throws: ``TTNError`` when the first connection fails: wrong key, unknown host, refused, TLS, timeout.
    public func connect() throws(TTNError) {
        let configuration = state.withLock { $0.configuration }
        // As in the seed, a client that joins an existing connection sees no connection message.
        if try link.connect(configuration, receiver: self) {
            delivery.enqueue(.connected(ConnectFlags(sessionPresent: false)))
        }
    }

    /// Disconnects cleanly: it waits (up to ``Configuration/publishFlushTimeout``) until the broker acknowledged
    /// what this client published, then sends MQTT DISCONNECT. ``start()`` returns.
    ///
    /// Messages already received are still handed to the handler. A shared connection closes when its last
    /// client disconnects. Downlinks still unacknowledged at the timeout, or queued while the connection is down
    /// (they are not sent), are counted in the log.
    public func disconnect() {
        link.disconnect()
        state.withLock { state in
            defer { state.blockedStarts.removeAll() }
            return state.blockedStarts
        }.forEach { $0.signal() }
    }

    // MARK: Publishing

    /// Sends downlink JSON to the current device, as the seed's `publish(message)` does.
    ///
    /// The device is the one set with ``setDeviceID(_:)`` or the constructor; inside a message handler without
    /// one, it is the device of the uplink that triggered the handler.
    ///
    /// Takes the seed's v2 form `{"port":1,"confirmed":false,"payload_raw":"AA=="}`, translated to v3 and sent to
    /// `down/replace` (v2's default schedule; `"schedule":"last"` goes to `down/push`), or the v3 form
    /// `{"downlinks":[...]}`, sent unchanged to `down/push`.
    ///
    /// While the connection is down and reconnecting, the downlink is kept (QoS 1) and sent after the reconnect.
    /// - Returns: the MQTT message id, which the publish behaviour receives when the broker acknowledged it.
    /// - Throws: ``TTNError/Kind/invalidDownlink`` for a downlink TTN would drop silently,
    ///   ``TTNError/Kind/noDevice`` without a device, ``TTNError/Kind/notConnected`` before `connect()`.
    @discardableResult
    public func publish(_ message: String) throws(TTNError) -> Int {
        try publish(message, to: nil, queue: nil)
    }

    /// Sends downlink JSON (v2 or v3 form, see ``publish(_:)``) to `deviceID`, or to the current device when nil.
    /// `queue` overrides the push/replace choice made from the form.
    @discardableResult
    public func publish(_ message: String, to deviceID: String?, queue: DownlinkQueue? = nil) throws(TTNError) -> Int {
        let request = try DownlinkRequest.parse(message, queue: queue)
        return try send(request, to: deviceID)
    }

    /// Sends typed downlinks to `deviceID` (or the current device), appended to its queue or replacing it.
    @discardableResult
    public func publish(_ downlinks: [Downlink], to deviceID: String? = nil, queue: DownlinkQueue = .push) throws(TTNError) -> Int {
        for downlink in downlinks { try downlink.validate() }
        if downlinks.isEmpty && queue == .push {
            throw .invalidDownlink("an empty downlinks list on down/push does nothing", hint: "Use queue .replace to clear the queue.")
        }
        let request = DownlinkRequest(body: DownlinkRequest.encode(downlinks), queue: queue, downlinks: downlinks)
        return try send(request, to: deviceID)
    }

    /// Sends one typed downlink to `deviceID` (or the current device).
    @discardableResult
    public func publish(_ downlink: Downlink, to deviceID: String? = nil, queue: DownlinkQueue = .push) throws(TTNError) -> Int {
        try publish([downlink], to: deviceID, queue: queue)
    }

    private func send(_ request: DownlinkRequest, to explicitDevice: String?) throws(TTNError) -> Int {
        let configuredDevice = state.withLock { $0.configuration.deviceID }
        let triggering = Self.invocation.flatMap { $0.client == ObjectIdentifier(self) ? $0.uplink.deviceID : nil }
        guard let device = explicitDevice ?? configuredDevice ?? triggering, !device.isEmpty else {
            throw TTNError.noDevice
        }
        return try link.publish(request, to: device)
    }
}

/// Lets the delivery queue, created in `init` before `self` exists, reach the client without retaining it.
///
/// `@unchecked Sendable` is safe: `client` is written once in `MQTTClient.init`, before the queue can run
/// anything (it starts paused and nothing is enqueued before `connect()`), and only read afterwards.
final class WeakClient: @unchecked Sendable {
    weak var client: MQTTClient?
}

/// The `flags` argument of the connect behaviour (paho passes `{"session present": 0}`).
public struct ConnectFlags: Sendable, Hashable {
    /// Always false on TTN, which keeps no sessions.
    public var sessionPresent: Bool
}

/// A raw MQTT message, as paho's `MQTTMessage`, for a replaced message behaviour.
public struct MQTTMessage: Sendable, Hashable {
    public var topic: String
    public var payload: [UInt8]
    public var qos: Int
    public var retain: Bool
    public var mid: Int

    /// The payload as UTF-8 text.
    public var payloadString: String { String(decoding: payload, as: UTF8.self) }
}
