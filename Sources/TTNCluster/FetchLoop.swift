import Dispatch
import Foundation
import Logging
import Synchronization
import TTNNATS

/// A thread that fetches one message at a time from a durable consumer and hands it on, until stopped.
/// A failed fetch (the cluster away) is logged at the first and every 60th time, and tried again after half a second.
final class FetchLoop: Sendable {
    private let subscription: PullSubscription
    private let name: String
    private let logger: Logger
    private let isAccepting: @Sendable () -> Bool
    private let running = Atomic(true)
    private let finished = DispatchSemaphore(value: 0)

    /// - Parameters:
    ///   - name: the thread's name, and the loop's in the log.
    ///   - isAccepting: whether to fetch now; while false, the loop waits without fetching.
    init(subscription: PullSubscription, name: String, logger: Logger, isAccepting: @escaping @Sendable () -> Bool = { true }) {
        self.subscription = subscription
        self.name = name
        self.logger = logger
        self.isAccepting = isAccepting
    }

    /// Whether the loop has not been asked to stop.
    var isRunning: Bool { running.load(ordering: .relaxed) }

    /// Starts the thread; `process` handles each message on it, and the next fetch waits until it returns.
    func start(process: @escaping @Sendable (JetStreamMessage) -> Void) {
        let thread = Thread { [self] in
            fetchUntilStopped(process)
            finished.signal()
        }
        thread.name = name
        thread.start()
    }

    /// Asks the loop to stop after its current fetch or message, without waiting.
    func requestStop() {
        running.store(false, ordering: .relaxed)
    }

    /// Stops the loop, waits for it (about a second, or until `process` returns) and closes the subscription. Call
    /// it once.
    func stop() {
        requestStop()
        finished.wait()
        subscription.close()
    }

    private func fetchUntilStopped(_ process: (JetStreamMessage) -> Void) {
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
                        metadata: ["loop": "\(name)", "error": "\(error)", "failures": "\(failures)"]
                    )
                }
                Thread.sleep(forTimeInterval: 0.5)
                continue
            }
            for message in messages { process(message) }
        }
    }
}
