import TTNSync

/// One uplink as The Things Stack v3 publishes it on `v3/<app>@<tenant>/devices/<device>/up`.
///
/// Every field is optional, as on the wire (TTN omits zero values), and unknown fields are ignored. The
/// original JSON is kept in ``json``. Legacy v2 uplinks (`payload_raw`, `payload_fields`) are mapped onto the
/// same fields.
///
/// A received uplink is checked completely when it arrives (JSON syntax, UTF-8, and the type of every field
/// the model knows), but its typed fields are decoded only when first read, once, and shared by every copy.
/// ``deviceID``, ``decodedPayload`` and ``payload`` read straight from the JSON without decoding the rest.
public struct Uplink: Sendable, Hashable, Codable {
    private var storage: Storage

    /// Whether the host fetched it from TTN's Storage Integration to fill a gap, rather than receiving it live
    /// (`ttn.backfilled()` in Lua). Not part of the JSON, equality or hashing.
    public var isBackfilled = false
    /// Its sequence in the message stream it was read from (`ttn-host work`), which orders a device's uplinks and
    /// events: state uses it to tell a delivery again from new work. Not part of the JSON, equality or hashing.
    package var streamSequence: UInt64?

    /// The MQTT topic it arrived on (empty when decoded by other means).
    public var topic: String { storage.topic }
    /// The JSON exactly as received (empty when decoded by other means).
    public var json: String { String(decoding: jsonBytes, as: UTF8.self) }
    /// The JSON exactly as received, as bytes (empty when decoded by other means).
    package var jsonBytes: [UInt8] { storage.tape?.bytes ?? [] }
    /// The parsed JSON exactly as received, shared by every copy: each Lua script of a host reads the same
    /// elements. Nil when decoded by other means.
    package var tape: JSONTape? { storage.tape }

    public var endDeviceIDs: EndDeviceIDs? {
        get { storage.fields.endDeviceIDs }
        set { modifyFields { $0.endDeviceIDs = newValue } }
    }
    public var correlationIDs: [String]? {
        get { storage.fields.correlationIDs }
        set { modifyFields { $0.correlationIDs = newValue } }
    }
    public var receivedAt: String? {
        get { storage.fields.receivedAt }
        set { modifyFields { $0.receivedAt = newValue } }
    }
    public var simulated: Bool? {
        get { storage.fields.simulated }
        set { modifyFields { $0.simulated = newValue } }
    }
    public var uplinkMessage: UplinkMessage? {
        get { storage.fields.uplinkMessage }
        set { modifyFields { $0.uplinkMessage = newValue } }
    }

    public init(
        endDeviceIDs: EndDeviceIDs? = nil, correlationIDs: [String]? = nil, receivedAt: String? = nil,
        simulated: Bool? = nil, uplinkMessage: UplinkMessage? = nil
    ) {
        let fields = Fields(
            endDeviceIDs: endDeviceIDs, correlationIDs: correlationIDs, receivedAt: receivedAt, simulated: simulated,
            uplinkMessage: uplinkMessage
        )
        storage = Storage(topic: "", tape: nil, fields: fields)
    }

    /// Checks a v3 uplink (or, with `legacyV2`, decodes a v2 uplink) and keeps the JSON and topic.
    /// - Throws: ``TTNError/Kind/invalidMessage`` when the JSON is malformed, not an object, or has a known field
    ///   of the wrong type.
    public init(json: some Collection<UInt8>, topic: String = "", legacyV2: Bool = false) throws(TTNError) {
        let kind = legacyV2 ? "v2" : "v3"
        do {
            let tape = try JSONTape(Array(json))
            if legacyV2 {
                let fields = try TapeDecoder.decode(LegacyUplink.self, from: tape).fields()
                storage = Storage(topic: topic, tape: tape, fields: fields)
            } else {
                try JSONShape.uplink.check(tape, at: 0)
                storage = Storage(topic: topic, tape: tape, fields: nil)
            }
        } catch let error as JSONTape.SyntaxError {
            throw .invalidMessage("The uplink on '\(topic)' is not valid JSON: \(error).")
        } catch let error as JSONShape.Mismatch {
            throw .invalidMessage("The uplink on '\(topic)' is not a \(kind) uplink: \(error).")
        } catch {
            throw .invalidMessage("The uplink on '\(topic)' is not a \(kind) uplink: \(Self.describe(error)).")
        }
    }

    public init(from decoder: any Decoder) throws {
        storage = Storage(topic: "", tape: nil, fields: try Fields(from: decoder))
    }

    public func encode(to encoder: any Encoder) throws {
        try storage.fields.encode(to: encoder)
    }

    public static func == (lhs: Uplink, rhs: Uplink) -> Bool {
        lhs.topic == rhs.topic && lhs.jsonBytes == rhs.jsonBytes && lhs.storage.fields == rhs.storage.fields
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(topic)
        hasher.combine(jsonBytes)
        if storage.tape == nil { hasher.combine(storage.fields) }  // equal uplinks have equal JSON: enough when there is some
    }

