import Foundation
import Logging
import TTNSync
import TTNLua
import TTNMQTT
import TTNState

/// The scripts of the host's directory: one Lua state and one handler queue per file, reloaded on change.
final class ScriptSet: Sendable {
    private let host: HandlerHost
    private let watcher: ScriptDirectoryWatcher
    private let scripts = Locked<[String: LoadedScript]>([:])

    init(host: HandlerHost, directory: String) throws {
        self.host = host
        self.watcher = try ScriptDirectoryWatcher(directory: directory, logger: host.logger)
    }

    func start() {
        watcher.start { [self] change in apply(change) }
    }

    func reloadAll() { watcher.rescanAll() }

    func stopWatching() { watcher.stop() }

    /// Aborts every running script invocation, and all later ones: for a shutdown past its deadline.
    func interruptAll() {
        for script in scripts.withLock({ Array($0.values) }) { script.interrupter.interrupt() }
    }

    private func apply(_ change: ScriptChange) {
        switch change {
        case .updated(let name, let source):
            if let existing = scripts.withLock({ $0[name] }) {
                existing.reload(source: source, logger: host.logger)
            } else {
                load(name: name, source: source)
            }
        case .removed(let name):
            guard scripts.withLock({ $0.removeValue(forKey: name) }) != nil else { return }
            host.remove(name: name)
        }
    }

    private func load(name: String, source: [UInt8]) {
        let state = host.state(namespace: "lua/\(name)")
        let bridge = HostBridge(name: name, host: host.weakSelf, history: host.history, state: state)
        var loaded: LuaScriptSlot?
        let result = HandlerInvocation.run(state: state, work: nil) {
            try host.checkEmitSinks(in: source, script: name)
            loaded = try LuaScriptSlot(name: name, source: source, limits: host.configuration.luaLimits, bridge: bridge, logger: host.logger)
        }
        guard case .succeeded = result, let slot = loaded else {
            host.logger.error("Script not loaded", metadata: ["script": "\(name)", "error": "\(result.error.map { "\($0)" } ?? "?")"])
            // A version that ran but whose state could not be saved reported its timers and events already.
            host.timers.removeAll(handler: name)
            host.setWantedEvents([], handler: name)
            return
        }
        let script = LoadedScript(slot: slot, state: state, host: host.weakSelf)
        scripts.withLock { $0[name] = script }
        let logger = host.logger
        let timers = host.timers
        host.add(HandlerRunner(
            name: name, kind: "lua", application: host.configuration.client.applicationID, queueBytes: host.configuration.handlerQueueBytes, logger: logger,
            repeatableDownlinkIDs: host.configuration.repeatableDownlinkIDs,
            onDroppedTick: { id in timers.tickDone(handler: name, id: id) }
        ) { work in
            if case .timer(let id) = work { timers.tickDone(handler: name, id: id) }
            return script.run(work, logger: logger)
        })
    }
}

/// One script's slot, used by its handler queue and by reloads, one at a time, with its state.
final class LoadedScript: Sendable {
    private let slot: Locked<LuaScriptSlot>
    private let state: (any HandlerState)?
    /// Weak: the host owns the script through its handler.
    private let host: WeakHost
    let interrupter: LuaInterrupter

    init(slot: sending LuaScriptSlot, state: (any HandlerState)?, host: WeakHost) {
        self.interrupter = slot.interrupter
        self.state = state
        self.host = host
        self.slot = Locked(slot)
    }

    /// Runs the script for `work`: its message handler, a timer, or its handler of an event's kind. Its state's
    /// writes land when it succeeds and are discarded when it fails.
    func run(_ work: HandlerWork, logger: Logger) -> InvocationOutcome {
        let result = slot.withLock { slot in
            HandlerInvocation.run(state: state, work: work.stateWork) {
                switch work {
                case .uplink(let uplink, _): try slot.handle(LuaMessage(uplink))
                case .timer(let id): try slot.fireTimer(id)
                case .event(let event, _):
                    try slot.deliver(LuaEvent(kind: event.kind.rawValue, json: event.json, deviceID: event.deviceID))
                }
            }
        }
        result.log(to: logger, failure: "Lua handler failed; its state changes were discarded", metadata: work.logMetadata)
        return result.outcome
    }

    /// Compiles the new version; keeps the running one if it fails. The top level's state writes land with it.
    func reload(source: [UInt8], logger: Logger) {
        let result = slot.withLock { slot in
            HandlerInvocation.run(state: state, work: nil) {
                try host.value?.checkEmitSinks(in: source, script: slot.name)
                try slot.load(source: source)
            }
        }
        if let error = result.error {
            logger.error("Script change rejected; the previous version keeps running", metadata: ["error": "\(error)"])
        } else {
            logger.info("Script reloaded", metadata: ["script": "\(slot.withLock { $0.name })"])
        }
    }
}

/// How a script reaches the host: its history of uplinks, its downlinks, its state, timers and events.
struct HostBridge: LuaHostBridge {
    let name: String
    /// Weak: the host owns the script through its handler.
    let host: WeakHost
    let history: UplinkHistory
    let state: (any HandlerState)?

    var store: (any LuaStore)? { state.map(ScriptStore.init) }

    func allMessages() -> [[UInt8]] {
        history.all.map(\.jsonBytes)
    }

    func publish(_ downlink: String, deviceID: String, queue: DownlinkQueue?) throws -> String {
        guard let host = host.value else { throw TTNError.notConnected }
        return try host.sendTracked(downlink, to: deviceID, queue: queue)
    }

    func emit(_ json: String, to sink: String, deviceID: String?) throws -> String {
        guard let host = host.value else { throw EmitError("the host has stopped") }
        return try host.emit(json, to: sink, state: state, script: name, deviceID: deviceID)
    }

    func scheduleChanged(_ schedule: LuaSchedule) {
        guard let host = host.value else { return }
        host.timers.replace(
            handler: name, with: schedule.timers.mapValues { HostTimers.Spec(interval: $0.interval, repeats: $0.repeats) }
        )
        host.setWantedEvents(Set(schedule.eventKinds.map(TTNEvent.Kind.init(rawValue:))), handler: name)
    }
}

extension HandlerHost {
    /// Loads the script directory, if configured, and watches it.
    func startScripts() throws -> ScriptSet? {
        guard let directory = configuration.scriptDirectory else { return nil }
        let scripts = try ScriptSet(host: self, directory: directory)
        scripts.start()
        return scripts
    }
}
