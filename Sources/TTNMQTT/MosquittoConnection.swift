internal import CMosquitto
import TTNCore
import Foundation
import Logging
import Synchronization
import TTNSync

/// A message as received, copied out of libmosquitto's buffers.
package struct ReceivedMessage: Sendable {
    package let topic: String
    package let payload: [UInt8]
    package let qos: Int
    package let retain: Bool
    package let messageID: Int
}

/// What a connection tells the clients that share it. Called on the network thread, so it must return quickly.
package protocol ConnectionObserver: AnyObject, Sendable {
    /// The connection is up and every subscription was granted: after the first connect and after each reconnect.
    func connectionDidSubscribe(sessionPresent: Bool)
    func connectionDidReceive(_ message: ReceivedMessage)
    /// The messages received since the last call are a burst that has ended: the socket held no more, or the
    /// burst reached ``MosquittoConnection/maximumBurst``. An observer that queued them without waking their
    /// handler wakes it now, once for the whole burst.
    func connectionDidFinishBurst()
    /// A QoS 1 publish was acknowledged by the broker.
    func connectionDidPublish(messageID: Int)
}

/// Identifies a connection that clients may share: same broker, same credentials, same TLS and topic layout.
struct ConnectionKey: Hashable, Sendable {
    let server: MQTTClient.Server
    let username: String
    let password: String
    let tls: MQTTClient.TLS
    let legacyV2: Bool
}

/// One MQTT connection to a TTN application server, driven by libmosquitto on a dedicated network thread.
///
/// The network thread runs `mosquitto_loop` itself (rather than `mosquitto_loop_forever`) so that it sees every
/// error, including the fatal TLS failures that `loop_forever` ends on silently, and can back off with jitter
/// and stop at once when closed. After the first successful connection it reconnects forever, subscribing
/// again every time: TTN keeps no sessions.
///
/// Each observer has its own topic filters (``setFilters(_:for:)``); the connection subscribes to their union and
/// unsubscribes what no observer wants any more.
final class MosquittoConnection: Sendable {
    let key: ConnectionKey
    let topics: TopicLayout
    private let handle: MosquittoHandle
    private let settings: Settings
    private let logger: Logger
    private let state = Locked(State())
    /// Signalled to cut a reconnect delay short when the connection closes.
    private let wakeUp = DispatchSemaphore(value: 0)
    /// Signalled once by the network thread when it exits.
    private let networkThreadExited = DispatchSemaphore(value: 0)
    /// The result of the first connection attempt.
    private let firstConnection = OneShot<Result<Void, TTNError>>()
    /// Messages received since the observers last heard ``ConnectionObserver/connectionDidFinishBurst()``.
    /// Touched only by the network thread (the message callback runs inside `mosquitto_loop` and
    /// `mosquitto_loop_read`).
    private let burstLength = Atomic(0)
    /// The most messages handed on before the observers are told that a burst ended, so that a long burst
    /// reaches the handlers while it lasts: the first message of a burst waits for at most 15 others to be read
    /// and checked (about 0.15 ms), and the handler's thread is still woken 16 times less often. It also bounds
    /// how long a queued downlink or a keep-alive ping waits while messages keep coming.
    static let maximumBurst = 16

    struct Settings: Sendable {
        var keepAlive: Int32
        var connectTimeout: Duration
        var minimumReconnectDelay: Duration
        var maximumReconnectDelay: Duration
        var clientID: String
    }

    private struct State {
        enum Phase { case connecting, subscribing, connected, reconnecting, closing }
        var phase = Phase.connecting
        var hasConnectedOnce = false
        var observers: [ObjectIdentifier: WeakObserver] = [:]
        /// The topic filters of each observer (``setFilters(_:for:)``).
        var observerFilters: [ObjectIdentifier: Set<String>] = [:]
        /// The filters given to `init` without an observer, kept for the connection's life.
        var ownFilters = Set<String>()
        /// The filters this session subscribed to: all wanted ones at each connect, then kept in step with them.
        var subscribed = Set<String>()
        var pendingSubscriptions: [Int32: [String]] = [:]
        var reconnectAttempt = 0
        var sessionPresent = false
        var lastLoggedError: String?

