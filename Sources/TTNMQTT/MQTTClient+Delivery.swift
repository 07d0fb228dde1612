import TTNCore
import Foundation
import Logging

/// The receive path: the network thread classifies and queues, the delivery queue runs the user's code.
extension MQTTClient: ConnectionObserver {
    /// The uplink whose handler invocation is running on this thread or task, and whose client it belongs to.
    struct Invocation: Sendable {
        let client: ObjectIdentifier
        let uplink: Uplink
    }

    @TaskLocal static var invocation: Invocation?

    package func connectionDidSubscribe(sessionPresent: Bool) {
        delivery.enqueue(.connected(ConnectFlags(sessionPresent: sessionPresent)))
    }

    package func connectionDidPublish(messageID: Int) {
        let isOwn = state.withLock { $0.ownMessageIDs.remove(messageID) != nil }
        if isOwn { delivery.enqueue(.published(messageID)) }
    }

    /// Runs on the network thread: sorts the message by topic and hands it on without running user code.
    package func connectionDidReceive(_ message: ReceivedMessage) {
        let (topics, legacyV2, wantsUplinks, wantsEvents, sink, sizeLimit) = state.withLock { state in
            (
                state.connection?.topics, state.configuration.legacyV2, !state.uplinkStreams.isEmpty,
                !state.eventStreams.isEmpty, state.uplinkSink, state.configuration.maximumMessageSize
            )
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
            if wantsEvents {
                let json = String(decoding: message.payload, as: UTF8.self)
                publishEvent(TTNEvent(kind: .init(rawValue: String(suffix)), deviceID: deviceID, topic: message.topic, json: json))
            }
            return
        }
        if let sink {
            guard let uplink = decodeUplink(message, legacyV2: legacyV2, recordingOutline: sink.recordsOutlines) else { return }
            if wantsUplinks { publishUplink(uplink) }
            remember(uplink)
            sink.receive(uplink)
            return
        }
        // Decoded here only when an `uplinks` consumer waits; otherwise the delivery queue decodes it.
        let uplink = wantsUplinks ? decodeUplink(message, legacyV2: legacyV2) : nil
        if let uplink { publishUplink(uplink) }
        delivery.enqueue(.message(message, uplink), deferringWake: true)
    }

    /// Runs on the network thread at the end of a burst: wakes the delivery queue, or the sink's handlers.
    package func connectionDidFinishBurst() {
        delivery.wake()
        state.withLock { $0.uplinkSink?.endOfBurst }?()
    }

    /// Runs on the delivery queue, one item at a time, in arrival order.
    func deliver(_ item: Delivery) {
        let (userData, connectBehavior, messageBehavior, publishBehavior) = state.withLock {
            ($0.userData, $0.connectBehavior, $0.messageBehavior, $0.publishBehavior)
        }
        switch item {
        case .connected(let flags):
            if let connectBehavior {
                connectBehavior(self, userData, flags, 0)
            } else {
                logger.info("CONNECTED AND SUBSCRIBED")
            }
        case .published(let messageID):
            if let publishBehavior {
                publishBehavior(self, userData, messageID)
            } else {
                logger.info("MSG PUBLISHED", metadata: ["mqtt.mid": "\(messageID)"])
            }
        case .message(let message, let decoded):
            if let messageBehavior {
                let paho = MQTTMessage(
                    topic: message.topic, payload: message.payload, qos: message.qos, retain: message.retain,
                    mid: message.messageID
                )
                messageBehavior(self, userData, paho)
            } else {
                receiveUplink(message, decoded: decoded)
            }
        }
    }

    /// The default message behaviour: log, keep in the bounded history, run the handler.
    private func receiveUplink(_ message: ReceivedMessage, decoded: Uplink?) {
        let legacyV2 = state.withLock { $0.configuration.legacyV2 }
        guard let uplink = decoded ?? decodeUplink(message, legacyV2: legacyV2) else { return }
        logger.info("MESSAGE RECEIVED", metadata: ["ttn.device_id": "\(uplink.deviceID ?? "?")"])
        remember(uplink)
        guard let handler = state.withLock({ $0.messageHandler }) else { return }
        withInvocation(of: uplink, handler)
    }

