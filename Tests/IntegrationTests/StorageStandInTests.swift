import Foundation
import Testing

import TestSupport

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// scripts/storage-stand-in, the local Storage Integration API that ttn-host's backfill is tested against: that it
/// answers as The Things Stack does (keys, applications, filters, order, NDJSON), captures what the broker carries,
/// takes what a test stores directly, and shows a message only after its delay.
@Suite("Storage Integration stand-in", .enabled(if: Broker.shouldRun), .timeLimit(.minutes(1)))
struct StorageStandInTests {
    /// A compact ApplicationUp built from the docs' uplink fixture, for `application` and `device`, with its own
    /// `received_at`, f_cnt, f_port and as:up: correlation id. Foundation escapes its `/`s as `\/` and orders its keys
    /// as no other JSON writer would, so only a stand-in that keeps the bytes answers them unchanged.
    static func uplink(
        application: String, device: String = "dev-1", fCnt: Int, receivedAt: String, fPort: Int = 2,
        correlation: String? = nil
    ) throws -> [UInt8] {
        var message = try #require(try JSONSerialization.jsonObject(with: Data(Fixtures.bytes("v3-up-decoded.json"))) as? [String: Any])
        var ids = try #require(message["end_device_ids"] as? [String: Any])
        ids["device_id"] = device
        ids["application_ids"] = ["application_id": application]
        message["end_device_ids"] = ids
        message["received_at"] = receivedAt
        message["correlation_ids"] = [correlation ?? "as:up:\(UUID().uuidString)", "gs:uplink:\(fCnt)"]
        var up = try #require(message["uplink_message"] as? [String: Any])
        up["f_cnt"] = fCnt
        up["f_port"] = fPort
        message["uplink_message"] = up
        return [UInt8](try JSONSerialization.data(withJSONObject: message, options: [.sortedKeys]))
    }

