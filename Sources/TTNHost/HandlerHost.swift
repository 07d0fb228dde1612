import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TTNSync
import TTNLua
import TTNMQTT
import TTNState
import UnixSignals

/// Connects to one TTN application and routes every uplink to no-argument message handlers: Swift closures
/// registered with ``register(name:handler:)`` and Lua scripts from a directory, reloaded when they change.
///
/// Uplinks come from an ``UplinkSource`` and downlinks go out through a ``DownlinkPath``: by default both are
/// the TTN MQTT connection (``MQTTUplinkSource``).
///
/// ```swift
/// let host = HandlerHost(configuration: .init(client: clientConfiguration, scriptDirectory: "handlers"))
/// host.register(name: "print") { print(host.getLastMessage()?.decodedPayload ?? "-") }
/// try await ServiceGroup(services: [host], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
/// ```
///
/// Every handler has its own ordered queue and runs off the MQTT network thread, so a slow or stuck handler
/// never stalls the connection or the other handlers. When a handler's queue is full (its waiting uplinks hold more
/// than ``Configuration/handlerQueueBytes``), its **oldest** waiting uplink is dropped, counted and logged.
///
/// Uplinks missed while the connection was away, or missing from a device's frame counter, are fetched from TTN's
/// Storage Integration (``Configuration/backfill``) and handled in order per device, marked ``Uplink/isBackfilled``.
public final class HandlerHost: Service, UplinkReceiver {
    public struct Configuration: Sendable {
        /// The TTN application to connect to.
        public var client: MQTTClient.Configuration
        /// A directory of `*.lua` handler scripts, watched for changes. Nil: Swift closures only.
        public var scriptDirectory: String?
        /// Limits for every script invocation and state.
        public var luaLimits = LuaLimits()
        /// The bytes of uplinks (JSON and its parse, ``Uplink/memoryFootprint``) that may wait per handler before
        /// the oldest is dropped. Default 64 MiB: about 20,000 uplinks of 3.3 KB in memory (a 1.6 KB uplink with
        /// its parse), or 15,000 of TTN's typical 4.3 KB.
        public var handlerQueueBytes = 64 << 20
        /// How long SIGTERM/SIGINT waits for queued uplinks to be handled before it reports the rest. Default 10 s.
        public var shutdownDeadline: Duration = .seconds(10)
        /// Whether ``HandlerHost/run()`` waits for a broker that cannot be reached yet (nothing listens, no answer,
        /// the name does not resolve), trying again with the client's capped exponential backoff
        /// (`minimumReconnectDelay` doubling to `maximumReconnectDelay`, 1 s to 30 s by default) and logging every
        /// failed attempt. Default true. A refused key, a TLS failure or a wrong setting ends `run()` at once either
        /// way. Set it to false to fail fast and leave restarts to a supervisor.
        public var waitForBroker = true
        /// Where handlers keep their state (`ttn.store`, ``HandlerHost/store``): a SQLite database in this directory,
        /// created if missing. Nil: no state; `ttn.store` raises and ``HandlerHost/store`` is nil.
        public var stateDirectory: String?
        /// Limits of every handler's state. Defaults: key 256 bytes, value 64 KiB, 64 MiB per handler.
        public var stateLimits = StateLimits()
        /// Put before every handler's state namespace (`lua/<file>`, `swift/<name>`), so that several applications
        /// can share one state database: ttn-host uses `<application id>/` for the applications of a configuration
        /// file. Default empty.
        public var stateNamespacePrefix = ""
        /// How long TTN has to queue (`down/queued`) or refuse (`down/failed`) a downlink before the host calls it
        /// lost: logged, counted, and raised as a `down/lost` event. Default 30 s; zero turns tracking off.
        public var downlinkTimeout: Duration = .seconds(30)
        /// Where uplinks missed are fetched from; nil: backfill off (gaps are still found, counted and logged).
        public var backfill: BackfillConfiguration?
        /// How long the host may be connected without an uplink before it warns ("connected but silent"); the warning
        /// repeats at twice the interval each time. Default 15 minutes; zero: never.
        public var silenceWarning: Duration = .seconds(15 * 60)
        /// Whether a downlink sent while handling an uplink or event gets an id made from that uplink or event, the
        /// handler and the downlink's number within the invocation, instead of a new one. An uplink handled again
        /// (redelivered by a message stream after a crash) then sends its downlinks under the same ids, which the
        /// stream deduplicates. Default false; `ttn-host work` turns it on.
        public var repeatableDownlinkIDs = false

