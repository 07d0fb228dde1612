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
    private let logger: Logger
    private let running = Atomic(true)
    private let finished = DispatchSemaphore(value: 0)
    let forwarded = Atomic(0)
    let refused = Atomic(0)

    init(subscription: PullSubscription, path: any DownlinkPath, logger: Logger) {
        self.subscription = subscription
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
        do {
            try message.acknowledge()
        } catch {
            logger.warning(
                "Downlink sent but not acknowledged to the stream: it may be sent a second time",
                metadata: ["ttn.device_id": "\(envelope.deviceID)", "error": "\(error)"]
            )
        }
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
