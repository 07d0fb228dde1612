import Foundation

/// One downlink for The Things Stack v3 (an item of `{"downlinks":[...]}`).
///
/// ```swift
/// try await client.publish(Downlink(fPort: 1, payload: [0x01]), to: "my-device")
/// ```
public struct Downlink: Sendable, Hashable, Codable {
    /// The LoRaWAN port, 1...223.
    public var fPort: Int
    /// The payload as base64 (`frm_payload`).
    public var frmPayload: String?
    /// Input for the application's downlink formatter, instead of ``frmPayload``.
    public var decodedPayload: JSONValue?
    public var confirmed: Bool?
    public var priority: Priority?
    /// Your own ids (at most 100 characters each); TTN echoes them in every `down/*` event.
    public var correlationIDs: [String]?
    /// Class B/C options (`class_b_c`), passed through as given.
    public var classBC: JSONValue?
    /// `confirmed_retry`, e.g. `{"max_attempts": 3}`, passed through as given.
    public var confirmedRetry: JSONValue?

    /// How much of a gateway's duty-cycle budget the transmission may use. TTN's default when omitted is `LOWEST`.
    public enum Priority: String, Sendable, Hashable, Codable, CaseIterable {
        case lowest = "LOWEST", low = "LOW", belowNormal = "BELOW_NORMAL", normal = "NORMAL"
        case aboveNormal = "ABOVE_NORMAL", high = "HIGH", highest = "HIGHEST"
    }

    package enum CodingKeys: String, CodingKey {
        case fPort = "f_port", frmPayload = "frm_payload", decodedPayload = "decoded_payload", confirmed, priority
        case correlationIDs = "correlation_ids", classBC = "class_b_c", confirmedRetry = "confirmed_retry"
    }

    /// A downlink carrying raw payload bytes.
    public init(
        fPort: Int, payload: [UInt8], confirmed: Bool = false, priority: Priority = .normal,
        correlationIDs: [String]? = nil
    ) {
        self.fPort = fPort
        self.frmPayload = Base64.encode(payload)
        self.confirmed = confirmed
        self.priority = priority
        self.correlationIDs = correlationIDs
    }

    /// A downlink whose payload the application's downlink formatter builds from `decodedPayload`.
    public init(
        fPort: Int, decodedPayload: JSONValue, confirmed: Bool = false, priority: Priority = .normal,
        correlationIDs: [String]? = nil
    ) {
        self.fPort = fPort
        self.decodedPayload = decodedPayload
        self.confirmed = confirmed
        self.priority = priority
        self.correlationIDs = correlationIDs
    }

    /// Checks what TTN would otherwise drop silently.
    /// - Throws: ``TTNError/Kind/invalidDownlink`` saying which rule was broken.
    public func validate() throws(TTNError) {
        guard (1...223).contains(fPort) else {
            throw .invalidDownlink(
                "f_port \(fPort) is outside 1...223",
                hint: "Use an application port from 1 to 223 (0 is MAC-only, 224 is the test port)."
            )
        }
        if let frmPayload {
            guard let bytes = Base64.decode(frmPayload) else {
                throw .invalidDownlink(
                    "frm_payload '\(frmPayload.prefix(40))' is not valid base64",
                    hint: "Encode the payload bytes as standard base64, e.g. 0x01 0x02 is \"AQI=\"."
                )
            }
            guard bytes.count <= 255 else {
                throw .invalidDownlink(
                    "the payload is \(bytes.count) bytes, more than 255",
                    hint: "Keep downlinks small; 51 bytes fit at every EU868 data rate."
                )
            }
        } else if decodedPayload == nil {
            throw .invalidDownlink(
                "it has neither frm_payload nor decoded_payload",
                hint: "Give the payload as base64 frm_payload (v2: payload_raw), or decoded_payload for a downlink formatter."
            )
        }
        if let long = correlationIDs?.first(where: { $0.count > 100 }) {
            throw .invalidDownlink(
                "correlation id '\(long.prefix(30))...' is longer than 100 characters",
                hint: "Shorten it; TTN refuses longer ids."
            )
        }
    }
}