        public init(client: MQTTClient.Configuration, scriptDirectory: String? = nil) {
            self.client = client
            self.scriptDirectory = scriptDirectory
        }
    }

    /// What the host has handled and skipped so far.
    public struct Statistics: Sendable, Hashable, Codable {
        /// Uplinks received, decoded and routed to the handlers.
        public var uplinks = 0
        /// Uplinks skipped because their JSON was malformed or not an uplink.
        public var malformed = 0
        /// Uplinks skipped because they were larger than the client's `maximumMessageSize`.
        public var oversized = 0
        /// Messages skipped because they were not on one of the application's device topics.
        public var unexpectedTopics = 0
        /// Uplinks that arrived after shutdown began: counted, not routed.
        public var arrivedDuringShutdown = 0
        /// Downlinks sent to TTN.
        public var downlinksSent = 0
        /// Downlinks refused before they were sent (malformed, wrong port, no connection).
        public var downlinksRefused = 0
        /// Downlinks TTN neither queued nor refused within ``Configuration/downlinkTimeout``.
        public var downlinksLost = 0
        /// Times the source connected again after losing its connection.
        public var reconnects = 0
        /// Gaps found in devices' frame counters, and the uplinks they missed.
        public var gaps = 0
        public var missingUplinks = 0
        /// Uplinks fetched from the Storage Integration and handled.
        public var backfilled = 0
        /// Fetched uplinks skipped because they had been handled already.
        public var backfillAlreadyHandled = 0
        /// Missing uplinks given up: neither received nor found in the Storage Integration.
        public var unrecovered = 0
        /// Requests to the Storage Integration that failed.
        public var backfillFailures = 0
        /// Live uplinks skipped because the same uplink (by its `as:up:` id) had been handled already.
        public var duplicates = 0
        /// Per handler, by name.
        public var handlers: [String: HandlerStatistics] = [:]
    }

    /// What one handler did with the work queued for it (uplinks, and its timer ticks and events): each item is
    /// handled, dropped, waiting or (after a shutdown that ran out of time) unhandled, apart from the one running now.
    public struct HandlerStatistics: Sendable, Hashable, Codable {
        /// Invocations that ran to their end, successfully or not.
        public var handled = 0
        /// Items dropped because this handler's queue was full.
        public var dropped = 0
        /// Invocations that failed (a Lua error, a limit hit, an interruption at shutdown, state that could not be
        /// saved); counted in `handled` too.
        public var failed = 0
        /// Items waiting in this handler's queue.
        public var waiting = 0
        /// The bytes the waiting items hold, as ``Configuration/handlerQueueBytes`` counts them.
        public var waitingBytes = 0
        /// Items still waiting when the shutdown deadline passed: removed from the queue, never handled.
        public var unhandled = 0
    }

