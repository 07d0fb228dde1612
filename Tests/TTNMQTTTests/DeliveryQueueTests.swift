import Dispatch
import Testing
import TTNSync

@testable import TTNMQTT

/// The handler queues: ordered, bounded, and woken once per burst when the producer defers the wake.
@Suite("Delivery queue")
struct DeliveryQueueTests {
    /// A queue whose handler records what it handled, in order.
    final class Recorder: Sendable {
        let handled = Locked<[Int]>([])
        let queue: DeliveryQueue<Int>

        init(limit: Int = 100, paused: Bool = false, gate: DispatchSemaphore? = nil) {
            let handled = self.handled
            queue = DeliveryQueue(label: "test", limit: limit, paused: paused, onDrop: { _, _ in }) { item in
                gate?.wait()
                handled.withLock { $0.append(item) }
            }
        }

        var items: [Int] { handled.withLock { $0 } }
    }

    @Test("items queued with a deferred wake wait for wake(), then are handled in order")
    func deferredWake() {
        let total = 10_000
        let woken = Locked(false)
        // Each handled item, and whether wake() had been called when the handler ran.
        let handled = Locked<[(item: Int, afterWake: Bool)]>([])
        let queue = DeliveryQueue<Int>(label: "test", limit: total, onDrop: { _, _ in }) { item in
            let afterWake = woken.withLock { $0 }
            handled.withLock { $0.append((item, afterWake)) }
        }
        // Read on this thread right after each enqueue, before wake(): nothing may have been taken or handled,
        // however slow the machine. Were a deferred enqueue to start the queue, its thread would be taking items
        // as soon as it is scheduled, most likely while this loop of 10,000 enqueues still runs.
        var firstTaken: (item: Int, waiting: Int)?
        var handledBeforeWake = 0
        for item in 1...total {
            queue.enqueue(item, deferringWake: true)
            let waiting = queue.count
            if waiting != item, firstTaken == nil { firstTaken = (item, waiting) }
            handledBeforeWake = max(handledBeforeWake, queue.handledCount)
        }
        #expect(firstTaken == nil, "items were taken from the queue before wake()")
        #expect(handledBeforeWake == 0)
        #expect(handled.withLock { $0.isEmpty })
        woken.withLock { $0 = true }
        queue.wake()
        // The bound only limits how long a broken queue keeps this test waiting.
        #expect(queue.waitUntilIdle(timeout: .seconds(60)))
        let record = handled.withLock { $0 }
        #expect(record.count == total)
        #expect(record.map(\.item).elementsEqual(1...total), "in the order queued")
        #expect(record.first { !$0.afterWake } == nil, "handled before wake()")
        #expect(queue.handledCount == total)
        #expect(queue.count == 0)
    }

    @Test("items queued while the queue drains are handled without another wake")
    func queuedWhileDraining() {
        let gate = DispatchSemaphore(value: 0)
        let recorder = Recorder(gate: gate)
        recorder.queue.enqueue(1)  // starts draining, and blocks in the handler
        for item in 2...10 { recorder.queue.enqueue(item, deferringWake: true) }
        for _ in 1...10 { gate.signal() }
        #expect(recorder.queue.waitUntilIdle(timeout: .seconds(60)))
        #expect(recorder.items == Array(1...10))
    }

    @Test("a paused queue stays paused through wake(); resume() starts what waits")
    func pausedThroughWake() {
        let recorder = Recorder(paused: true)
        recorder.queue.enqueue(1, deferringWake: true)
        recorder.queue.wake()
        #expect(recorder.queue.count == 1)  // a paused queue counts as idle, so there is nothing to wait for
        recorder.queue.resume()
        #expect(recorder.queue.waitUntilIdle(timeout: .seconds(60)))
        #expect(recorder.items == [1])
    }

    @Test("a deferred burst over the limit keeps the newest items and counts the dropped ones")
    func limitWithDeferredWake() {
        let recorder = Recorder(limit: 10)
        for item in 1...25 { recorder.queue.enqueue(item, deferringWake: true) }
        recorder.queue.wake()
        #expect(recorder.queue.waitUntilIdle(timeout: .seconds(60)))
        #expect(recorder.items == Array(16...25))
        #expect(recorder.queue.droppedCount == 15)
    }
}

@Suite("Delivery queue byte budget")
struct DeliveryQueueByteBudgetTests {
    @Test("past its byte limit the queue drops the oldest until the rest fit, keeping at least the newest")
    func byteLimit() {
        let gate = DispatchSemaphore(value: 0)
        let dropped = Locked<[Int]>([])
        let handled = Locked<[Int]>([])
        // Item n weighs n bytes; the handler is held at its first item, so the rest wait.
        let queue = DeliveryQueue<Int>(
            label: "bytes", limit: .max, byteLimit: 10, size: { $0 },
            onDrop: { item, _ in dropped.withLock { $0.append(item) } }
        ) { item in
            gate.wait()
            handled.withLock { $0.append(item) }
        }
        queue.enqueue(1)
        #expect(queue.waitUntilIdle(timeout: .milliseconds(50)) == false, "held at the first item")
        for item in [3, 4, 2] { queue.enqueue(item) }
        #expect(queue.byteCount == 9 && queue.count == 3)
        queue.enqueue(5)
        #expect(dropped.withLock { $0 } == [3, 4], "the oldest go until 2 + 5 fit")
        #expect(queue.byteCount == 7)
        queue.enqueue(50)
        #expect(dropped.withLock { $0 } == [3, 4, 2, 5], "one item over the budget alone is kept")
        #expect(queue.count == 1 && queue.byteCount == 50 && queue.droppedCount == 4)
        for _ in 0..<2 { gate.signal() }
        #expect(queue.waitUntilIdle(timeout: .seconds(60)))
        #expect(handled.withLock { $0 } == [1, 50])
        #expect(queue.byteCount == 0)
    }

    @Test("each time the queue runs empty it reports the most bytes that waited at once since it was last empty")
    func emptiedAfterBacklog() {
        let reports = Locked<[Int]>([])
        let reported = DispatchSemaphore(value: 0)
        // Item n weighs n bytes.
        let queue = DeliveryQueue<Int>(
            label: "emptied", limit: .max, size: { $0 }, paused: true, onDrop: { _, _ in },
            onEmptied: { mostBytes in
                reports.withLock { $0.append(mostBytes) }
                reported.signal()
            }
        ) { _ in }
        for item in [3, 4, 2] { queue.enqueue(item) }
        queue.resume()
        #expect(reported.wait(timeout: .now() + 60) == .success)
        #expect(reports.withLock { $0 } == [9], "one report for the backlog of 3 + 4 + 2 bytes")
        queue.enqueue(5)
        #expect(reported.wait(timeout: .now() + 60) == .success)
        #expect(reports.withLock { $0 } == [9, 5], "the most is counted afresh after each time the queue ran empty")
    }
}
