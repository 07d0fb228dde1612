import CoreMetrics
import Logging
import Synchronization
import TTNMQTT
import TTNSync

/// What a handler's queue carries: an uplink for its message handler, a tick of one of its timers, or an event
/// for its event handler of that kind. All run in order on the handler's own queue, one at a time.
enum HandlerWork: Sendable {
    /// An uplink, with the ticket that follows it through every handler when the host records progress.
    case uplink(Uplink, UplinkTicket?)
    case timer(id: Int)
    case event(TTNEvent)
}

extension HandlerWork {
    /// About how many bytes the item holds while it waits, for the queue's byte budget.
    var memoryFootprint: Int {
        switch self {
        case .uplink(let uplink, _): uplink.memoryFootprint
        case .timer: 64
        case .event(let event): 256 + event.json.utf8.count
        }
    }
}

/// One handler with its ordered queue, bounded in bytes.
final class HandlerRunner: Sendable {
    let name: String
    let kind: String
    private let queue: DeliveryQueue<HandlerWork>
    private let failures = Counter()
    private let abandoned = Counter()

    /// - Parameters:
    ///   - onDroppedTick: called when a timer's tick was dropped from the full queue, so the timer may tick again.
    ///   - application: the application id, for the duration metric's labels.
    ///   - body: runs one invocation; returns false when it failed (and has logged why).
    init(
        name: String, kind: String, application: String, queueBytes: Int, logger: Logger,
        onDroppedTick: @escaping @Sendable (_ timerID: Int) -> Void = { _ in },
        body: @escaping @Sendable (HandlerWork) -> Bool
    ) {
        self.name = name
        self.kind = kind
        let failures = self.failures
        let durations = CoreMetrics.Timer(label: "ttn_handler_duration_seconds", dimensions: [("app", application), ("handler", name)])
        self.queue = DeliveryQueue(
            label: "ttn.host.\(name)", limit: .max, byteLimit: queueBytes, size: \.memoryFootprint,
            onDrop: { work, total in
                switch work {
                case .timer(let id): onDroppedTick(id)
                case .uplink(_, let ticket): ticket?.finish()
                case .event: break
                }
                if total == 1 || total.isMultiple(of: 1000) {
                    logger.warning(
                        "Handler too slow: its oldest waiting item (an uplink, event or timer tick) was dropped",
                        metadata: ["handler": "\(name)", "dropped.total": "\(total)"]
                    )
                }
            },
            handler: { work in
                let start = ContinuousClock.now
                if !body(work) { failures.increment() }
                durations.recordNanoseconds((ContinuousClock.now - start).nanoseconds)
                if case .uplink(_, let ticket?) = work { ticket.finish() }
            }
        )
    }

    /// Queues `uplink` on the network thread; it is handled after the burst it came in ends (``wake()``).
    func enqueue(_ uplink: Uplink, ticket: UplinkTicket?) { queue.enqueue(.uplink(uplink, ticket), deferringWake: true) }

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
            waitingBytes: queue.byteCount, unhandled: abandoned.value
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
