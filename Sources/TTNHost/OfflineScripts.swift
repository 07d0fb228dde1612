import Foundation
import Logging
import TTNCore
import TTNLua
import Synchronization
import TTNMQTT
import TTNState
import TTNSync

/// The scripts of a directory, run without a broker or a TTN account: to check that each one loads, and to
/// replay recorded uplinks through all of them. What the scripts do is reported one line each to `output`:
/// `DOWNLINK <device> <topic> <json>`, `STORE <script> <key> <json>` (or `(deleted)`), `EMIT <sink> <json>`,
/// `LOG <script> <message>`, `ERROR <script> <message>`. Emitted records are reported, not written to an outbox, and
/// any sink name is accepted. Timers and event handlers are set up but never run: offline there is no time
/// passing and no network to answer.
public final class OfflineScripts: Sendable {
    /// A script that did not load: its file name and the error, with the line where Lua knows it.
    public struct LoadFailure: Sendable {
        public var script: String
        public var message: String
    }

    /// One loaded script with its state.
    fileprivate struct Loaded {
        let slot: LuaScriptSlot
        let state: ScriptState
        let bridge: ReplayBridge
    }

    /// The scripts that loaded, in file name order.
    public let names: [String]
    /// The scripts that did not load, in file name order.
    public let failures: [LoadFailure]
    private let scripts: Locked<[Loaded]>
    private let history = UplinkHistory(limit: UplinkHistory.defaultLimit)
    private let output: @Sendable (String) -> Void
    private let database: StateDatabase
    /// The throw-away state directory, removed at the end; nil when the caller gave one.
    private let temporaryDirectory: URL?

    /// Loads every script of `directory` (compiles it and runs its top level), in file name order. A script that
    /// sets no message handler counts as failed: the host could not run it.
    /// - Parameters:
    ///   - applicationID: the application the downlink topics name.
    ///   - stateDirectory: where the scripts' `ttn.store` lives; nil: a throw-away directory.
    /// - Throws: when the directory cannot be read, or the state cannot be opened.
    public init(
        directory: String, applicationID: String, limits: LuaLimits, stateDirectory: String? = nil,
        output: @escaping @Sendable (String) -> Void
    ) throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: directory)
            .filter(ScriptDirectoryWatcher.isScriptName).sorted()
        let temporary = stateDirectory == nil
            ? FileManager.default.temporaryDirectory.appendingPathComponent("ttn-host-replay-\(UUID().uuidString)") : nil
        let database = try StateDatabase(directory: stateDirectory ?? temporary!.path)
        let topics = TopicLayout(username: "\(applicationID)@ttn", legacyV2: false)
        let logger = Logger(label: "ttn-host.offline") { _ in OutputLogHandler(output: output) }
        var loaded: [Loaded] = []
        var failures: [LoadFailure] = []
        for file in files {
            let source = Array(try Data(contentsOf: URL(fileURLWithPath: directory).appendingPathComponent(file)))
            let state = database.namespace("lua/\(file)")
            let bridge = ReplayBridge(topics: topics, history: history, store: ScriptStore(state: state), output: output)
            do {
                let slot = try LuaScriptSlot(name: file, source: source, limits: limits, bridge: bridge, logger: logger)
                guard slot.hasMessageHandler else {
                    state.rollback()
                    bridge.discardEmits()
                    failures.append(LoadFailure(script: file, message: "\(file): no message handler; call setMessageHandler at the top level"))
                    continue
                }
                let script = Loaded(slot: slot, state: state, bridge: bridge)
                try script.commit(output: output)
                loaded.append(script)
            } catch let error as LuaError {
                state.rollback()
                bridge.discardEmits()
                failures.append(LoadFailure(script: file, message: error.message))
            }
        }
        self.names = loaded.map(\.slot.name)
        self.failures = failures
        self.scripts = Locked(loaded)
        self.output = output
        self.database = database
        self.temporaryDirectory = temporary
    }

    deinit {
        database.close()
        if let temporaryDirectory { try? FileManager.default.removeItem(at: temporaryDirectory) }
    }

    /// Runs every script's handler for `uplink`, in file name order, as the host would; reports each failure.
    /// An invocation's store writes are reported and kept when it succeeds, and discarded when it fails.
    /// - Returns: how many invocations failed.
    @discardableResult
    public func handle(_ uplink: Uplink) -> Int {
        history.append(uplink)
        let message = LuaMessage(uplink)
        return scripts.withLock { scripts in
            var failed = 0
            for script in scripts {
                do {
                    try script.slot.handle(message)
                    try script.commit(output: output)
                } catch {
                    script.state.rollback()
                    script.bridge.discardEmits()
                    failed += 1
                    output("ERROR \(script.slot.name) \(error)")
                }
            }
            return failed
        }
    }

}