    public let configuration: Configuration
    let source: any UplinkSource
    let downlinks: any DownlinkPath
    let logger: Logger
    let handlers = Locked<[HandlerRunner]>([])
    let history: UplinkHistory
    let tracker: DownlinkTracker
    let timers: HostTimers
    /// This host, weakly: for what it owns that calls back into it (timers, scripts, timer handles).
    let weakSelf: WeakHost
    /// The closures of ``register(name:queueBytes:handler:)``, ``setEventHandler(_:for:_:)`` and the timers, by handler.
    let closures = Locked<[String: ClosureHandlers]>([:])
    /// The open state database: while ``run()`` runs with a ``Configuration/stateDirectory``, or the database of
    /// ``outputs`` for the host's life.
    let stateDatabase = Locked<StateDatabase?>(nil)
    /// The sinks that `ttn.emit` and ``emit(_:to:)`` write to, shared with other hosts of the process; nil: none.
    let outputs: Outputs?
    /// Where the handlers keep their state when it is shared with other processes (a cluster's workers) rather
    /// than in a state directory.
    let sharedState: (any StateNamespaces)?
    /// The event kinds each handler has handlers for, by handler name.
    let wantedEvents = Locked<[String: Set<TTNEvent.Kind>]>([:])
    /// The event kinds the source was last asked for.
    let subscribedEvents = Locked<Set<TTNEvent.Kind>>([])
    let downlinksLost = Counter()
    let downlinksSent = Counter()
    let downlinksRefused = Counter()
    /// Finds gaps, and fills them and the time the source was away from the Storage Integration.
    let backfiller: Backfiller
    /// The last uplink handled per device, while there is a state database to keep it in.
    let progress = ProgressBook()
    /// When the last burst of uplinks ended (or the source connected), for the silence warning.
    let lastUplink = Locked<ContinuousClock.Instant?>(nil)
    /// Where ``run()`` is: what `/health/ready` reports.
    let phase = Locked(RunPhase.starting)
    /// The conditions of readiness besides the source's connection (``addReadinessCheck(_:)``).
    let readinessChecks = Locked<[@Sendable () -> String?]>([])
    /// Set when shutdown begins: uplinks arriving after it are counted, not queued, and events are dropped.
    let stopping = Atomic(false)
    private let arrivedDuringShutdown = Counter()

    /// The uplink whose handler invocation runs on this thread or task.
    @TaskLocal static var invocation: Uplink?
    /// The state of the handler whose invocation runs on this thread or task.
    @TaskLocal static var invocationState: (any HandlerState)?
    /// The name of the Swift handler whose invocation runs on this thread or task.
    @TaskLocal static var invocationHandler: String?

    /// A host on the TTN MQTT connection that `configuration.client` describes.
    public convenience init(configuration: Configuration) {
        let source = MQTTUplinkSource(configuration: configuration.client)
        self.init(configuration: configuration, source: source, downlinks: source)
    }

    /// A host on the TTN MQTT connection that `configuration.client` describes, whose handlers keep their state in
    /// the database of `outputs` (``Configuration/stateDirectory`` is not used) and emit to its sinks.
    public convenience init(configuration: Configuration, outputs: Outputs) {
        let source = MQTTUplinkSource(configuration: configuration.client)
        self.init(configuration: configuration, source: source, downlinks: source, outputs: outputs)
    }

    /// A host that takes its uplinks from `source` and sends its downlinks through `downlinks`; with `outputs`, its
    /// handlers keep their state in the outputs' database and emit to its sinks; with `sharedState` (and no
    /// outputs), they keep it there.
    public init(
        configuration: Configuration, source: any UplinkSource, downlinks: any DownlinkPath, outputs: Outputs? = nil,
        sharedState: (any StateNamespaces)? = nil
    ) {
        self.configuration = configuration
        self.source = source
        self.downlinks = downlinks
        self.outputs = outputs
        self.sharedState = outputs == nil ? sharedState : nil
        stateDatabase.withLock { $0 = outputs?.database }
        self.history = UplinkHistory(limit: configuration.client.historyLimit)
        self.tracker = DownlinkTracker(timeout: configuration.downlinkTimeout)
        var logger = configuration.client.logger
        logger[metadataKey: "ttn.app_id"] = "\(configuration.client.applicationID)"
        self.logger = logger
        // Weak: the timers live as long as the host, and must not keep it alive.
        let weakSelf = WeakHost()
        self.weakSelf = weakSelf
        self.timers = HostTimers { handler, id in weakSelf.value?.deliverTick(handler: handler, id: id) ?? false }
        self.backfiller = Backfiller(
            configuration: configuration.backfill ?? BackfillConfiguration(apiURL: ""),
            client: configuration.backfill.map { Self.storageClient($0, configuration.client) },
            queueBudget: configuration.handlerQueueBytes, logger: logger,
            route: { weakSelf.value?.route($0, at: $1) }, wake: { weakSelf.value?.wakeHandlers() },
            queuedBytes: { weakSelf.value?.handlers.withLock { $0.map(\.statistics.waitingBytes).max() } ?? 0 }
        )
        weakSelf.value = self
    }

