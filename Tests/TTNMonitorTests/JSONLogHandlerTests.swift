import Foundation
import Logging
import Testing

@testable import TTNMonitor

/// The lines a JSON logger wrote while `body` ran: a temporary file as its output, read back afterwards.
private func loggedText(
    label: String = "ttn.test", level: Logger.Level = .info, metadataProvider: Logger.MetadataProvider? = nil,
    _ body: (inout Logger) async -> Void
) async throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("json-log-\(UUID().uuidString)").path
    let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    try #require(descriptor >= 0)
    defer {
        close(descriptor)
        unlink(path)
    }
    let output = JSONLogOutput(fileDescriptor: descriptor)
    var logger = Logger(label: label) { label in JSONLogHandler(label: label, metadataProvider: metadataProvider, output: output) }
    logger.logLevel = level
    await body(&logger)
    return try String(contentsOfFile: path, encoding: .utf8)
}

/// Each line parsed as a JSON object.
private func parsedLines(_ text: String) throws -> [[String: Any]] {
    #expect(text.isEmpty || text.hasSuffix("\n"))
    return try text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map { try jsonObject($0) }
}

struct DiskFull: Error {
    var device: String
}

/// Strings that need every kind of escape, and some that need none.
private let awkward = "q\"b\\s/n\nr\rt\tnul\u{0}us\u{1F}del\u{7F}é😀\u{2028}"

@Suite("JSON log lines")
struct JSONLogHandlerTests {
    @Test("time, level, label and message come first, in that order, then the metadata")
    func fields() async throws {
        let before = Date()
        let text = try await loggedText { logger in logger.info("Connected", metadata: ["ttn.app_id": "my-app"]) }
        let after = Date()
        #expect(text.hasPrefix(#"{"time":""#))
        #expect(text.hasSuffix(#"","level":"info","label":"ttn.test","message":"Connected","ttn.app_id":"my-app"}"# + "\n"))
        let line = try #require(try parsedLines(text).first)
        #expect(line.count == 5)
        let time = try #require(line["time"] as? String)
        #expect(time.count == 24 && time.hasSuffix("Z"))
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let date = try #require(formatter.date(from: time))
        #expect(date >= before.addingTimeInterval(-0.001) && date <= after)
    }

    @Test(
        "timestamps are ISO 8601 UTC with milliseconds",
        arguments: [
            (0, 0, "1970-01-01T00:00:00.000Z"), (1_796_378_400, 123, "2026-12-04T10:00:00.123Z"),
            (1_709_251_199, 999, "2024-02-29T23:59:59.999Z"), (4_102_444_800, 7, "2100-01-01T00:00:00.007Z"),
        ]
    )
    func timestamps(seconds: Int, milliseconds: Int, expected: String) {
        var bytes: [UInt8] = []
        bytes.appendUTCTimestamp(seconds: seconds, milliseconds: milliseconds)
        #expect(String(decoding: bytes, as: UTF8.self) == expected)
    }

    @Test("quotes, backslashes and control characters are escaped, the rest stays UTF-8, and all of it parses back")
    func escaping() async throws {
        let text = try await loggedText(label: "label \(awkward)") { logger in
            logger.info("message \(awkward)", metadata: ["key \(awkward)": "value \(awkward)"])
        }
        #expect(text.filter { $0 == "\n" }.count == 1)
        #expect(text.contains(#"q\"b\\s/n\nr\rt\tnul\u0000us\u001fdel"# + "\u{7F}é😀\u{2028}"))
        let line = try #require(try parsedLines(text).first)
        #expect(line["label"] as? String == "label \(awkward)")
        #expect(line["message"] as? String == "message \(awkward)")
        #expect(line["key \(awkward)"] as? String == "value \(awkward)")
    }

