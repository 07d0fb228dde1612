import Dispatch
import Logging
import TTNMQTT
import TTNSync

/// TTN's events for the handlers that want them, downlinks followed until TTN queues them, and timer ticks.
extension HandlerHost {
    /// The event whose handler invocation runs on this thread or task.
    @TaskLocal static var invocationEvent: TTNEvent?

    /// Queues `event` for every handler with a handler of its kind, and settles the downlink it is about;
    /// called by the source on its thread.
    public func receive(_ event: TTNEvent) {
        settleDownlink(of: event)
        route(event, whenHandled: nil)
    }

    /// Queues `event` for every handler of its kind and settles it once each handled it: for a source that
    /// acknowledges (``UplinkReceiver/receive(_:whenHandled:)``).
    public func receive(_ event: TTNEvent, whenHandled: @escaping @Sendable (_ handledByAll: Bool) -> Void) {
        settleDownlink(of: event)
        route(event, whenHandled: whenHandled)
    }

    private func settleDownlink(of event: TTNEvent) {
        if event.kind == .downlinkQueued || event.kind == .downlinkFailed, let id = event.hostDownlinkID {
            tracker.resolve(id: id)
        }
    }

    /// Sets the event kinds handler `name` has handlers for, and subscribes the source to what is wanted now.
    func setWantedEvents(_ kinds: Set<TTNEvent.Kind>, handler name: String) {
        wantedEvents.withLock { $0[name] = kinds.isEmpty ? nil : kinds }
        updateEventSubscriptions()
    }

    /// Asks the source for the event kinds some handler wants, plus `down/queued` and `down/failed` while
    /// downlinks are followed.
    func updateEventSubscriptions() {
        // Reading what is wanted and asking the source for it happen under one lock: callers on several threads
        // (handler queues, the script watcher, the downlink sweep) would otherwise hand the source their sets in
        // another order than they read them, leaving it on a stale set that no later call corrects.
        subscribedEvents.withLock { subscribed in
            var kinds = wantedEvents.withLock { $0.values.reduce(into: Set<TTNEvent.Kind>()) { $0.formUnion($1) } }
            if tracker.count > 0 { kinds.formUnion([.downlinkQueued, .downlinkFailed]) }
            kinds.remove(.downlinkLost)
            guard subscribed != kinds else { return }
            subscribed = kinds
            source.receiveEvents(kinds)
        }
    }

    /// Sends a downlink with its id among its correlation ids, following it until TTN queues or refuses it.
    func sendTracked(_ message: String, to device: String, queue: DownlinkQueue?) throws(TTNError) -> String {
        let id = RepeatableDownlinkIDs.current?.next() ?? tracker.nextID()
        guard configuration.downlinkTimeout > .zero else {
            do {
                try downlinks.send(message, to: device, queue: queue, correlationID: "ttn-host:\(id)")
            } catch {
                downlinksRefused.increment()
                throw error
            }
            downlinksSent.increment()
            return id
        }
        // Subscribed before the downlink goes out, so TTN's answer cannot arrive first.
        tracker.track(id: id, deviceID: device, body: message)
        updateEventSubscriptions()
        do {
            try downlinks.send(message, to: device, queue: queue, correlationID: "ttn-host:\(id)")
        } catch {
            tracker.resolve(id: id)
            downlinksRefused.increment()
            throw error
        }
        downlinksSent.increment()
        return id
    }

    /// Checks now and then for downlinks TTN never answered; nil when tracking is off.
    func startDownlinkSweep() -> (any DispatchSourceTimer)? {
        let timeout = configuration.downlinkTimeout
        guard timeout > .zero else { return nil }
        let sweep = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "ttn.host.downlinks"))
        let period = min(.seconds(1), timeout / 4)
        sweep.schedule(deadline: .now() + period.timeInterval, repeating: period.timeInterval, leeway: .milliseconds(50))
        sweep.setEventHandler { [weak self] in self?.reportLostDownlinks() }
        sweep.resume()
        return sweep
    }

    /// Logs, counts and raises `down/lost` for each downlink past the timeout.
    func reportLostDownlinks() {
        let lost = tracker.takeLost()
        for downlink in lost {
            let total = downlinksLost.incrementAndGet()
            logger.warning(
                "Downlink lost: TTN neither queued nor refused it in time; it was dropped without a word",
                metadata: [
                    "downlink_id": "\(downlink.id)", "ttn.device_id": "\(downlink.deviceID)",
                    "timeout": "\(configuration.downlinkTimeout)", "lost.total": "\(total)",
                ]
            )
            route(TTNEvent(
                kind: .downlinkLost, deviceID: downlink.deviceID, topic: "", json: DownlinkTracker.lostEventJSON(downlink)
            ), whenHandled: nil)
        }
        if !lost.isEmpty || tracker.count == 0 { updateEventSubscriptions() }
    }

    /// Queues a tick of timer `id` on handler `name`'s queue; false when there is no such handler.
    func deliverTick(handler name: String, id: Int) -> Bool {
        guard let runner = handlers.withLock({ $0.first { $0.name == name } }) else { return false }
        runner.enqueue(.timer(id: id))
        return true
    }

    /// Queues `event` for the handlers that want its kind, then calls `whenHandled` once each handled it; none once
    /// shutdown began (settled as not handled), and settled as handled when no handler wants it.
    private func route(_ event: TTNEvent, whenHandled: (@Sendable (Bool) -> Void)?) {
        guard !stopping.load(ordering: .relaxed) else {
            whenHandled?(false)
            return
        }
        let wanted = wantedEvents.withLock { $0.compactMap { $0.value.contains(event.kind) ? $0.key : nil } }
        let runners = handlers.withLock { $0 }.filter { wanted.contains($0.name) }
        guard !runners.isEmpty else {
            whenHandled?(true)
            return
        }
        let ticket = whenHandled.map { WorkTicket(handlers: runners.count, whenHandled: $0) }
        for runner in runners { runner.enqueue(.event(event, ticket)) }
    }
}

/// A weak reference to the host, for what the host owns and must call back without keeping it alive.
final class WeakHost: Sendable {
    private struct Box {
        weak var value: HandlerHost?
    }

    private let box = Locked(Box())

    var value: HandlerHost? {
        get { box.withLock { $0.value } }
        set { box.withLock { $0.value = newValue } }
    }
}
