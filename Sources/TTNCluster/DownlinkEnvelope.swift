import Foundation
import TTNCore

/// A downlink on its way from a worker to an ingestor, as the JSON of one message on the downlink stream.
struct DownlinkEnvelope: Codable, Equatable, Sendable {
    /// The device it goes to.
    var deviceID: String
    /// The downlink JSON the handler published (v2 or v3 form).
    var downlink: String
    /// The push/replace choice the handler made, or nil to take it from the form.
    var queue: DownlinkQueue?
    /// Added to the downlink's correlation ids: the host's `ttn-host:<id>`.
    var correlationID: String?

    enum CodingKeys: String, CodingKey {
        case deviceID = "device_id"
        case downlink
        case queue
        case correlationID = "correlation_id"
    }

    func encoded() -> [UInt8] {
        // Encoding four strings cannot fail.
        Array((try? JSONEncoder().encode(self)) ?? Data())
    }

    /// - Throws: a `DecodingError` for bytes that are not an envelope.
    init(decoding bytes: [UInt8]) throws {
        self = try JSONDecoder().decode(DownlinkEnvelope.self, from: Data(bytes))
    }

    init(deviceID: String, downlink: String, queue: DownlinkQueue?, correlationID: String?) {
        self.deviceID = deviceID
        self.downlink = downlink
        self.queue = queue
        self.correlationID = correlationID
    }
}