    /// About how many bytes this uplink holds in memory: its JSON, its parse and a fixed overhead. Handler queues
    /// are budgeted in these bytes.
    public var memoryFootprint: Int { 256 + (storage.tape?.memoryFootprint ?? 1024) }

    /// Where this uplink stands in its device's stream, read from the JSON without decoding the rest: what gap
    /// detection and backfill compare. Nil without a device id.
    package var position: UplinkPosition? {
        if let tape = storage.unchangedV3JSON {
            let landmarks = storage.landmarks
            // TTN leaves out zero values: no `f_cnt` is frame 0, the first after a join.
            guard let device = deviceID else { return nil }
            let fCnt = landmarks.fCnt.map { tape.integer(at: $0) ?? -1 } ?? 0
            var uplinkID: String?
            if let ids = landmarks.correlationIDs {
                tape.forEachElement(of: ids) { _, index in
                    guard uplinkID == nil, tape.elements[index].kind == .string else { return }
                    let id = tape.string(at: index)
                    if id.hasPrefix("as:up:") { uplinkID = id }
                }
            }
            return UplinkPosition(
                deviceID: device, sessionKeyID: landmarks.sessionKeyID.map(tape.string(at:)), fCnt: fCnt,
                receivedAt: landmarks.receivedAt.flatMap { Timestamp(rfc3339: tape.string(at: $0)) }, uplinkID: uplinkID
            )
        }
        guard let device = deviceID else { return nil }
        return UplinkPosition(
            deviceID: device, sessionKeyID: uplinkMessage?.sessionKeyID, fCnt: Int64(uplinkMessage?.fCnt ?? 0),
            receivedAt: receivedAt.flatMap { Timestamp(rfc3339: $0) },
            uplinkID: correlationIDs?.first { $0.hasPrefix("as:up:") }
        )
    }

    /// The device id, from the body or else the topic.
    public var deviceID: String? {
        if let tape = storage.unchangedV3JSON {
            return storage.landmarks.deviceID.map(tape.string(at:)) ?? TopicLayout.deviceID(inTopic: topic)
        }
        return endDeviceIDs?.deviceID ?? TopicLayout.deviceID(inTopic: topic)
    }

    /// The application payload bytes (`frm_payload`), or nil for a MAC-only frame.
    public var payload: [UInt8]? {
        if let tape = storage.unchangedV3JSON {
            return storage.landmarks.frmPayload.flatMap { Base64.decode(tape.string(at: $0)) }
        }
        return uplinkMessage?.frmPayload.flatMap { Base64.decode($0) }
    }

    /// The payload formatter's output (`decoded_payload`), or nil when the application has none.
    public var decodedPayload: JSONValue? {
        if let tape = storage.unchangedV3JSON {
            return storage.landmarks.decodedPayload.flatMap(tape.jsonValue(at:))
        }
        return uplinkMessage?.decodedPayload
    }

    private mutating func modifyFields(_ change: (inout Fields) -> Void) {
        var fields = storage.fields
        change(&fields)
        storage = Storage(topic: storage.topic, tape: storage.tape, fields: fields)
    }

