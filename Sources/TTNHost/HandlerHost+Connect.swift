import Foundation
import Logging
import ServiceLifecycle
import TTNSync
import TTNMQTT

extension HandlerHost {
    /// Starts the source. While the broker cannot be reached and ``Configuration/waitForBroker`` is on, it tries again with
    /// the client's capped exponential backoff, logging every failed attempt.
    /// - Returns: false when graceful shutdown (or cancellation) came before a connection.
    /// - Throws: ``TTNError`` for failures that trying again cannot fix: credentials, TLS, configuration.
    func connectWhenBrokerIsUp() async throws(TTNError) -> Bool {
        let clientConfiguration = configuration.client
        var attempt = 0
        while true {
            switch await attemptConnection() {
            case .connected:
                return true
            case .stopped:
                return false
            case .failed(let error):
                guard configuration.waitForBroker, source.isTransient(error) else { throw error }
                let delay = reconnectDelay(
                    attempt: attempt, minimum: clientConfiguration.minimumReconnectDelay,
                    maximum: clientConfiguration.maximumReconnectDelay
                )
                attempt += 1
                logger.warning(
                    "Cannot reach \(source.peerName) yet; trying again",
                    metadata: [
                        "reason": "\(error.message)", "attempt": "\(attempt)", "retry.in": "\(String(format: "%.1f s", delay.timeInterval))",
                    ]
                )
                do {
                    try await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
                } catch {
                    return false
                }
            }
        }
    }

    private enum ConnectOutcome: Sendable {
        case connected
        case failed(TTNError)
        case stopped
    }

    /// One attempt to start the source, on its own thread because it blocks (up to the connect timeout). Graceful
    /// shutdown or cancellation stops the wait for it at once; a source the abandoned attempt starts later is stopped.
    private func attemptConnection() async -> ConnectOutcome {
        let outcome = FirstOutcome<ConnectOutcome>()
        let source = self.source
        return await withTaskCancellationOrGracefulShutdownHandler {
            await withCheckedContinuation { continuation in
                guard outcome.wait(continuation) else { return }
                startThread(named: "ttn-host connect") {
                    let result: ConnectOutcome
                    do throws(TTNError) {
                        try source.start(delivering: self)
                        result = .connected
                    } catch {
                        result = .failed(error)
                    }
                    if !outcome.fulfill(result), case .connected = result { source.stop() }
                }
            }
        } onCancelOrGracefulShutdown: {
            outcome.fulfill(.stopped)
        }
    }
}

/// The first of several racing outcomes, handed to the one continuation waiting for it.
final class FirstOutcome<Value: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Value, Never>?
        var value: Value?
    }

    private let state = Locked(State())

    /// Parks `continuation` until the first outcome; returns false (and resumes it) when that outcome came already.
    func wait(_ continuation: CheckedContinuation<Value, Never>) -> Bool {
        let ready = state.withLock { state -> Value? in
            if state.value == nil { state.continuation = continuation }
            return state.value
        }
        guard let ready else { return true }
        continuation.resume(returning: ready)
        return false
    }

    /// Sets the outcome if none was set yet, resuming the waiting continuation; returns whether this call set it.
    @discardableResult
    func fulfill(_ value: Value) -> Bool {
        let (won, continuation) = state.withLock { state -> (Bool, CheckedContinuation<Value, Never>?) in
            guard state.value == nil else { return (false, nil) }
            state.value = value
            defer { state.continuation = nil }
            return (true, state.continuation)
        }
        continuation?.resume(returning: value)
        return won
    }
}