    /// Whether the source delivers uplinks now (for MQTT: connected and subscribed).
    public var isConnected: Bool { source.isRunning }

    /// Registers a Swift closure, run for every uplink in order. Inside it, ``getLastMessage()`` is the uplink
    /// that triggered it, and ``publish(_:)`` goes to that uplink's device. A second closure with the same name
    /// replaces the first.
    ///
    /// Its state is ``store`` (namespace `swift/<name>`), its events come through ``setEventHandler(_:for:_:)``, and
    /// its timers through ``every(_:on:_:)`` and ``after(_:on:_:)``; all run on its queue, in order with its uplinks.
    /// - Parameter queueBytes: the bytes of uplinks that may wait for this handler; default
    ///   ``Configuration/handlerQueueBytes``.
    public func register(name: String, queueBytes: Int? = nil, handler: @escaping @Sendable () -> Void) {
        let limit = queueBytes ?? configuration.handlerQueueBytes
        closures.withLock { $0[name, default: ClosureHandlers()].message = handler }
        let namespace = "swift/\(name)"
        add(HandlerRunner(
            name: name, kind: "swift", application: configuration.client.applicationID, queueBytes: limit, logger: logger,
            repeatableDownlinkIDs: configuration.repeatableDownlinkIDs,
            onDroppedTick: { [timers] id in timers.tickDone(handler: name, id: id) }
        ) { [weak self] work in
            // Weak: a queue still draining must not keep a host alive that its owner released.
            guard let self else { return .failed }
            return runClosures(of: name, for: work, state: state(namespace: namespace))
        })
    }

    /// The uplink that triggered the running handler; outside a handler, the last uplink received.
    public func getLastMessage() -> Uplink? { Self.invocation ?? history.last }

    /// Uplinks kept so far, oldest first (bounded by the client configuration's `historyLimit`).
    public func getAllMessages() -> [Uplink] { history.all }

    /// Sends downlink JSON (v2 or v3 form) to the device of the triggering uplink, or to the configured device.
    /// - Returns: the downlink's id: ``TTNEvent/hostDownlinkID`` of its `down/*` events, and of its `down/lost`.
    @discardableResult
    public func publish(_ message: String) throws(TTNError) -> String { try publish(message, to: nil) }

    /// Sends downlink JSON (v2 or v3 form) to `deviceID`, or when nil as ``publish(_:)`` does; `queue` overrides
    /// the push/replace choice made from the form.
    /// - Returns: the downlink's id, carried to TTN as the correlation id `ttn-host:<id>`.
    @discardableResult
    public func publish(_ message: String, to deviceID: String?, queue: DownlinkQueue? = nil) throws(TTNError) -> String {
        let event = Self.invocationEvent
        guard let device = deviceID ?? configuration.client.deviceID ?? Self.invocation?.deviceID ?? event?.deviceID,
            !device.isEmpty
        else {
            throw TTNError.noDevice
        }
        return try sendTracked(message, to: device, queue: queue)
    }

    /// The names of the running handlers, in registration order.
    public var handlerNames: [String] { handlers.withLock { $0.map(\.name) } }

    public var statistics: Statistics {
        let sourceStatistics = source.statistics
        var statistics = Statistics(
            uplinks: sourceStatistics.uplinks, malformed: sourceStatistics.malformed, oversized: sourceStatistics.oversized,
            unexpectedTopics: sourceStatistics.unexpectedTopics, arrivedDuringShutdown: arrivedDuringShutdown.value,
            downlinksSent: downlinksSent.value, downlinksRefused: downlinksRefused.value, downlinksLost: downlinksLost.value,
            reconnects: sourceStatistics.reconnects
        )
        let backfill = backfiller.statistics
        statistics.gaps = backfill.gaps
        statistics.missingUplinks = backfill.missingUplinks
        statistics.backfilled = backfill.backfilled
        statistics.backfillAlreadyHandled = backfill.alreadyHandled
        statistics.unrecovered = backfill.unrecovered
        statistics.backfillFailures = backfill.failedRequests
        statistics.duplicates = backfill.duplicates
        for runner in handlers.withLock({ $0 }) { statistics.handlers[runner.name] = runner.statistics }
        return statistics
    }

