import Foundation
import TestSupport
import Testing

@testable import TTNCore

@Suite("Event kinds, their topics, and the host's downlink ids in events")
struct EventKindTests {
    /// The ten kinds TTN v3 publishes, by their topic suffixes.
    static let mqttKinds = [
        "join", "up/normalized", "down/queued", "down/sent", "down/ack", "down/nack", "down/failed", "down/invalidated",
        "location/solved", "service/data",
    ]

    @Test("allCases are the ten MQTT kinds, each once; downlinkLost is not one of them")
    func allCases() {
        #expect(TTNEvent.Kind.allCases.map(\.rawValue) == Self.mqttKinds)
        #expect(Set(TTNEvent.Kind.allCases).count == 10)
        #expect(!TTNEvent.Kind.allCases.contains(.downlinkLost))
        #expect(TTNEvent.Kind.downlinkLost.rawValue == "down/lost")
    }

    @Test("v3: one filter per kind; none for downlinkLost, nor for a kind TTN does not publish")
    func v3Filters() {
        let layout = TopicLayout(username: "my-app@ttn", legacyV2: false)
        for kind in TTNEvent.Kind.allCases {
            #expect(layout.eventFilter(for: kind) == "v3/my-app@ttn/devices/+/\(kind.rawValue)")
        }
        #expect(layout.eventFilter(for: .downlinkAck) == "v3/my-app@ttn/devices/+/down/ack")
        #expect(layout.eventFilter(for: .downlinkLost) == nil)
        for raw in ["up", "#", "down/+", "down/push", ""] {
            #expect(layout.eventFilter(for: TTNEvent.Kind(rawValue: raw)) == nil, "'\(raw)'")
        }
        #expect(Set(TTNEvent.Kind.allCases.compactMap(layout.eventFilter(for:))).count == 10, "distinct filters")
    }

    @Test("legacy v2: every kind but downlinkLost maps to the one v2 events filter")
    func v2Filters() {
        let layout = TopicLayout(username: "my-app", legacyV2: true)
        for kind in TTNEvent.Kind.allCases + [TTNEvent.Kind(rawValue: "events/activations")] {
            #expect(layout.eventFilter(for: kind) == "my-app/devices/+/events/#", "\(kind)")
        }
        #expect(layout.eventFilter(for: .downlinkLost) == nil)
    }

    /// Each downlink event fixture, with where TTN puts the downlink's own correlation ids (keys, or array indices).
    static let downlinkEvents: [(fixture: String, kind: TTNEvent.Kind, nested: [String])] = [
        ("v3-down-ack.json", .downlinkAck, ["downlink_ack"]),
        ("v3-down-nack.json", .downlinkNack, ["downlink_nack"]),
        ("v3-down-sent.json", .downlinkSent, ["downlink_sent"]),
        ("v3-down-queued.json", .downlinkQueued, ["downlink_queued"]),
        ("v3-down-failed.json", .downlinkFailed, ["downlink_failed", "downlink"]),
        ("v3-down-failed-max-retries.json", .downlinkFailed, ["downlink_failed", "downlink"]),
        ("v3-down-invalidated.json", .downlinkQueueInvalidated, ["downlink_queue_invalidated", "downlinks", "0"]),
    ]

    static func event(_ kind: TTNEvent.Kind, json: String) -> TTNEvent {
        TTNEvent(kind: kind, deviceID: "dev1", topic: "v3/my-app@ttn/devices/dev1/\(kind.rawValue)", json: json)
    }

