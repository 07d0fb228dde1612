import Foundation
import Logging
import TTNCore
import TTNSync

/// Publishes at QoS 1 to a plain MQTT broker (a local mosquitto, Home Assistant's), not to TTN, and waits until the
/// broker has acknowledged each message.
///
/// It connects at the first publish, not when it is made, so it can be made while the broker is down. A publish
/// that cannot connect throws, and the next one tries again. Once connected, it reconnects by itself, with backoff,
/// and what was published meanwhile goes out after the reconnect; the publish waits for that. ``close()`` ends the
/// connection and drops what the broker has not acknowledged; a later publish connects again. Call it before
/// letting the publisher go: until then the connection's network thread keeps running.
///
/// ```swift
/// let publisher = MQTTPublisher(host: "127.0.0.1", port: 1883)
/// try await publisher.publish(topic: "ttn/dev-1/state", payload: Array(#"{"t":21.5}"#.utf8))
/// await publisher.close()
/// ```
public final class MQTTPublisher: Sendable {
    /// One message to publish.
    public struct Message: Sendable, Hashable {
        public var topic: String
        public var payload: [UInt8]

        public init(topic: String, payload: [UInt8]) {
            self.topic = topic
            self.payload = payload
        }
    }

    private let key: ConnectionKey
    private let settings: MosquittoConnection.Settings
    private let logger: Logger
    private let state = Locked(State())

    private struct State {
        /// The connection with the acknowledgements it reports, once a publish has connected.
        var session: Session?
        /// The connection attempt under way; publishes that arrive meanwhile wait for it too.
        var connecting: Task<Result<Session, TTNError>, Never>?
        /// Counts ``close()`` calls: a connection attempt that a close overtook is the close's to end, not to use.
        var closes = 0
    }

    private struct Session: Sendable {
        let connection: MosquittoConnection
        let acknowledgements: PublishAcknowledgements
    }

    /// - Parameters:
    ///   - username: nil (the default) connects without credentials; `password` needs a username.
    ///   - tls: TLS on, checking the broker's certificate and host name against the system's CAs, or `caFile`.
    ///   - caFile: a PEM file of the CA to trust instead of the system's.
    ///   - clientID: the MQTT client id; by default `ttnmqtt-publisher-` and a random suffix.
    ///   - connectTimeout: how long one connection attempt may take.
    public init(
        host: String, port: Int = 1883, username: String? = nil, password: String? = nil, tls: Bool = false, caFile: String? = nil,
        clientID: String? = nil, connectTimeout: Duration = .seconds(10), logger: Logger = Logger(label: "ttn.mqtt.publisher")
    ) {
        key = ConnectionKey(
            server: MQTTClient.Server(host: host, port: port), username: username ?? "", password: password ?? "",
            tls: MQTTClient.TLS(mode: tls ? .enabled : .disabled, caFile: caFile), legacyV2: false
        )
        settings = MosquittoConnection.Settings(
            keepAlive: 60, connectTimeout: connectTimeout, minimumReconnectDelay: .seconds(1), maximumReconnectDelay: .seconds(30),
            clientID: clientID ?? "ttnmqtt-publisher-\(String(UInt64.random(in: 0...0xFFFF_FFFF_FFFF), radix: 16))"
        )
        self.logger = logger
    }

    /// Publishes one message at QoS 1 and returns once the broker acknowledged it (PUBACK).
    /// - Throws: ``TTNError`` when the broker cannot be reached or refuses the connection, when ``close()`` ends
    ///   the wait, and (kind ``TTNError/Kind/timeout``) when the task is cancelled; the broker may still get it.
    public func publish(topic: String, payload: [UInt8]) async throws(TTNError) {
        try await publish([Message(topic: topic, payload: payload)])
    }

    /// Publishes `messages` at QoS 1, in order, and returns once the broker acknowledged every one of them.
    /// - Throws: as ``publish(topic:payload:)``; then some of the messages may have reached the broker.
    public func publish(_ messages: [Message]) async throws(TTNError) {
        let session = try await connectedSession()
        var messageIDs: [Int] = []
        do {
            for message in messages {
                messageIDs.append(try session.connection.publish(topic: message.topic, payload: message.payload, qos: 1))
            }
        } catch {
            session.acknowledgements.abandon(messageIDs)
            throw error
        }
        try await session.acknowledgements.wait(for: messageIDs)
    }

    /// Disconnects (after sending what is queued, if the broker is there) and fails the publishes still waiting for
    /// an acknowledgement. A later publish connects again.
    public func close() async {
        let (session, connecting) = state.withLock { state in
            defer {
                state.session = nil
                state.connecting = nil
                state.closes += 1
            }
            return (state.session, state.connecting)
        }
        if let connecting, case .success(let late) = await connecting.value {
            await end(late)
        }
        if let session { await end(session) }
    }

    private func end(_ session: Session) async {
        session.acknowledgements.failAll()
        await onOwnThread(named: "ttn-mqtt-publisher close") { session.connection.close() }
    }

