import Dispatch
import Foundation
import Logging
import TTNNATS
import TTNSync

/// Reads one partition's durable consumer on a thread of its own (a ``FetchLoop``): hands each message to `handle`,
/// waits until it is settled (telling the server the worker is still at it every half ack wait), then acknowledges
/// it, or rejects it for another delivery. The consumer lets one message out at a time, so a partition's messages
/// are handled in order across every worker.
final class PartitionReader: Sendable {
    private let ackWait: Duration
    private let logger: Logger
    private let handle: @Sendable (JetStreamMessage, Settlement) -> Void
    private let fetching: FetchLoop

    /// - Parameters:
    ///   - isAccepting: whether the host takes messages now; while it does not (it is shutting down), the reader
    ///     fetches nothing, so what it would fetch goes to the other workers.
    ///   - handle: hands the message on and settles it now (a message it skips) or later (once handled).
    init(
        subscription: PullSubscription, partition: Int, ackWait: Duration, logger: Logger,
        isAccepting: @escaping @Sendable () -> Bool, handle: @escaping @Sendable (JetStreamMessage, Settlement) -> Void
    ) {
        self.ackWait = ackWait
        self.logger = logger
        self.handle = handle
        self.fetching = FetchLoop(subscription: subscription, name: "ttn.cluster.p\(partition)", logger: logger, isAccepting: isAccepting)
    }

    func start() {
        // Weak: the reader owns the loop, whose thread ends with `stop()`.
        fetching.start { [weak self] message in self?.process(message) }
    }

    /// Asks the reader to stop after its current fetch, without waiting.
    func requestStop() { fetching.requestStop() }

    /// Stops reading and returns within about a second. A message still being handled is left unacknowledged: the
    /// server delivers it again after the ack wait. Call it once.
    func stop() { fetching.stop() }

    private func process(_ message: JetStreamMessage) {
        let settlement = Settlement()
        handle(message, settlement)
        var sinceProgress = Duration.zero
        let step = min(ackWait / 2, .seconds(1))
        while true {
            if let handled = settlement.wait(timeout: step) {
                settle(message, handled: handled)
                return
            }
            guard fetching.isRunning else { return }
            sinceProgress += step
            if sinceProgress >= ackWait / 2 {
                sinceProgress = .zero
                try? message.inProgress()
            }
        }
    }

    private func settle(_ message: JetStreamMessage, handled: Settlement.Outcome) {
        do {
            // Tried again while the consumer's leader moves: an acknowledgement lost there means the uplink is
            // handled a second time.
            // One attempt may wait out the request timeout (5 s) while a leader is elected: at least 15 s.
            try Retrying.within(max(ackWait, .seconds(15))) { () throws(NATSError) in
                switch handled {
                case .handled: try message.acknowledge()
                case .notHandled: try message.reject(delay: nil)
                case .refused: try message.terminate()
                }
            }
        } catch {
            logger.warning(
                "Could not settle a message with the stream: it will be delivered again after the ack wait",
                metadata: ["nats.subject": "\(message.subject)", "stream.sequence": "\(message.streamSequence)", "error": "\(error)"]
            )
        }
    }
}

/// How one message ended, told by whoever handles it to the reader that waits.
final class Settlement: Sendable {
    enum Outcome: Sendable {
        /// Every handler ran it (or no handler wants it): acknowledged.
        case handled
        /// A handler dropped it, or shutdown removed it: rejected, for another delivery.
        case notHandled
        /// It can never be handled (not an uplink, a subject of another layout): terminated, never delivered again.
        case refused
    }

    private let outcome = Locked<Outcome?>(nil)
    private let semaphore = DispatchSemaphore(value: 0)

    func settle(_ outcome: Outcome) {
        self.outcome.withLock { $0 = outcome }
        semaphore.signal()
    }

    /// The outcome, once settled within `timeout`; nil otherwise.
    func wait(timeout: Duration) -> Outcome? {
        guard semaphore.wait(timeout: .now() + timeout.timeInterval) == .success else { return nil }
        return outcome.withLock { $0 }
    }
}
