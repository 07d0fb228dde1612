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
    }

    public let kind: Kind
    public let deviceID: String
    public let topic: String
    /// The JSON exactly as received.
    public let json: String

    package init(kind: Kind, deviceID: String, topic: String, json: String) {
        self.kind = kind
        self.deviceID = deviceID
        self.topic = topic
        self.json = json
    }

    /// Decodes the JSON into your own `Decodable` type.
    public func decode<T: Decodable>(_ type: T.Type = T.self) throws -> T {
        try JSONDecoder().decode(type, from: Data(json.utf8))
    }

    /// The `correlation_ids` of the event; they include the ids you gave the downlink.
    public var correlationIDs: [String] {
        (try? decode(CorrelationIDs.self).correlation_ids) ?? []
    }

    private struct CorrelationIDs: Decodable {
        var correlation_ids: [String]?
    }
}
