import TestSupport

@testable import TTNCore

/// Writes random uplinks and downlinks and, beside each, the typed value a correct parser must produce.
///
/// Every member is absent, null, of the right type, or (a few times in a hundred) of a wrong type. A wrong type
/// sets ``mustFail``: the parse must then be refused. Values whose reading is not pinned down by the contract
/// (a number that overflows to infinity) set ``ambiguous``: only the generic properties are checked.
final class ModelGenerator {
    var random: FuzzRandom
    private(set) var mustFail = false
    private(set) var ambiguous = false
    /// Percent chance that a member has a wrong type.
    var wrongTypes = 3

    init(_ random: FuzzRandom) { self.random = random }

    enum Kind: Equatable { case string, integer, double, bool, array, object, any }

    /// Adds `key` to `members` (or not) and returns the value a parser must read for it; nil when absent or null.
    func member<T>(_ key: String, _ kind: Kind, _ members: inout [(String, FuzzJSON)], _ make: (ModelGenerator) -> (T, FuzzJSON)) -> T? {
        switch random.below(100) {
        case 0..<35: return nil
        case 35..<40:
            members.append((key, .null))
            return nil
        case let roll where roll < 40 + wrongTypes && kind != .any:
            members.append((key, wrong(kind)))
            mustFail = true
            return nil
        default:
            let (value, json) = make(self)
            members.append((key, json))
            if case .null = json { return nil }  // a free-form field that is null is absent, as any other
            return value
        }
    }

    /// A value of another JSON type than `kind`; for integers also numbers that are not 64-bit integers.
    func wrong(_ kind: Kind) -> FuzzJSON {
        var options: [FuzzJSON] = [.array([]), .object([]), .bool(random.chance(50)), .string(FuzzJSON.randomString(&random, maximumLength: 4)),
                                   .number(String(random.below(100)))]
        switch kind {
        case .string: options.remove(at: 3)
        case .integer: options[4] = .number(random.pick(["1.5", "-0.25", "1e30", "-123456789012345678901234567890", "0.5e-3"]))
        case .double: options.remove(at: 4)
        case .bool: options.remove(at: 2)
        case .array: options.remove(at: 0)
        case .object: options.remove(at: 1)
        case .any: preconditionFailure("any JSON is right for a free-form field")
        }
        return random.pick(options)
    }

    func string() -> (String, FuzzJSON) {
        let text = FuzzJSON.randomString(&random)
        return (text, .string(text))
    }

    func bool() -> (Bool, FuzzJSON) {
        let flag = random.chance(50)
        return (flag, .bool(flag))
    }

    func int64() -> (Int64, FuzzJSON) {
        let value: Int64
        switch random.below(4) {
        case 0: value = random.pick([0, -1, 1, Int64.max, Int64.min, Int64(Int32.max) + 1, -9_007_199_254_740_993])
        case 1: value = Int64(bitPattern: random.next())
        default: value = Int64(random.below(100_000)) - 100
        }
        return (value, .number(String(value)))
    }

    func int() -> (Int, FuzzJSON) {
        let (value, json) = int64()
        return (Int(value), json)
    }

    func double() -> (Double, FuzzJSON) {
        for _ in 0..<20 {
            let text = FuzzJSON.randomNumberText(&random)
            if let value = Self.number(text) { return (value, .number(text)) }
        }
        return (0, .number("0"))
    }

    /// The value of a JSON number, or nil when the contract leaves its reading open: a number that overflows to
    /// infinity, one that underflows to zero from a non-zero spelling, and a zero written with an exponent, which
    /// Foundation's JSONDecoder (swift-foundation, Swift 6.3) refuses in many spellings though it is valid JSON
    /// (0e5, 0.00e5, -0.0e6; it reads 0e0, 0.0e5 and 0e+9). The last is not our code, and TTN never sends it.
    static func number(_ text: String) -> Double? {
        guard let value = Double(text), value.isFinite else { return nil }
        if value == 0 && text.contains(where: { $0 == "e" || $0 == "E" }) { return nil }
        return value
    }

