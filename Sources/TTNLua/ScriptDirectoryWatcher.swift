import Foundation
import Logging
import TTNSync

/// A change to a script file, after debouncing.
public enum ScriptChange: Sendable, Equatable {
    /// A new file, or new content: load it.
    case updated(name: String, source: [UInt8])
    /// The file is gone: unload it.
    case removed(name: String)
}

/// Watches a directory of `*.lua` files and reports loads, changes and deletions.
///
/// It watches the **directory** with inotify (writes closed, files moved in or out, deletions), so editors that
/// save through a temporary file and a rename are seen. Once a second it also compares every script's size,
/// modification time and inode with the last look: that covers file systems where inotify says nothing, a
/// system without inotify, and a directory that was itself deleted or moved (it is watched again once it is
/// back). An inotify queue overflow triggers a rescan.
///
/// Only names that ``isScriptName(_:)`` accepts count; hidden files and backups do not. Each name is debounced
/// (150 ms after its last event), content whose hash did not change is not reported again, and a deletion is
/// reported only if the file is still absent after the debounce (an atomic save passes through a moment without
/// the file).
public final class ScriptDirectoryWatcher: Sendable {
    public let directory: String
    private let debounce: Duration
    private let logger: Logger
    /// The inotify instance, or -1 when inotify is unavailable (then only the once-a-second look remains).
    private let inotifyDescriptor: Int32
    private let state = Locked(State())