        /// The union of every observer's filters and the connection's own.
        var wantedFilters: Set<String> { observerFilters.values.reduce(into: ownFilters) { $0.formUnion($1) } }
    }

    private struct WeakObserver {
        weak var value: (any ConnectionObserver)?
    }

    /// Connects and subscribes to `filters`, returning once the first SUBACK arrived.
    /// Blocks the calling thread (name resolution and the handshake); call it off the cooperative pool.
    /// - Parameter observer: whose filters these are, as if given to ``setFilters(_:for:)`` (the observer is added
    ///   later, with ``addObserver(_:)``); without one, they stay for the connection's life.
    /// - Throws: ``TTNError`` saying why the first connection failed.
    init(
        key: ConnectionKey, settings: Settings, filters: some Sequence<String>, for observer: (any ConnectionObserver)? = nil,
        logger: Logger
    ) throws(TTNError) {
        self.key = key
        self.topics = TopicLayout(username: key.username, legacyV2: key.legacyV2)
        self.settings = settings
        self.logger = logger
        _ = MosquittoCode.libraryInitialized
        guard let raw = mosquitto_new(settings.clientID, true, nil) else {
            throw .mosquitto(MOSQ_ERR_NOMEM.rawValue, "Creating the MQTT client")
        }
        self.handle = MosquittoHandle(raw: raw)
        state.withLock { state in
            if let observer {
                state.observerFilters[ObjectIdentifier(observer)] = Set(filters)
            } else {
                state.ownFilters = Set(filters)
            }
        }
        // On a throw from here on, deinit runs (every stored property is set) and destroys the handle.
        try configure()
        try startFirstConnection()
        // From here on the network thread runs and holds a reference to self.
        let outcome = firstConnection.wait(timeout: settings.connectTimeout)
        switch outcome {
        case .success?:
            return
        case .failure(let error)?:
            close()
            throw error
        case nil:
            close()
            throw .timeout(key.server.host, key.server.port, after: settings.connectTimeout)
        }
    }

    deinit {
        mosquitto_destroy(handle.raw)
    }

    private func configure() throws(TTNError) {
        let raw = handle.raw
        mosquitto_user_data_set(raw, Unmanaged.passUnretained(self).toOpaque())
        try check(mosquitto_int_option(raw, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311), "Selecting MQTT 3.1.1")
        try check(mosquitto_int_option(raw, MOSQ_OPT_TCP_NODELAY, 1), "Setting TCP_NODELAY")
        try check(mosquitto_threaded_set(raw, true), "Selecting threaded mode")
        // No in-flight window: downlinks are sent as they are published, not held back in libmosquitto's queue.
        try check(mosquitto_max_inflight_messages_set(raw, 0), "Lifting the in-flight limit")
        // An empty username (a plain broker, MQTTPublisher) connects without credentials.
        if !key.username.isEmpty {
            try check(mosquitto_username_pw_set(raw, key.username, key.password), "Setting the credentials")
        }
        if key.tls.isEnabled(port: key.server.port) {
            if let caFile = key.tls.caFile {
                try check(mosquitto_tls_set(raw, caFile, nil, nil, nil, nil), "Loading the CA file '\(caFile)'")
            } else {
                try check(mosquitto_int_option(raw, MOSQ_OPT_TLS_USE_OS_CERTS, 1), "Using the system CA store")
            }
            if key.tls.allowUnverifiedCertificates {
                logger.warning(
                    "TLS certificate and host name verification are OFF: anyone on the path can read the API key",
                    metadata: ["mqtt.server": "\(key.server)"]
                )
                try check(mosquitto_tls_opts_set(raw, 0, nil, nil), "Turning off certificate verification")
                try check(mosquitto_tls_insecure_set(raw, true), "Turning off host name verification")
            }
        }
        mosquitto_connect_with_flags_callback_set(raw) { _, context, code, flags in
            MosquittoConnection.from(context).didConnect(code: code, flags: flags)
        }
        mosquitto_subscribe_callback_set(raw) { _, context, messageID, count, granted in
            let grantedQoS = (0..<Int(count)).map { granted![$0] }
            MosquittoConnection.from(context).didSubscribe(messageID: messageID, granted: grantedQoS)
        }
        mosquitto_message_callback_set(raw) { _, context, message in
            guard let message = message?.pointee else { return }
            let payload = message.payloadlen > 0
                ? [UInt8](UnsafeRawBufferPointer(start: message.payload, count: Int(message.payloadlen)))
                : []
            let received = ReceivedMessage(
                topic: String(cString: message.topic), payload: payload, qos: Int(message.qos),
                retain: message.retain, messageID: Int(message.mid)
            )
            MosquittoConnection.from(context).didReceive(received)
        }
        mosquitto_publish_callback_set(raw) { _, context, messageID in
            MosquittoConnection.from(context).forEachObserver { $0.connectionDidPublish(messageID: Int(messageID)) }
        }
        mosquitto_disconnect_callback_set(raw) { _, context, code in
            MosquittoConnection.from(context).didDisconnect(code: code)
        }
        setLibraryLog(enabled: true)
    }