    func any() -> (JSONValue, FuzzJSON) {
        let json = FuzzJSON.random(&random, depth: 1 + random.below(3))
        guard let value = Self.jsonValue(json) else {
            ambiguous = true
            return (.null, json)
        }
        return (value, json)
    }

    static func jsonValue(_ json: FuzzJSON) -> JSONValue? {
        switch json {
        case .null: return .null
        case .bool(let flag): return .bool(flag)
        case .number(let text): return number(text).map(JSONValue.number)
        case .string(let text): return .string(text)
        case .array(let elements):
            var values: [JSONValue] = []
            for element in elements {
                guard let value = jsonValue(element) else { return nil }
                values.append(value)
            }
            return .array(values)
        case .object(let members):
            var values: [String: JSONValue] = [:]
            for (key, member) in members {
                guard let value = jsonValue(member) else { return nil }
                values[key] = value
            }
            return .object(values)
        }
    }

    /// An array of up to three elements; an element of the wrong type (or null) makes the parse fail.
    func array<T>(_ kind: Kind, _ make: (ModelGenerator) -> (T, FuzzJSON)) -> ([T], FuzzJSON) {
        var values: [T] = []
        var elements: [FuzzJSON] = []
        for _ in 0..<random.below(4) {
            if kind != .any && random.chance(wrongTypes) {
                elements.append(random.chance(30) ? .null : wrong(kind))
                mustFail = true
            } else {
                let (value, json) = make(self)
                values.append(value)
                elements.append(json)
            }
        }
        return (values, .array(elements))
    }

    /// An object used as a dictionary (`locations`); keys are unique.
    func map<T>(_ kind: Kind, _ make: (ModelGenerator) -> (T, FuzzJSON)) -> ([String: T], FuzzJSON) {
        var values: [String: T] = [:]
        var members: [(String, FuzzJSON)] = []
        for _ in 0..<random.below(3) {
            let key = FuzzJSON.randomString(&random, maximumLength: 6)
            guard values[key] == nil, !members.contains(where: { $0.0 == key }) else { continue }
            if random.chance(wrongTypes) {
                members.append((key, random.chance(30) ? .null : wrong(kind)))
                mustFail = true
            } else {
                let (value, json) = make(self)
                values[key] = value
                members.append((key, json))
            }
        }
        return (values, .object(members))
    }

    /// Members nobody knows (they must be ignored), then the members in a random order.
    func finish(_ members: inout [(String, FuzzJSON)]) -> FuzzJSON {
        if random.chance(30) {
            for index in 0...random.below(3) {
                let value = FuzzJSON.random(&random, depth: 2)
                // Ignored, but a number that overflows makes the whole document one the contract leaves open.
                if Self.jsonValue(value) == nil { ambiguous = true }
                members.append(("x-\(index)-" + FuzzJSON.randomString(&random, maximumLength: 5), value))
            }
        }
        members.shuffle(using: &random)
        return .object(members)
    }

    // MARK: v3 uplinks

    func uplink() -> (Uplink, FuzzJSON) {
        var members: [(String, FuzzJSON)] = []
        var uplink = Uplink()
        uplink.endDeviceIDs = member("end_device_ids", .object, &members) { $0.endDeviceIDs() }
        uplink.correlationIDs = member("correlation_ids", .array, &members) { $0.array(.string) { $0.string() } }
        uplink.receivedAt = member("received_at", .string, &members) { $0.string() }
        uplink.simulated = member("simulated", .bool, &members) { $0.bool() }
        uplink.uplinkMessage = member("uplink_message", .object, &members) { $0.uplinkMessage() }
        return (uplink, finish(&members))
    }

    func endDeviceIDs() -> (EndDeviceIDs, FuzzJSON) {
        var members: [(String, FuzzJSON)] = []
        var ids = EndDeviceIDs()
        ids.deviceID = member("device_id", .string, &members) { $0.string() }
        ids.applicationIDs = member("application_ids", .object, &members) { generator in
            var inner: [(String, FuzzJSON)] = []
            let application = EndDeviceIDs.ApplicationIDs(
                applicationID: generator.member("application_id", .string, &inner) { $0.string() }
            )
            return (application, generator.finish(&inner))
        }
        ids.devEUI = member("dev_eui", .string, &members) { $0.string() }
        ids.joinEUI = member("join_eui", .string, &members) { $0.string() }
        ids.devAddr = member("dev_addr", .string, &members) { $0.string() }
        return (ids, finish(&members))
    }

