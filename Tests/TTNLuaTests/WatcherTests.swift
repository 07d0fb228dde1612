import Foundation
import TTNSync
import Testing

@testable import TTNLua

@Suite("Watching the script directory")
struct WatcherTests {
    final class Changes: Sendable {
        private let list = Locked<[ScriptChange]>([])
        func append(_ change: ScriptChange) { list.withLock { $0.append(change) } }
        var all: [ScriptChange] { list.withLock { $0 } }

        /// Waits (at most 10 s) until `predicate` matches a change reported after `index`.
        func wait(after index: Int, for predicate: (ScriptChange) -> Bool) -> Bool {
            for _ in 0..<1000 {
                if all.dropFirst(index).contains(where: predicate) { return true }
                Thread.sleep(forTimeInterval: 0.01)
            }
            return false
        }
    }

    private func updated(_ name: String, _ text: String) -> (ScriptChange) -> Bool {
        { $0 == .updated(name: name, source: Array(text.utf8)) }
    }

    @Test("initial scan, in-place write, save by rename, new file and delete are reported; other files are not")
    func fourKindsOfChange() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("watch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "v1".write(to: directory.appendingPathComponent("a.lua"), atomically: false, encoding: .utf8)
        try "ignored".write(to: directory.appendingPathComponent("notes.txt"), atomically: false, encoding: .utf8)

        let watcher = try ScriptDirectoryWatcher(directory: directory.path, logger: quietLogger)
        let changes = Changes()
        watcher.start { changes.append($0) }
        defer { watcher.stop() }
        #expect(changes.all == [.updated(name: "a.lua", source: Array("v1".utf8))], "the initial scan")

        var mark = changes.all.count
        try "v2".write(to: directory.appendingPathComponent("a.lua"), atomically: false, encoding: .utf8)
        #expect(changes.wait(after: mark, for: updated("a.lua", "v2")), "in-place write")

        mark = changes.all.count
        let temporary = directory.appendingPathComponent(".a.lua.swp")
        try "v3".write(to: temporary, atomically: false, encoding: .utf8)
        _ = rename(temporary.path, directory.appendingPathComponent("a.lua").path)
        #expect(changes.wait(after: mark, for: updated("a.lua", "v3")), "editor save through a temporary file")

        mark = changes.all.count
        try "new".write(to: directory.appendingPathComponent("b.lua"), atomically: false, encoding: .utf8)
        #expect(changes.wait(after: mark, for: updated("b.lua", "new")), "new file")

        mark = changes.all.count
        try FileManager.default.removeItem(at: directory.appendingPathComponent("a.lua"))
        #expect(changes.wait(after: mark) { $0 == .removed(name: "a.lua") }, "delete")

        #expect(!changes.all.contains { change in
            if case .updated(let name, _) = change { return !name.hasSuffix(".lua") || name.hasPrefix(".") }
            return false
        })
    }

    @Test("rescanAll reports unchanged scripts again")
    func rescanAll() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("watch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "same".write(to: directory.appendingPathComponent("s.lua"), atomically: false, encoding: .utf8)
        let watcher = try ScriptDirectoryWatcher(directory: directory.path, logger: quietLogger)
        let changes = Changes()
        watcher.start { changes.append($0) }
        defer { watcher.stop() }
        watcher.rescanAll()
        #expect(changes.wait(after: 1, for: updated("s.lua", "same")))
    }

    @Test("a script directory moved away and back unloads, then reloads, and is watched again")
    func directoryMovedAndBack() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("watch-\(UUID().uuidString)")
        let aside = directory.appendingPathExtension("aside")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer {
            try? FileManager.default.removeItem(at: directory)
            try? FileManager.default.removeItem(at: aside)
        }
        try "v1".write(to: directory.appendingPathComponent("a.lua"), atomically: false, encoding: .utf8)
        let watcher = try ScriptDirectoryWatcher(directory: directory.path, logger: quietLogger)
        let changes = Changes()
        watcher.start { changes.append($0) }
        defer { watcher.stop() }

        var mark = changes.all.count
        try FileManager.default.moveItem(at: directory, to: aside)
        #expect(changes.wait(after: mark) { $0 == .removed(name: "a.lua") }, "moved away")
        mark = changes.all.count
        try FileManager.default.moveItem(at: aside, to: directory)
        #expect(changes.wait(after: mark, for: updated("a.lua", "v1")), "moved back")
        mark = changes.all.count
        try "v2".write(to: directory.appendingPathComponent("a.lua"), atomically: false, encoding: .utf8)
        #expect(changes.wait(after: mark, for: updated("a.lua", "v2")), "watched again")
    }

    @Test("a missing directory is refused")
    func missingDirectory() {
        #expect(throws: LuaError.self) { try ScriptDirectoryWatcher(directory: "/nonexistent/scripts", logger: quietLogger) }
    }
}