    /// The stream line the API answers for a stored message: the message's bytes, wrapped.
    static func line(_ message: [UInt8]) -> [UInt8] { Array(#"{"result":"#.utf8) + message + Array("}".utf8) }

    /// The f_cnts of the messages in a stream answer, in its order.
    static func fCnts(_ answer: StorageStandIn.Answer) throws -> [Int] {
        try answer.lines.map { line in
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
            let result = try #require(object["result"] as? [String: Any])
            return try #require((result["uplink_message"] as? [String: Any])?["f_cnt"] as? Int)
        }
    }

    static func application() -> String { "standin-\(UUID().uuidString.prefix(8).lowercased())" }

    @Test("a wrong or missing key is answered 401 with TTS's unauthenticated errors, and shows nothing stored")
    func unauthenticated() async throws {
        let application = Self.application()
        let standIn = try await StorageStandIn(applications: [application])
        defer { standIn.stop() }
        try await standIn.store(Self.uplink(application: application, fCnt: 1, receivedAt: "2026-12-04T10:00:00Z"))

        let wrong = try await standIn.uplinks(application: application, key: "NNSXS.WRONG.KEY")
        #expect(wrong.status == 401)
        #expect(wrong.object?["code"] as? Int == 16)
        #expect(wrong.object?["message"] as? String == "error:pkg/identityserver:api_key_not_found (API key not found)")
        let missing = try await standIn.uplinks(application: application, key: nil)
        #expect(missing.status == 401)
        #expect(missing.object?["message"] as? String == "error:pkg/auth/rights:unauthenticated (unauthenticated)")
        let count = try await standIn.uplinks(application: application, count: true, key: "wrong")
        #expect(count.status == 401)
        #expect(![wrong, missing, count].contains { String(decoding: $0.body, as: UTF8.self).contains("result") })

        let right = try await standIn.uplinks(application: application)
        #expect(right.status == 200)
        #expect(right.lines.count == 1)
        #expect(try await standIn.requests().map(\.status) == [401, 401, 401, 200])
    }

    @Test("an application without the integration is answered 404, package association not found; one with it, 200")
    func notActivated() async throws {
        let activated = Self.application()
        let other = Self.application()
        let standIn = try await StorageStandIn(applications: [activated])
        defer { standIn.stop() }
        try await standIn.store(Self.uplink(application: other, fCnt: 1, receivedAt: "2026-12-04T10:00:00Z"))
        #expect(try await standIn.count(application: other) == 1)

        let answer = try await standIn.uplinks(application: other)
        #expect(answer.status == 404)
        #expect(answer.object?["code"] as? Int == 5)
        #expect((answer.object?["message"] as? String)?.contains("package association not found") == true)
        #expect(try await standIn.uplinks(application: other, device: "dev-1").status == 404)

        let empty = try await standIn.uplinks(application: activated)
        #expect(empty.status == 200)
        #expect(empty.body.isEmpty)
    }

    @Test("an uplink published on the broker is captured, under its topic's application, and answered byte for byte")
    func captureFromBroker() async throws {
        let port = try Broker.requirePort()
        let application = Self.application()
        let standIn = try await StorageStandIn(applications: [application], broker: port)
        defer { standIn.stop() }
        let network = try NetworkSide(port: port)
        defer { network.close() }

        // The topic names the application; the message's own identifiers name another, as a tenant's might not.
        let uplink = try Self.uplink(application: "named-in-json", fCnt: 7, receivedAt: "2026-12-04T10:00:00.5Z")
        try network.publishUplink(application: application, device: "dev-1", json: uplink)
        #expect(try await StorageStandIn.poll { try await standIn.uplinks(application: application).lines.count == 1 })
        let answer = try await standIn.uplinks(application: application)
        #expect(answer.lines == [Self.line(uplink)])
        #expect(answer.contentType == "application/json")

        // Published again (as a QoS 1 redelivery would be), and POSTed as the network's store would have it: once.
        try network.publishUplink(application: application, device: "dev-1", json: uplink)
        let second = try Self.uplink(application: application, fCnt: 8, receivedAt: "2026-12-04T10:00:01Z")
        try network.publishUplink(application: application, device: "dev-1", json: second)
        #expect(try await StorageStandIn.poll { try await standIn.count(application: application) == 2 })
        #expect(try await standIn.store(uplink, application: application) == 0)
        #expect(try await standIn.uplinks(application: application).lines == [Self.line(uplink), Self.line(second)])
    }

    @Test("capture resumes after the broker restarts; what was stored directly meanwhile is answered too")
    func captureAcrossBrokerRestart() async throws {
        let runDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("broker-\(UUID().uuidString)")
        let port = try await PrivateBroker.start(in: runDirectory)
        defer { PrivateBroker.stop(in: runDirectory) }
        let application = Self.application()
        let standIn = try await StorageStandIn(applications: [application], broker: port)
        defer { standIn.stop() }

        PrivateBroker.stop(in: runDirectory)
        let whileDown = try Self.uplink(application: application, fCnt: 2, receivedAt: "2026-12-04T10:00:02Z")
        #expect(try await standIn.store(whileDown) == 1)
        _ = try await PrivateBroker.start(in: runDirectory, port: port)
        #expect(try await StorageStandIn.poll(timeout: .seconds(20)) { try await standIn.status().subscriptions >= 2 }, "\(standIn.log)")

        let network = try NetworkSide(port: port)
        defer { network.close() }
        let afterRestart = try Self.uplink(application: application, fCnt: 3, receivedAt: "2026-12-04T10:00:03Z")
        try network.publishUplink(application: application, device: "dev-1", json: afterRestart)
        #expect(try await StorageStandIn.poll { try await standIn.count(application: application) == 2 })
        #expect(try await standIn.uplinks(application: application).lines == [Self.line(whileDown), Self.line(afterRestart)])
    }

    @Test("a direct POST stores one object, or newline-delimited ones, each once; a pretty-printed one compacted")
    func directPost() async throws {
        let application = Self.application()
        let standIn = try await StorageStandIn(applications: [application])
        defer { standIn.stop() }
        let first = try Self.uplink(application: application, fCnt: 1, receivedAt: "2026-12-04T10:00:01Z")
        let second = try Self.uplink(application: application, fCnt: 2, receivedAt: "2026-12-04T10:00:02Z")
        #expect(try await standIn.store(first + Array("\n".utf8) + second + Array("\n".utf8)) == 2)
        #expect(try await standIn.store(second) == 0)
        // No as:up: id: the same device, f_cnt and received_at is the same message.
        let fixture = try Fixtures.bytes("v3-up-decoded.json")
        #expect(try await standIn.store(fixture, application: application) == 1)
        #expect(try await standIn.store(fixture, application: application) == 0)
        #expect(try await standIn.count(application: application) == 3)
        #expect(try await standIn.count(application: "starter-kit") == 0, "?app= wins over the message's ids")

        let answer = try await standIn.uplinks(application: application)
        try #require(answer.lines.count == 3)
        #expect(Array(answer.lines[1...]) == [Self.line(first), Self.line(second)])
        let compacted = try #require(try JSONSerialization.jsonObject(with: Data(answer.lines[0])) as? [String: Any])
        let original = try #require(try JSONSerialization.jsonObject(with: Data(fixture)) as? [String: Any])
        #expect(NSDictionary(dictionary: compacted).isEqual(to: ["result": original]))

        var refused = URLRequest(url: try #require(URL(string: "\(standIn.url)/stand-in/uplinks")))
        refused.httpMethod = "POST"
        refused.httpBody = Data(#"{"received_at":"2026-12-04T10:00:00Z"}"#.utf8)
        let (_, response) = try await URLSession.shared.data(for: refused)
        #expect((response as? HTTPURLResponse)?.statusCode == 400, "no device, no application")
    }

    @Test("after and before are inclusive to the nanosecond; limit; order=-received_at; f_port; ties in stored order")
    func filtersAndOrder() async throws {
        let application = Self.application()
        let standIn = try await StorageStandIn(applications: [application])
        defer { standIn.stop() }
        // Stored out of order; f_cnt 3 and 4 share a received_at; 5 is 10:00:00.5Z written at +01:00.
        let times = [
            (2, "2026-12-04T10:00:00.123456790Z"), (1, "2026-12-04T10:00:00.123456789Z"), (3, "2026-12-04T10:00:00.2Z"),
            (4, "2026-12-04T10:00:00.200000000Z"), (5, "2026-12-04T11:00:00.5+01:00"), (6, "2026-12-04T10:00:01Z"),
        ]
        for (fCnt, time) in times {
            try await standIn.store(Self.uplink(application: application, fCnt: fCnt, receivedAt: time, fPort: fCnt == 6 ? 9 : 2))
        }
        func fCnts(_ query: [String: String]) async throws -> [Int] {
            let answer = try await standIn.uplinks(application: application, query: query)
            try #require(answer.status == 200, "\(query): \(String(decoding: answer.body, as: UTF8.self))")
            return try Self.fCnts(answer)
        }
        #expect(try await fCnts([:]) == [1, 2, 3, 4, 5, 6])
        #expect(try await fCnts(["order": "received_at"]) == [1, 2, 3, 4, 5, 6])
        #expect(try await fCnts(["order": "-received_at"]) == [6, 5, 3, 4, 2, 1])
        #expect(try await fCnts(["after": "2026-12-04T10:00:00.123456790Z"]) == [2, 3, 4, 5, 6])
        #expect(try await fCnts(["after": "2026-12-04T10:00:00.123456791Z"]) == [3, 4, 5, 6])
        #expect(try await fCnts(["before": "2026-12-04T10:00:00.123456789Z"]) == [1])
        #expect(try await fCnts(["before": "2026-12-04T10:00:00.2Z", "after": "2026-12-04T10:00:00.123456790Z"]) == [2, 3, 4])
        #expect(try await fCnts(["after": "2026-12-04T10:00:00.5Z", "before": "2026-12-04T10:00:00.5Z"]) == [5])
        #expect(try await fCnts(["after": "2026-12-04T12:00:00+02:00"]) == [1, 2, 3, 4, 5, 6])
        #expect(try await fCnts(["limit": "2"]) == [1, 2])
        #expect(try await fCnts(["limit": "2", "order": "-received_at"]) == [6, 5])
        #expect(try await fCnts(["limit": "3", "after": "2026-12-04T10:00:00.2Z"]) == [3, 4, 5])
        #expect(try await fCnts(["f_port": "9"]) == [6])
        #expect(try await fCnts(["field_mask": "up.uplink_message.decoded_payload"]) == [1, 2, 3, 4, 5, 6])

        let requests = try await standIn.requests()
        #expect(requests.count == 14)
        #expect(requests[3].parameters == ["after": "2026-12-04T10:00:00.123456790Z"])
        #expect(requests[3].results == 5)
        #expect(requests[8].query == "after=2026-12-04T12:00:00%2B02:00")
    }

    @Test("last takes the uplinks received in that time; with after or before it is refused")
    func last() async throws {
        let application = Self.application()
        let standIn = try await StorageStandIn(applications: [application])
        defer { standIn.stop() }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        try await standIn.store(Self.uplink(application: application, fCnt: 1, receivedAt: formatter.string(from: Date() - 7200)))
        try await standIn.store(Self.uplink(application: application, fCnt: 2, receivedAt: formatter.string(from: Date() - 60)))
        #expect(try Self.fCnts(try await standIn.uplinks(application: application, query: ["last": "10m"])) == [2])
        #expect(try Self.fCnts(try await standIn.uplinks(application: application, query: ["last": "2h30m"])) == [1, 2])
        #expect(try Self.fCnts(try await standIn.uplinks(application: application, query: ["last": "30s"])) == [])
        let both = try await standIn.uplinks(application: application, query: ["last": "10m", "after": "2026-12-04T10:00:00Z"])
        #expect(both.status == 400)
    }

    @Test("a query that does not parse is answered 400 with an invalid-argument error", arguments: [
        ["after": "yesterday"], ["before": "2026-12-04 10:00:00"], ["after": "2026-13-04T10:00:00Z"],
        ["after": "2026-12-04T10:00:00.1234567891Z"], ["limit": "0"], ["limit": "-1"], ["limit": "ten"],
        ["f_port": "x"], ["order": "f_cnt"], ["last": "10 minutes"],
    ])
    func badQuery(_ query: [String: String]) async throws {
        let application = Self.application()
        let standIn = try await StorageStandIn(applications: [application])
        defer { standIn.stop() }
        let answer = try await standIn.uplinks(application: application, query: query)
        #expect(answer.status == 400)
        #expect(answer.object?["code"] as? Int == 3)
        #expect(try await standIn.requests().map(\.status) == [400])
    }

    @Test("the per-device path answers that device's uplinks only; /count counts by device")
    func perDevice() async throws {
        let application = Self.application()
        let standIn = try await StorageStandIn(applications: [application])
        defer { standIn.stop() }
        for (fCnt, device) in [(1, "dev-1"), (2, "dev-2"), (3, "dev-1")] {
            try await standIn.store(Self.uplink(application: application, device: device, fCnt: fCnt, receivedAt: "2026-12-04T10:00:0\(fCnt)Z"))
        }
        #expect(try Self.fCnts(try await standIn.uplinks(application: application, device: "dev-1")) == [1, 3])
        #expect(try Self.fCnts(try await standIn.uplinks(application: application, device: "dev-2")) == [2])
        #expect(try await standIn.uplinks(application: application, device: "dev-3").body.isEmpty)
        let counts = try await standIn.uplinks(application: application, count: true)
        #expect(counts.status == 200)
        #expect(counts.object?["count"] as? [String: Int] == ["dev-1": 2, "dev-2": 1])
        let deviceCount = try await standIn.uplinks(application: application, device: "dev-1", count: true, query: ["after": "2026-12-04T10:00:02Z"])
        #expect(deviceCount.object?["count"] as? [String: Int] == ["dev-1": 1])
        #expect(try await standIn.requests().map(\.path).last == "/api/v3/as/applications/\(application)/devices/dev-1/packages/storage/uplink_message/count")
    }

    @Test("with Accept: text/event-stream the answer is text/event-stream, each result followed by a blank line")
    func eventStream() async throws {
        let application = Self.application()
        let standIn = try await StorageStandIn(applications: [application])
        defer { standIn.stop() }
        let first = try Self.uplink(application: application, fCnt: 1, receivedAt: "2026-12-04T10:00:01Z")
        let second = try Self.uplink(application: application, fCnt: 2, receivedAt: "2026-12-04T10:00:02Z")
        try await standIn.store(first)
        try await standIn.store(second)
        let newline = Array("\n".utf8)
        let stream = try await standIn.uplinks(application: application, accept: "text/event-stream")
        #expect(stream.contentType == "text/event-stream")
        #expect(stream.body == Self.line(first) + newline + newline + Self.line(second) + newline + newline)
        let json = try await standIn.uplinks(application: application)
        #expect(json.contentType == "application/json")
        #expect(json.body == Self.line(first) + newline + Self.line(second) + newline)
    }

    @Test("with --delay a stored uplink is counted at once but answered only once the delay has passed")
    func delay() async throws {
        let application = Self.application()
        let delay = Duration.seconds(2) * Broker.timeScale
        let standIn = try await StorageStandIn(applications: [application], delay: delay)
        defer { standIn.stop() }
        let uplink = try Self.uplink(application: application, fCnt: 1, receivedAt: "2026-12-04T10:00:00Z")
        let stored = ContinuousClock.now
        try await standIn.store(uplink)
        let early = try await standIn.uplinks(application: application)
        let earlyCount = try await standIn.uplinks(application: application, count: true)
        // Answered before the delay could have passed, they must show nothing (on a machine slow enough to take
        // the whole delay for three local requests, they prove nothing, and the wait below still must hold).
        if ContinuousClock.now - stored < delay {
            #expect(early.status == 200 && early.body.isEmpty)
            #expect(earlyCount.object?["count"] as? [String: Int] == [:])
        }
        #expect(try await standIn.count(application: application) == 1)

        #expect(try await StorageStandIn.poll { try await !standIn.uplinks(application: application).body.isEmpty })
        #expect(ContinuousClock.now - stored >= delay)
        #expect(try await standIn.uplinks(application: application).lines == [Self.line(uplink)])
    }
}