    func add(_ runner: HandlerRunner) {
        let replaced = handlers.withLock { handlers -> HandlerRunner? in
            if let index = handlers.firstIndex(where: { $0.name == runner.name }) {
                defer { handlers[index] = runner }
                return handlers[index]
            }
            handlers.append(runner)
            return nil
        }
        // The end of the current burst no longer reaches a replaced runner: what it has queued starts now.
        replaced?.wake()
        updateEventSubscriptions()
        logger.info(
            replaced != nil ? "Handler replaced" : "Handler added",
            metadata: ["handler": "\(runner.name)", "kind": "\(runner.kind)"]
        )
    }

    func remove(name: String) {
        let removed = handlers.withLock { handlers in
            handlers.firstIndex { $0.name == name }.map { handlers.remove(at: $0) }
        }
        guard let removed else { return }
        removed.wake()
        timers.removeAll(handler: name)
        wantedEvents.withLock { $0[name] = nil }
        updateEventSubscriptions()
        logger.info("Handler removed", metadata: ["handler": "\(name)"])
    }

    /// Loads the scripts, connects (waiting for the broker if ``Configuration/waitForBroker``), routes uplinks
    /// until graceful shutdown (SIGTERM/SIGINT through a `ServiceGroup`), then drains the queues within
    /// ``Configuration/shutdownDeadline`` and disconnects. SIGHUP reloads every script.
    /// - Throws: ``TTNError`` when the first connection fails for a reason that waiting cannot fix (a refused key,
    ///   TLS, a wrong setting), or for any reason when ``Configuration/waitForBroker`` is off.
    public func run() async throws {
        try openState()
        defer { closeState() }
        let catchUpFrom = try restoreProgress()
        let scripts = try startScripts()
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await _ in hangups {
                        self.logger.info("SIGHUP: reloading every script")
                        scripts?.reloadAll()
                    }
                }
                defer { group.cancelAll() }
                guard try await connectWhenBrokerIsUp() else {
                    return logger.info("Stopped while waiting for \(source.peerName)")
                }
                phase.withLock { $0 = .running }
                backfiller.connected()
                lastUplink.withLock { $0 = .now }
                logger.info("Host running", metadata: ["handlers": "\(handlerNames)"])
                if let catchUpFrom { group.addTask { await self.backfiller.catchUp(after: catchUpFrom) } }
                group.addTask { await self.keepUp() }
                let sweep = startDownlinkSweep()
                await withGracefulShutdownHandler {
                    try? await gracefulShutdown()
                } onGracefulShutdown: {}
                sweep?.cancel()
            }
        } catch {
            scripts?.stopWatching()
            throw error
        }
        scripts?.stopWatching()
        // It blocks (draining, then disconnecting) for up to the shutdown deadline plus the publish flush timeout.
        await onOwnThread(named: "ttn-host shutdown") { self.shutDown(scripts: scripts) }
        saveProgress()
    }

    /// Queues `uplink` for every handler (after the uplinks backfill fetches first); called by the source on its thread.
    public func receive(_ uplink: Uplink) {
        backfiller.receiveLive(uplink)
    }

    /// The source connected again after losing its connection: the uplinks of the time between are fetched, and
    /// the live ones wait for them.
    public func sourceDidReconnect() {
        backfiller.holdLiveUplinks()
        let from = backfiller.catchUpStart ?? .now
        Task { await backfiller.catchUp(after: from) }
    }

    /// Whether the host takes uplinks now: it has handlers and is not shutting down. A worker whose scripts all
    /// failed to load takes nothing from a shared stream, so the other workers handle it.
    public var isAcceptingWork: Bool {
        handlers.withLock { !$0.isEmpty && !stopping.load(ordering: .relaxed) }
    }

    /// Queues `uplink` for every handler and settles it once each handled it: for a source that acknowledges
    /// (``UplinkReceiver/receive(_:whenHandled:)``), past gap detection and backfill.
    public func receive(_ uplink: Uplink, whenHandled: @escaping @Sendable (_ handledByAll: Bool) -> Void) {
        route(uplink, at: nil, whenHandled: whenHandled)
    }

    /// Queues `uplink` for every handler, with a ticket that records the device's progress at `position` once all
    /// handled it, and then calls `whenHandled`. An uplink that arrives during shutdown is settled as not handled;
    /// one that no handler is there for, as handled.
    func route(_ uplink: Uplink, at position: UplinkPosition?, whenHandled: (@Sendable (Bool) -> Void)? = nil) {
        history.append(uplink)
        let book = stateDatabase.withLock { $0 != nil } ? progress : nil
        // Under the lock that shutdown takes to set `stopping`, so no uplink is queued after it began.
        let queued = handlers.withLock { runners -> Bool? in
            guard !stopping.load(ordering: .relaxed) else {
                arrivedDuringShutdown.increment()
                return false
            }
            guard !runners.isEmpty else { return nil }
            let ticket = (book != nil && position != nil) || whenHandled != nil
                ? WorkTicket(handlers: runners.count, position: position, book: book, whenHandled: whenHandled) : nil
            for runner in runners { runner.enqueue(uplink, ticket: ticket) }
            return true
        }
        switch queued {
        case false?: whenHandled?(false)
        case nil: whenHandled?(true)
        case true?: break
        }
    }

    /// Wakes every handler for the burst that ended; called by the source on its thread.
    public func endOfBurst() {
        lastUplink.withLock { $0 = .now }
        wakeHandlers()
    }

    /// Starts every handler on what was queued for it.
    func wakeHandlers() {
        handlers.withLock { $0 }.forEach { $0.wake() }
    }

    /// Stops routing new uplinks, lets the handlers finish what is queued until the deadline (their downlinks
    /// still go out), then removes what still waits and interrupts the scripts still running, disconnects (which
    /// waits for the broker to acknowledge the downlinks) and reports, per handler, what was handled and what not.
    func shutDown(scripts: ScriptSet?) {
        phase.withLock { $0 = .stopping }
        let runners = handlers.withLock { runners in
            stopping.store(true, ordering: .relaxed)
            return runners
        }
        timers.stop()
        let waiting = runners.reduce(0) { $0 + $1.statistics.waiting }
        logger.info(
            "Shutting down: handling the queued uplinks",
            metadata: ["waiting": "\(waiting)", "deadline": "\(configuration.shutdownDeadline)"]
        )
        let deadline = ContinuousClock.now + configuration.shutdownDeadline
        let late = runners.filter { !$0.waitUntilIdle(timeout: max(.zero, deadline - .now)) }
        if !late.isEmpty {
            for runner in late { runner.abandonWaiting() }
            scripts?.interruptAll()
            // An interrupted script stops at its next instruction; a Swift closure runs to its end.
            for runner in late where !runner.waitUntilIdle(timeout: .seconds(1)) {
                logger.warning("Handler still running at disconnect", metadata: ["handler": "\(runner.name)"])
            }
        }
        source.stop()

        let statistics = self.statistics
        var unhandled = 0
        for runner in runners {
            let handler = statistics.handlers[runner.name] ?? HandlerStatistics()
            unhandled += handler.unhandled
            logger.log(
                level: handler.unhandled > 0 ? .warning : .info, "Handler stopped",
                metadata: [
                    "handler": "\(runner.name)", "handled": "\(handler.handled)", "failed": "\(handler.failed)",
                    "dropped": "\(handler.dropped)", "unhandled": "\(handler.unhandled)",
                ]
            )
        }
        let metadata: Logger.Metadata = [
            "uplinks": "\(statistics.uplinks)", "unhandled": "\(unhandled)",
            "arrived_during_shutdown": "\(statistics.arrivedDuringShutdown)",
        ]
        if unhandled == 0 && statistics.arrivedDuringShutdown == 0 {
            logger.info("Host stopped; every queued uplink was handled", metadata: metadata)
        } else {
            logger.warning("Host stopped with uplinks not handled", metadata: metadata)
        }
    }
}
