import Foundation

/// One uplink as The Things Stack v3 publishes it on `v3/<app>@<tenant>/devices/<device>/up`.
///
/// Every field is optional, as on the wire (TTN omits zero values), and unknown fields are ignored. The
/// original JSON is kept in ``json``. Legacy v2 uplinks (`payload_raw`, `payload_fields`) are mapped onto the
/// same fields.
public struct Uplink: Sendable, Hashable, Codable {
    public var endDeviceIDs: EndDeviceIDs?
    public var correlationIDs: [String]?
    public var receivedAt: String?
    public var simulated: Bool?
    public var uplinkMessage: UplinkMessage?

    /// The MQTT topic it arrived on (empty when decoded by other means).
    public internal(set) var topic: String = ""
    /// The JSON exactly as received (empty when decoded by other means).
    public internal(set) var json: String = ""

    enum CodingKeys: String, CodingKey {
        case endDeviceIDs = "end_device_ids", correlationIDs = "correlation_ids", receivedAt = "received_at"
        case simulated, uplinkMessage = "uplink_message"
    }

    public init(
        endDeviceIDs: EndDeviceIDs? = nil, correlationIDs: [String]? = nil, receivedAt: String? = nil,
        simulated: Bool? = nil, uplinkMessage: UplinkMessage? = nil
    ) {
        self.endDeviceIDs = endDeviceIDs
        self.correlationIDs = correlationIDs
        self.receivedAt = receivedAt
        self.simulated = simulated
        self.uplinkMessage = uplinkMessage
    }

    /// Decodes a v3 uplink (or, with `legacyV2`, a v2 uplink) and keeps the JSON and topic.
    /// - Throws: ``TTNError/Kind/invalidMessage`` when the JSON is malformed or not an uplink.
    public init(json: some Collection<UInt8>, topic: String = "", legacyV2: Bool = false) throws(TTNError) {
        let data = Data(json)
        do {
            if legacyV2 {
                self = try JSONDecoder().decode(LegacyUplink.self, from: data).uplink()
            } else {
                self = try JSONDecoder().decode(Uplink.self, from: data)
            }
        } catch {
            throw .invalidMessage("The uplink on '\(topic)' is not valid \(legacyV2 ? "v2" : "v3") uplink JSON: \(Self.describe(error)).")
        }
        self.topic = topic
        self.json = String(decoding: json, as: UTF8.self)
    }

    /// The device id, from the body or else the topic.
    public var deviceID: String? {
        endDeviceIDs?.deviceID ?? TopicLayout.deviceID(inTopic: topic)
    }

    /// The application payload bytes (`frm_payload`), or nil for a MAC-only frame.
    public var payload: [UInt8]? { uplinkMessage?.frmPayload.flatMap { Base64.decode($0) } }

    /// The payload formatter's output (`decoded_payload`), or nil when the application has none.
    public var decodedPayload: JSONValue? { uplinkMessage?.decodedPayload }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context): context.debugDescription
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            "\(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)"
        default: "\(error)"
        }
    }
}

/// `end_device_ids`.
public struct EndDeviceIDs: Sendable, Hashable, Codable {
    public var deviceID: String?
    public var applicationIDs: ApplicationIDs?
    public var devEUI: String?
    public var joinEUI: String?
    public var devAddr: String?

    public struct ApplicationIDs: Sendable, Hashable, Codable {
        public var applicationID: String?
        enum CodingKeys: String, CodingKey { case applicationID = "application_id" }
    }

    enum CodingKeys: String, CodingKey {
        case deviceID = "device_id", applicationIDs = "application_ids", devEUI = "dev_eui", joinEUI = "join_eui"
        case devAddr = "dev_addr"
    }
}

/// `uplink_message`: one data frame and its metadata.
public struct UplinkMessage: Sendable, Hashable, Codable {
    public var sessionKeyID: String?
    /// Absent for FPort 0 (MAC-only frames).
    public var fPort: Int?
    public var fCnt: Int?
    /// Base64 application payload.
    public var frmPayload: String?
    public var decodedPayload: JSONValue?
    public var decodedPayloadWarnings: [String]?
    public var rxMetadata: [RxMetadata]?
    public var settings: TxSettings?
    public var receivedAt: String?
    public var confirmed: Bool?
    /// A duration such as `"0.061696s"`.
    public var consumedAirtime: String?
    public var packetErrorRate: Double?
    public var locations: [String: Location]?
    public var versionIDs: JSONValue?
    public var networkIDs: JSONValue?

    enum CodingKeys: String, CodingKey {
        case sessionKeyID = "session_key_id", fPort = "f_port", fCnt = "f_cnt", frmPayload = "frm_payload"
        case decodedPayload = "decoded_payload", decodedPayloadWarnings = "decoded_payload_warnings"
        case rxMetadata = "rx_metadata", settings, receivedAt = "received_at", confirmed
        case consumedAirtime = "consumed_airtime", packetErrorRate = "packet_error_rate", locations
        case versionIDs = "version_ids", networkIDs = "network_ids"
    }
}

