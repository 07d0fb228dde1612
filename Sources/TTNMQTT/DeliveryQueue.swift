import TTNCore
import DequeModule
import Dispatch
import TTNSync

/// An ordered, bounded queue whose items are handled one at a time, off the caller's thread.
///
/// When the queue is full (more items than its limit, or more bytes than its byte limit) the **oldest** waiting
/// item is dropped, counted and reported through `onDrop`, so a slow handler costs memory only up to the limit and
/// never stalls the producer (the MQTT network thread).
package final class DeliveryQueue<Item: Sendable>: Sendable {
    private struct State {
        var items = Deque<Item>()
        var isDraining = false
        var isPaused: Bool
        /// Items wait for ``wake()``: they were queued with `deferringWake` while the queue was idle.
        var isWakeDeferred = false
        var dropped = 0
        var handled = 0
        /// The sum of the waiting items' sizes.
        var bytes = 0
        /// The most `bytes` held at once since the queue was last empty.
        var mostBytes = 0
    }

    private let state: Locked<State>
    private let limit: Int
    private let byteLimit: Int
    private let size: @Sendable (Item) -> Int
    private let dispatchQueue: DispatchQueue
    private let handler: @Sendable (Item) -> Void
    private let onDrop: @Sendable (_ dropped: Item, _ totalDropped: Int) -> Void
    private let onEmptied: (@Sendable (_ mostBytesWaiting: Int) -> Void)?
    private let idle = Locked<[DispatchSemaphore]>([])

    /// - Parameters:
    ///   - limit: how many items may wait; one more drops the oldest.
    ///   - byteLimit: how many bytes the waiting items may hold, as `size` counts them; more drops the oldest until
    ///     they fit, keeping at least the newest item.
    ///   - paused: when true nothing is handled until ``resume()``.
    ///   - onDrop: called (on the producer's thread) with the dropped item and the running total after each drop.
    ///   - onEmptied: called on the handler's thread each time the last waiting item was handled, with the most
    ///     bytes (as `size` counts them, when more than 0) that waited at once since the queue was last empty. The
    ///     queue counts as idle only after it returned.
    package init(
        label: String, limit: Int, byteLimit: Int = .max, size: @escaping @Sendable (Item) -> Int = { _ in 0 },
        paused: Bool = false, onDrop: @escaping @Sendable (_ dropped: Item, _ totalDropped: Int) -> Void,
        onEmptied: (@Sendable (_ mostBytesWaiting: Int) -> Void)? = nil, handler: @escaping @Sendable (Item) -> Void
    ) {
        self.state = Locked(State(isPaused: paused))
        self.limit = max(1, limit)
        self.byteLimit = max(0, byteLimit)
        self.size = size
        self.dispatchQueue = DispatchQueue(label: label)
        self.handler = handler
        self.onDrop = onDrop
        self.onEmptied = onEmptied
    }

    /// Appends `item`, dropping the oldest waiting item if the queue is over its limit.
    /// - Parameter deferringWake: when true and the queue is idle, handling starts only at the next ``wake()``.
    ///   A producer that receives in bursts (the network thread) then wakes the handler's thread once per burst
    ///   rather than once per item; it must call ``wake()`` at the end of every burst.
    package func enqueue(_ item: Item, deferringWake: Bool = false) {
        let itemSize = size(item)
        let (startDrain, dropped) = state.withLock { state -> (Bool, [(Item, Int)]) in
            state.items.append(item)
            state.bytes += itemSize
            var dropped: [(Item, Int)] = []
            while state.items.count > limit || (state.bytes > byteLimit && state.items.count > 1) {
                let oldest = state.items.removeFirst()
                state.bytes -= size(oldest)
                state.dropped += 1
                dropped.append((oldest, state.dropped))
            }
            state.mostBytes = max(state.mostBytes, state.bytes)
            guard !state.isDraining, !state.isPaused else { return (false, dropped) }
            if deferringWake {
                state.isWakeDeferred = true
                return (false, dropped)
            }
            return (Self.beginDrain(&state), dropped)
        }
        for (item, total) in dropped { onDrop(item, total) }
        if startDrain { dispatchQueue.async { self.drain() } }
    }

    /// Starts handling the items queued with `deferringWake`, if they are not being handled already.
    package func wake() {
        let startDrain = state.withLock { state -> Bool in
            guard state.isWakeDeferred, !state.isPaused else { return false }
            return Self.beginDrain(&state)
        }
        if startDrain { dispatchQueue.async { self.drain() } }
    }

    /// Starts handling items (again) after `paused: true`.
    package func resume() {
        let startDrain = state.withLock { state -> Bool in
            state.isPaused = false
            return Self.beginDrain(&state)
        }
        if startDrain { dispatchQueue.async { self.drain() } }
    }

    /// Marks the queue as draining if it is idle with items waiting; returns whether the caller must start it.
    private static func beginDrain(_ state: inout State) -> Bool {
        guard !state.isDraining, !state.items.isEmpty else { return false }
        state.isDraining = true
        state.isWakeDeferred = false
        return true
    }

    /// Items dropped so far because the queue was full.
    package var droppedCount: Int { state.withLock { $0.dropped } }
    /// Items handled so far.
    package var handledCount: Int { state.withLock { $0.handled } }
    /// Items waiting.
    package var count: Int { state.withLock { $0.items.count } }
    /// The bytes the waiting items hold, as the queue's `size` counts them.
    package var byteCount: Int { state.withLock { $0.bytes } }

    /// Waits until every queued item was handled and none is running, or the timeout passed; returns whether
    /// the queue is idle.
    package func waitUntilIdle(timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while true {
            let semaphore = DispatchSemaphore(value: 0)
            let busy = state.withLock { state in
                let busy = state.isDraining || (!state.items.isEmpty && !state.isPaused)
                if busy { idle.withLock { $0.append(semaphore) } }
                return busy
            }
            guard busy else { return true }
            // A drain that ends wakes its waiters; look again, since another may have started meanwhile.
            let remaining = max(.zero, deadline - .now)
            guard semaphore.wait(timeout: .now() + remaining.timeInterval) == .success else { return false }
        }
    }

    /// Removes every waiting item without handling it (the running one finishes) and returns them, oldest first.
    /// They are not counted as dropped: the caller accounts for them.
    package func removeAll() -> [Item] {
        state.withLock { state in
            defer {
                state.items.removeAll()
                state.bytes = 0
            }
            return Array(state.items)
        }
    }

    /// What a drain does next.
    private enum Step {
        case handle(Item)
        /// Report the backlog of the queue that ran empty (`onEmptied`), then look again.
        case reportEmptied(mostBytes: Int)
        case stop
    }

    private func drain() {
        var handledOne = false
        loop: while true {
            // One lock per item: counting the item just handled and taking the next.
            let step = state.withLock { state -> Step in
                if handledOne { state.handled += 1 }
                if !state.isPaused, let item = state.items.popFirst() {
                    state.bytes -= size(item)
                    return .handle(item)
                }
                // Reported while still draining, so that whoever waits for the queue to be idle sees its effects.
                if state.items.isEmpty, state.mostBytes > 0, onEmptied != nil {
                    defer { state.mostBytes = 0 }
                    return .reportEmptied(mostBytes: state.mostBytes)
                }
                state.isDraining = false
                return .stop
            }
            handledOne = false
            switch step {
            case .handle(let item):
                handler(item)
                handledOne = true
            case .reportEmptied(let mostBytes):
                onEmptied?(mostBytes)
            case .stop:
                break loop
            }
        }
        let waiters = idle.withLock { waiters in
            defer { waiters.removeAll() }
            return waiters
        }
        waiters.forEach { $0.signal() }
    }
}
