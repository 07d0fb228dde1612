import Foundation
import Logging

/// Gives the memory a drained backlog left free back to the system.
///
/// glibc's malloc keeps freed memory in its arenas for reuse, so without this a host stays at the resident size of
/// its largest backlog for the rest of its life: 10,000 waiting uplinks of 1.6 KB take about 60 MB with their
/// tapes, and a container's memory limit goes on counting them long after they were handled. `malloc_trim(0)`
/// returns the free pages. It holds each arena's lock while it walks it, so it runs on a handler's thread, and
/// only when a queue ran empty after at least ``threshold`` bytes waited in it at once, which takes a backlog
/// of thousands of uplinks. Where the C library has no `malloc_trim` (musl, Darwin) it does nothing.
struct BacklogMemoryRelease: Sendable {
    /// The fewest bytes (as the handler queues count them) that must have waited at once for memory to be returned.
    let threshold: Int
    /// Returns free memory to the system.
    let release: @Sendable () -> Void

    /// `malloc_trim(0)` after a backlog of 8 MiB or more.
    static let system = BacklogMemoryRelease(threshold: 8 << 20) { _ = mallocTrim?(0) }

    /// glibc's `malloc_trim`, looked up at run time: Swift's Glibc module does not import `<malloc.h>`, and other C
    /// libraries do not have it.
    static let mallocTrim: (@convention(c) (Int) -> Int32)? = {
        guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
    }()

    /// Called when a handler's queue ran empty, with the most bytes that waited in it at once since it was last empty.
    func queueEmptied(mostBytesWaiting: Int, handler: String, logger: Logger) {
        guard mostBytesWaiting >= threshold else { return }
        let start = ContinuousClock.now
        release()
        logger.debug(
            "Returned free memory to the system after a backlog",
            metadata: [
                "handler": "\(handler)", "backlog.bytes": "\(mostBytesWaiting)",
                "duration.ms": "\((ContinuousClock.now - start).nanoseconds / 1_000_000)",
            ]
        )
    }
}