/// A downlink request parsed from the JSON text given to ``MQTTClient/publish(_:)``.
package struct DownlinkRequest: Sendable, Equatable {
    /// The body to send: the caller's v3 JSON unchanged, or the v3 translation of a v2 body.
    package var body: String
    package var queue: DownlinkQueue
    package var downlinks: [Downlink]
    /// The caller's text, when it was in the v2 form (sent unchanged in legacy v2 mode).
    package var v2Text: String?

    package init(body: String, queue: DownlinkQueue, downlinks: [Downlink], v2Text: String? = nil) {
        self.body = body
        self.queue = queue
        self.downlinks = downlinks
        self.v2Text = v2Text
    }

    /// Parses the v3 form `{"downlinks":[...]}` (sent as it is, to `down/push` unless `queue` says otherwise) or
    /// the seed's v2 form `{"port":1,"confirmed":false,"payload_raw":"AA=="}` (translated; to `down/replace`, v2's
    /// default schedule, or to `down/push` for `"schedule":"last"`).
    /// - Throws: ``TTNError/Kind/invalidDownlink`` for malformed JSON or a downlink TTN would drop.
    package static func parse(_ text: String, queue requestedQueue: DownlinkQueue? = nil) throws(TTNError) -> DownlinkRequest {
        let tape: JSONTape
        do {
            tape = try JSONTape(Array(text.utf8))
        } catch {
            throw .invalidDownlink("the JSON is malformed (\(error))", hint: Self.formHint)
        }
        guard tape.elements[0].kind == .object, tape.numbersFitDouble() else {
            throw .invalidDownlink("the JSON is not an object, or has a number too large for a Double", hint: Self.formHint)
        }

        if let list = tape.member("downlinks", of: 0) {
            let downlinks: [Downlink]
            do {
                downlinks = try DownlinkReader(tape: tape).downlinks(at: list)
            } catch {
                throw .invalidDownlink("the downlinks list does not match TTN's schema: \(error)", hint: Self.formHint)
            }
            let queue = requestedQueue ?? .push
            if downlinks.isEmpty && queue == .push {
                throw .invalidDownlink(
                    "an empty downlinks list on down/push does nothing",
                    hint: "To clear the queue, publish {\"downlinks\":[]} with queue .replace."
                )
            }
            for downlink in downlinks { try downlink.validate() }
            return DownlinkRequest(body: text, queue: queue, downlinks: downlinks, v2Text: nil)
        }

        guard case .object(let object)? = tape.jsonValue(at: 0) else {
            preconditionFailure("an object whose numbers fit a Double is a JSON value")
        }
        if object["port"] != nil || object["payload_raw"] != nil || object["payload_fields"] != nil {
            return try fromV2(object, text: text, requestedQueue: requestedQueue)
        }
        throw .invalidDownlink("the JSON has neither \"downlinks\" (v3) nor \"port\" (v2)", hint: Self.formHint)
    }

    private static func fromV2(
        _ object: [String: JSONValue], text: String, requestedQueue: DownlinkQueue?
    ) throws(TTNError) -> DownlinkRequest {
        guard case .number(let port)? = object["port"], port.rounded() == port, abs(port) < 1e9 else {
            throw .invalidDownlink("v2 \"port\" is missing or not an integer", hint: Self.formHint)
        }
        var downlink = Downlink(fPort: Int(port), payload: [])
        downlink.frmPayload = nil
        switch object["payload_raw"] {
        case nil, .null?: break
        case .string(let base64)?: downlink.frmPayload = base64
        default: throw .invalidDownlink("v2 \"payload_raw\" is not a base64 string", hint: Self.formHint)
        }
        // null is no payload, as for payload_raw; kept, it would go out as "decoded_payload": null, which TTN drops.
        if let fields = object["payload_fields"], fields != .null { downlink.decodedPayload = fields }
        switch object["confirmed"] {
        case nil: downlink.confirmed = false
        case .bool(let flag)?: downlink.confirmed = flag
        default: throw .invalidDownlink("v2 \"confirmed\" is not true or false", hint: Self.formHint)
        }
        try downlink.validate()

        let queue: DownlinkQueue
        switch object["schedule"] {
        case nil, .string("replace")?: queue = .replace
        case .string("last")?: queue = .push
        case let other?:
            throw .invalidDownlink(
                "v2 schedule \(other) has no v3 equivalent",
                hint: "Use \"replace\" (the default) or \"last\"; TTN v3 cannot insert at the front of the queue."
            )
        }
        let body = DownlinkRequest.encode([downlink])
        return DownlinkRequest(body: body, queue: requestedQueue ?? queue, downlinks: [downlink], v2Text: text)
    }

    /// The request with `id` added to every downlink's correlation ids, for a sender that follows its downlinks
    /// through the `down/*` events, where TTN echoes them. The body is encoded again from the checked downlinks.
    /// - Throws: ``TTNError/Kind/invalidDownlink`` when the id is longer than TTN allows.
    package func addingCorrelationID(_ id: String) throws(TTNError) -> DownlinkRequest {
        var downlinks = downlinks
        for index in downlinks.indices {
            downlinks[index].correlationIDs = (downlinks[index].correlationIDs ?? []) + [id]
            try downlinks[index].validate()
        }
        return DownlinkRequest(body: Self.encode(downlinks), queue: queue, downlinks: downlinks, v2Text: v2Text)
    }

    /// `{"downlinks":[...]}` for typed downlinks, with sorted keys so the output is stable.
    package static func encode(_ downlinks: [Downlink]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding these value types cannot fail: every member is a plain Codable value.
        let data = try! encoder.encode(V3Body(downlinks: downlinks))
        return String(decoding: data, as: UTF8.self)
    }

    /// The body for a legacy v2 stack: the caller's v2 text unchanged, or one typed downlink in the v2 form.
    package func legacyV2Body() throws(TTNError) -> String {
        if let v2Text { return v2Text }
        guard downlinks.count == 1, let downlink = downlinks.first else {
            throw .invalidDownlink("TTN v2 takes exactly one downlink per message", hint: "Publish them one at a time.")
        }
        var object: [String: JSONValue] = [
            "port": .number(Double(downlink.fPort)), "confirmed": .bool(downlink.confirmed ?? false),
            "schedule": .string(queue == .push ? "last" : "replace"),
        ]
        if let payload = downlink.frmPayload { object["payload_raw"] = .string(payload) }
        if let fields = downlink.decodedPayload { object["payload_fields"] = fields }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // A JSONValue always encodes.
        return String(decoding: try! encoder.encode(JSONValue.object(object)), as: UTF8.self)
    }

    private struct V3Body: Encodable {
        package var downlinks: [Downlink]
    }

    package static let formHint =
        "Send {\"port\":1,\"confirmed\":false,\"payload_raw\":\"AA==\"} (v2 form) or "
        + "{\"downlinks\":[{\"f_port\":1,\"frm_payload\":\"AA==\",\"priority\":\"NORMAL\"}]} (v3 form)."
}