    func uplinkMessage() -> (UplinkMessage, FuzzJSON) {
        var members: [(String, FuzzJSON)] = []
        var message = UplinkMessage()
        message.sessionKeyID = member("session_key_id", .string, &members) { $0.string() }
        message.fPort = member("f_port", .integer, &members) { $0.int() }
        message.fCnt = member("f_cnt", .integer, &members) { $0.int() }
        message.frmPayload = member("frm_payload", .string, &members) { $0.string() }
        message.decodedPayload = member("decoded_payload", .any, &members) { $0.any() }
        message.decodedPayloadWarnings = member("decoded_payload_warnings", .array, &members) { $0.array(.string) { $0.string() } }
        message.rxMetadata = member("rx_metadata", .array, &members) { $0.array(.object) { $0.rxMetadata() } }
        message.settings = member("settings", .object, &members) { $0.txSettings() }
        message.receivedAt = member("received_at", .string, &members) { $0.string() }
        message.confirmed = member("confirmed", .bool, &members) { $0.bool() }
        message.consumedAirtime = member("consumed_airtime", .string, &members) { $0.string() }
        message.packetErrorRate = member("packet_error_rate", .double, &members) { $0.double() }
        message.locations = member("locations", .object, &members) { $0.map(.object) { $0.location() } }
        message.versionIDs = member("version_ids", .any, &members) { $0.any() }
        message.networkIDs = member("network_ids", .any, &members) { $0.any() }
        return (message, finish(&members))
    }

    func rxMetadata() -> (RxMetadata, FuzzJSON) {
        var members: [(String, FuzzJSON)] = []
        var rx = RxMetadata()
        rx.gatewayIDs = member("gateway_ids", .object, &members) { generator in
            var inner: [(String, FuzzJSON)] = []
            var ids = RxMetadata.GatewayIDs()
            ids.gatewayID = generator.member("gateway_id", .string, &inner) { $0.string() }
            ids.eui = generator.member("eui", .string, &inner) { $0.string() }
            return (ids, generator.finish(&inner))
        }
        rx.time = member("time", .string, &members) { $0.string() }
        rx.timestamp = member("timestamp", .integer, &members) { $0.int64() }
        rx.rssi = member("rssi", .double, &members) { $0.double() }
        rx.channelRSSI = member("channel_rssi", .double, &members) { $0.double() }
        rx.snr = member("snr", .double, &members) { $0.double() }
        rx.location = member("location", .object, &members) { $0.location() }
        rx.channelIndex = member("channel_index", .integer, &members) { $0.int() }
        rx.receivedAt = member("received_at", .string, &members) { $0.string() }
        rx.packetBroker = member("packet_broker", .any, &members) { $0.any() }
        return (rx, finish(&members))
    }

    func location() -> (Location, FuzzJSON) {
        var members: [(String, FuzzJSON)] = []
        var location = Location()
        location.latitude = member("latitude", .double, &members) { $0.double() }
        location.longitude = member("longitude", .double, &members) { $0.double() }
        location.altitude = member("altitude", .double, &members) { $0.double() }
        location.accuracy = member("accuracy", .double, &members) { $0.double() }
        location.source = member("source", .string, &members) { $0.string() }
        return (location, finish(&members))
    }

