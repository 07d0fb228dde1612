import Foundation
import Logging
import TTNSync
import TTNLua
import TTNMQTT

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
        let bridge = HostBridge(history: host.history, downlinks: host.downlinks)
        let slot: LuaScriptSlot
        do {
            slot = try LuaScriptSlot(name: name, source: source, limits: host.configuration.luaLimits, bridge: bridge, logger: host.logger)
        } catch {
            host.logger.error("Script not loaded", metadata: ["script": "\(name)", "error": "\(error)"])
            return
        }
        let script = LoadedScript(slot: slot)
        scripts.withLock { $0[name] = script }
        let logger = host.logger
        host.add(HandlerRunner(name: name, kind: "lua", queueLimit: host.configuration.handlerQueueLimit, logger: logger) { uplink in
            script.handle(uplink, logger: logger)
        })
    }
}

/// One script's slot, used by its handler queue and by reloads, one at a time.
final class LoadedScript: Sendable {
    private let slot: Locked<LuaScriptSlot>
    let interrupter: LuaInterrupter

    init(slot: sending LuaScriptSlot) {
        self.interrupter = slot.interrupter
        self.slot = Locked(slot)
    }

    /// Runs the script's handler for `uplink`; false (and logged) when it failed.
    func handle(_ uplink: Uplink, logger: Logger) -> Bool {
        let message = LuaMessage(uplink)
        do {
            try slot.withLock { try $0.handle(message) }
            return true
        } catch {
            logger.warning(
                "Lua handler failed for this uplink",
                metadata: ["error": "\(error)", "ttn.device_id": "\(uplink.deviceID ?? "?")"]
            )
            return false
        }
    }

    /// Compiles the new version; keeps the running one if it fails.
    func reload(source: [UInt8], logger: Logger) {
        do {
            try slot.withLock { try $0.load(source: source) }
            logger.info("Script reloaded", metadata: ["script": "\(slot.withLock { $0.name })"])
        } catch {
            logger.error("Script change rejected; the previous version keeps running", metadata: ["error": "\(error)"])
        }
    }
}

/// How scripts reach the host: its history of uplinks, and its downlink path.
struct HostBridge: LuaHostBridge {
    let history: UplinkHistory
    let downlinks: any DownlinkPath

    func allMessages() -> [[UInt8]] {
        history.all.map(\.jsonBytes)
    }

    func publish(_ downlink: String, deviceID: String, queue: DownlinkQueue?) throws {
        _ = try downlinks.send(downlink, to: deviceID, queue: queue)
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
