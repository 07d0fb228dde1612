import TTNCore
import Dispatch
import Foundation
import Logging

/// The calls of the seed's documentation (Python `ttnmqtt`), under their own names and with their meaning.
extension MQTTClient {
    /// Sets the device that ``publish(_:)`` sends to.
    public func setDeviceID(_ deviceID: String) {
        state.withLock { $0.configuration.deviceID = deviceID }
    }

    /// Connects to a TTN cluster or host and port, then subscribes, like ``connect()``.
    ///
    /// A bare cluster (`eu1`, `nam1`, `au1`) becomes `<cluster>.cloud.thethings.network`; a name with a dot,
    /// `localhost` or an IP address is used as it is. Port 8883 means TLS, 1883 (the default, as in the seed)
    /// plain TCP. The seed's v2 regions (`eu`, `us-west`, `asia-se`, `brazil`) are refused with the v3 cluster
    /// to use instead.
    /// - Throws: ``TTNError``, as ``connect()`` does, or ``TTNError/Kind/invalidConfiguration`` for the region.
    public func customConnect(_ region: String, _ port: Int = 1883) throws(TTNError) {
        let server = try Server.region(region, port: port)
        state.withLock { $0.configuration.server = server }
        try connect()
    }

    /// Runs the message loop on the calling thread: handlers and behaviours run until ``disconnect()``
    /// (called from a handler or another thread). Returns at once if the client is not connected.
    public func start() {
        let semaphore = DispatchSemaphore(value: 0)
        let isConnected = link.hasConnection
        if isConnected { state.withLock { $0.blockedStarts.append(semaphore) } }
        guard isConnected else {
            logger.warning("start() called without a connection; call connect() first")
            return
        }
        delivery.resume()
        semaphore.wait()
    }

    /// Starts delivering messages to the handler and behaviours in the background and returns at once.
    public func startBackground() {
        delivery.resume()
    }

    /// Stops the background loop; as in the seed, this also disconnects the client.
    public func stopBackground() {
        disconnect()
    }

    /// The last uplink received; inside a message handler, the uplink that triggered that invocation.
    public func getLastMessage() -> Uplink? {
        if let invocation = Self.invocation, invocation.client == ObjectIdentifier(self) { return invocation.uplink }
        return history.last
    }

    /// The uplinks kept since the client was created, oldest first: at most
    /// ``Configuration/historyLimit`` (default 1000), the oldest dropped first.
    public func getAllMessages() -> [Uplink] {
        history.all
    }

    /// Replaces the default connect behaviour (which logs `CONNECTED AND SUBSCRIBED`).
    /// It runs after the first connection and after every reconnect, once the subscriptions are back.
    public func setConnectBehavior(_ behavior: @escaping ConnectBehavior) {
        state.withLock { $0.connectBehavior = behavior }
    }

    /// Replaces the default message behaviour. As in the seed, the replacement takes over history keeping and
    /// the message handler: ``getAllMessages()`` and ``setMessageHandler(_:)`` no longer see messages.
    public func setMessageBehavior(_ behavior: @escaping MessageBehavior) {
        state.withLock { $0.messageBehavior = behavior }
    }

    /// Replaces the default publish behaviour (which logs `MSG PUBLISHED`). It runs when the broker
    /// acknowledged a downlink this client published.
    public func setPublishBehavior(_ behavior: @escaping PublishBehavior) {
        state.withLock { $0.publishBehavior = behavior }
    }

    /// Replaces the connect, message and publish behaviours at once.
    public func setGlobalBehavior(
        _ connect: @escaping ConnectBehavior, _ message: @escaping MessageBehavior,
        _ publish: @escaping PublishBehavior
    ) {
        state.withLock { state in
            state.connectBehavior = connect
            state.messageBehavior = message
            state.publishBehavior = publish
        }
    }

    /// Sets the value passed as `userdata` to the behaviours (paho's `user_data_set`).
    public func setUserData(_ userData: (any Sendable)?) {
        state.withLock { $0.userData = userData }
    }

    /// Runs `handler` (no arguments, as in the seed) for every uplink; setting it again replaces it.
    /// Inside it, ``getLastMessage()`` is the uplink that triggered it.
    public func setMessageHandler(_ handler: @escaping @Sendable () -> Void) {
        state.withLock { $0.messageHandler = handler }
    }
}