    /// `json` with `id` appended to the `correlation_ids` of the object at `path` ([] is the top level).
    static func inserting(_ id: String, at path: [String], into json: String) throws -> String {
        func insert(into value: Any, _ path: ArraySlice<String>) throws -> Any {
            guard let key = path.first else {
                var object = try #require(value as? [String: Any])
                object["correlation_ids"] = (object["correlation_ids"] as? [Any] ?? []) + [id]
                return object
            }
            if var array = value as? [Any], let index = Int(key) {
                array[index] = try insert(into: array[index], path.dropFirst())
                return array
            }
            var object = try #require(value as? [String: Any])
            object[key] = try insert(into: try #require(object[key]), path.dropFirst())
            return object
        }
        let root = try JSONSerialization.jsonObject(with: Data(json.utf8))
        return String(decoding: try JSONSerialization.data(withJSONObject: try insert(into: root, path[...])), as: UTF8.self)
    }

    @Test("hostDownlinkID: nil on TTN's own downlink events", arguments: downlinkEvents.map(\.fixture))
    func noHostID(fixture: String) throws {
        let kind = try #require(Self.downlinkEvents.first { $0.fixture == fixture }).kind
        let event = Self.event(kind, json: try Fixtures.text(fixture))
        #expect(event.hostDownlinkID == nil)
        #expect(!event.correlationIDs.isEmpty)
    }

    @Test("hostDownlinkID: found where TTN echoes the downlink's ids, the nested message, and at the top level",
          arguments: downlinkEvents.map(\.fixture))
    func hostID(fixture: String) throws {
        let (_, kind, nested) = try #require(Self.downlinkEvents.first { $0.fixture == fixture })
        let original = try Fixtures.text(fixture)
        let originalIDs = Self.event(kind, json: original).correlationIDs

        let inMessage = Self.event(kind, json: try Self.inserting("ttn-host:abc", at: nested, into: original))
        #expect(inMessage.hostDownlinkID == "abc")
        #expect(inMessage.correlationIDs == originalIDs + ["ttn-host:abc"], "the nested id is added after the others")

        let atTop = Self.event(kind, json: try Self.inserting("ttn-host:abc", at: [], into: original))
        #expect(atTop.hostDownlinkID == "abc")

        // As TTN does for most downlink events: the same id at the top level and in the message, listed once.
        let both = Self.event(kind, json: try Self.inserting("ttn-host:abc", at: nested, into: atTop.json))
        #expect(both.hostDownlinkID == "abc")
        #expect(both.correlationIDs.filter { $0 == "ttn-host:abc" }.count == 1)
    }

    @Test("hostDownlinkID: only the exact prefix with an id after it; the first of several wins")
    func hostIDFormat() {
        func event(_ ids: [String]) -> TTNEvent {
            let quoted = ids.map { "\"\($0)\"" }.joined(separator: ",")
            return Self.event(.downlinkAck, json: #"{"correlation_ids":[\#(quoted)],"downlink_ack":{"f_port":1}}"#)
        }
        #expect(event(["as:downlink:01", "my-correlation-id"]).hostDownlinkID == nil)
        #expect(event(["ttn-host", "ttn-host:", "xttn-host:abc", "TTN-HOST:abc", "host:abc"]).hostDownlinkID == nil)
        #expect(event(["as:downlink:01", "ttn-host:first", "ttn-host:second"]).hostDownlinkID == "first")
        #expect(event(["ttn-host:a:b"]).hostDownlinkID == "a:b")
        #expect(Self.event(.downlinkAck, json: "{").hostDownlinkID == nil)
    }

    @Test("correlationIDs: top level first, then the message's and each invalidated downlink's, each once")
    func correlationIDs() throws {
        // The nack repeats two of its top-level ids in the message: listed once, in their top-level order.
        let nack = Self.event(.downlinkNack, json: try Fixtures.text("v3-down-nack.json"))
        #expect(nack.correlationIDs.count == 9)
        #expect(nack.correlationIDs.first == "as:downlink:01JBYDKN3E7DF8R76CXA9MH5QE")
        #expect(nack.correlationIDs.filter { $0 == "my-correlation-id" }.count == 1)

        // The invalidated downlink's id appears only inside `downlinks`.
        let invalidated = Self.event(.downlinkQueueInvalidated, json: try Fixtures.text("v3-down-invalidated.json"))
        #expect(invalidated.correlationIDs.count == 8)
        #expect(invalidated.correlationIDs.first == "as:up:01JBYRC9KM59HYYGTHYMASXNVC")
        #expect(invalidated.correlationIDs.last == "as:downlink:01JBYRAETP3KPAVHE0XCB66S14")

        let join = Self.event(.join, json: try Fixtures.text("v3-join-accept.json"))
        #expect(!join.correlationIDs.isEmpty)

        // A malformed part costs only its own ids; no JSON object, none at all.
        let odd = Self.event(
            .downlinkFailed,
            json: #"{"correlation_ids":["a","b",3],"downlink_failed":{"downlink":{"correlation_ids":"x"}},"#
                + #""downlink_ack":{"correlation_ids":["c","a"]}}"#
        )
        #expect(odd.correlationIDs == ["a", "b", "c"])
        #expect(Self.event(.join, json: "[]").correlationIDs == [])
        #expect(Self.event(.join, json: "not json").correlationIDs == [])
    }
}
