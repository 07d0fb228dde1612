import Foundation
import Testing

import TTNSinks

@Suite("File sink")
struct FileSinkTests {
    /// The lines of the file at `path`, without the final newline; nil when there is no file.
    private func lines(_ path: String) -> [String]? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
    }

    private func ids(_ path: String) throws -> [String] {
        try (lines(path) ?? []).map { try #require(try jsonObject($0)["id"] as? String) }
    }

    @Test("each envelope is one newline-terminated line that parses, in delivery order")
    func linesWritten() async throws {
        try await withTemporaryDirectory { directory in
            let path = "\(directory)/archive.jsonl"
            let sink = FileSink(name: "archive", configuration: FileSinkConfiguration(path: path))
            try await sink.deliver([record(1), record(2, device: nil)])
            try await sink.deliver([record(3, value: #"{"text":"a\nb"}"#)])
            await sink.shutdown()

            let text = try String(contentsOfFile: path, encoding: .utf8)
            #expect(text.hasSuffix("}\n"))
            #expect(try ids(path) == ["rec-1", "rec-2", "rec-3"])
            #expect(lines(path)?.first == record(1).envelope)
            let third = try jsonObject(try #require(lines(path)?.last))
            #expect((third["value"] as? [String: String])?["text"] == "a\nb")
        }
    }

    @Test("rotation keeps `keep` old files, shifts them, and never splits a batch")
    func rotation() async throws {
        try await withTemporaryDirectory { directory in
            let path = "\(directory)/out.jsonl"
            let lineLength = record(10).envelope.utf8.count + 1
            // Room for two lines: every batch of two fills a file, so each delivery after the first rotates.
            let sink = FileSink(name: "archive", configuration: FileSinkConfiguration(path: path, maxSize: 2 * lineLength + 10, keep: 2))
            for batch in 0..<5 {
                try await sink.deliver([record(10 + 2 * batch), record(11 + 2 * batch)])
            }
            // A batch larger than maxSize still goes whole into a file of its own.
            try await sink.deliver([record(30), record(31), record(32)])
            await sink.shutdown()

            #expect(try ids(path) == ["rec-30", "rec-31", "rec-32"])
            #expect(try ids("\(path).1") == ["rec-18", "rec-19"])
            #expect(try ids("\(path).2") == ["rec-16", "rec-17"])
            #expect(!FileManager.default.fileExists(atPath: "\(path).3"))
        }
    }

    @Test("batches that fit share a file until the next one would pass maxSize")
    func fillsBeforeRotating() async throws {
        try await withTemporaryDirectory { directory in
            let path = "\(directory)/out.jsonl"
            let lineLength = record(10).envelope.utf8.count + 1
            let sink = FileSink(name: "archive", configuration: FileSinkConfiguration(path: path, maxSize: 3 * lineLength, keep: 1))
            for number in 10..<14 { try await sink.deliver([record(number)]) }
            await sink.shutdown()

            #expect(try ids("\(path).1") == ["rec-10", "rec-11", "rec-12"])
            #expect(try ids(path) == ["rec-13"])
        }
    }

    @Test("a file moved or deleted by someone else is noticed, and path opened again")
    func externalMove() async throws {
        try await withTemporaryDirectory { directory in
            let path = "\(directory)/out.jsonl"
            let sink = FileSink(name: "archive", configuration: FileSinkConfiguration(path: path))
            try await sink.deliver([record(1)])
            try FileManager.default.moveItem(atPath: path, toPath: "\(path).moved")
            try await sink.deliver([record(2)])
            try FileManager.default.removeItem(atPath: path)
            try await sink.deliver([record(3)])
            await sink.shutdown()

            #expect(try ids("\(path).moved") == ["rec-1"])
            #expect(try ids(path) == ["rec-3"])
        }
    }

    @Test("a missing directory is a clear error naming the sink and the directory")
    func missingDirectory() async throws {
        try await withTemporaryDirectory { directory in
            let path = "\(directory)/missing/out.jsonl"
            let sink = FileSink(name: "archive", configuration: FileSinkConfiguration(path: path))
            let error = await sinkError { () async throws(SinkError) in try await sink.deliver([record(1)]) }
            #expect(
                error?.message
                    == "sink archive: cannot open \(path): the directory \(directory)/missing does not exist; create it or change the sink's path"
            )
            // Once the directory is there, the same sink delivers.
            try FileManager.default.createDirectory(atPath: "\(directory)/missing", withIntermediateDirectories: false)
            try await sink.deliver([record(2)])
            await sink.shutdown()
            #expect(try ids(path) == ["rec-2"])
        }
    }

    @Test("a path that cannot be written names the sink, the path and the system's reason")
    func unwritablePath() async throws {
        try await withTemporaryDirectory { directory in
            let sink = FileSink(name: "archive", configuration: FileSinkConfiguration(path: directory))
            let error = await sinkError { () async throws(SinkError) in try await sink.deliver([record(1)]) }
            #expect(error?.message == "sink archive: cannot open \(directory): Is a directory (errno \(EISDIR))")
            await sink.shutdown()
        }
    }
}