    func txSettings() -> (TxSettings, FuzzJSON) {
        var members: [(String, FuzzJSON)] = []
        var settings = TxSettings()
        settings.dataRate = member("data_rate", .object, &members) { generator in
            var inner: [(String, FuzzJSON)] = []
            var rate = TxSettings.DataRate()
            rate.lora = generator.member("lora", .object, &inner) { generator in
                var lora: [(String, FuzzJSON)] = []
                var value = TxSettings.DataRate.LoRa()
                value.bandwidth = generator.member("bandwidth", .integer, &lora) { $0.int() }
                value.spreadingFactor = generator.member("spreading_factor", .integer, &lora) { $0.int() }
                value.codingRate = generator.member("coding_rate", .string, &lora) { $0.string() }
                return (value, generator.finish(&lora))
            }
            rate.fsk = generator.member("fsk", .object, &inner) { generator in
                var fsk: [(String, FuzzJSON)] = []
                let value = TxSettings.DataRate.FSK(bitRate: generator.member("bit_rate", .integer, &fsk) { $0.int() })
                return (value, generator.finish(&fsk))
            }
            return (rate, generator.finish(&inner))
        }
        settings.frequency = member("frequency", .string, &members) { $0.string() }
        settings.timestamp = member("timestamp", .integer, &members) { $0.int64() }
        settings.time = member("time", .string, &members) { $0.string() }
        settings.codingRate = member("coding_rate", .string, &members) { $0.string() }
        return (settings, finish(&members))
    }

    // MARK: v2 uplinks

    /// A TTN v2 uplink and the v3 model it maps onto (the mapping documented on `Uplink`).
    func legacyUplink() -> (Uplink, FuzzJSON) {
        var members: [(String, FuzzJSON)] = []
        var ids = EndDeviceIDs()
        var message = UplinkMessage()
        ids.applicationIDs = member("app_id", .string, &members) { $0.string() }.map { .init(applicationID: $0) }
        ids.deviceID = member("dev_id", .string, &members) { $0.string() }
        ids.devEUI = member("hardware_serial", .string, &members) { $0.string() }
        message.fPort = member("port", .integer, &members) { $0.int() }
        message.fCnt = member("counter", .integer, &members) { $0.int() }
        message.confirmed = member("confirmed", .bool, &members) { $0.bool() }
        message.frmPayload = member("payload_raw", .string, &members) { $0.string() }
        message.decodedPayload = member("payload_fields", .any, &members) { $0.any() }
        var receivedAt: String?
        _ = member("metadata", .object, &members) { generator -> (Void, FuzzJSON) in
            var inner: [(String, FuzzJSON)] = []
            receivedAt = generator.member("time", .string, &inner) { $0.string() }
            let frequency = generator.member("frequency", .double, &inner) { generator in
                generator.random.chance(70) ? generator.realisticFrequency() : generator.double()
            }
            let codingRate = generator.member("coding_rate", .string, &inner) { $0.string() }
            message.rxMetadata = generator.member("gateways", .array, &inner) { $0.array(.object) { $0.legacyGateway() } }
            if let frequency {
                // Hz must fit a 64-bit integer; anything else is a malformed uplink.
                if let hertz = Int64(exactly: (frequency * 1_000_000).rounded()) {
                    var settings = TxSettings()
                    settings.frequency = String(hertz)
                    settings.codingRate = codingRate
                    message.settings = settings
                } else {
                    generator.mustFail = true
                }
            }
            return ((), generator.finish(&inner))
        }
        message.receivedAt = receivedAt
        let uplink = Uplink(endDeviceIDs: ids, receivedAt: receivedAt, uplinkMessage: message)
        return (uplink, finish(&members))
    }

    func realisticFrequency() -> (Double, FuzzJSON) {
        let text = random.pick(["868.1", "868.3", "868.5", "867.1", "867.9", "869.525", "902.3", "915", "923.2", "433.175"])
        return (Double(text)!, .number(text))
    }

    func legacyGateway() -> (RxMetadata, FuzzJSON) {
        var members: [(String, FuzzJSON)] = []
        var rx = RxMetadata()
        let id = member("gtw_id", .string, &members) { $0.string() }
        let eui = member("eui", .string, &members) { $0.string() }
        rx.gatewayIDs = .init(gatewayID: id ?? eui, eui: eui)
        rx.timestamp = member("timestamp", .integer, &members) { $0.int64() }
        rx.time = member("time", .string, &members) { $0.string() }
        rx.channelIndex = member("channel", .integer, &members) { $0.int() }
        rx.rssi = member("rssi", .double, &members) { $0.double() }
        rx.snr = member("snr", .double, &members) { $0.double() }
        return (rx, finish(&members))
    }