    /// The open session, or a new one; concurrent callers share one connection attempt.
    private func connectedSession() async throws(TTNError) -> Session {
        let (session, attempt, closes) = state.withLock { state -> (Session?, Task<Result<Session, TTNError>, Never>?, Int) in
            if let session = state.session { return (session, nil, state.closes) }
            if state.connecting == nil { state.connecting = Task { await self.connect() } }
            return (nil, state.connecting, state.closes)
        }
        if let session { return session }
        let result = await attempt!.value
        let overtaken = state.withLock { state in
            guard state.closes == closes else { return true }
            state.connecting = nil
            if case .success(let session) = result { state.session = session }
            return false
        }
        if overtaken { throw PublishAcknowledgements.closed }
        return try result.get()
    }

    /// Connects on a thread of its own: libmosquitto resolves the name and waits for the handshake.
    private func connect() async -> Result<Session, TTNError> {
        let (key, settings, logger) = (key, settings, logger)
        return await onOwnThread(named: "ttn-mqtt-publisher connect") {
            Result { () throws(TTNError) in
                let connection = try MosquittoConnection(key: key, settings: settings, filters: [], logger: logger)
                let acknowledgements = PublishAcknowledgements()
                connection.addObserver(acknowledgements)
                return Session(connection: connection, acknowledgements: acknowledgements)
            }
        }
    }
}

/// The publishes of one connection that wait for the broker's PUBACK, by message id.
private final class PublishAcknowledgements: ConnectionObserver {
    private let state = Locked(State())

    private struct State {
        /// The batch waiting for each message id.
        var waitingBatch: [Int: Int] = [:]
        var batches: [Int: Batch] = [:]
        var nextBatch = 0
        /// Acknowledged before their publisher started to wait (the network thread was quicker).
        var acknowledgedEarly = Set<Int>()
        /// Published, but nobody waits any more (cancelled); their acknowledgements are dropped.
        var abandoned = Set<Int>()
        var isClosed = false
    }

    private struct Batch {
        var remaining: Int
        let continuation: CheckedContinuation<Void, any Error>
    }

    /// Waits until every one of `messageIDs` is acknowledged.
    func wait(for messageIDs: [Int]) async throws(TTNError) {
        let batch = state.withLock { state in
            defer { state.nextBatch += 1 }
            return state.nextBatch
        }
        do {
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    state.withLock { state in
                        guard !state.isClosed else { return continuation.resume(throwing: Self.closed) }
                        let isCancelled = Task.isCancelled
                        var remaining = 0
                        for id in messageIDs where state.acknowledgedEarly.remove(id) == nil {
                            if isCancelled {
                                state.abandoned.insert(id)
                            } else {
                                state.waitingBatch[id] = batch
                                remaining += 1
                            }
                        }
                        if isCancelled { return continuation.resume(throwing: Self.cancelled) }
                        if remaining == 0 { return continuation.resume() }
                        state.batches[batch] = Batch(remaining: remaining, continuation: continuation)
                    }
                }
            } onCancel: {
                cancel(batch)
            }
        } catch {
            throw error as? TTNError ?? Self.cancelled
        }
    }

    /// Forgets `messageIDs`: their acknowledgements, when they come, are dropped.
    func abandon(_ messageIDs: [Int]) {
        state.withLock { state in
            for id in messageIDs where state.acknowledgedEarly.remove(id) == nil { state.abandoned.insert(id) }
        }
    }

    /// Fails every wait, now and later: the connection is closing.
    func failAll() {
        let batches = state.withLock { state in
            state.isClosed = true
            defer { state.batches = [:] }
            return state.batches.values.map(\.continuation)
        }
        for continuation in batches { continuation.resume(throwing: Self.closed) }
    }

    private func cancel(_ batch: Int) {
        let continuation = state.withLock { state -> CheckedContinuation<Void, any Error>? in
            guard let cancelled = state.batches.removeValue(forKey: batch) else { return nil }
            for (id, waiting) in state.waitingBatch where waiting == batch {
                state.waitingBatch[id] = nil
                state.abandoned.insert(id)
            }
            return cancelled.continuation
        }
        continuation?.resume(throwing: Self.cancelled)
    }

    func connectionDidPublish(messageID: Int) {
        let finished = state.withLock { state -> CheckedContinuation<Void, any Error>? in
            guard let batch = state.waitingBatch.removeValue(forKey: messageID) else {
                if state.abandoned.remove(messageID) == nil { state.acknowledgedEarly.insert(messageID) }
                return nil
            }
            state.batches[batch]?.remaining -= 1
            guard state.batches[batch]?.remaining == 0 else { return nil }
            return state.batches.removeValue(forKey: batch)?.continuation
        }
        finished?.resume()
    }

    func connectionDidSubscribe(sessionPresent: Bool) {}
    func connectionDidReceive(_ message: ReceivedMessage) {}
    func connectionDidFinishBurst() {}

    static let closed = TTNError(
        .notConnected, "The publisher was closed before the broker acknowledged the message.",
        hint: "Publish it again; it may have reached the broker already."
    )
    private static let cancelled = TTNError(
        .timeout, "The wait for the broker's acknowledgement was cancelled.",
        hint: "The message may still reach the broker; publish it again if it must arrive."
    )
}
