/// The JSON types a typed model expects for the members it knows. Checking a ``JSONTape`` against it refuses
/// a message whose known fields have the wrong type when it arrives, before any handler sees it, without
/// decoding the model: the typed ``Uplink`` fields are decoded only when first read.
///
/// Members not listed are ignored, and a listed member may be absent or null, as in the Codable models. A
/// member that occurs twice must have the right type both times (decoding reads the last).
/// `UplinkShapeTests` checks that ``uplink`` accepts and refuses exactly what decoding ``Uplink`` does.
///
/// A struct over arrays rather than an indirect enum: the shapes are global constants, and LeakSanitizer does
/// not recognize the tagged pointers of an indirect enum's boxes, so it reported them as leaked.
struct JSONShape: Sendable {
    private enum Kind: Sendable {
        case string, number, integer, boolean, any, array, map, object
    }

    private let kind: Kind
    /// `array`: the elements' shape; `map`: the members' shape (one entry).
    private let content: [JSONShape]
    /// `object`: the known members.
    private let members: [(name: String, shape: JSONShape)]

    private init(_ kind: Kind, content: [JSONShape] = [], members: [(name: String, shape: JSONShape)] = []) {
        self.kind = kind
        self.content = content
        self.members = members
    }

    static let string = JSONShape(.string)
    static let number = JSONShape(.number)
    static let integer = JSONShape(.integer)
    static let boolean = JSONShape(.boolean)
    /// Any JSON value: free-form members such as `decoded_payload`.
    static let any = JSONShape(.any)
    static func array(of elements: JSONShape) -> JSONShape { JSONShape(.array, content: [elements]) }
    /// An object whose members all have one shape, such as `locations`.
    static func map(of values: JSONShape) -> JSONShape { JSONShape(.map, content: [values]) }
    /// An object with known members.
    static func object(_ members: KeyValuePairs<String, JSONShape>) -> JSONShape {
        JSONShape(.object, members: members.map { (name: $0.key, shape: $0.value) })
    }

    /// A mismatch: the path to the member and what was expected there.
    struct Mismatch: Error, CustomStringConvertible {
        var path: [String]
        var expected: String
        var description: String { "\(path.isEmpty ? "the message" : path.joined(separator: ".")): expected \(expected)" }
    }

    /// Checks the value at `index` of `tape`.
    func check(_ tape: JSONTape, at index: Int) throws(Mismatch) {
        let element = tape.elements[index]
        switch (kind, element.kind) {
        case (.string, .string), (.boolean, .true), (.boolean, .false):
            return
        case (.any, _):
            for child in index..<element.next where tape.elements[child].kind == .number && tape.double(at: child) == nil {
                throw Mismatch(path: [], expected: "numbers that fit a Double")
            }
        case (.number, .number):
            if tape.double(at: index) == nil { throw Mismatch(path: [], expected: "a number that fits a Double") }
        case (.integer, .number):
            if tape.integer(at: index) == nil { throw Mismatch(path: [], expected: "an integer that fits 64 bits") }
        case (.array, .array):
            var child = index + 1
            for position in 0..<element.count {
                try content[0].check(tape, at: child, inside: "\(position)")
                child = tape.elements[child].next
            }
        case (.map, .object):
            var key = index + 1
            for _ in 0..<element.count {
                try content[0].check(tape, at: key + 1, inside: tape.string(at: key))
                key = tape.elements[key + 1].next
            }
        case (.object, .object):
            // One pass over the message's members; a repeated member is checked every time it occurs.
            var key = index + 1
            for _ in 0..<element.count {
                let value = key + 1
                if tape.elements[value].kind != .null, let (name, shape) = members.first(where: { tape.string(at: key, equals: $0.name) }) {
                    try shape.check(tape, at: value, inside: name)
                }
                key = tape.elements[value].next
            }
        default:
            throw Mismatch(path: [], expected: description)
        }
    }

    private func check(_ tape: JSONTape, at index: Int, inside name: String) throws(Mismatch) {
        do {
            try check(tape, at: index)
        } catch {
            throw Mismatch(path: [name] + error.path, expected: error.expected)
        }
    }

    private var description: String {
        switch kind {
        case .string: "a string"
        case .number: "a number"
        case .integer: "an integer"
        case .boolean: "true or false"
        case .any: "any value"
        case .array: "an array"
        case .map, .object: "an object"
        }
    }
}

extension JSONShape {
    /// A v3 uplink, as ``Uplink`` decodes it.
    static let uplink = JSONShape.object([
        "end_device_ids": endDeviceIDs, "correlation_ids": .array(of: .string), "received_at": .string,
        "simulated": .boolean, "uplink_message": uplinkMessage,
    ])

    private static let endDeviceIDs = JSONShape.object([
        "device_id": .string, "application_ids": .object(["application_id": .string]), "dev_eui": .string,
        "join_eui": .string, "dev_addr": .string,
    ])

    private static let uplinkMessage = JSONShape.object([
        "session_key_id": .string, "f_port": .integer, "f_cnt": .integer, "frm_payload": .string,
        "decoded_payload": .any, "decoded_payload_warnings": .array(of: .string), "rx_metadata": .array(of: rxMetadata),
        "settings": settings, "received_at": .string, "confirmed": .boolean, "consumed_airtime": .string,
        "packet_error_rate": .number, "locations": .map(of: location), "version_ids": .any, "network_ids": .any,
    ])

    private static let rxMetadata = JSONShape.object([
        "gateway_ids": .object(["gateway_id": .string, "eui": .string]), "time": .string, "timestamp": .integer,
        "rssi": .number, "channel_rssi": .number, "snr": .number, "location": location, "channel_index": .integer,
        "received_at": .string, "packet_broker": .any,
    ])

    private static let location = JSONShape.object([
        "latitude": .number, "longitude": .number, "altitude": .number, "accuracy": .number, "source": .string,
    ])

    private static let settings = JSONShape.object([
        "data_rate": .object([
            "lora": .object(["bandwidth": .integer, "spreading_factor": .integer, "coding_rate": .string]),
            "fsk": .object(["bit_rate": .integer]),
        ]),
        "frequency": .string, "timestamp": .integer, "time": .string, "coding_rate": .string,
    ])
}
