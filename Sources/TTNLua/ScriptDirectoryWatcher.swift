import Foundation
import Logging
import Synchronization

/// A change to a script file, after debouncing.
public enum ScriptChange: Sendable, Equatable {
    /// A new file, or new content: load it.
    case updated(name: String, source: [UInt8])
    /// The file is gone: unload it.
    case removed(name: String)
}

/// Watches a directory of `*.lua` files and reports loads, changes and deletions.
///
/// It watches the **directory** with inotify, so editors that save through a temporary file and a rename
/// are seen, and it also rescans every two seconds, which covers file systems where inotify says nothing.
/// Names starting with `.` or ending in `~` are ignored. Each name is debounced (150 ms after its last event),
/// unchanged content is not reported again, and a deletion is reported only if the file is still absent after
/// the debounce (an atomic save passes through a moment without the file).
public final class ScriptDirectoryWatcher: Sendable {
    public let directory: String
    private let debounce: Duration
    private let logger: Logger
    private let inotifyDescriptor: Int32
    private let state = Mutex(State())

    private struct State {
        var known: [String: [UInt8]] = [:]
        var pending: [String: ContinuousClock.Instant] = [:]
        var stopping = false
        var forceReload = false
    }

    /// - Throws: ``LuaError`` (kind ``LuaError/Kind/runtime``) when `directory` is not a readable directory.
    public init(directory: String, debounce: Duration = .milliseconds(150), logger: Logger) throws(LuaError) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw LuaError(.runtime, script: directory, message: "The script directory '\(directory)' does not exist.")
        }
        self.directory = directory
        self.debounce = debounce
        self.logger = logger
        let descriptor = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        let mask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_DELETE_SELF | IN_MOVE_SELF)
        if descriptor >= 0 && inotify_add_watch(descriptor, directory, mask) >= 0 {
            inotifyDescriptor = descriptor
        } else {
            if descriptor >= 0 { close(descriptor) }
            inotifyDescriptor = -1
            logger.warning("inotify unavailable; watching the script directory by polling every 2 s", metadata: ["directory": "\(directory)"])
        }
    }

    deinit {
        if inotifyDescriptor >= 0 { close(inotifyDescriptor) }
    }

    /// Reports every script now (on the calling thread), then every change (on the watcher's own thread).
    public func start(_ onChange: @escaping @Sendable (ScriptChange) -> Void) {
        for change in collectChanges(everything: true) { onChange(change) }
        let thread = Thread { [self] in
            var lastScan = ContinuousClock.now
            while !state.withLock({ $0.stopping }) {
                readEvents()
                if ContinuousClock.now - lastScan > .seconds(2) {
                    markChangedFiles()
                    lastScan = .now
                }
                for change in collectChanges(everything: false) { onChange(change) }
            }
        }
        thread.name = "ttn-lua watcher"
        thread.start()
    }

    /// Reports every script again on the watcher's thread, even unchanged ones: the SIGHUP reload.
    public func rescanAll() {
        state.withLock { $0.forceReload = true }
    }

    /// Stops watching; the watcher's thread ends within one poll interval (100 ms).
    public func stop() {
        state.withLock { $0.stopping = true }
    }

    private static func isScript(_ name: String) -> Bool {
        name.hasSuffix(".lua") && !name.hasPrefix(".") && !name.hasSuffix("~")
    }

    private func scriptNames() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter(Self.isScript).sorted()
    }

    /// Waits up to 100 ms for inotify events and marks their names pending.
    private func readEvents() {
        guard inotifyDescriptor >= 0 else {
            usleep(100_000)
            return
        }
        var poller = pollfd(fd: inotifyDescriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, 100) > 0 else { return }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        let count = read(inotifyDescriptor, &buffer, buffer.count)
        guard count > 0 else { return }
        var offset = 0
        var names: [String] = []
        var overflow = false
        buffer.withUnsafeBytes { raw in
            while offset + MemoryLayout<inotify_event>.size <= count {
                let event = raw.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                if event.mask & UInt32(IN_Q_OVERFLOW) != 0 { overflow = true }
                if event.len > 0 {
                    let start = offset + MemoryLayout<inotify_event>.size
                    let bytes = raw[start..<(start + Int(event.len))].prefix { $0 != 0 }
                    names.append(String(decoding: bytes, as: UTF8.self))
                }
                offset += MemoryLayout<inotify_event>.size + Int(event.len)
            }
        }
        if overflow { logger.info("inotify queue overflowed; rescanning the script directory") }
        let now = ContinuousClock.now
        state.withLock { state in
            for name in names where Self.isScript(name) { state.pending[name] = now }
            if overflow { state.forceReload = true }
        }
    }

    /// The periodic scan: marks files whose content differs from what was reported, and vanished ones.
    private func markChangedFiles() {
        let names = Set(scriptNames())
        var changed: [String] = []
        for name in names {
            let content = try? Data(contentsOf: URL(fileURLWithPath: directory).appendingPathComponent(name))
            if let content, state.withLock({ $0.known[name] != [UInt8](content) }) { changed.append(name) }
        }
        let now = ContinuousClock.now
        state.withLock { state in
            for name in changed { state.pending[name] = now }
            for name in state.known.keys where !names.contains(name) { state.pending[name] = now }
        }
    }

    /// The debounced changes that are due.
    private func collectChanges(everything: Bool) -> [ScriptChange] {
        let now = ContinuousClock.now
        let (due, force) = state.withLock { state -> ([String], Bool) in
            let force = state.forceReload || everything
            state.forceReload = false
            var due = state.pending.filter { now - $0.value >= debounce }.map(\.key)
            for name in due { state.pending[name] = nil }
            if force { due = Array(Set(due).union(state.known.keys)) }
            return (due, force)
        }
        let names = force ? Array(Set(due).union(scriptNames())) : due
        var changes: [ScriptChange] = []
        for name in names.sorted() {
            let path = URL(fileURLWithPath: directory).appendingPathComponent(name)
            let content = (try? Data(contentsOf: path)).map { [UInt8]($0) }
            let previous = state.withLock { state -> [UInt8]? in
                defer { state.known[name] = content }
                return state.known[name]
            }
            switch (previous, content) {
            case (_, let content?) where force || previous != content:
                changes.append(.updated(name: name, source: content))
            case (.some, nil):
                changes.append(.removed(name: name))
            default:
                break
            }
        }
        return changes
    }
}
