import Foundation
import Logging
import Synchronization
import TTNCore
import TTNHost
import TTNNATS
import TTNSync

/// An ingestor's loop that takes the workers' downlinks from the downlink stream and sends them to TTN, one at a
/// time and in order (the consumer lets one out at a time, shared by every ingestor). A downlink is acknowledged once
/// the MQTT connection took it; while TTN cannot be reached it is held, and the ones after it wait in the stream.
final class DownlinkForwarder: Sendable {
    private let mqtt: MQTTUplinkSource
    private let ackWait: Duration
    /// The correlation ids of the last downlinks sent, oldest first, to recognise one delivered again.
    private let recentlySent = Locked(RecentIDs(capacity: 4096))
    private let logger: Logger
    private let fetching: FetchLoop
    let forwarded = Atomic(0)
    let refused = Atomic(0)

    /// - Parameter ackWait: the downlink consumer's ack wait, for which (at least 15 s) an acknowledgement is tried again.
    init(subscription: PullSubscription, mqtt: MQTTUplinkSource, ackWait: Duration, logger: Logger) {
        self.ackWait = ackWait
        self.mqtt = mqtt
        self.logger = logger
        self.fetching = FetchLoop(subscription: subscription, name: "ttn.cluster.downlinks", logger: logger)
    }

    func start() {
        // Weak: the forwarder owns the loop, whose thread ends with `stop()`.
        fetching.start { [weak self] message in self?.forward(message) }
    }

    /// Asks the loop to stop after the downlink it is at, without waiting.
    func requestStop() { fetching.requestStop() }

    /// Stops within about a second; a downlink being sent is finished first. Call it once.
    func stop() { fetching.stop() }

    private func forward(_ message: JetStreamMessage) {
        let envelope: DownlinkEnvelope
        do {
            envelope = try DownlinkEnvelope(decoding: message.payload)
        } catch {
            refuse(message, reason: "not a downlink envelope: \(error)", deviceID: nil)
            return
        }
        // Sent already by this ingestor, whose acknowledgement was lost: acknowledged now, not sent again.
        if let id = envelope.correlationID, recentlySent.withLock({ $0.contains(id) }) {
            try? message.acknowledge()
            return
        }
        // While TTN is away the downlink is held here, and keeps its place: the consumer lets nothing else out.
        var messageID: Int?
        while messageID == nil {
            do throws(TTNError) {
                messageID = try mqtt.sendForAcknowledgement(
                    envelope.downlink, to: envelope.deviceID, queue: envelope.queue, correlationID: envelope.correlationID
                )
            } catch where error.kind == .notConnected || error.kind == .timeout {
                // Stopping: the downlink stays unacknowledged and goes to another ingestor after the ack wait.
                guard fetching.isRunning else { return }
                try? message.inProgress()
                Thread.sleep(forTimeInterval: 0.5)
            } catch {
                refuse(message, reason: "\(error)", deviceID: envelope.deviceID)
                return
            }
        }
        // Acknowledged to the stream only once the broker has it: buffered in this process, it would die with it.
        while let messageID, !mqtt.waitForAcknowledgement(of: messageID, timeout: .seconds(1)) {
            // Stopping first: another ingestor sends it again after the ack wait, so TTN may get it twice.
            guard fetching.isRunning else { return }
            try? message.inProgress()
        }
        forwarded.add(1, ordering: .relaxed)
        remember(envelope.correlationID)
        do {
            try Retrying.within(max(ackWait, .seconds(15))) { () throws(NATSError) in try message.acknowledge() }
        } catch {
            logger.warning(
                "Downlink sent but not acknowledged to the stream: it may be sent a second time",
                metadata: ["ttn.device_id": "\(envelope.deviceID)", "error": "\(error)"]
            )
        }
    }

    private func remember(_ id: String?) {
        guard let id else { return }
        recentlySent.withLock { $0.insert(id) }
    }

    private func refuse(_ message: JetStreamMessage, reason: String, deviceID: String?) {
        let total = refused.add(1, ordering: .relaxed).newValue
        logger.error(
            "Downlink from a worker refused; it is removed from the stream",
            metadata: ["ttn.device_id": "\(deviceID ?? "?")", "error": "\(reason)", "refused.total": "\(total)"]
        )
        try? message.terminate()
    }
}

/// The last `capacity` ids inserted, for membership tests.
struct RecentIDs {
    private var order: [String] = []
    private var members: Set<String> = []
    private var next = 0
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    func contains(_ id: String) -> Bool { members.contains(id) }

    /// Adds `id`, forgetting the oldest once full.
    mutating func insert(_ id: String) {
        guard members.insert(id).inserted else { return }
        if order.count < capacity {
            order.append(id)
        } else {
            members.remove(order[next])
            order[next] = id
            next = (next + 1) % capacity
        }
    }
}
