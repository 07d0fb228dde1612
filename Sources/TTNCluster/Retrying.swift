import Foundation
import TTNNATS

/// Retrying what a moving cluster refuses for a moment: while a server restarts, the stream's or consumer's leader
/// moves, and requests meanwhile time out or find no responder for a few seconds.
enum Retrying {
    /// Whether `error` may pass by itself: no answer in time, no responder (a leader being elected), no connection.
    static func isPassing(_ error: NATSError) -> Bool {
        [.timeout, .notFound, .connection].contains(error.kind)
    }

    /// Runs `attempt` until it succeeds, fails for good, or `limit` passed (then the last error is thrown), pausing
    /// 100 ms doubling to 1 s between attempts.
    static func within<Result>(_ limit: Duration, _ attempt: () throws(NATSError) -> Result) throws(NATSError) -> Result {
        let deadline = ContinuousClock.now + limit
        var pause = 0.1
        while true {
            do {
                return try attempt()
            } catch where isPassing(error) && ContinuousClock.now + .milliseconds(Int64(pause * 1000)) < deadline {
                Thread.sleep(forTimeInterval: pause)
                pause = min(pause * 2, 1)
            }
        }
    }
}
