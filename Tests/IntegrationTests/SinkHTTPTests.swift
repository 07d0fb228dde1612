import Foundation
import Testing

import TTNSinks

/// The http sink against scripts/http-receiver, which each test starts for itself.
@Suite("HTTP sink against a receiver", .enabled(if: Broker.shouldRun), .timeLimit(.minutes(1)))
struct SinkHTTPTests {
    private static func record(_ number: Int, device: String? = "dev-1") -> SinkRecord {
        SinkRecord(
            id: "rec-\(number)", application: "my-app", script: "decode.lua", device: device,
            time: "2026-12-04T20:49:10.123Z", value: #"{"n":\#(number),"text":"é \"q\""}"#
        )
    }

    private static func sink(_ receiver: HTTPReceiver, timeout: Duration = .seconds(10), headers: [String: String] = [:]) throws -> HTTPSink {
        try HTTPSink(name: "warehouse", configuration: HTTPSinkConfiguration(url: receiver.url(), headers: headers, timeout: timeout))
    }

    private static func same(_ received: [String: Any], _ record: SinkRecord) throws -> Bool {
        let expected = try #require(try JSONSerialization.jsonObject(with: Data(record.envelope.utf8)) as? [String: Any])
        return NSDictionary(dictionary: received).isEqual(to: expected)
    }

    @Test("a batch arrives as one request: the envelopes in order, JSON, the configured headers, the first id as key")
    func delivered() async throws {
        let receiver = try await HTTPReceiver()
        defer { receiver.stop() }
        let sink = try Self.sink(receiver, headers: ["Authorization": "Bearer token-1", "X-Source": "ttn-host"])
        let records = [Self.record(1), Self.record(2, device: nil), Self.record(3)]
        try await sink.deliver(records)
        try await sink.deliver([Self.record(4)])
        await sink.shutdown()

        let received = try receiver.received()
        #expect(received.map(\.request) == [1, 1, 1, 2])
        #expect(received.map(\.idempotencyKey) == ["rec-1", "rec-1", "rec-1", "rec-4"])
        #expect(received.allSatisfy { $0.contentType == "application/json" })
        #expect(received.allSatisfy { $0.headers["Authorization"] == "Bearer token-1" && $0.headers["X-Source"] == "ttn-host" })
        for (envelope, record) in zip(received.map(\.envelope), records + [Self.record(4)]) {
            #expect(try Self.same(envelope, record), "\(envelope)")
        }
    }

    @Test("an error status throws with the status and the start of the body; the retry carries the same key")
    func errorStatus() async throws {
        let receiver = try await HTTPReceiver()
        defer { receiver.stop() }
        let sink = try Self.sink(receiver)
        try await receiver.setMode("fail", status: 503)
        let error = await #expect(throws: SinkError.self) { try await sink.deliver([Self.record(1), Self.record(2)]) }
        #expect(
            error?.message
                == "sink warehouse: POST \(receiver.url()) answered 503 Service Unavailable: receiver told to fail with 503"
        )
        #expect(try receiver.received().isEmpty)

        try await receiver.setMode("ok")
        try await sink.deliver([Self.record(1), Self.record(2)])
        await sink.shutdown()
        #expect(try receiver.received().map(\.idempotencyKey) == ["rec-1", "rec-1"])
    }

    @Test("a receiver that never answers fails the delivery at the timeout")
    func hang() async throws {
        let receiver = try await HTTPReceiver()
        defer { receiver.stop() }
        let sink = try Self.sink(receiver, timeout: .milliseconds(500))
        try await receiver.setMode("hang")
        let start = ContinuousClock.now
        let error = await #expect(throws: SinkError.self) { try await sink.deliver([Self.record(1)]) }
        let elapsed = ContinuousClock.now - start
        #expect(error?.message == "sink warehouse: POST \(receiver.url()) got no complete answer within 0.5 seconds")
        #expect(elapsed >= .milliseconds(500) && elapsed < .seconds(5) * Broker.timeScale, "\(elapsed)")
        try await receiver.setMode("ok")
        await sink.shutdown()
    }

    @Test("a receiver that closes the connection without an answer fails the delivery")
    func refuse() async throws {
        let receiver = try await HTTPReceiver()
        defer { receiver.stop() }
        let sink = try Self.sink(receiver)
        try await receiver.setMode("refuse")
        let error = await #expect(throws: SinkError.self) { try await sink.deliver([Self.record(1)]) }
        #expect(error?.message == "sink warehouse: POST \(receiver.url()) failed: the receiver closed the connection without answering")
        try await receiver.setMode("ok")
        try await sink.deliver([Self.record(1)])
        await sink.shutdown()
        #expect(try receiver.received().count == 1)
    }

    @Test("https trusts the CA file when one is given, and only the system's CAs otherwise")
    func https() async throws {
        let runDirectory = try #require(Broker.environment["TTN_BROKER_RUN_DIR"], "scripts/start-broker sets TTN_BROKER_RUN_DIR")
        let caFile: String = try #require(Broker.caFile)
        let receiver = try await HTTPReceiver(certificate: "\(runDirectory)/server.pem", key: "\(runDirectory)/server.key")
        defer { receiver.stop() }
        let trusting = try HTTPSink(
            name: "warehouse", configuration: HTTPSinkConfiguration(url: receiver.url(host: "localhost"), caFile: caFile)
        )
        try await trusting.deliver([Self.record(1)])
        await trusting.shutdown()
        #expect(try receiver.received().map(\.idempotencyKey) == ["rec-1"])

        let systemOnly = try HTTPSink(name: "warehouse", configuration: HTTPSinkConfiguration(url: receiver.url(host: "localhost")))
        let error = await #expect(throws: SinkError.self) { try await systemOnly.deliver([Self.record(2)]) }
        await systemOnly.shutdown()
        #expect(error?.message.hasPrefix("sink warehouse: POST \(receiver.url(host: "localhost")) failed: TLS failed (") == true)
        #expect(error?.message.contains("CERTIFICATE_VERIFY_FAILED") == true, "\(String(describing: error))")
        #expect(try receiver.received().count == 1)
    }
}
