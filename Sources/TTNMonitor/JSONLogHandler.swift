import Logging

/// A swift-log handler for `--log-format json`: one JSON object per line, for log collectors.
///
/// ```json
/// {"time":"2026-12-04T10:00:00.123Z","level":"info","label":"ttn.host","message":"Connected","ttn.app_id":"my-app"}
/// ```
///
/// - `time`: ISO 8601 in UTC with milliseconds; `level`: swift-log's name (`trace` … `critical`); `label`: the
///   logger's label; `message`.
/// - With the handler at debug or trace, `source` (the module), `file` and `line` follow: where a line came from
///   helps when chasing a problem, while at info and above each line is known by its constant message and its
///   metadata, and three more fields on every line would cost bytes in every log store for nothing.
/// - Then the metadata, keys sorted: the handler's, then the metadata provider's, then the call's, a later one
///   winning on the same key; a logged error adds `error.message` and `error.type`, as swift-log's
///   `StreamLogHandler` does. Values are JSON strings, arrays and objects, as `Logger.MetadataValue` nests them.
///   A key that is one of the fields above is written `metadata.<key>`, so that no key appears twice.
///
/// Every string is escaped as JSON requires; characters past ASCII stay UTF-8. The line is built by hand, without
/// Foundation, and written with one `write` (``JSONLogOutput``).
///
/// ```swift
/// LoggingSystem.bootstrap { label, provider in JSONLogHandler(label: label, metadataProvider: provider) }
/// ```
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level = .info
    private let label: String
    private let output: JSONLogOutput

    /// The fields every line starts with, which metadata keys must not repeat.
    private static let reservedKeys: Set<String> = ["time", "level", "label", "message", "source", "file", "line"]

    /// - Parameters:
    ///   - label: the logger's label, written as `label`.
    ///   - metadataProvider: metadata added to every line, below the call's.
    ///   - output: where the lines go; standard error unless a test gives a file.
    public init(label: String, metadataProvider: Logger.MetadataProvider? = nil, output: JSONLogOutput = .standardError) {
        self.label = label
        self.metadataProvider = metadataProvider
        self.output = output
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line: [UInt8] = []
        line.reserveCapacity(256)
        line.append(contentsOf: #"{"time":""#.utf8)
        line.appendUTCTimestamp()
        line.append(contentsOf: #"","level":""#.utf8)
        line.append(contentsOf: event.level.rawValue.utf8)
        line.append(contentsOf: #"","label":"#.utf8)
        line.appendJSONString(label)
        line.append(contentsOf: #","message":"#.utf8)
        line.appendJSONString(event.message.description)
        if logLevel <= .debug {
            line.append(contentsOf: #","source":"#.utf8)
            line.appendJSONString(event.source)
            line.append(contentsOf: #","file":"#.utf8)
            line.appendJSONString(event.file)
            line.append(contentsOf: #","line":"#.utf8)
            line.append(contentsOf: String(event.line).utf8)
        }
        for (key, value) in mergedMetadata(event).sorted(by: { $0.key < $1.key }) {
            line.append(UInt8(ascii: ","))
            line.appendJSONMember(Self.reservedKeys.contains(key) ? "metadata.\(key)" : key, value)
        }
        line.append(contentsOf: "}\n".utf8)
        output.emit(line)
    }

    /// The handler's metadata, overridden by the provider's, overridden by the call's and the error's.
    private func mergedMetadata(_ event: LogEvent) -> Logger.Metadata {
        var merged = metadata
        if let provided = metadataProvider?.get(), !provided.isEmpty {
            merged.merge(provided) { _, provided in provided }
        }
        if let explicit = event.metadata, !explicit.isEmpty {
            merged.merge(explicit) { _, explicit in explicit }
        }
        if let error = event.error {
            merged["error.message"] = "\(error)"
            merged["error.type"] = "\(String(reflecting: type(of: error)))"
        }
        return merged
    }
}