    private static let eventMask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF)

    private struct State {
        /// The content hash of what was last reported for each present script.
        var known: [String: Int] = [:]
        /// Names with an event, and when the last one came.
        var pending: [String: ContinuousClock.Instant] = [:]
        var forceReload = false
        var stopping = false
    }

    /// Size, modification time and inode: what the once-a-second look compares.
    private struct Stamp: Equatable {
        var size: Int
        var seconds: Int
        var nanoseconds: Int
        var inode: UInt
    }

    /// - Throws: ``LuaError`` (kind ``LuaError/Kind/runtime``) when `directory` is not a directory.
    public init(directory: String, debounce: Duration = .milliseconds(150), logger: Logger) throws(LuaError) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw LuaError(.runtime, script: directory, message: "The script directory '\(directory)' does not exist.")
        }
        self.directory = directory
        self.debounce = debounce
        self.logger = logger
        let descriptor = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        if descriptor >= 0 && inotify_add_watch(descriptor, directory, Self.eventMask) >= 0 {
            inotifyDescriptor = descriptor
        } else {
            if descriptor >= 0 { close(descriptor) }
            inotifyDescriptor = -1
            logger.warning("inotify unavailable; looking at the script directory once a second", metadata: ["directory": "\(directory)"])
        }
    }

    deinit {
        if inotifyDescriptor >= 0 { close(inotifyDescriptor) }
    }

    /// Reports every script now (on the calling thread), then every change, on the watcher's own thread,
    /// until ``stop()``. The thread keeps the watcher alive until then.
    public func start(_ onChange: @escaping @Sendable (ScriptChange) -> Void) {
        let stamps = stampScripts()
        for change in collectChanges(everything: true) { onChange(change) }
        let thread = Thread { [self] in watch(from: stamps, onChange) }
        thread.name = "ttn-lua watcher"
        thread.start()
    }

    /// Reports every script again on the watcher's thread, even unchanged ones: the SIGHUP reload.
    public func rescanAll() {
        state.withLock { $0.forceReload = true }
    }

    /// Stops watching; the watcher's thread ends within 100 ms.
    public func stop() {
        state.withLock { $0.stopping = true }
    }

    /// Whether a file name in the directory is a handler script: it ends in `.lua` and does not start with `.`
    /// (hidden files, an editor's swap or lock files) or end in `~` (backups). Editors' probe files such as
    /// vim's `4913` have no `.lua` suffix and are ignored with everything else.
    public static func isScriptName(_ name: String) -> Bool {
        name.hasSuffix(".lua") && !name.hasPrefix(".") && !name.hasSuffix("~")
    }

    private func path(_ name: String) -> String { directory + "/" + name }

    private func scriptNames() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter(Self.isScriptName)
    }

    private func stampScripts() -> [String: Stamp] {
        var stamps: [String: Stamp] = [:]
        for name in scriptNames() {
            var info = stat()
            guard stat(path(name), &info) == 0 else { continue }
            stamps[name] = Stamp(
                size: Int(info.st_size), seconds: Int(info.st_mtim.tv_sec), nanoseconds: Int(info.st_mtim.tv_nsec),
                inode: UInt(info.st_ino)
            )
        }
        return stamps
    }

    /// The watcher thread's loop: inotify events as they come, a look at every file once a second.
    private func watch(from initialStamps: [String: Stamp], _ onChange: @Sendable (ScriptChange) -> Void) {
        var stamps = initialStamps
        var watching = inotifyDescriptor >= 0
        var lastLook = ContinuousClock.now
        while !state.withLock({ $0.stopping }) {
            if inotifyDescriptor >= 0 {
                if !readEvents() && watching {
                    watching = false
                    logger.warning("The script directory was deleted or moved; looking for it once a second", metadata: ["directory": "\(directory)"])
                }
            } else {
                usleep(100_000)
            }
            if ContinuousClock.now - lastLook >= .seconds(1) {
                lastLook = .now
                if inotifyDescriptor >= 0 && !watching && inotify_add_watch(inotifyDescriptor, directory, Self.eventMask) >= 0 {
                    watching = true
                    logger.info("Watching the script directory again", metadata: ["directory": "\(directory)"])
                }
                let current = stampScripts()
                let changed = Set(current.keys).union(stamps.keys).filter { current[$0] != stamps[$0] }
                stamps = current
                markPending(changed)
            }
            for change in collectChanges(everything: false) { onChange(change) }
        }
    }

    private func markPending<Names: Sequence<String>>(_ names: Names) {
        let now = ContinuousClock.now
        state.withLock { state in
            for name in names { state.pending[name] = now }
        }
    }

    /// Waits up to 100 ms for inotify events and marks their names pending. False when the directory's own
    /// watch is gone (the directory was deleted or moved away).
    private func readEvents() -> Bool {
        var poller = pollfd(fd: inotifyDescriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, 100) > 0 else { return true }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        let count = read(inotifyDescriptor, &buffer, buffer.count)
        guard count > 0 else { return true }
        var names: [String] = []
        var overflow = false
        var watchLost = false
        buffer.withUnsafeBytes { raw in
            var offset = 0
            while offset + MemoryLayout<inotify_event>.size <= count {
                let event = raw.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                if event.mask & UInt32(IN_Q_OVERFLOW) != 0 { overflow = true }
                if event.mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED) != 0 { watchLost = true }
                if event.len > 0 {
                    let start = offset + MemoryLayout<inotify_event>.size
                    let bytes = raw[start..<(start + Int(event.len))].prefix { $0 != 0 }
                    names.append(String(decoding: bytes, as: UTF8.self))
                }
                offset += MemoryLayout<inotify_event>.size + Int(event.len)
            }
        }
        markPending(names.filter(Self.isScriptName))
        if overflow || watchLost {
            if overflow { logger.info("inotify queue overflowed; rescanning the script directory") }
            markPending(Set(scriptNames()).union(state.withLock { $0.known.keys }))
        }
        return !watchLost
    }

    /// The debounced changes that are due (with `everything`, every script now, changed or not).
    private func collectChanges(everything: Bool) -> [ScriptChange] {
        let now = ContinuousClock.now
        let (due, force) = state.withLock { state -> (Set<String>, Bool) in
            let force = state.forceReload || everything
            state.forceReload = false
            var due = Set(state.pending.filter { now - $0.value >= debounce }.keys)
            for name in due { state.pending[name] = nil }
            if force { due.formUnion(state.known.keys) }
            return (due, force)
        }
        let names = force ? due.union(scriptNames()) : due
        var changes: [ScriptChange] = []
        for name in names.sorted() {
            let content = FileManager.default.contents(atPath: path(name)).map { [UInt8]($0) }
            let hash = content.map { content in
                var hasher = Hasher()
                content.withUnsafeBytes { hasher.combine(bytes: $0) }
                return hasher.finalize()
            }
            let previous = state.withLock { state -> Int? in
                defer { state.known[name] = hash }
                return state.known[name]
            }
            switch (previous, content) {
            case (_, let content?) where force || previous != hash:
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