    /// Turns libmosquitto's log on or off. Its errors explain failed connections (OpenSSL's reasons, for one), but
    /// with a log callback set it formats a debug line for every message it sends or receives. So the log is off
    /// while the connection is up, unless the logger is at trace level, and on again when it goes down.
    private func setLibraryLog(enabled: Bool) {
        guard enabled else { return mosquitto_log_callback_set(handle.raw, nil) }
        mosquitto_log_callback_set(handle.raw) { _, context, level, text in
            guard let text else { return }
            MosquittoConnection.from(context).didLog(level: level, String(cString: text))
        }
    }

    private func startFirstConnection() throws(TTNError) {
        let server = key.server
        let rc = mosquitto_connect_async(handle.raw, server.host, Int32(server.port), settings.keepAlive)
        if rc != MOSQ_ERR_SUCCESS.rawValue {
            throw connectError(rc)
        }
        let thread = Thread { [self] in runNetworkLoop() }
        thread.name = "ttn-mqtt \(server.host)"
        thread.start()
    }

    // MARK: Network thread

    private func runNetworkLoop() {
        defer { networkThreadExited.signal() }
        let raw = handle.raw
        defer { finishBurst() }
        while true {
            // In a burst, read the next message straight away, without asking select() first (one system call
            // less per message); when none is there, the burst is over. Between bursts `mosquitto_loop` waits for
            // the socket, writes what other threads queued, and keeps the connection alive.
            let before = burstLength.load(ordering: .relaxed)
            let rc = before > 0 ? mosquitto_loop_read(raw, 1) : mosquitto_loop(raw, 1000, 1)
            let after = burstLength.load(ordering: .relaxed)
            if after > 0 && (after == before || after >= Self.maximumBurst || rc != MOSQ_ERR_SUCCESS.rawValue) {
                finishBurst()
            }
            if rc == MOSQ_ERR_SUCCESS.rawValue { continue }
            guard !isClosing else { return }
            if !state.withLock({ $0.hasConnectedOnce }) {
                firstConnection.fulfill(.failure(loopError(rc)))
                return
            }
            state.withLock { $0.phase = .reconnecting }
            let delay = nextReconnectDelay()
            logger.info(
                "MQTT connection down; reconnecting",
                metadata: ["mosquitto.rc": "\(rc)", "mosquitto.error": "\(MosquittoCode.describe(rc))", "retry.in": "\(delay)"]
            )
            if wakeUp.wait(timeout: .now() + delay.timeInterval) == .success || isClosing {
                return
            }
            let reconnect = mosquitto_reconnect_async(raw)
            if reconnect != MOSQ_ERR_SUCCESS.rawValue {
                logger.info("MQTT reconnect attempt failed", metadata: ["mosquitto.error": "\(MosquittoCode.describe(reconnect))"])
            }
        }
    }

