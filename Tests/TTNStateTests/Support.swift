import Foundation
import Testing

import TTNState

/// A new state directory (not created yet) under the temporary directory, removed after `body`.
func withStateDirectory<Result>(_ body: (String) throws -> Result) throws -> Result {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ttn-state-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    return try body(directory)
}

/// The same, for async tests.
func withStateDirectory<Result>(_ body: (String) async throws -> Result) async throws -> Result {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ttn-state-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    return try await body(directory)
}

/// The StateError `body` throws, or nil (recorded as an issue) when it throws none or another error.
func stateError(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> StateError? {
    do {
        try body()
        Issue.record("expected a StateError, got none", sourceLocation: sourceLocation)
    } catch let error as StateError {
        return error
    } catch {
        Issue.record("expected a StateError, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

/// Sleeps past a short TTL.
func waitPast(_ ttl: Duration) {
    Thread.sleep(forTimeInterval: Double(ttl.components.seconds) + Double(ttl.components.attoseconds) / 1e18 + 0.1)
}

/// Waits until `condition` holds or `timeout` passed, looking every millisecond: for what the group of commits'
/// timer does on its own thread. The caller then expects the condition.
func waitUntil(timeout: Duration, _ condition: () -> Bool) {
    let deadline = ContinuousClock.now + timeout
    while !condition() && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.001) }
}