    @Test("metadata values are strings, arrays and objects as swift-log nests them")
    func shapes() async throws {
        let text = try await loggedText { logger in
            logger.info(
                "Shapes",
                metadata: [
                    "string": "s", "number": .stringConvertible(42), "array": ["a", ["b", "c"]],
                    "object": ["z": "1", "a": ["nested": "\(awkward)"]], "empty": [],
                ]
            )
        }
        #expect(text.contains(#""array":["a",["b","c"]],"empty":[],"number":"42","object":{"a":{"nested":"#))
        let line = try #require(try parsedLines(text).first)
        #expect(line["string"] as? String == "s")
        #expect(line["number"] as? String == "42")
        #expect(line["array"] as? NSArray == ["a", ["b", "c"]] as NSArray)
        #expect(line["object"] as? NSDictionary == ["z": "1", "a": ["nested": awkward]] as NSDictionary)
    }

    @Test("the call's metadata wins over the provider's, which wins over the handler's; an error adds its message and type")
    func mergeOrder() async throws {
        let provider = Logger.MetadataProvider { ["shared": "provider", "both": "provider", "p": "1"] }
        let text = try await loggedText(metadataProvider: provider) { logger in
            logger[metadataKey: "shared"] = "handler"
            logger[metadataKey: "both"] = "handler"
            logger[metadataKey: "h"] = "2"
            logger.info("Merged", metadata: ["both": "call", "c": "3"])
            logger.error("Failed", error: DiskFull(device: "sda"))
        }
        let lines = try parsedLines(text)
        try #require(lines.count == 2)
        #expect(lines[0]["shared"] as? String == "provider")
        #expect(lines[0]["both"] as? String == "call")
        #expect([lines[0]["p"], lines[0]["h"], lines[0]["c"]].map { $0 as? String } == ["1", "2", "3"])
        #expect(lines[1]["error.type"] as? String == "TTNMonitorTests.DiskFull")
        #expect(lines[1]["error.message"] as? String == #"DiskFull(device: "sda")"#)
    }

    @Test("a metadata key that names a field is written metadata.<key>, so no key appears twice")
    func reservedKeys() async throws {
        let text = try await loggedText { logger in logger.info("Real", metadata: ["message": "fake", "time": "t", "line": "l"]) }
        #expect(text.hasSuffix(#""message":"Real","metadata.line":"l","metadata.message":"fake","metadata.time":"t"}"# + "\n"))
    }

    @Test("lines below the level are dropped; at debug and trace each line says where it came from")
    func levels() async throws {
        let warning = try await loggedText(level: .warning) { logger in
            logger.info("Dropped")
            logger.warning("Kept")
        }
        #expect(try parsedLines(warning).map { $0["message"] as? String } == ["Kept"])
        #expect(try parsedLines(warning).first?["level"] as? String == "warning")
        #expect(!warning.contains(#""source""#))

        let debug = try await loggedText(level: .debug) { logger in
            logger.trace("Dropped")
            logger.debug("Kept")
        }
        let line = try #require(try parsedLines(debug).first)
        #expect(line["message"] as? String == "Kept")
        #expect(line["source"] as? String == "TTNMonitorTests")
        #expect((line["file"] as? String)?.hasSuffix("JSONLogHandlerTests.swift") == true)
        #expect((line["line"] as? Int ?? 0) > 0)
    }

    @Test("lines logged from many tasks at once never interleave")
    func concurrentLines() async throws {
        let text = try await loggedText { logger in
            await withTaskGroup(of: Void.self) { group in
                for task in 0..<8 {
                    group.addTask { [logger] in
                        for index in 0..<500 {
                            logger.info("Line", metadata: ["task": "\(task)", "index": "\(index)", "padding": "\(String(repeating: "x", count: 300))"])
                        }
                    }
                }
            }
        }
        let lines = try parsedLines(text)
        #expect(lines.count == 4000)
        #expect(Set(lines.map { "\($0["task"]!)/\($0["index"]!)" }).count == 4000)
    }
}