    private var isClosing: Bool { state.withLock { $0.phase == .closing } }

    private func nextReconnectDelay() -> Duration {
        let attempt = state.withLock { state in
            defer { state.reconnectAttempt += 1 }
            return state.reconnectAttempt
        }
        return reconnectDelay(attempt: attempt, minimum: settings.minimumReconnectDelay, maximum: settings.maximumReconnectDelay)
    }

    private func didConnect(code: Int32, flags: Int32) {
        guard code == 0 else {
            let error: TTNError =
                code == 5 || code == 4
                ? .notAuthorized(username: key.username, code: Int(code))
                : .connectionRefused(code: Int(code), reason: MosquittoCode.connack(code))
            if !firstConnection.fulfill(.failure(error)) {
                logger.error("MQTT server refused the reconnection", metadata: ["error": "\(error)"])
            }
            return
        }
        let subscribing = state.withLock { state in
            state.reconnectAttempt = 0
            state.sessionPresent = flags & 1 != 0
            state.phase = .subscribing
            state.subscribed = state.wantedFilters
            if !state.subscribed.isEmpty { subscribe(state.subscribed.sorted(), &state) }
            return !state.subscribed.isEmpty
        }
        if !subscribing { didSubscribe(messageID: -1, granted: []) }
    }

    /// Subscribes what the observers want and the session has not subscribed, and unsubscribes what the session
    /// subscribed and no observer wants any more. Only while the session is up: a reconnect subscribes all.
    /// Called under the state lock, so that the packets go out in the order the wanted filters changed.
    private func updateSubscriptions(_ state: inout State) {
        guard state.phase == .subscribing || state.phase == .connected else { return }
        let wanted = state.wantedFilters
        let added = wanted.subtracting(state.subscribed).sorted(), removed = state.subscribed.subtracting(wanted).sorted()
        state.subscribed = wanted
        if !removed.isEmpty {
            logger.debug("MQTT unsubscribing", metadata: ["mqtt.filters": "\(removed)"])
            let rc = withCStrings(removed) { mosquitto_unsubscribe_multiple(handle.raw, nil, $0, $1, nil) }
            if rc != MOSQ_ERR_SUCCESS.rawValue {
                logger.info(
                    "MQTT unsubscribe failed; the next reconnect leaves the filters out",
                    metadata: ["mosquitto.error": "\(MosquittoCode.describe(rc))"]
                )
            }
        }
        if !added.isEmpty {
            logger.debug("MQTT subscribing", metadata: ["mqtt.filters": "\(added)"])
            subscribe(added, &state)
        }
    }

    /// Sends SUBSCRIBE for `filters`; under the state lock, so that the SUBACK finds them in `pendingSubscriptions`.
    private func subscribe(_ filters: [String], _ state: inout State) {
        var messageID: Int32 = 0
        let rc = withCStrings(filters) { mosquitto_subscribe_multiple(handle.raw, &messageID, $0, $1, 0, 0, nil) }
        if rc == MOSQ_ERR_SUCCESS.rawValue {
            state.pendingSubscriptions[messageID] = filters
        } else {
            logger.info("MQTT subscribe failed; it is retried on the next reconnect", metadata: ["mosquitto.error": "\(MosquittoCode.describe(rc))"])
        }
    }

    /// Calls `body` with the count and a C array of `strings`, as libmosquitto's `*_multiple` functions take them.
    private func withCStrings(
        _ strings: [String], _ body: (Int32, UnsafePointer<UnsafeMutablePointer<CChar>?>?) -> Int32
    ) -> Int32 {
        let cStrings = strings.map { strdup($0) }
        defer { cStrings.forEach { free($0) } }
        return cStrings.withUnsafeBufferPointer { body(Int32($0.count), $0.baseAddress) }
    }