/// Reads the `downlinks` list of a v3 body from its tape by the rules `Decodable` keeps for ``Downlink``: unknown
/// members are ignored, null reads as absent, and a repeated member's last value counts.
///
/// It exists for speed: `publish` checks every downlink before it sends it, and `Decodable` would spend most of
/// that check building and unwinding its containers; reading the tape directly costs a fraction of it. The tests
/// hold it to the `Decodable` result, on chosen bodies and on every fuzzed one.
package struct DownlinkReader {
    package let tape: JSONTape

    /// A value that does not fit the schema, with the path to it: `downlinks.0.f_port: expected ...`.
    package struct Mismatch: Error, CustomStringConvertible {
        package var path: [String]
        package var problem: String
        package var description: String { "\(path.joined(separator: ".")): \(problem)" }

        /// The same mismatch, one level further from the value.
        package func inside(_ name: String) -> Mismatch { Mismatch(path: [name] + path, problem: problem) }
    }

    /// The downlinks of the array at `index` (the value of `downlinks`).
    package func downlinks(at index: Int) throws(Mismatch) -> [Downlink] {
        guard tape.elements[index].kind == .array else { throw mismatch(at: index, expected: "an array").inside("downlinks") }
        var downlinks: [Downlink] = []
        downlinks.reserveCapacity(tape.elements[index].count)
        try tape.forEachElement(of: index) { position, item throws(Mismatch) in
            do throws(Mismatch) {
                downlinks.append(try downlink(at: item))
            } catch {
                throw error.inside(String(position)).inside("downlinks")
            }
        }
        return downlinks
    }

    private func downlink(at index: Int) throws(Mismatch) -> Downlink {
        guard tape.elements[index].kind == .object else { throw mismatch(at: index, expected: "an object") }
        // Where each known member's value is, the last one when a name repeats; only that one is read.
        var fPort, frmPayload, decodedPayload, confirmed, priority, correlationIDs, classBC, confirmedRetry: Int?
        tape.forEachMember(of: index) { key, value in
            switch Downlink.CodingKeys(rawValue: tape.string(at: key)) {
            case .fPort?: fPort = value
            case .frmPayload?: frmPayload = value
            case .decodedPayload?: decodedPayload = value
            case .confirmed?: confirmed = value
            case .priority?: priority = value
            case .correlationIDs?: correlationIDs = value
            case .classBC?: classBC = value
            case .confirmedRetry?: confirmedRetry = value
            case nil: break
            }
        }
        func read<Value>(
            _ member: Downlink.CodingKeys, at value: Int?, _ reader: (Int) throws(Mismatch) -> Value?
        ) throws(Mismatch) -> Value? {
            guard let value else { return nil }
            do throws(Mismatch) { return try reader(value) } catch { throw error.inside(member.rawValue) }
        }
        guard let port = try read(.fPort, at: fPort, integer) else {
            throw Mismatch(path: ["f_port"], problem: "missing (the LoRaWAN port, 1...223)")
        }
        var downlink = Downlink(fPort: port)
        downlink.frmPayload = try read(.frmPayload, at: frmPayload, optionalString)
        downlink.decodedPayload = try read(.decodedPayload, at: decodedPayload, optionalValue)
        downlink.confirmed = try read(.confirmed, at: confirmed, optionalBool)
        downlink.priority = try read(.priority, at: priority, optionalPriority)
        downlink.correlationIDs = try read(.correlationIDs, at: correlationIDs, optionalStrings)
        downlink.classBC = try read(.classBC, at: classBC, optionalValue)
        downlink.confirmedRetry = try read(.confirmedRetry, at: confirmedRetry, optionalValue)
        return downlink
    }

    private func mismatch(at index: Int, expected: String) -> Mismatch {
        Mismatch(path: [], problem: "expected \(expected), found \(tape.elements[index].kind.described)")
    }

    private func isNull(_ index: Int) -> Bool { tape.elements[index].kind == .null }

    private func integer(at index: Int) throws(Mismatch) -> Int {
        guard tape.elements[index].kind == .number, let value = tape.integer(at: index), let integer = Int(exactly: value) else {
            throw mismatch(at: index, expected: "an integer that fits Int")
        }
        return integer
    }

    private func optionalString(at index: Int) throws(Mismatch) -> String? {
        if isNull(index) { return nil }
        guard tape.elements[index].kind == .string else { throw mismatch(at: index, expected: "a string") }
        return tape.string(at: index)
    }

    private func optionalBool(at index: Int) throws(Mismatch) -> Bool? {
        switch tape.elements[index].kind {
        case .null: return nil
        case .true: return true
        case .false: return false
        default: throw mismatch(at: index, expected: "true or false")
        }
    }

    private func optionalPriority(at index: Int) throws(Mismatch) -> Downlink.Priority? {
        guard let text = try optionalString(at: index) else { return nil }
        guard let priority = Downlink.Priority(rawValue: text) else {
            let names = Downlink.Priority.allCases.map(\.rawValue).joined(separator: ", ")
            throw Mismatch(path: [], problem: "\"\(text)\" is not one of \(names)")
        }
        return priority
    }

    private func optionalStrings(at index: Int) throws(Mismatch) -> [String]? {
        if isNull(index) { return nil }
        guard tape.elements[index].kind == .array else { throw mismatch(at: index, expected: "an array of strings") }
        var strings: [String] = []
        try tape.forEachElement(of: index) { position, element throws(Mismatch) in
            guard tape.elements[element].kind == .string else {
                throw mismatch(at: element, expected: "a string").inside(String(position))
            }
            strings.append(tape.string(at: element))
        }
        return strings
    }

    /// Any value but null; the caller checked that every number fits a Double.
    private func optionalValue(at index: Int) -> JSONValue? {
        isNull(index) ? nil : tape.jsonValue(at: index)
    }
}

extension Downlink {
    /// A downlink with only its port set, for ``DownlinkReader`` to fill in.
    fileprivate init(fPort: Int) {
        self.fPort = fPort
    }
}
