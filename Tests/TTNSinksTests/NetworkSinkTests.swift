import Foundation
import Testing

import TTNSinks

/// The message of the SinkError that `make` throws; nil when it throws none.
private func initError(_ make: () throws(SinkError) -> Void) -> String? {
    do {
        try make()
        return nil
    } catch {
        return error.message
    }
}

/// What the HTTP and MQTT sinks check and build before any receiver is involved.
@Suite("HTTP and MQTT sinks without a receiver")
struct NetworkSinkTests {
    @Test("an HTTP sink refuses a URL that is not http:// or https://", arguments: ["ftp://example.net/x", "example.net/ingest", "http://", ""])
    func badURL(url: String) {
        #expect(initError { () throws(SinkError) in
            _ = try HTTPSink(name: "warehouse", configuration: HTTPSinkConfiguration(url: url))
        } == "sink warehouse: url \(url) is not an http:// or https:// URL")
    }

    @Test("an HTTP sink refuses an unreadable CA file and a batch below 1")
    func badSettings() {
        #expect(initError { () throws(SinkError) in
            _ = try HTTPSink(name: "warehouse", configuration: HTTPSinkConfiguration(url: "https://example.net", caFile: "/nonexistent/ca.pem"))
        } == "sink warehouse: the CA file /nonexistent/ca.pem cannot be read; give the path of a PEM file")
        #expect(initError { () throws(SinkError) in
            _ = try HTTPSink(name: "warehouse", configuration: HTTPSinkConfiguration(url: "https://example.net", batch: 0))
        } == "sink warehouse: batch is 0; it must be 1 or more")
    }

    @Test("the HTTP body is a JSON array of the envelopes, in order")
    func body() throws {
        let records = [record(1), record(2, device: nil)]
        let body = HTTPSink.body(for: records)
        #expect(String(decoding: body, as: UTF8.self) == "[\(records[0].envelope),\(records[1].envelope)]")
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [[String: Any]])
        #expect(parsed.map { $0["id"] as? String } == ["rec-1", "rec-2"])
    }

    @Test("a refused connection throws an error naming the sink and the URL, without the query")
    func connectionRefused() async throws {
        let sink = try HTTPSink(
            name: "warehouse", configuration: HTTPSinkConfiguration(url: "http://127.0.0.1:1/ingest?token=secret", timeout: .seconds(5))
        )
        let error = await sinkError { () async throws(SinkError) in try await sink.deliver([record(1)]) }
        await sink.shutdown()
        let message = try #require(error?.message)
        #expect(message == "sink warehouse: POST http://127.0.0.1:1/ingest failed: Connection refused (errno \(ECONNREFUSED))")
    }

    @Test("the MQTT topic gets the device (or unknown), the application and the script")
    func topic() throws {
        let sink = try MQTTSink(name: "ha", configuration: MQTTSinkConfiguration(host: "127.0.0.1", topic: "ttn/{app}/{device}/{script}/state"))
        #expect(sink.topic(for: record(1)) == "ttn/my-app/dev-1/decode.lua/state")
        #expect(sink.topic(for: record(1, device: nil)) == "ttn/my-app/unknown/decode.lua/state")
    }

    @Test("an MQTT sink refuses wildcard topics and ports out of range, and starts without its broker")
    func mqttSettings() async throws {
        #expect(initError { () throws(SinkError) in
            _ = try MQTTSink(name: "ha", configuration: MQTTSinkConfiguration(host: "127.0.0.1", topic: "ttn/+/state"))
        } == "sink ha: topic 'ttn/+/state' must be a topic name without the wildcards + and #")
        #expect(initError { () throws(SinkError) in
            _ = try MQTTSink(name: "ha", configuration: MQTTSinkConfiguration(host: "127.0.0.1", port: 0, topic: "t"))
        } == "sink ha: port 0 is out of range; use 1883 (plain) or 8883 (TLS)")
        let sink = try MQTTSink(name: "ha", configuration: MQTTSinkConfiguration(host: "127.0.0.1", port: 1, topic: "t"))
        let error = await sinkError { () async throws(SinkError) in try await sink.deliver([record(1)]) }
        #expect(error?.message.hasPrefix("sink ha: publishing to 127.0.0.1:1 failed: Could not connect to 127.0.0.1:1") == true, "\(String(describing: error))")
        await sink.shutdown()
    }
}