    private func didSubscribe(messageID: Int32, granted: [Int32]) {
        let (filters, wasSubscribing, sessionPresent) = state.withLock { state in
            (state.pendingSubscriptions.removeValue(forKey: messageID) ?? [], state.phase == .subscribing, state.sessionPresent)
        }
        if let refused = zip(filters, granted).first(where: { $0.1 == 0x80 })?.0 {
            let error = TTNError.subscriptionRefused(refused)
            if !firstConnection.fulfill(.failure(error)) {
                logger.error("MQTT subscription refused", metadata: ["mqtt.topic": "\(refused)"])
            }
            return
        }
        guard wasSubscribing else { return }
        state.withLock { state in
            state.phase = .connected
            state.hasConnectedOnce = true
            state.lastLoggedError = nil
        }
        if logger.logLevel > .trace { setLibraryLog(enabled: false) }
        logger.debug("MQTT connected and subscribed", metadata: ["mqtt.filters": "\(filters)"])
        // Take the observers before waking the first connect: the client that opened the connection is added
        // once `connect()` returns and reports this first subscription itself, so it must not hear it twice.
        let observers = state.withLock { $0.observers.values.compactMap(\.value) }
        firstConnection.fulfill(.success(()))
        for observer in observers { observer.connectionDidSubscribe(sessionPresent: sessionPresent) }
    }

    private func didReceive(_ message: ReceivedMessage) {
        burstLength.add(1, ordering: .relaxed)
        forEachObserver { $0.connectionDidReceive(message) }
    }

    private func finishBurst() {
        guard burstLength.exchange(0, ordering: .relaxed) > 0 else { return }
        forEachObserver { $0.connectionDidFinishBurst() }
    }

    private func didDisconnect(code: Int32) {
        guard code != 0 else { return }
        setLibraryLog(enabled: true)
        let (wasConnected, lastError) = state.withLock { state in
            defer { if state.phase != .closing { state.phase = .reconnecting } }
            return (state.phase == .connected, state.lastLoggedError)
        }
        let reason = lastError ?? MosquittoCode.describe(code)
        if !wasConnected {
            firstConnection.fulfill(.failure(loopError(code)))
            return
        }
        logger.warning("MQTT connection lost", metadata: ["reason": "\(reason)", "mqtt.server": "\(key.server)"])
    }

    private func didLog(level: Int32, _ text: String) {
        if level == MOSQ_LOG_ERR {
            state.withLock { $0.lastLoggedError = text }
            logger.debug("libmosquitto error", metadata: ["mosquitto.log": "\(text)"])
        } else {
            logger.trace("libmosquitto", metadata: ["mosquitto.log": "\(text)"])
        }
    }

    private func connectError(_ rc: Int32) -> TTNError {
        let server = key.server
        switch rc {
        case MOSQ_ERR_EAI.rawValue: return .unknownHost(server.host)
        case MOSQ_ERR_ERRNO.rawValue: return .unreachable(server.host, server.port, reason: String(cString: strerror(errno)))
        case MOSQ_ERR_TLS.rawValue: return .tls(server.host, server.port, detail: lastTLSDetail())
        default: return .mosquitto(rc, "Connecting to \(server)")
        }
    }

    /// The error that ended a first connection attempt inside the network loop.
    private func loopError(_ rc: Int32) -> TTNError {
        let server = key.server
        let logged = state.withLock { $0.lastLoggedError }
        if rc == MOSQ_ERR_TLS.rawValue || logged?.contains("SSL") == true || logged?.contains("certificate") == true {
            return .tls(server.host, server.port, detail: lastTLSDetail())
        }
        switch rc {
        case MOSQ_ERR_CONN_LOST.rawValue, MOSQ_ERR_NO_CONN.rawValue:
            return .unreachable(server.host, server.port, reason: "the server closed the connection before accepting it")
        default:
            return connectError(rc)
        }
    }

