import Foundation
import Logging
import TTNCore
import TTNSync

/// What an ``ApplicationConnection`` hands to its user. Called on the network thread, so each call must return
/// quickly and never run user code.
package protocol ApplicationConnectionReceiver: AnyObject, Sendable {
    /// The connection is up and subscribed: after the first connect and after each reconnect.
    func connectionDidSubscribe(sessionPresent: Bool)
    /// A message on an uplink topic, within the size limit, not decoded yet: ``ApplicationConnection/decode(_:)``
    /// decodes it, on this thread or later on another.
    func connectionDidReceiveUplink(_ message: ReceivedMessage)
    /// A message on the event topic of a kind the receiver asked for with ``ApplicationConnection/receiveEvents(_:)``.
    func connectionDidReceiveEvent(_ event: TTNEvent)
    /// The messages received since the last call were one burst; see ``ConnectionObserver/connectionDidFinishBurst()``.
    func connectionDidFinishBurst()
    /// The broker acknowledged a downlink sent with ``ApplicationConnection/publish(_:to:)``.
    func connectionDidAcknowledge(messageID: Int)
}

/// One user's view of the connection to one TTN application: the layer that both the seed's ``MQTTClient`` and
/// a host build on, each with its own queues.
///
/// It sorts what arrives by topic, skips what is oversized or on a foreign topic, decodes uplinks, builds events,
/// and sends checked downlinks, keeping the ids of its own until the broker acknowledged them. Users with the
/// same broker, application and key share one MQTT connection underneath (``ConnectionRegistry``).
package final class ApplicationConnection: ConnectionObserver {
    private struct State {
        /// The configuration of the last ``connect(_:receiver:)``, and its topics.
        var configuration: MQTTClient.Configuration?
        var topics: TopicLayout?
        var connection: MosquittoConnection?
        /// Weak: the receiver owns `self`.
        weak var receiver: (any ApplicationConnectionReceiver)?
        /// The event kinds this user wants (``ApplicationConnection/receiveEvents(_:)``), and their topic filters
        /// once the topics are known.
        var eventKinds = Set<TTNEvent.Kind>()
        var eventFilters = Set<String>()
        var ownMessageIDs = Set<Int>()
        var statistics = MQTTClient.Statistics()

        /// Recomputes `eventFilters` for the topics and kinds, and returns every filter this user wants: the uplinks'
        /// and the events'.
        mutating func updateFilters() -> Set<String> {
            guard let topics else { return [] }
            eventFilters = Set(eventKinds.compactMap(topics.eventFilter(for:)))
            return eventFilters.union([topics.uplinkFilter])
        }
    }

    private let logger: Logger
    private let state = Locked(State())

    package init(logger: Logger) {
        self.logger = logger
    }

    deinit {
        if let connection = state.withLock({ $0.connection }) { ConnectionRegistry.release(connection, observer: self) }
    }

    /// The MQTT connection underneath, shared with the other users of the same application.
    var connection: MosquittoConnection? { state.withLock { $0.connection } }

    /// Whether the connection is up right now.
    package var isConnected: Bool { state.withLock { $0.connection?.isConnected ?? false } }

    /// Whether ``connect(_:receiver:)`` succeeded and ``disconnect()`` has not been called since.
    package var hasConnection: Bool { connection != nil }

    /// What arrived and was skipped; `dropped` is the user's to fill in.
    package var statistics: MQTTClient.Statistics { state.withLock { $0.statistics } }

    /// Connects with `configuration` (or joins this process's connection to the same application) and subscribes
    /// to the uplinks, and to the event topics of the kinds given to ``receiveEvents(_:)``. Blocks until the server
    /// accepted the subscription (when it opened the connection). Does nothing while connected.
    /// - Returns: whether this call opened the MQTT connection (false: it joined one, or was connected already).
    /// - Throws: ``TTNError`` when the first connection fails: wrong key, unknown host, refused, TLS, timeout.
    @discardableResult
    package func connect(
        _ configuration: MQTTClient.Configuration, receiver: any ApplicationConnectionReceiver
    ) throws(TTNError) -> Bool {
        try configuration.validate()
        let topics = TopicLayout(username: configuration.username, legacyV2: configuration.legacyV2)
        // Set before the connection exists, so that the first message already finds them.
        let filters = state.withLock { state -> Set<String>? in
            guard state.connection == nil else { return nil }
            state.receiver = receiver
            state.configuration = configuration
            state.topics = topics
            return state.updateFilters()
        }
        guard let filters else { return false }
        let (connection, opened) = try ConnectionRegistry.acquire(configuration: configuration, filters: filters, observer: self)
        let connectedMeanwhile = state.withLock { state in
            if state.connection != nil { return true }
            state.connection = connection
            // `receiveEvents(_:)` may have changed the kinds meanwhile, without a connection to tell.
            let current = state.updateFilters()
            if current != filters { connection.setFilters(current, for: self) }
            return false
        }
        if connectedMeanwhile {
            ConnectionRegistry.release(connection, observer: self)
            return false
        }
        logger.info(
            "Connected",
            metadata: [
                "mqtt.server": "\(configuration.server)", "mqtt.username": "\(configuration.username)",
                "mqtt.tls": "\(configuration.usesTLS)",
            ]
        )
        return opened
    }

    /// Wants exactly the events of `kinds` from now on (empty: none). Subscribes to the topics of kinds newly wanted
    /// and unsubscribes from those of kinds no longer wanted, unless another user of the shared connection wants
    /// them: now if connected (without waiting for the broker), on ``connect(_:receiver:)``, and after every
    /// reconnect. Only events of these kinds reach the receiver, whatever other users want. Kinds without an MQTT
    /// topic (``TTNEvent/Kind/downlinkLost``) subscribe to nothing; legacy v2 has one topic for all its events, so
    /// any kind with a topic receives them all.
    package func receiveEvents(_ kinds: Set<TTNEvent.Kind>) {
        state.withLock { state in
            state.eventKinds = kinds
            let filters = state.updateFilters()
            // Under the lock, so that the connection ends with the filters of the last call.
            state.connection?.setFilters(filters, for: self)
        }
    }

    /// Waits (up to the configuration's `publishFlushTimeout`) until the broker acknowledged this user's downlinks,
    /// then leaves the connection, which closes with its last user. Logs the downlinks left unacknowledged.
    /// - Returns: whether there was a connection to leave.
    @discardableResult
    package func disconnect() -> Bool {
        guard let timeout = state.withLock({ $0.configuration?.publishFlushTimeout }) else { return false }
        // While the connection is down there is nothing to wait for: what it queued is lost, and the log says so.
        let unacknowledged = isConnected ? waitForAcknowledgements(timeout: timeout) : state.withLock { $0.ownMessageIDs.count }
        if unacknowledged > 0 {
            logger.warning(
                "Disconnecting with downlinks the broker has not acknowledged", metadata: ["unacknowledged": "\(unacknowledged)"]
            )
        }
        guard let connection = state.withLock({ state in defer { state.connection = nil }; return state.connection }) else {
            return false
        }
        ConnectionRegistry.release(connection, observer: self)
        logger.info("Disconnected")
        return true
    }

    /// Waits until every downlink sent here was acknowledged, or `timeout` passed; returns how many were not.
    private func waitForAcknowledgements(timeout: Duration) -> Int {
        let deadline = ContinuousClock.now + timeout
        while true {
            let pending = state.withLock { $0.ownMessageIDs.count }
            if pending == 0 || ContinuousClock.now >= deadline { return pending }
            Thread.sleep(forTimeInterval: 0.005)
        }
    }

    // MARK: Downlinks

    /// Waits until the broker acknowledged downlink `messageID` of ``publish(_:to:)``, or `timeout` passed; false
    /// then. A downlink not acknowledged when the connection drops is sent again after the reconnect, and waited for.
    package func waitForAcknowledgement(of messageID: Int, timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while state.withLock({ $0.ownMessageIDs.contains(messageID) }) {
            if ContinuousClock.now >= deadline { return false }
            Thread.sleep(forTimeInterval: 0.001)
        }
        return true
    }

    /// Sends a checked downlink request to `deviceID` at QoS 1; while the connection is down it is kept and sent
    /// after the reconnect.
    /// - Returns: the MQTT message id, which ``ApplicationConnectionReceiver/connectionDidAcknowledge(messageID:)``
    ///   receives once the broker acknowledged it.
    /// - Throws: ``TTNError/Kind/invalidDownlink`` for a malformed device id, ``TTNError/Kind/notConnected``.
    package func publish(_ request: DownlinkRequest, to deviceID: String) throws(TTNError) -> Int {
        try Identifier.checkDownlinkDevice(deviceID)
        let connection = state.withLock { $0.connection }
        guard let connection else { throw TTNError.notConnected }
        let topic = connection.topics.downlinkTopic(deviceID: deviceID, queue: request.queue)
        let body = connection.topics.legacyV2 ? try request.legacyV2Body() : request.body
        let messageID = try state.withLock { state throws(TTNError) in
            // Under the lock, so the acknowledgement cannot arrive before the id is recorded.
            let messageID = try connection.publish(topic: topic, payload: Array(body.utf8))
            state.ownMessageIDs.insert(messageID)
            return messageID
        }
        logger.debug("Downlink queued", metadata: ["mqtt.topic": "\(topic)", "mqtt.mid": "\(messageID)"])
        return messageID
    }

    // MARK: Receiving

    /// Decodes an uplink message, counting it; a malformed one is counted, logged and nil.
    package func decode(_ message: ReceivedMessage) -> Uplink? {
        do {
            let legacyV2 = state.withLock { $0.configuration?.legacyV2 ?? false }
            let uplink = try Uplink(json: message.payload, topic: message.topic, legacyV2: legacyV2)
            state.withLock { $0.statistics.uplinks += 1 }
            return uplink
        } catch {
            recordSkip(\.malformed, "Malformed uplink skipped", ["mqtt.topic": "\(message.topic)", "error": "\(error.message)"])
            return nil
        }
    }

    private var receiver: (any ApplicationConnectionReceiver)? { state.withLock { $0.receiver } }

    package func connectionDidSubscribe(sessionPresent: Bool) {
        receiver?.connectionDidSubscribe(sessionPresent: sessionPresent)
    }

    package func connectionDidPublish(messageID: Int) {
        let isOwn = state.withLock { $0.ownMessageIDs.remove(messageID) != nil }
        if isOwn { receiver?.connectionDidAcknowledge(messageID: messageID) }
    }

    /// Runs on the network thread: sorts the message by topic and hands it on.
    package func connectionDidReceive(_ message: ReceivedMessage) {
        let (topics, sizeLimit, eventFilters, receiver) = state.withLock { state in
            (state.topics, state.configuration?.maximumMessageSize ?? .max, state.eventFilters, state.receiver)
        }
        guard message.payload.count <= sizeLimit else {
            recordSkip(\.oversized, "Oversized message skipped", ["mqtt.topic": "\(message.topic)", "bytes": "\(message.payload.count)"])
            return
        }
        guard let topics, let (deviceID, suffix) = topics.classify(message.topic) else {
            state.withLock { $0.statistics.unexpectedTopics += 1 }
            logger.debug("Message on an unexpected topic skipped", metadata: ["mqtt.topic": "\(message.topic)"])
            return
        }
        guard suffix == "up" else {
            // Another user of the connection may have subscribed to kinds this one does not want.
            let kind = TTNEvent.Kind(rawValue: String(suffix))
            if !eventFilters.isEmpty, let filter = topics.eventFilter(for: kind), eventFilters.contains(filter) {
                let json = String(decoding: message.payload, as: UTF8.self)
                receiver?.connectionDidReceiveEvent(TTNEvent(kind: kind, deviceID: deviceID, topic: message.topic, json: json))
            }
            return
        }
        receiver?.connectionDidReceiveUplink(message)
    }

    package func connectionDidFinishBurst() {
        receiver?.connectionDidFinishBurst()
    }

    /// Counts a skipped message under `counter` and logs why, with the running total.
    private func recordSkip(_ counter: WritableKeyPath<MQTTClient.Statistics, Int>, _ reason: Logger.Message, _ metadata: Logger.Metadata) {
        let total = state.withLock { state in
            state.statistics[keyPath: counter] += 1
            return state.statistics[keyPath: counter]
        }
        var metadata = metadata
        metadata["skipped.total"] = "\(total)"
        logger.warning(reason, metadata: metadata)
    }
}