    // MARK: Downlinks

    /// What `DownlinkRequest.parse` must do with a generated body.
    enum DownlinkOutcome {
        case refused
        case parsed(body: String?, queue: DownlinkQueue, downlinks: [Downlink], v2: Bool)
    }

    /// A downlink body in the v3 or the v2 form, with what parsing it must give for the requested queue.
    func downlinkBody(queue requested: DownlinkQueue?) -> (FuzzJSON, DownlinkOutcome) {
        if random.chance(3) { return (random.chance(50) ? .array([]) : FuzzJSON.random(&random, depth: 1), .refused) }
        return random.chance(50) ? v3Downlinks(queue: requested) : v2Downlink(queue: requested)
    }

    private func v3Downlinks(queue requested: DownlinkQueue?) -> (FuzzJSON, DownlinkOutcome) {
        var members: [(String, FuzzJSON)] = []
        var valid = true
        var downlinks: [Downlink] = []
        if random.chance(wrongTypes) {
            members.append(("downlinks", random.chance(30) ? .null : wrong(.array)))
            mustFail = true
        } else {
            var items: [FuzzJSON] = []
            for _ in 0..<random.below(4) {
                if random.chance(wrongTypes) {
                    items.append(random.chance(30) ? .null : wrong(.object))
                    mustFail = true
                    continue
                }
                let (downlink, item, ok) = v3Downlink()
                downlinks.append(downlink)
                items.append(item)
                valid = valid && ok
            }
            members.append(("downlinks", .array(items)))
        }
        let queue = requested ?? .push
        if downlinks.isEmpty && queue == .push { valid = false }
        if random.chance(20) { members.append(("port", .number("1"))) }  // the v3 form wins over v2 members
        let json = finish(&members)
        return (json, valid ? .parsed(body: nil, queue: queue, downlinks: downlinks, v2: false) : .refused)
    }

    /// One item of `downlinks`, and whether it keeps TTN's rules.
    private func v3Downlink() -> (Downlink, FuzzJSON, Bool) {
        var members: [(String, FuzzJSON)] = []
        let port = fPort()
        var downlink = Downlink(fPort: port.value, payload: [])
        downlink.frmPayload = nil
        downlink.priority = nil
        downlink.confirmed = nil
        switch random.below(100) {
        case 0..<3: mustFail = true  // f_port is required
        case 3..<5:
            members.append(("f_port", .null))
            mustFail = true
        case 5..<8:
            members.append(("f_port", wrong(.integer)))
            mustFail = true
        default: members.append(("f_port", .number(String(port.value))))
        }
        var valid = port.valid
        let payload = member("frm_payload", .string, &members) { $0.base64() }
        downlink.frmPayload = payload?.text
        downlink.decodedPayload = member("decoded_payload", .any, &members) { $0.any() }
        if let payload { valid = valid && payload.valid } else if downlink.decodedPayload == nil { valid = false }
        downlink.confirmed = member("confirmed", .bool, &members) { $0.bool() }
        if random.chance(3) {
            members.append(("priority", .string(random.pick(["URGENT", "normal", "", "HIGHEST "]))))
            mustFail = true
        } else {
            downlink.priority = member("priority", .string, &members) { generator in
                let priority = generator.random.pick(Downlink.Priority.allCases)
                return (priority, .string(priority.rawValue))
            }
        }
        let ids = member("correlation_ids", .array, &members) { $0.array(.string) { $0.correlationID() } }
        downlink.correlationIDs = ids?.map(\.text)
        if let ids, ids.contains(where: { !$0.valid }) { valid = false }
        downlink.classBC = member("class_b_c", .any, &members) { $0.any() }
        downlink.confirmedRetry = member("confirmed_retry", .any, &members) { $0.any() }
        return (downlink, finish(&members), valid)
    }

