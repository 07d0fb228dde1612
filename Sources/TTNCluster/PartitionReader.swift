import Dispatch
import Foundation
import Logging
import Synchronization
import TTNNATS
import TTNSync

/// Reads one partition's durable consumer on a thread of its own: fetches a message, hands it to `handle`, waits
/// until it is settled (telling the server the worker is still at it every half ack wait), then acknowledges it,
/// or rejects it for another delivery. The consumer lets one message out at a time, so a partition's messages are
/// handled in order across every worker.
final class PartitionReader: Sendable {
    private let subscription: PullSubscription
    private let partition: Int
    private let ackWait: Duration
    private let logger: Logger
    private let handle: @Sendable (JetStreamMessage, Settlement) -> Void
    private let isAccepting: @Sendable () -> Bool
    private let running = Atomic(true)
    private let finished = DispatchSemaphore(value: 0)

    /// - Parameters:
    ///   - isAccepting: whether the host takes messages now; while it does not (it is shutting down), the reader
    ///     fetches nothing, so what it would fetch goes to the other workers.
    ///   - handle: hands the message on and settles it now (a message it skips) or later (once handled).
    init(
        subscription: PullSubscription, partition: Int, ackWait: Duration, logger: Logger,
        isAccepting: @escaping @Sendable () -> Bool, handle: @escaping @Sendable (JetStreamMessage, Settlement) -> Void
    ) {
        self.isAccepting = isAccepting
        self.subscription = subscription
        self.partition = partition
        self.ackWait = ackWait
        self.logger = logger
        self.handle = handle
    }

    func start() {
        let thread = Thread { [self] in
            readUntilStopped()
            finished.signal()
        }
        thread.name = "ttn.cluster.p\(partition)"
        thread.start()
    }

    /// Asks the reader to stop after its current fetch, without waiting.
    func requestStop() {
        running.store(false, ordering: .relaxed)
    }

    /// Stops reading and returns within about a second. A message still being handled is left unacknowledged: the
    /// server delivers it again after the ack wait. Call it once.
    func stop() {
        requestStop()
        finished.wait()
        subscription.close()
    }

    private var isRunning: Bool { running.load(ordering: .relaxed) }

    private func readUntilStopped() {
        var failures = 0
        while isRunning {
            guard isAccepting() else {
                Thread.sleep(forTimeInterval: 0.1)
                continue
            }
            let messages: [JetStreamMessage]
            do {
                messages = try subscription.fetch(batch: 1, timeout: .seconds(1))
                failures = 0
            } catch {
                failures += 1
                if failures == 1 || failures.isMultiple(of: 60) {
                    logger.warning(
                        "Cannot fetch from the stream; trying again",
                        metadata: ["partition": "\(partition)", "error": "\(error)", "failures": "\(failures)"]
                    )
                }
                Thread.sleep(forTimeInterval: 0.5)
                continue
            }
            for message in messages { process(message) }
        }
    }

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
            guard isRunning else { return }
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
            try Retrying.within(ackWait / 2) { () throws(NATSError) in
                switch handled {
                case .handled: try message.acknowledge()
                case .notHandled: try message.reject(delay: nil)
                case .refused: try message.terminate()
                }
            }
        } catch {
            logger.warning(
                "Could not settle a message with the stream: it will be delivered again after the ack wait",
                metadata: ["partition": "\(partition)", "stream.sequence": "\(message.streamSequence)", "error": "\(error)"]
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
