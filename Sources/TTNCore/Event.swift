import Foundation

/// A message on one of the application's event topics: joins, downlink outcomes, normalized uplinks,
/// locations and service data. ``MQTTClient/events`` delivers them.
public struct TTNEvent: Sendable, Hashable {
    /// What happened, named by the topic suffix.
    public struct Kind: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let join = Kind(rawValue: "join")
        public static let normalizedUplink = Kind(rawValue: "up/normalized")
        public static let downlinkQueued = Kind(rawValue: "down/queued")
        public static let downlinkSent = Kind(rawValue: "down/sent")
        public static let downlinkAck = Kind(rawValue: "down/ack")
        public static let downlinkNack = Kind(rawValue: "down/nack")
        public static let downlinkFailed = Kind(rawValue: "down/failed")
        public static let downlinkQueueInvalidated = Kind(rawValue: "down/invalidated")
        public static let locationSolved = Kind(rawValue: "location/solved")
        public static let serviceData = Kind(rawValue: "service/data")

        /// A downlink whose outcome never arrived. Raised by the host itself, never published by TTN: it has no
        /// MQTT topic and is not in ``allCases``.
        public static let downlinkLost = Kind(rawValue: "down/lost")

        /// The kinds TTN (v3) publishes on MQTT, each on its own topic: every kind above except ``downlinkLost``.
        public static let allCases: [Kind] = [
            .join, .normalizedUplink, .downlinkQueued, .downlinkSent, .downlinkAck, .downlinkNack, .downlinkFailed,
            .downlinkQueueInvalidated, .locationSolved, .serviceData,
        ]
    }

    public let kind: Kind
    public let deviceID: String
    public let topic: String
    /// The JSON exactly as received.
    public let json: String
    /// Its sequence in the message stream it was read from (`ttn-host work`), as for ``Uplink``. Not part of
    /// equality or hashing.
    package var streamSequence: UInt64?

    package init(kind: Kind, deviceID: String, topic: String, json: String) {
        self.kind = kind
        self.deviceID = deviceID
        self.topic = topic
        self.json = json
    }

    public static func == (lhs: TTNEvent, rhs: TTNEvent) -> Bool {
        lhs.kind == rhs.kind && lhs.deviceID == rhs.deviceID && lhs.topic == rhs.topic && lhs.json == rhs.json
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(kind)
        hasher.combine(deviceID)
        hasher.combine(topic)
        hasher.combine(json)
    }

    /// Decodes the JSON into your own `Decodable` type.
    public func decode<T: Decodable>(_ type: T.Type = T.self) throws -> T {
        try JSONDecoder().decode(type, from: Data(json.utf8))
    }

    /// Every correlation id of the event, each once, in order of appearance: the top-level `correlation_ids`, then
    /// those of the downlink the event is about, where TTN echoes the ids you gave it (`downlink_queued`,
    /// `downlink_sent`, `downlink_ack`, `downlink_nack`, `downlink_failed.downlink`, and each of
    /// `downlink_queue_invalidated.downlinks`, whose ids are not at the top level).
    public var correlationIDs: [String] {
        guard let event = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else { return [] }
        func ids(in object: Any?) -> [String] {
            ((object as? [String: Any])?["correlation_ids"] as? [Any])?.compactMap { $0 as? String } ?? []
        }
        var found = ids(in: event)
        for key in ["downlink_queued", "downlink_sent", "downlink_ack", "downlink_nack"] {
            found += ids(in: event[key])
        }
        found += ids(in: (event["downlink_failed"] as? [String: Any])?["downlink"])
        for downlink in (event["downlink_queue_invalidated"] as? [String: Any])?["downlinks"] as? [Any] ?? [] {
            found += ids(in: downlink)
        }
        var seen = Set<String>()
        return found.filter { seen.insert($0).inserted }
    }

    /// The prefix of the correlation ids the host gives its downlinks: `ttn-host:<id>`.
    static let hostDownlinkPrefix = "ttn-host:"

    /// The `X` of the first correlation id `ttn-host:X` (X not empty) among ``correlationIDs``: the host's id of the
    /// downlink this event is about. Nil when there is none.
    public var hostDownlinkID: String? {
        correlationIDs.lazy.compactMap { id -> String? in
            guard id.hasPrefix(Self.hostDownlinkPrefix) else { return nil }
            let rest = id.dropFirst(Self.hostDownlinkPrefix.count)
            return rest.isEmpty ? nil : String(rest)
        }.first
    }
}