    package static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context): context.debugDescription
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context),
            DecodingError.keyNotFound(_, let context):
            "\(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)"
        default: "\(error)"
        }
    }

    /// The typed top-level members.
    package struct Fields: Sendable, Hashable, Codable {
        package var endDeviceIDs: EndDeviceIDs?
        package var correlationIDs: [String]?
        package var receivedAt: String?
        package var simulated: Bool?
        package var uplinkMessage: UplinkMessage?

        package enum CodingKeys: String, CodingKey {
            case endDeviceIDs = "end_device_ids", correlationIDs = "correlation_ids", receivedAt = "received_at"
            case simulated, uplinkMessage = "uplink_message"
        }
    }

    /// Where the members read without decoding are in a v3 uplink's tape (nil when absent or null): those of
    /// `deviceID`, `payload` and `decodedPayload`, and of its `position`. Found once on arrival: a handler reading
    /// them on another thread would otherwise walk the members from the root, fetching each element it passes from
    /// the cache of the core that parsed them.
    private struct Landmarks: Sendable {
        package var deviceID: Int?
        package var frmPayload: Int?
        package var decodedPayload: Int?
        package var fCnt: Int?
        package var sessionKeyID: Int?
        package var receivedAt: Int?
        package var correlationIDs: Int?

        package init() {}

        package init(_ tape: JSONTape) {
            // A null reads as absent.
            func present(_ index: Int?) -> Int? { index.flatMap { tape.elements[$0].kind == .null ? nil : $0 } }
            let uplink = tape.members(["end_device_ids", "uplink_message", "received_at", "correlation_ids"], of: 0)
            receivedAt = present(uplink[2])
            correlationIDs = present(uplink[3])
            if let endDeviceIDs = uplink[0] { deviceID = present(tape.member("device_id", of: endDeviceIDs)) }
            if let uplinkMessage = uplink[1] {
                let message = tape.members(["decoded_payload", "frm_payload", "f_cnt", "session_key_id"], of: uplinkMessage)
                decodedPayload = present(message[0])
                frmPayload = present(message[1])
                fCnt = present(message[2])
                sessionKeyID = present(message[3])
            }
        }
    }

    /// The received JSON, and what is derived from it on first use and shared by every copy: the typed fields.
    private final class Storage: Sendable {
        package let topic: String
        package let tape: JSONTape?
        /// The v3 JSON the fields are decoded from, while nothing changed them: the accessors read it directly.
        package let unchangedV3JSON: JSONTape?
        /// In ``unchangedV3JSON``: where the fields read without decoding are.
        package let landmarks: Landmarks
        /// The typed fields, once decoded.
        private let decodedFields: Locked<Fields?>

        /// - Parameter fields: nil to decode them from `tape` (a v3 uplink already checked against its shape).
        package init(topic: String, tape: JSONTape?, fields: Fields?) {
            self.topic = topic
            self.tape = tape
            self.unchangedV3JSON = fields == nil ? tape : nil
            self.landmarks = unchangedV3JSON.map(Landmarks.init) ?? Landmarks()
            self.decodedFields = Locked(fields)
        }

        package var fields: Fields {
            if let fields = decodedFields.withLock({ $0 }) { return fields }
            let fields: Fields
            do {
                fields = try TapeDecoder.decode(Fields.self, from: tape!)
            } catch {
                // The shape check at arrival refuses what decoding would; `UplinkShapeTests` holds them together.
                preconditionFailure("An uplink that passed its shape check failed to decode: \(error)")
            }
            decodedFields.withLock { $0 = fields }
            return fields
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
        package enum CodingKeys: String, CodingKey { case applicationID = "application_id" }
    }

    package enum CodingKeys: String, CodingKey {
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

    package enum CodingKeys: String, CodingKey {
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
        package enum CodingKeys: String, CodingKey { case gatewayID = "gateway_id", eui }
    }

    package enum CodingKeys: String, CodingKey {
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
            package enum CodingKeys: String, CodingKey {
                case bandwidth, spreadingFactor = "spreading_factor", codingRate = "coding_rate"
            }
        }

        public struct FSK: Sendable, Hashable, Codable {
            public var bitRate: Int?
            package enum CodingKeys: String, CodingKey { case bitRate = "bit_rate" }
        }
    }

    package enum CodingKeys: String, CodingKey {
        case dataRate = "data_rate", frequency, timestamp, time, codingRate = "coding_rate"
    }
}

/// A TTN v2 uplink, mapped onto the v3 model.
private struct LegacyUplink: Decodable {
    package var app_id: String?
    package var dev_id: String?
    package var hardware_serial: String?
    package var port: Int?
    package var counter: Int?
    package var confirmed: Bool?
    package var payload_raw: String?
    package var payload_fields: JSONValue?
    package var metadata: Metadata?

    package struct Metadata: Decodable {
        package var time: String?
        package var frequency: Double?
        package var coding_rate: String?
        package var gateways: [Gateway]?
    }

    package struct Gateway: Decodable {
        package var gtw_id: String?
        package var eui: String?
        package var timestamp: Int64?
        package var time: String?
        package var channel: Int?
        package var rssi: Double?
        package var snr: Double?
    }

    /// - Throws: `DecodingError` for a frequency whose Hz do not fit a 64-bit integer (1e13, or 1e999 read as infinity).
    package func fields() throws -> Uplink.Fields {
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
        return Uplink.Fields(endDeviceIDs: ids, receivedAt: metadata?.time, uplinkMessage: message)
    }
}

/// Where an uplink stands in its device's stream: its session, frame counter and time, and its `as:up:` id.
package struct UplinkPosition: Sendable, Hashable {
    package var deviceID: String
    /// `session_key_id`: changes when the device joins again (and `f_cnt` starts again).
    package var sessionKeyID: String?
    package var fCnt: Int64
    /// `received_at`, when TTN's Application Server received it.
    package var receivedAt: Timestamp?
    /// The `as:up:<ULID>` correlation id that names this uplink.
    package var uplinkID: String?

    package init(deviceID: String, sessionKeyID: String? = nil, fCnt: Int64, receivedAt: Timestamp? = nil, uplinkID: String? = nil) {
        self.deviceID = deviceID
        self.sessionKeyID = sessionKeyID
        self.fCnt = fCnt
        self.receivedAt = receivedAt
        self.uplinkID = uplinkID
    }
}