    /// Keeps `uplink` as the last message and in the bounded history.
    private func remember(_ uplink: Uplink) {
        state.withLock { state in
            state.lastMessage = uplink
            state.history.append(uplink)
            if state.history.count > state.configuration.historyLimit { state.history.removeFirst() }
        }
    }

    /// Runs `body` as a handler invocation for `uplink`: inside it, ``getLastMessage()`` is `uplink` and
    /// ``publish(_:)`` defaults to its device, however many invocations run at once on other threads.
    package func withInvocation<Result>(of uplink: Uplink, _ body: () throws -> Result) rethrows -> Result {
        try Self.$invocation.withValue(Invocation(client: ObjectIdentifier(self), uplink: uplink), operation: body)
    }

    /// Hands every decoded uplink to `receive` on the network thread, instead of to the seed's handler and
    /// behaviours; history and ``getLastMessage()`` are kept as usual. For a host that runs its own queues.
    /// `endOfBurst` runs on the network thread after a burst of uplinks (see
    /// ``ConnectionObserver/connectionDidFinishBurst()``), so that the host can wake each queue once per burst.
    /// With `recordingOutlines`, each uplink's ``Uplink/containerOutline`` is recorded as it is checked, for a
    /// host whose Lua scripts read uplinks through it.
    package func setUplinkSink(
        recordingOutlines: Bool = false, receive: @escaping @Sendable (Uplink) -> Void,
        endOfBurst: @escaping @Sendable () -> Void
    ) {
        state.withLock {
            $0.uplinkSink = UplinkSink(receive: receive, endOfBurst: endOfBurst, recordsOutlines: recordingOutlines)
        }
    }

    private func decodeUplink(_ message: ReceivedMessage, legacyV2: Bool, recordingOutline: Bool = false) -> Uplink? {
        do {
            let uplink = try Uplink(json: message.payload, topic: message.topic, legacyV2: legacyV2, recordingOutline: recordingOutline)
            state.withLock { $0.statistics.uplinks += 1 }
            return uplink
        } catch {
            recordSkip(\.malformed, "Malformed uplink skipped", ["mqtt.topic": "\(message.topic)", "error": "\(error.message)"])
            return nil
        }
    }

    /// Counts a skipped message under `counter` and logs why, with the running total.
    private func recordSkip(_ counter: WritableKeyPath<Statistics, Int>, _ reason: Logger.Message, _ metadata: Logger.Metadata) {
        let total = state.withLock { state in
            state.statistics[keyPath: counter] += 1
            return state.statistics[keyPath: counter]
        }
        var metadata = metadata
        metadata["skipped.total"] = "\(total)"
        logger.warning(reason, metadata: metadata)
    }

    private func publishUplink(_ uplink: Uplink) {
        let continuations = state.withLock { Array($0.uplinkStreams.values) }
        for continuation in continuations {
            if case .dropped = continuation.yield(uplink) {
                logger.warning("An uplinks consumer is too slow: oldest buffered uplink dropped")
            }
        }
    }

    private func publishEvent(_ event: TTNEvent) {
        let continuations = state.withLock { Array($0.eventStreams.values) }
        for continuation in continuations {
            if case .dropped = continuation.yield(event) {
                logger.warning("An events consumer is too slow: oldest buffered event dropped")
            }
        }
    }
}

/// Where a host takes the uplinks on the network thread: ``MQTTClient/setUplinkSink(receive:endOfBurst:)``.
struct UplinkSink: Sendable {
    let receive: @Sendable (Uplink) -> Void
    let endOfBurst: @Sendable () -> Void
    let recordsOutlines: Bool
}
