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
    private let subscription: PullSubscription
    private let path: any DownlinkPath
    private let ackWait: Duration
    /// The correlation ids of the last downlinks sent, oldest first, to recognise one delivered again.
    private let recentlySent = Locked(RecentIDs(capacity: 4096))
    private let logger: Logger
    private let running = Atomic(true)
    private let finished = DispatchSemaphore(value: 0)
    let forwarded = Atomic(0)
    let refused = Atomic(0)

    /// - Parameter ackWait: the downlink consumer's ack wait, within which an acknowledgement is tried again.
    init(subscription: PullSubscription, path: any DownlinkPath, ackWait: Duration, logger: Logger) {
        self.subscription = subscription
        self.ackWait = ackWait
        self.path = path
        self.logger = logger
    }

    func start() {
        let thread = Thread { [self] in
            forwardUntilStopped()
            finished.signal()
        }
        thread.name = "ttn.cluster.downlinks"
        thread.start()
    }

    /// Asks the loop to stop after the downlink it is at, without waiting.
    func requestStop() {
        running.store(false, ordering: .relaxed)
    }

    /// Stops within about a second; a downlink being sent is finished first. Call it once.
    func stop() {
        requestStop()
        finished.wait()
        subscription.close()
    }

    private func forwardUntilStopped() {
        var failures = 0
        while running.load(ordering: .relaxed) {
            do {
                for message in try subscription.fetch(batch: 1, timeout: .seconds(1)) { forward(message) }
                failures = 0
            } catch {
                failures += 1
                if failures == 1 || failures.isMultiple(of: 60) {
                    logger.warning("Cannot fetch downlinks from the stream; trying again", metadata: ["error": "\(error)"])
                }
                Thread.sleep(forTimeInterval: 0.5)
            }
        }
    }

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
        while true {
            do throws(TTNError) {
                try path.send(envelope.downlink, to: envelope.deviceID, queue: envelope.queue, correlationID: envelope.correlationID)
                break
            } catch where error.kind == .notConnected || error.kind == .timeout {
                // Stopping: the downlink stays unacknowledged and goes to another ingestor after the ack wait.
                guard running.load(ordering: .relaxed) else { return }
                try? message.inProgress()
                Thread.sleep(forTimeInterval: 0.5)
            } catch {
                refuse(message, reason: "\(error)", deviceID: envelope.deviceID)
                return
            }
        }
        forwarded.add(1, ordering: .relaxed)
        remember(envelope.correlationID)
        do {
            try Retrying.within(ackWait / 2) { () throws(NATSError) in try message.acknowledge() }
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
