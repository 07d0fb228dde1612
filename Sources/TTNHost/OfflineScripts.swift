import Foundation
import Logging
import TTNCore
import TTNLua
import TTNMQTT
import TTNSync

/// The scripts of a directory, run without a broker or a TTN account: to check that each one loads, and to
/// replay recorded uplinks through all of them. What the scripts do is reported one line each to `output`:
/// `DOWNLINK <device> <topic> <json>`, `LOG <script> <message>`, `ERROR <script> <message>`.
public final class OfflineScripts: Sendable {
    /// A script that did not load: its file name and the error, with the line where Lua knows it.
    public struct LoadFailure: Sendable {
        public var script: String
        public var message: String
    }

    /// The scripts that loaded, in file name order.
    public let names: [String]
    /// The scripts that did not load, in file name order.
    public let failures: [LoadFailure]
    private let slots: Locked<[LuaScriptSlot]>
    private let bridge: ReplayBridge

    /// Loads every script of `directory` (compiles it and runs its top level), in file name order. A script that
    /// sets no message handler counts as failed: the host could not run it.
    /// - Parameter applicationID: the application the downlink topics name.
    /// - Throws: when the directory cannot be read.
    public init(directory: String, applicationID: String, limits: LuaLimits, output: @escaping @Sendable (String) -> Void) throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: directory)
            .filter(ScriptDirectoryWatcher.isScriptName).sorted()
        let bridge = ReplayBridge(topics: TopicLayout(username: "\(applicationID)@ttn", legacyV2: false), output: output)
        let logger = Logger(label: "ttn-host.offline") { _ in OutputLogHandler(output: output) }
        var slots: [LuaScriptSlot] = []
        var failures: [LoadFailure] = []
        for file in files {
            let source = Array(try Data(contentsOf: URL(fileURLWithPath: directory).appendingPathComponent(file)))
            do {
                let slot = try LuaScriptSlot(name: file, source: source, limits: limits, bridge: bridge, logger: logger)
                if slot.hasMessageHandler {
                    slots.append(slot)
                } else {
                    failures.append(LoadFailure(script: file, message: "\(file): no message handler; call setMessageHandler at the top level"))
                }
            } catch {
                failures.append(LoadFailure(script: file, message: error.message))
            }
        }
        self.names = slots.map(\.name)
        self.failures = failures
        self.slots = Locked(slots)
        self.bridge = bridge
    }

    /// Runs every script's handler for `uplink`, in file name order, as the host would; reports each failure.
    /// - Returns: how many invocations failed.
    @discardableResult
    public func handle(_ uplink: Uplink) -> Int {
        bridge.received(uplink)
        let message = LuaMessage(uplink)
        return slots.withLock { slots in
            var failed = 0
            for slot in slots {
                do {
                    try slot.handle(message)
                } catch {
                    failed += 1
                    bridge.output("ERROR \(slot.name) \(error)")
                }
            }
            return failed
        }
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

/// Replay's side of the script API: the uplinks replayed so far (as many as the host keeps), and downlinks
/// checked as the host checks them, then reported instead of sent.
private final class ReplayBridge: LuaHostBridge {
    let topics: TopicLayout
    let output: @Sendable (String) -> Void
    private let history = UplinkHistory(limit: UplinkHistory.defaultLimit)

    init(topics: TopicLayout, output: @escaping @Sendable (String) -> Void) {
        self.topics = topics
        self.output = output
    }

    func received(_ uplink: Uplink) {
        history.append(uplink)
    }

    func allMessages() -> [[UInt8]] { history.all.map(\.jsonBytes) }

    func publish(_ downlink: String, deviceID: String, queue: DownlinkQueue?) throws {
        let request = try DownlinkRequest.parse(downlink, queue: queue)
        try Identifier.checkDownlinkDevice(deviceID)
        output("DOWNLINK \(deviceID) \(topics.downlinkTopic(deviceID: deviceID, queue: request.queue)) \(request.body)")
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
