import Foundation
import Synchronization
import TTNMQTT
import TTNState

/// What a Swift handler runs besides its message handler: event handlers and timers, on its queue.
struct ClosureHandlers: Sendable {
    var message: (@Sendable () -> Void)?
    var events: [TTNEvent.Kind: @Sendable (TTNEvent) -> Void] = [:]
    var timers: [Int: TimerClosure] = [:]

    struct TimerClosure: Sendable {
        let repeats: Bool
        let body: @Sendable () -> Void
    }
}

/// A timer of a Swift handler; ``cancel()`` stops it.
public struct HandlerTimer: Sendable {
    let id: Int
    let handler: String
    let host: WeakHost

    /// Stops the timer; a tick already queued does not run.
    public func cancel() {
        host.value?.cancelTimer(id: id, handler: handler)
    }
}

extension HandlerHost {
    /// Runs `body` with the event of `kind` for every such event, on the queue of the Swift handler `name`
    /// (registered with ``register(name:queueBytes:handler:)``, before or after this call), in order with its
    /// uplinks and with its ``store``. The host subscribes to the event's topic while some handler wants it.
    /// Nil removes it. `down/lost` (``TTNEvent/Kind/downlinkLost``) comes from the host itself.
    public func setEventHandler(_ kind: TTNEvent.Kind, for name: String, _ body: (@Sendable (TTNEvent) -> Void)?) {
        let kinds = closures.withLock { closures in
            closures[name, default: ClosureHandlers()].events[kind] = body
            return Set(closures[name]?.events.keys.map { $0 } ?? [])
        }
        setWantedEvents(kinds, handler: name)
    }

    /// Runs `body` every `interval` on the queue of the Swift handler `name`, never during one of its invocations;
    /// a tick that comes while the handler is busy runs when it is free, and missed ticks are not piled up.
    @discardableResult
    public func every(_ interval: Duration, on name: String, _ body: @escaping @Sendable () -> Void) -> HandlerTimer {
        addTimer(HostTimers.Spec(interval: interval, repeats: true), on: name, body)
    }

    /// Runs `body` once, `delay` from now, on the queue of the Swift handler `name`.
    @discardableResult
    public func after(_ delay: Duration, on name: String, _ body: @escaping @Sendable () -> Void) -> HandlerTimer {
        addTimer(HostTimers.Spec(interval: delay, repeats: false), on: name, body)
    }

    /// The state of the running handler (`swift/<name>` for a closure): its writes land together when the
    /// invocation returns. Nil outside a handler, and without a ``Configuration/stateDirectory``.
    public var store: HandlerStore? { Self.invocationState.map { HandlerStore(state: $0) } }

    /// Hands `value` to the sink named `sink`, as `ttn.emit` does: the record is written to the outbox with the
    /// running invocation's state when the handler returns, and delivered after. Call it inside a handler.
    /// - Returns: the record's id, the `id` of its envelope.
    /// - Throws: outside a handler, for a sink that does not exist (or a host without ``Outputs``), or a value
    ///   past the state's value limit.
    @discardableResult
    public func emit<Value: Encodable>(_ value: Value, to sink: String) throws -> String {
        guard let handler = Self.invocationHandler else { throw EmitError("emit: call it inside a handler") }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let json = String(decoding: try encoder.encode(value), as: UTF8.self)
        let device = Self.invocation?.deviceID ?? Self.invocationEvent?.deviceID ?? configuration.client.deviceID
        return try emit(json, to: sink, state: Self.invocationState, script: handler, deviceID: device)
    }

    private func addTimer(_ spec: HostTimers.Spec, on name: String, _ body: @escaping @Sendable () -> Void) -> HandlerTimer {
        let id = Self.closureTimerIDs.wrappingAdd(1, ordering: .relaxed).newValue
        closures.withLock { $0[name, default: ClosureHandlers()].timers[id] = .init(repeats: spec.repeats, body: body) }
        timers.add(handler: name, id: id, spec: spec)
        return HandlerTimer(id: id, handler: name, host: weakSelf)
    }

    func cancelTimer(id: Int, handler name: String) {
        timers.cancel(handler: name, id: id)
        closures.withLock { $0[name]?.timers[id] = nil }
    }

    /// One invocation of a Swift handler; its state's writes are committed after it.
    func runClosures(of name: String, for work: HandlerWork, state: (any HandlerState)?) -> InvocationOutcome {
        let handlers = closures.withLock { $0[name] } ?? ClosureHandlers()
        if case .timer(let id) = work { timers.tickDone(handler: name, id: id) }
        let result = Self.$invocationHandler.withValue(name) { Self.$invocationState.withValue(state) {
            HandlerInvocation.run(state: state, work: work.stateWork) {
                switch work {
                case .uplink(let uplink, _):
                    if let message = handlers.message { Self.$invocation.withValue(uplink, operation: message) }
                case .timer(let id):
                    guard let timer = handlers.timers[id] else { return }
                    if !timer.repeats { closures.withLock { $0[name]?.timers[id] = nil } }
                    timer.body()
                case .event(let event, _):
                    guard let body = handlers.events[event.kind] else { return }
                    Self.$invocationEvent.withValue(event) { body(event) }
                }
            }
        } }
        result.log(
            to: logger, failure: "State not saved: the invocation's writes were discarded", level: .error,
            metadata: work.logMetadata.merging(["handler": "\(name)"]) { $1 }
        )
        return result.outcome
    }

    private static let closureTimerIDs = Atomic(0)
}
