import Foundation

/// Starts `work` on a thread of its own, for a call that blocks (a connect, a drain, a disconnect) and so must
/// not hold one of the cooperative pool's few threads.
package func startThread(named name: String, _ work: @escaping @Sendable () -> Void) {
    let thread = Thread(block: work)
    thread.name = name
    thread.start()
}

/// Runs blocking `work` on a thread of its own (see ``startThread(named:_:)``) and returns its result.
package func onOwnThread<Result: Sendable>(named name: String, _ work: @escaping @Sendable () -> Result) async -> Result {
    await withCheckedContinuation { continuation in
        startThread(named: name) { continuation.resume(returning: work()) }
    }
}
