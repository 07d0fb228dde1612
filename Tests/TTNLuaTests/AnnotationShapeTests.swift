import Foundation
import TTNMQTT
import TestSupport
import Testing

/// The classes of `examples/lua/types/ttn.lua` against the sample TTN messages: every member a real uplink or
/// event has is declared, with a type that fits, so the language server completes it and does not flag it, and a
/// member it flags is one TTN does not send.
@Suite("The editor annotations describe TTN's v3 messages")
struct AnnotationShapeTests {
    /// One `---@class`: its parent and its fields' types (the text after the name, up to the first space).
    struct Class {
        var parent: String?
        var fields: [String: String] = [:]
    }

    static func classes() throws -> [String: Class] {
        let text = try String(contentsOf: AnnotationTests.file, encoding: .utf8)
        var classes: [String: Class] = [:]
        var current: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if let match = line.firstMatch(of: #/^---@class ([A-Za-z_.]+)(?:: ([A-Za-z_.]+))?/#) {
                current = String(match.1)
                classes[String(match.1)] = Class(parent: match.2.map(String.init))
            } else if let name = current, let match = line.firstMatch(of: #/^---@field ([A-Za-z_]+)\??\s+(\S+)/#) {
                classes[name]?.fields[String(match.1)] = String(match.2)
            } else if !line.hasPrefix("---") {
                current = nil
            }
        }
        return classes
    }

    /// Where a message's members break the annotations: undeclared members and values of the wrong type, as paths.
    static func mismatches(_ value: JSONValue, as type: String, at path: String, in classes: [String: Class]) -> [String] {
        if type.hasSuffix("[]") {
            guard case .array(let elements) = value else { return ["\(path): not an array, declared \(type)"] }
            let element = String(type.dropLast(2))
            return elements.enumerated().flatMap { mismatches($1, as: element, at: "\(path)[\($0)]", in: classes) }
        }
        if let element = type.firstMatch(of: #/^table<string,\s*([A-Za-z_.]+)>$/#)?.1, classes[String(element)] != nil {
            guard case .object(let members) = value else { return ["\(path): not an object, declared \(type)"] }
            return members.flatMap { mismatches($1, as: String(element), at: "\(path).\($0)", in: classes) }
        }
        if classes[type] != nil {
            guard case .object(let members) = value else { return ["\(path): not an object, declared \(type)"] }
            return members.sorted { $0.key < $1.key }.flatMap { key, member -> [String] in
                guard let fieldType = field(key, of: type, in: classes) else { return ["\(path).\(key): not declared in \(type)"] }
                return mismatches(member, as: fieldType, at: "\(path).\(key)", in: classes)
            }
        }
        let fits: Bool
        switch (type, value) {
        case ("string", .string), ("boolean", .bool), ("number", .number): fits = true
        case ("integer", .number(let number)): fits = number.rounded() == number
        case ("string", _), ("boolean", _), ("number", _), ("integer", _): fits = false
        default: fits = true  // unions, aliases, `any`, `table` and inline table types: not checked further
        }
        return fits ? [] : ["\(path): \(value) is not \(type)"]
    }

    /// The type of `name` in class `type` or a class it inherits from.
    static func field(_ name: String, of type: String, in classes: [String: Class]) -> String? {
        var next: String? = type
        while let current = next, let declared = classes[current] {
            if let fieldType = declared.fields[name] { return fieldType }
            next = declared.parent
        }
        return nil
    }

    static let uplinks = ["v3-up-decoded.json", "v3-up-legacy-shape.json", "v3-up-mac-only.json", "v3-up-multi-gateway.json", "v3-up-no-decoder.json"]
    static let events = [
        "v3-join-accept.json", "v3-up-normalized.json", "v3-down-queued.json", "v3-down-sent.json", "v3-down-ack.json", "v3-down-nack.json",
        "v3-down-failed.json", "v3-down-failed-max-retries.json", "v3-down-invalidated.json", "v3-location-solved.json", "v3-service-data.json",
    ]

    @Test("every member of each sample uplink is declared in TTNUplink, with its type", arguments: uplinks)
    func uplink(fixture: String) throws {
        let message = try JSONDecoder().decode(JSONValue.self, from: Data(try Fixtures.bytes(fixture)))
        let problems = Self.mismatches(message, as: "TTNUplink", at: "getLastMessage()", in: try Self.classes())
        #expect(problems.isEmpty, "\(fixture): \(problems)")
    }

    @Test("every member of each sample event is declared in TTNEvent, with its type", arguments: events)
    func event(fixture: String) throws {
        let message = try JSONDecoder().decode(JSONValue.self, from: Data(try Fixtures.bytes(fixture)))
        let problems = Self.mismatches(message, as: "TTNEvent", at: "getLastEvent()", in: try Self.classes())
        #expect(problems.isEmpty, "\(fixture): \(problems)")
    }

    @Test("the check finds a misspelled member and a value of the wrong type")
    func checkFails() throws {
        let classes = try Self.classes()
        let misspelled = JSONValue.object(["end_device_ids": .object(["device_id": .string("a")]), "uplink_mesage": .object([:])])
        #expect(Self.mismatches(misspelled, as: "TTNUplink", at: "m", in: classes) == ["m.uplink_mesage: not declared in TTNUplink"])
        let wrongType = JSONValue.object(["uplink_message": .object(["f_cnt": .string("7")])])
        #expect(Self.mismatches(wrongType, as: "TTNUplink", at: "m", in: classes) == [#"m.uplink_message.f_cnt: "7" is not integer"#])
    }
}
