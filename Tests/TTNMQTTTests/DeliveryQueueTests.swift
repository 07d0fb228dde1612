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
            queue = DeliveryQueue(label: "test", limit: limit, paused: paused, onDrop: { _ in }) { item in
                gate?.wait()
                handled.withLock { $0.append(item) }
            }
        }

        var items: [Int] { handled.withLock { $0 } }
    }

    @Test("items queued with a deferred wake wait for wake(), then are handled in order")
    func deferredWake() {
        let recorder = Recorder()
        for item in 1...50 { recorder.queue.enqueue(item, deferringWake: true) }
        // Nothing can start the queue before wake(), so this wait can only run out.
        #expect(!recorder.queue.waitUntilIdle(timeout: .milliseconds(50)))
        #expect(recorder.items.isEmpty && recorder.queue.count == 50)
        recorder.queue.wake()
        #expect(recorder.queue.waitUntilIdle(timeout: .seconds(10)))
        #expect(recorder.items == Array(1...50))
        #expect(recorder.queue.handledCount == 50)
    }

    @Test("items queued while the queue drains are handled without another wake")
    func queuedWhileDraining() {
        let gate = DispatchSemaphore(value: 0)
        let recorder = Recorder(gate: gate)
        recorder.queue.enqueue(1)  // starts draining, and blocks in the handler
        for item in 2...10 { recorder.queue.enqueue(item, deferringWake: true) }
        for _ in 1...10 { gate.signal() }
        #expect(recorder.queue.waitUntilIdle(timeout: .seconds(10)))
        #expect(recorder.items == Array(1...10))
    }

    @Test("a paused queue stays paused through wake(); resume() starts what waits")
    func pausedThroughWake() {
        let recorder = Recorder(paused: true)
        recorder.queue.enqueue(1, deferringWake: true)
        recorder.queue.wake()
        #expect(recorder.queue.count == 1)  // a paused queue counts as idle, so there is nothing to wait for
        recorder.queue.resume()
        #expect(recorder.queue.waitUntilIdle(timeout: .seconds(10)))
        #expect(recorder.items == [1])
    }

    @Test("a deferred burst over the limit keeps the newest items and counts the dropped ones")
    func limitWithDeferredWake() {
        let recorder = Recorder(limit: 10)
        for item in 1...25 { recorder.queue.enqueue(item, deferringWake: true) }
        recorder.queue.wake()
        #expect(recorder.queue.waitUntilIdle(timeout: .seconds(10)))
        #expect(recorder.items == Array(16...25))
        #expect(recorder.queue.droppedCount == 15)
    }
}