    private func lastTLSDetail() -> String {
        state.withLock { $0.lastLoggedError } ?? "the handshake failed"
    }

    private func check(_ rc: Int32, _ operation: String) throws(TTNError) {
        guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw .mosquitto(rc, operation) }
    }

    private static func from(_ context: UnsafeMutableRawPointer?) -> MosquittoConnection {
        Unmanaged<MosquittoConnection>.fromOpaque(context!).takeUnretainedValue()
    }

    private func forEachObserver(_ body: (any ConnectionObserver) -> Void) {
        // Called for every message: iterates the dictionary's values as they are, without building an array.
        let observers = state.withLock { $0.observers.values }
        for observer in observers {
            if let observer = observer.value { body(observer) }
        }
    }

    // MARK: Used by clients

    var isConnected: Bool { state.withLock { $0.phase == .connected } }

    func addObserver(_ observer: any ConnectionObserver) {
        state.withLock { $0.observers[ObjectIdentifier(observer)] = WeakObserver(value: observer) }
    }

    /// Removes an observer and its filters, unsubscribing those no other observer wants; returns how many remain.
    func removeObserver(_ observer: any ConnectionObserver) -> Int {
        state.withLock { state in
            state.observers[ObjectIdentifier(observer)] = nil
            if state.observerFilters.removeValue(forKey: ObjectIdentifier(observer)) != nil { updateSubscriptions(&state) }
            return state.observers.count
        }
    }

    /// Sets the topic filters `observer` wants, replacing its earlier ones. The connection subscribes to the union
    /// of all observers' filters: filters no one wanted before at once (while connected), all of them after every
    /// reconnect; filters no one wants any more are unsubscribed at once. Returns without waiting for the broker.
    func setFilters(_ filters: Set<String>, for observer: any ConnectionObserver) {
        state.withLock { state in
            state.observerFilters[ObjectIdentifier(observer)] = filters.isEmpty ? nil : filters
            updateSubscriptions(&state)
        }
    }

    /// Queues a publish. QoS 1 messages published while the connection is down are sent after it reconnects.
    @discardableResult
    func publish(topic: String, payload: [UInt8], qos: Int32 = 1) throws(TTNError) -> Int {
        guard !isClosing else { throw TTNError.notConnected }
        var messageID: Int32 = 0
        let rc = payload.withUnsafeBytes { bytes in
            mosquitto_publish(handle.raw, &messageID, topic, Int32(bytes.count), bytes.baseAddress, qos, false)
        }
        switch rc {
        case MOSQ_ERR_SUCCESS.rawValue:
            return Int(messageID)
        case MOSQ_ERR_NO_CONN.rawValue where qos > 0:
            // libmosquitto queued it before trying to send; it goes out after the reconnect.
            return Int(messageID)
        case MOSQ_ERR_NO_CONN.rawValue:
            throw TTNError.notConnected
        default:
            throw .mosquitto(rc, "Publishing to '\(topic)'")
        }
    }

    /// Sends DISCONNECT after what is already queued, stops the network thread and waits for it.
    /// Must not be called on the network thread.
    func close() {
        let alreadyClosing = state.withLock { state in
            defer { state.phase = .closing }
            return state.phase == .closing
        }
        guard !alreadyClosing else {
            networkThreadExited.wait()
            networkThreadExited.signal()
            return
        }
        mosquitto_disconnect(handle.raw)
        wakeUp.signal()
        networkThreadExited.wait()
        networkThreadExited.signal()
    }
}

/// The delay before reconnect attempt `attempt` (0 for the first): capped exponential backoff with jitter, a random
/// delay in [d/2, d] where d doubles from `minimum` up to `maximum`.
package func reconnectDelay(attempt: Int, minimum: Duration, maximum: Duration) -> Duration {
    let ceiling = min(maximum, minimum * (1 << min(attempt, 20)))
    return ceiling / 2 + ceiling / 2 * Double.random(in: 0...1)
}
