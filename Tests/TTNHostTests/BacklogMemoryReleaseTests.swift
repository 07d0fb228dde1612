import Dispatch
import Logging
import Testing
import TTNSync

@testable import TTNHost

@Suite("Returning memory after a backlog")
struct BacklogMemoryReleaseTests {
    /// A timer's tick weighs 64 bytes in a handler's queue (`HandlerWork.memoryFootprint`).
    static let tickBytes = 64

    @Test(
        "a handler queue returns memory once it ran empty after a backlog of at least the threshold, and not otherwise",
        arguments: [(threshold: 9 * tickBytes, releases: 1), (threshold: 9 * tickBytes + 1, releases: 0)]
    )
    func releaseAfterBacklog(threshold: Int, releases: Int) {
        let released = Locked(0)
        let entered = DispatchSemaphore(value: 0)
        let gate = DispatchSemaphore(value: 0)
        let handled = Locked(0)
        let runner = HandlerRunner(
            name: "backlog", kind: "swift", application: "my-app", queueBytes: .max, logger: Logger(label: "test"),
            memoryRelease: BacklogMemoryRelease(threshold: threshold) { released.withLock { $0 += 1 } }
        ) { _ in
            if handled.withLock({ $0 += 1; return $0 }) == 1 {
                entered.signal()
                gate.wait()
            }
            return .succeeded
        }
        // The first tick is taken and held in the handler, so exactly the next nine wait: 9 × 64 bytes at once.
        runner.enqueue(.timer(id: 0))
        #expect(entered.wait(timeout: .now() + 60) == .success)
        for id in 1...9 { runner.enqueue(.timer(id: id)) }
        #expect(runner.statistics.waitingBytes == 9 * Self.tickBytes)
        gate.signal()
        #expect(runner.waitUntilIdle(timeout: .seconds(60)))
        // A single tick afterwards is no backlog, whatever the threshold.
        runner.enqueue(.timer(id: 10))
        #expect(runner.waitUntilIdle(timeout: .seconds(60)))
        #expect(handled.withLock { $0 } == 11)
        #expect(released.withLock { $0 } == releases)
    }

    @Test("the system's release finds malloc_trim where the C library is glibc")
    func systemReleaseFindsMallocTrim() {
        #if canImport(Glibc)
        #expect(BacklogMemoryRelease.mallocTrim != nil)
        #else
        #expect(BacklogMemoryRelease.mallocTrim == nil)
        #endif
    }
}