    private func v2Downlink(queue requested: DownlinkQueue?) -> (FuzzJSON, DownlinkOutcome) {
        var members: [(String, FuzzJSON)] = []
        var valid = true
        var downlink = Downlink(fPort: 0, payload: [])
        downlink.frmPayload = nil
        var present = false
        switch random.below(100) {
        case 0..<5: valid = false  // no port
        case 5..<10:
            members.append(("port", random.chance(30) ? .null : wrong(.double)))
            valid = false
            present = true
        default:
            let port = fPort()
            downlink.fPort = port.value
            valid = port.valid
            present = true
            // v2 reads the port as a number: 1, 1.0 and 0.1e1 are the same port; 1.5 is not one.
            let spellings = ["\(port.value)", "\(port.value).0", "\(port.value)e0", port.value == 0 ? "0.00e2" : "\(port.value)00e-2"]
            if random.chance(5) {
                members.append(("port", .number("\(port.value).5")))
                valid = false
            } else {
                members.append(("port", .number(random.pick(spellings))))
            }
        }
        var hasPayload = false
        switch random.below(100) {
        case 0..<30: break
        case 30..<35: members.append(("payload_raw", .null))
        case 35..<38:
            members.append(("payload_raw", wrong(.string)))
            valid = false
            present = true
        default:
            let payload = base64()
            members.append(("payload_raw", .string(payload.0.text)))
            downlink.frmPayload = payload.0.text
            valid = valid && payload.0.valid
            hasPayload = true
            present = true
        }
        if random.chance(50) {
            // payload_fields: null is no payload, as in every other field.
            let (fields, json) = any()
            members.append(("payload_fields", json))
            present = true
            if case .null = json {} else { downlink.decodedPayload = fields }
        }
        if !hasPayload && downlink.decodedPayload == nil { valid = false }
        switch random.below(100) {
        case 0..<40: downlink.confirmed = false
        case 40..<43:
            members.append(("confirmed", random.chance(30) ? .null : wrong(.bool)))
            valid = false
        default:
            let flag = random.chance(50)
            members.append(("confirmed", .bool(flag)))
            downlink.confirmed = flag
        }
        var queue = DownlinkQueue.replace
        switch random.below(100) {
        case 0..<50: break
        case 50..<70: members.append(("schedule", .string("replace")))
        case 70..<90:
            members.append(("schedule", .string("last")))
            queue = .push
        default:
            members.append(("schedule", random.pick([.string("first"), .string("LAST"), .null, .number("1")])))
            valid = false
        }
        if !present { valid = false }  // neither port, payload_raw nor payload_fields: not a v2 body
        let json = finish(&members)
        return (json, valid ? .parsed(body: nil, queue: requested ?? queue, downlinks: [downlink], v2: true) : .refused)
    }

    /// A port: mostly 1...223, sometimes outside.
    func fPort() -> (value: Int, valid: Bool) {
        if random.chance(85) { return (1 + random.below(223), true) }
        return (random.pick([0, 224, 225, -1, 255, 256, 999_999_999, -999_999_999]), false)
    }

    /// Base64 of random bytes (padding sometimes dropped, which is allowed), or text that is not base64.
    func base64() -> ((text: String, valid: Bool), FuzzJSON) {
        let result: (text: String, valid: Bool)
        if random.chance(8) {
            result = (random.pick(["!!!!", "A", "AAAAA", "QUJD!", "not base64", "é", "AB CD"]), false)
        } else {
            let count = random.chance(10) ? 250 + random.below(20) : random.below(60)
            var bytes: [UInt8] = []
            for _ in 0..<count { bytes.append(UInt8(truncatingIfNeeded: random.next())) }
            var text = Base64.encode(bytes)
            if random.chance(30) { text = String(text.prefix { $0 != "=" }) }
            result = (text, count <= 255)
        }
        return (result, .string(result.text))
    }

    private static let idCharacters = String(repeating: "abcdefghijklmnopqrstuvwxyz0123456789-:", count: 5)

    func correlationID() -> ((text: String, valid: Bool), FuzzJSON) {
        let length = random.chance(10) ? 95 + random.below(12) : random.below(30)
        let text = String(Self.idCharacters.dropFirst(random.below(64)).prefix(length))
        return ((text, length <= 100), .string(text))
    }
}
