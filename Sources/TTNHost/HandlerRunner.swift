import CoreMetrics
import Logging
import Synchronization
import TTNCore
import TTNMQTT
import TTNSync

/// What a handler's queue carries: an uplink for its message handler, a tick of one of its timers, or an event
/// for its event handler of that kind. All run in order on the handler's own queue, one at a time.
enum HandlerWork: Sendable {
    /// An uplink, with the ticket that follows it through every handler when the host records progress or its
    /// source waits to hear it was handled.
    case uplink(Uplink, WorkTicket?)
    case timer(id: Int)
    /// An event, with the ticket that follows it through every handler of its kind when its source waits for them.
    case event(TTNEvent, WorkTicket?)

    /// The ticket that follows this item, if any.
    var ticket: WorkTicket? {
        switch self {
        case .uplink(_, let ticket), .event(_, let ticket): ticket
        case .timer: nil
        }
    }
}

extension HandlerWork {
    /// About how many bytes the item holds while it waits, for the queue's byte budget.
    var memoryFootprint: Int {
        switch self {
        case .uplink(let uplink, _): uplink.memoryFootprint
        case .timer: 64
        case .event(let event, _): 256 + event.json.utf8.count
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
    ///   - repeatableDownlinkIDs: whether the downlinks of an invocation get ids made from what it handles
    ///     (``HandlerHost/Configuration/repeatableDownlinkIDs``).
    ///   - memoryRelease: what returns memory to the system when the queue ran empty after a backlog.
    ///   - body: runs one invocation; returns how it ended (and has logged a failure).
    init(
        name: String, kind: String, application: String, queueBytes: Int, logger: Logger, repeatableDownlinkIDs: Bool = false,
        memoryRelease: BacklogMemoryRelease = .system,
        onDroppedTick: @escaping @Sendable (_ timerID: Int) -> Void = { _ in },
        body: @escaping @Sendable (HandlerWork) -> InvocationOutcome
    ) {
        self.name = name
        self.kind = kind
        let failures = self.failures
        let durations = CoreMetrics.Timer(label: "ttn_handler_duration_seconds", dimensions: [("app", application), ("handler", name)])
        self.queue = DeliveryQueue(
            label: "ttn.host.\(name)", limit: .max, byteLimit: queueBytes, size: \.memoryFootprint,
            onDrop: { work, total in
                if case .timer(let id) = work { onDroppedTick(id) }
                work.ticket?.miss()
                if total == 1 || total.isMultiple(of: 1000) {
                    logger.warning(
                        "Handler too slow: its oldest waiting item (an uplink, event or timer tick) was dropped",
                        metadata: ["handler": "\(name)", "dropped.total": "\(total)"]
                    )
                }
            },
            onEmptied: { mostBytes in memoryRelease.queueEmptied(mostBytesWaiting: mostBytes, handler: name, logger: logger) },
            handler: { work in
                let start = ContinuousClock.now
                let outcome = if repeatableDownlinkIDs, let names = RepeatableDownlinkIDs(for: work, handler: name) {
                    RepeatableDownlinkIDs.$current.withValue(names) { body(work) }
                } else {
                    body(work)
                }
                if outcome == .failed { failures.increment() }
                durations.recordNanoseconds((ContinuousClock.now - start).nanoseconds)
                if outcome == .deferred { work.ticket?.miss() } else { work.ticket?.finish() }
            }
        )
    }

    /// Queues `uplink` on the network thread; it is handled after the burst it came in ends (``wake()``).
    func enqueue(_ uplink: Uplink, ticket: WorkTicket?) { queue.enqueue(.uplink(uplink, ticket), deferringWake: true) }

    /// Queues a timer's tick or an event, to run after what is queued already.
    func enqueue(_ work: HandlerWork) { queue.enqueue(work) }

    /// Starts handling the uplinks of a burst that ended.
    func wake() { queue.wake() }

    /// Waits until nothing waits or runs, or the timeout passed; returns whether the handler is idle.
    func waitUntilIdle(timeout: Duration) -> Bool { queue.waitUntilIdle(timeout: timeout) }

    /// Removes the waiting uplinks unhandled, for a shutdown past its deadline; they are counted as `unhandled`.
    func abandonWaiting() {
        let removed = queue.removeAll()
        for work in removed { work.ticket?.miss() }
        abandoned.add(removed.count)
    }

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

/// The ids of one invocation's downlinks, made from the uplink or event it handles, the handler and the downlink's
/// number within the invocation: the same uplink handled again sends its downlinks under the same ids.
final class RepeatableDownlinkIDs: Sendable {
    /// The ids of the invocation running on this thread or task, when the host makes them repeatable.
    @TaskLocal static var current: RepeatableDownlinkIDs?

    private let base: String
    private let count = Atomic(0)

    /// Nil for a timer's tick: nothing outside the process names it, so it gets new ids.
    init?(for work: HandlerWork, handler: String) {
        switch work {
        case .uplink(let uplink, _): base = "\(handler)/up/\(uplink.deduplicationID)"
        case .event(let event, _): base = "\(handler)/event/\(event.deduplicationID)"
        case .timer: return nil
        }
    }

    /// Numbers the downlinks from the first again, for an invocation that runs again: its downlinks get the ids of
    /// its first run.
    func restart() { count.store(0, ordering: .relaxed) }

    /// The next downlink's id: 16 hex digits, short enough for TTN's correlation ids.
    func next() -> String {
        hexFNV1a64("\(base)/\(count.add(1, ordering: .relaxed).newValue)".utf8)
    }
}