extension OfflineScripts.Loaded {
    /// Reports an invocation's store writes and emitted records, then commits the writes.
    func commit(output: (String) -> Void) throws {
        for write in state.pendingWrites { output("STORE \(slot.name) \(write.key) \(write.json ?? "(deleted)")") }
        for emit in bridge.takeEmits() { output("EMIT \(emit.sink) \(emit.json)") }
        try state.commit()
    }
}

extension OfflineScripts {
    /// A line of a recording that is not an uplink.
    public struct RecordingError: Error, CustomStringConvertible {
        public var file: String
        public var line: Int
        public var reason: String
        public var description: String { "\(file):\(line): \(reason)" }
    }

    /// The uplinks of a recording, in order: one uplink JSON document, or JSON lines of uplinks, each line
    /// optionally after its topic and a space (as `mosquitto_sub -v` prints them); blank lines are skipped.
    /// - Returns: each uplink, or the error of a line that is not one.
    /// - Throws: when the file cannot be read.
    public static func uplinks(inFile path: String) throws -> [Result<Uplink, RecordingError>] {
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        if let whole = try? Uplink(json: bytes) { return [.success(whole)] }
        var results: [Result<Uplink, RecordingError>] = []
        for (index, line) in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            var json = line.drop { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\t") }
            guard !json.isEmpty else { continue }
            var topic = ""
            if json.first != UInt8(ascii: "{"), let space = json.firstIndex(of: UInt8(ascii: " ")) {
                topic = String(decoding: json[..<space], as: UTF8.self)
                json = json[json.index(after: space)...]
            }
            do {
                results.append(.success(try Uplink(json: json, topic: topic)))
            } catch {
                results.append(.failure(RecordingError(file: path, line: index + 1, reason: error.message)))
            }
        }
        return results
    }
}

/// Replay's side of the script API for one script: the uplinks replayed so far (as many as the host keeps), its
/// state, and downlinks checked as the host checks them, then reported instead of sent.
struct ReplayBridge: LuaHostBridge {
    let topics: TopicLayout
    let history: UplinkHistory
    let store: (any LuaStore)?
    let output: @Sendable (String) -> Void
    /// The open invocation's emitted records, reported when it succeeds.
    private let emits = Locked<[(sink: String, json: String)]>([])
    private static let sequence = Atomic(0)
    private static let emitSequence = Atomic(0)

    init(topics: TopicLayout, history: UplinkHistory, store: (any LuaStore)?, output: @escaping @Sendable (String) -> Void) {
        self.topics = topics
        self.history = history
        self.store = store
        self.output = output
    }

    /// Keeps the record for the report of the invocation.
    /// - Returns: `emit-<n>`, counting the records of the whole replay.
    func emit(_ json: String, to sink: String, deviceID: String?) throws -> String {
        emits.withLock { $0.append((sink: sink, json: json)) }
        return "emit-\(Self.emitSequence.wrappingAdd(1, ordering: .relaxed).newValue)"
    }

    func takeEmits() -> [(sink: String, json: String)] {
        emits.withLock { emits in
            defer { emits = [] }
            return emits
        }
    }

    func discardEmits() { _ = takeEmits() }

    func allMessages() -> [[UInt8]] { history.all.map(\.jsonBytes) }

    /// Reports the body the host would send, with the correlation id the host adds.
    /// - Returns: `replay-<n>`, counting the downlinks of the whole replay.
    func publish(_ downlink: String, deviceID: String, queue: DownlinkQueue?) throws -> String {
        let id = "replay-\(Self.sequence.wrappingAdd(1, ordering: .relaxed).newValue)"
        let request = try DownlinkRequest.parse(downlink, queue: queue).addingCorrelationID("ttn-host:\(id)")
        try Identifier.checkDownlinkDevice(deviceID)
        output("DOWNLINK \(deviceID) \(topics.downlinkTopic(deviceID: deviceID, queue: request.queue)) \(request.body)")
        return id
    }
}

/// Scripts' log lines (`ttn.log`, `print`) and the host's own warnings, as output lines.
private struct OutputLogHandler: LogHandler {
    let output: @Sendable (String) -> Void
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let script = event.metadata?["lua.script"] ?? metadata["lua.script"]
        output("LOG \(script.map { "\($0)" } ?? "ttn-host") \(event.message)")
    }
}
