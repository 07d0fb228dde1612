extension JSONShape {
    /// A v3 uplink, as ``Uplink`` decodes it.
    package static let uplink = of(Uplink.Fields.self)

    /// The shape that decoding `type` accepts, read off its `init(from:)`: run against a decoder that records
    /// each member it asks for and the type it asks for it as. Every member of the model must be optional (as
    /// every member of a TTN message is), since decoding a required one cannot be recorded without a value.
    package static func of(_ type: any Decodable.Type) -> JSONShape {
        switch type {
        case is String.Type: return .string
        case is Bool.Type: return .boolean
        case is Double.Type, is Float.Type: return .number
        case is any FixedWidthInteger.Type: return .integer
        case is JSONValue.Type: return .any
        case let array as any DecodableArray.Type: return .array(of: of(array.elementType))
        case let map as any DecodableMap.Type: return .map(of: of(map.valueType))
        default:
            let recorder = ShapeRecorder()
            do {
                _ = try type.init(from: recorder)
            } catch {
                preconditionFailure("\(type) has a member the shape cannot record: \(error)")
            }
            return .object(recorder.members)
        }
    }
}

/// An array of decodable elements, whose shape is its elements'.
private protocol DecodableArray {
    static var elementType: any Decodable.Type { get }
}

extension Array: DecodableArray where Element: Decodable {
    fileprivate static var elementType: any Decodable.Type { Element.self }
}

/// An object with free-form names and decodable values of one type, such as `locations`.
private protocol DecodableMap {
    static var valueType: any Decodable.Type { get }
}

extension Dictionary: DecodableMap where Key == String, Value: Decodable {
    fileprivate static var valueType: any Decodable.Type { Value.self }
}

/// A decoder with no data: it records what a model's `init(from:)` asks for and answers that nothing is there.
private final class ShapeRecorder: Decoder {
    var members: [(name: String, shape: JSONShape)] = []
    let codingPath: [any CodingKey] = []
    let userInfo: [CodingUserInfoKey: Any] = [:]

    struct RequiredMember: Error, CustomStringConvertible {
        let name: String
        var description: String { "'\(name)' is required; a shape records optional members only" }
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(Members(recorder: self))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer { throw RequiredMember(name: "[]") }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { throw RequiredMember(name: "a value") }

    /// Records each member asked for as optional; refuses one asked for as required.
    struct Members<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let recorder: ShapeRecorder
        var codingPath: [any CodingKey] { [] }
        var allKeys: [Key] { [] }

        func contains(_ key: Key) -> Bool { false }
        func decodeNil(forKey key: Key) -> Bool { true }

        func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) -> T? {
            recorder.members.append((key.stringValue, JSONShape.of(type)))
            return nil
        }

        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
            throw RequiredMember(name: key.stringValue)
        }

        // Synthesized decoding asks for the basic types through these requirements; without them the protocol's
        // default implementations would answer nil without recording the member.
        func decodeIfPresent(_ type: Bool.Type, forKey key: Key) -> Bool? { decodeIfPresent(type as Bool.Type, key) }
        func decodeIfPresent(_ type: String.Type, forKey key: Key) -> String? { decodeIfPresent(type as String.Type, key) }
        func decodeIfPresent(_ type: Double.Type, forKey key: Key) -> Double? { decodeIfPresent(type as Double.Type, key) }
        func decodeIfPresent(_ type: Float.Type, forKey key: Key) -> Float? { decodeIfPresent(type as Float.Type, key) }
        func decodeIfPresent(_ type: Int.Type, forKey key: Key) -> Int? { decodeIfPresent(type as Int.Type, key) }
        func decodeIfPresent(_ type: Int8.Type, forKey key: Key) -> Int8? { decodeIfPresent(type as Int8.Type, key) }
        func decodeIfPresent(_ type: Int16.Type, forKey key: Key) -> Int16? { decodeIfPresent(type as Int16.Type, key) }
        func decodeIfPresent(_ type: Int32.Type, forKey key: Key) -> Int32? { decodeIfPresent(type as Int32.Type, key) }
        func decodeIfPresent(_ type: Int64.Type, forKey key: Key) -> Int64? { decodeIfPresent(type as Int64.Type, key) }
        func decodeIfPresent(_ type: UInt.Type, forKey key: Key) -> UInt? { decodeIfPresent(type as UInt.Type, key) }
        func decodeIfPresent(_ type: UInt8.Type, forKey key: Key) -> UInt8? { decodeIfPresent(type as UInt8.Type, key) }
        func decodeIfPresent(_ type: UInt16.Type, forKey key: Key) -> UInt16? { decodeIfPresent(type as UInt16.Type, key) }
        func decodeIfPresent(_ type: UInt32.Type, forKey key: Key) -> UInt32? { decodeIfPresent(type as UInt32.Type, key) }
        func decodeIfPresent(_ type: UInt64.Type, forKey key: Key) -> UInt64? { decodeIfPresent(type as UInt64.Type, key) }

        /// The generic record, for the basic types' overloads.
        private func decodeIfPresent<T: Decodable>(_ type: T.Type, _ key: Key) -> T? {
            recorder.members.append((key.stringValue, JSONShape.of(type)))
            return nil
        }

        func nestedContainer<NestedKey: CodingKey>(
            keyedBy type: NestedKey.Type, forKey key: Key
        ) throws -> KeyedDecodingContainer<NestedKey> {
            throw RequiredMember(name: key.stringValue)
        }

        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
            throw RequiredMember(name: key.stringValue)
        }

        func superDecoder() throws -> any Decoder { throw RequiredMember(name: "super") }

        func superDecoder(forKey key: Key) throws -> any Decoder { throw RequiredMember(name: key.stringValue) }
    }
}