/// One gateway antenna that heard the frame (`rx_metadata[]`).
public struct RxMetadata: Sendable, Hashable, Codable {
    public var gatewayIDs: GatewayIDs?
    public var time: String?
    public var timestamp: Int64?
    public var rssi: Double?
    public var channelRSSI: Double?
    public var snr: Double?
    public var location: Location?
    public var channelIndex: Int?
    public var receivedAt: String?
    public var packetBroker: JSONValue?

    public struct GatewayIDs: Sendable, Hashable, Codable {
        public var gatewayID: String?
        public var eui: String?
        enum CodingKeys: String, CodingKey { case gatewayID = "gateway_id", eui }
    }

    enum CodingKeys: String, CodingKey {
        case gatewayIDs = "gateway_ids", time, timestamp, rssi, channelRSSI = "channel_rssi", snr, location
        case channelIndex = "channel_index", receivedAt = "received_at", packetBroker = "packet_broker"
    }
}

/// A location: of a gateway, or of the device (`locations.user`).
public struct Location: Sendable, Hashable, Codable {
    public var latitude: Double?
    public var longitude: Double?
    public var altitude: Double?
    public var accuracy: Double?
    public var source: String?
}

/// Transmission settings (`settings`). Older messages carry `coding_rate` here; newer ones in `data_rate.lora`.
public struct TxSettings: Sendable, Hashable, Codable {
    public var dataRate: DataRate?
    /// Hz, as a string (a 64-bit integer on the wire).
    public var frequency: String?
    public var timestamp: Int64?
    public var time: String?
    public var codingRate: String?

    public struct DataRate: Sendable, Hashable, Codable {
        public var lora: LoRa?
        public var fsk: FSK?

        public struct LoRa: Sendable, Hashable, Codable {
            public var bandwidth: Int?
            public var spreadingFactor: Int?
            public var codingRate: String?
            enum CodingKeys: String, CodingKey {
                case bandwidth, spreadingFactor = "spreading_factor", codingRate = "coding_rate"
            }
        }

        public struct FSK: Sendable, Hashable, Codable {
            public var bitRate: Int?
            enum CodingKeys: String, CodingKey { case bitRate = "bit_rate" }
        }
    }

    enum CodingKeys: String, CodingKey {
        case dataRate = "data_rate", frequency, timestamp, time, codingRate = "coding_rate"
    }
}

/// A TTN v2 uplink, mapped onto the v3 model.
private struct LegacyUplink: Decodable {
    var app_id: String?
    var dev_id: String?
    var hardware_serial: String?
    var port: Int?
    var counter: Int?
    var confirmed: Bool?
    var payload_raw: String?
    var payload_fields: JSONValue?
    var metadata: Metadata?

    struct Metadata: Decodable {
        var time: String?
        var frequency: Double?
        var coding_rate: String?
        var gateways: [Gateway]?
    }

    struct Gateway: Decodable {
        var gtw_id: String?
        var eui: String?
        var timestamp: Int64?
        var time: String?
        var channel: Int?
        var rssi: Double?
        var snr: Double?
    }

    /// - Throws: `DecodingError` for a frequency whose Hz do not fit a 64-bit integer (1e13, or 1e999 read as infinity).
    func uplink() throws -> Uplink {
        var message = UplinkMessage()
        message.fPort = port
        message.fCnt = counter
        message.confirmed = confirmed
        message.frmPayload = payload_raw
        message.decodedPayload = payload_fields
        message.receivedAt = metadata?.time
        message.rxMetadata = metadata?.gateways?.map { gateway in
            var rx = RxMetadata()
            rx.gatewayIDs = .init(gatewayID: gateway.gtw_id ?? gateway.eui, eui: gateway.eui)
            rx.timestamp = gateway.timestamp
            rx.time = gateway.time
            rx.channelIndex = gateway.channel
            rx.rssi = gateway.rssi
            rx.snr = gateway.snr
            return rx
        }
        if let megahertz = metadata?.frequency {
            guard let hertz = Int64(exactly: (megahertz * 1_000_000).rounded()) else {
                throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "metadata.frequency \(megahertz) MHz is out of range"))
            }
            var settings = TxSettings()
            settings.frequency = String(hertz)
            settings.codingRate = metadata?.coding_rate
            message.settings = settings
        }
        var ids = EndDeviceIDs()
        ids.deviceID = dev_id
        ids.applicationIDs = app_id.map { .init(applicationID: $0) }
        ids.devEUI = hardware_serial
        return Uplink(endDeviceIDs: ids, receivedAt: metadata?.time, uplinkMessage: message)
    }
}
