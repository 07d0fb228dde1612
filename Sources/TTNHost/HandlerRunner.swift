import Logging
import Synchronization
import TTNMQTT
import TTNSync

/// What a handler's queue carries: an uplink for its message handler, a tick of one of its timers, or an event
/// for its event handler of that kind. All run in order on the handler's own queue, one at a time.
enum HandlerWork: Sendable {
    case uplink(Uplink)
    case timer(id: Int)
    case event(TTNEvent)
}

/// One handler with its ordered, bounded queue.
final class HandlerRunner: Sendable {
    let name: String
    let kind: String
    private let queue: DeliveryQueue<HandlerWork>
    private let failures = Counter()
    private let abandoned = Counter()

    /// - Parameters:
    ///   - onDroppedTick: called when a timer's tick was dropped from the full queue, so the timer may tick again.
    ///   - body: runs one invocation; returns false when it failed (and has logged why).
    init(
        name: String, kind: String, queueLimit: Int, logger: Logger,
        onDroppedTick: @escaping @Sendable (_ timerID: Int) -> Void = { _ in },
        body: @escaping @Sendable (HandlerWork) -> Bool
    ) {
        self.name = name
        self.kind = kind
        let failures = self.failures
        self.queue = DeliveryQueue(
            label: "ttn.host.\(name)", limit: queueLimit,
            onDrop: { work, total in
                if case .timer(let id) = work { onDroppedTick(id) }
                if total == 1 || total.isMultiple(of: 1000) {
                    logger.warning(
                        "Handler too slow: its oldest waiting item (an uplink, event or timer tick) was dropped",
                        metadata: ["handler": "\(name)", "dropped.total": "\(total)"]
                    )
                }
            },
            handler: { work in
                if !body(work) { failures.increment() }
            }
        )
    }

    /// Queues `uplink` on the network thread; it is handled after the burst it came in ends (``wake()``).
    func enqueue(_ uplink: Uplink) { queue.enqueue(.uplink(uplink), deferringWake: true) }

    /// Queues a timer's tick or an event, to run after what is queued already.
    func enqueue(_ work: HandlerWork) { queue.enqueue(work) }

    /// Starts handling the uplinks of a burst that ended.
    func wake() { queue.wake() }

    /// Waits until nothing waits or runs, or the timeout passed; returns whether the handler is idle.
    func waitUntilIdle(timeout: Duration) -> Bool { queue.waitUntilIdle(timeout: timeout) }

    /// Removes the waiting uplinks unhandled, for a shutdown past its deadline; they are counted as `unhandled`.
    func abandonWaiting() { abandoned.add(queue.removeAll()) }

    var statistics: HandlerHost.HandlerStatistics {
        .init(
            handled: queue.handledCount, dropped: queue.droppedCount, failed: failures.value, waiting: queue.count,
            unhandled: abandoned.value
        )
    }
}

/// A counter shared between threads.
final class Counter: Sendable {
    private let atomic = Atomic(0)
    func increment() { add(1) }
    /// Adds one and returns the new total.
    func incrementAndGet() -> Int { atomic.wrappingAdd(1, ordering: .relaxed).newValue }
    func add(_ amount: Int) { atomic.add(amount, ordering: .relaxed) }
    var value: Int { atomic.load(ordering: .relaxed) }
}
