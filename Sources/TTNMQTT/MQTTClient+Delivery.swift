import TTNCore
import Foundation
import Logging

/// The receive path: the network thread classifies and queues, the delivery queue runs the user's code.
extension MQTTClient: ApplicationConnectionReceiver {
    /// The uplink whose handler invocation is running on this thread or task, and whose client it belongs to.
    struct Invocation: Sendable {
        let client: ObjectIdentifier
        let uplink: Uplink
    }

    @TaskLocal static var invocation: Invocation?

    package func connectionDidSubscribe(sessionPresent: Bool) {
        delivery.enqueue(.connected(ConnectFlags(sessionPresent: sessionPresent)))
    }

    package func connectionDidAcknowledge(messageID: Int) {
        delivery.enqueue(.published(messageID))
    }

    package func connectionDidReceiveEvent(_ event: TTNEvent) {
        let continuations = state.withLock { Array($0.eventStreams.values) }
        for continuation in continuations {
            if case .dropped = continuation.yield(event) {
                logger.warning("An events consumer is too slow: oldest buffered event dropped")
            }
        }
    }

    /// Runs on the network thread. Decoded here only when an `uplinks` consumer waits; otherwise the delivery
    /// queue decodes it.
    package func connectionDidReceiveUplink(_ message: ReceivedMessage) {
        let continuations = state.withLock { Array($0.uplinkStreams.values) }
        let uplink = continuations.isEmpty ? nil : link.decode(message)
        if let uplink {
            for continuation in continuations {
                if case .dropped = continuation.yield(uplink) {
                    logger.warning("An uplinks consumer is too slow: oldest buffered uplink dropped")
                }
            }
        }
        delivery.enqueue(.message(message, uplink), deferringWake: true)
    }

    /// Runs on the network thread at the end of a burst: wakes the delivery queue.
    package func connectionDidFinishBurst() {
        delivery.wake()
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
        guard let uplink = decoded ?? link.decode(message) else { return }
        logger.info("MESSAGE RECEIVED", metadata: ["ttn.device_id": "\(uplink.deviceID ?? "?")"])
        history.append(uplink)
        guard let handler = state.withLock({ $0.messageHandler }) else { return }
        Self.$invocation.withValue(Invocation(client: ObjectIdentifier(self), uplink: uplink), operation: handler)
    }
}
