import Foundation
import Testing

import TTNSinks

/// A record as the outbox would hand it over, numbered `number`.
func record(_ number: Int, device: String? = "dev-1", value: String = #"{"n":1}"#) -> SinkRecord {
    SinkRecord(
        id: "rec-\(number)", application: "my-app", script: "decode.lua", device: device, time: "2026-12-04T20:49:10.123Z",
        value: value
    )
}

/// A new, empty directory under the temporary directory, removed after `body`.
func withTemporaryDirectory<Result>(_ body: (String) async throws -> Result) async throws -> Result {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ttn-sinks-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    return try await body(directory)
}

/// The SinkError `body` throws, or nil (recorded as an issue) when it throws none.
func sinkError(_ body: () async throws(SinkError) -> Void, sourceLocation: SourceLocation = #_sourceLocation) async -> SinkError? {
    do {
        try await body()
        Issue.record("expected a SinkError, got none", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

/// `text` parsed as a JSON object.
func jsonObject(_ text: some StringProtocol) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]) as? [String: Any])
}
