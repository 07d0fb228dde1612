/// Decodes `Decodable` types from a ``JSONTape``: the library's JSON decoder for uplinks and downlinks.
///
/// Compared with Foundation's `JSONDecoder` it skips the intermediate tree, reads a ``JSONValue`` in one step
/// instead of trying each type in turn, and builds a coding path only for an error message. Errors are the
/// standard `DecodingError`s.
package struct TapeDecoder: Decoder {
    package let tape: JSONTape
    package let index: Int
    private let path: CodingPathNode?

    /// Decodes a `T` from the root of `tape`.
    package static func decode<T: Decodable>(_ type: T.Type, from tape: JSONTape) throws -> T {
        try TapeDecoder(tape: tape, index: 0, path: nil).decodeValue(T.self)
    }

    private init(tape: JSONTape, index: Int, path: CodingPathNode?) {
        self.tape = tape
        self.index = index
        self.path = path
    }

    package var codingPath: [any CodingKey] { path?.keys ?? [] }
    package var userInfo: [CodingUserInfoKey: Any] { [:] }

    private var element: JSONTape.Element { tape.elements[index] }

    package func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        try expect(.object, "an object")
        return KeyedDecodingContainer(KeyedContainer<Key>(decoder: self))
    }

    package func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try expect(.array, "an array")
        return UnkeyedContainer(decoder: self)
    }

    package func singleValueContainer() throws -> any SingleValueDecodingContainer { self }

    /// The decoder for the child value at `index`, reached through `key`.
    fileprivate func child(_ index: Int, key: any CodingKey) -> TapeDecoder {
        TapeDecoder(tape: tape, index: index, path: CodingPathNode(key: key, parent: path))
    }

    private func expect(_ kind: JSONTape.Kind, _ description: String) throws {
        guard element.kind == kind else { throw mismatch(description) }
    }

    fileprivate func mismatch(_ expected: String) -> DecodingError {
        DecodingError.typeMismatch(
            Any.self, .init(codingPath: codingPath, debugDescription: "expected \(expected), found \(element.kind.described)")
        )
    }

    fileprivate func decodeValue<T: Decodable>(_ type: T.Type) throws -> T {
        if T.self == JSONValue.self {
            guard let value = tape.jsonValue(at: index) else { throw mismatch("numbers that fit a Double") }
            return value as! T  // T is JSONValue
        }
        return try T(from: self)
    }

    fileprivate func decodeInteger<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        guard element.kind == .number, let value = tape.integer(at: index), let fitting = T(exactly: value) else {
            throw mismatch("an integer that fits \(T.self)")
        }
        return fitting
    }
}

extension TapeDecoder: SingleValueDecodingContainer {
    package func decodeNil() -> Bool { element.kind == .null }

    package func decode(_ type: Bool.Type) throws -> Bool {
        switch element.kind {
        case .true: return true
        case .false: return false
        default: throw mismatch("true or false")
        }
    }

    package func decode(_ type: String.Type) throws -> String {
        try expect(.string, "a string")
        return tape.string(at: index)
    }

    package func decode(_ type: Double.Type) throws -> Double {
        guard element.kind == .number, let value = tape.double(at: index) else { throw mismatch("a number that fits a Double") }
        return value
    }

    package func decode(_ type: Float.Type) throws -> Float { Float(try decode(Double.self)) }
    package func decode(_ type: Int.Type) throws -> Int { try decodeInteger(type) }
    package func decode(_ type: Int8.Type) throws -> Int8 { try decodeInteger(type) }
    package func decode(_ type: Int16.Type) throws -> Int16 { try decodeInteger(type) }
    package func decode(_ type: Int32.Type) throws -> Int32 { try decodeInteger(type) }
    package func decode(_ type: Int64.Type) throws -> Int64 { try decodeInteger(type) }
    package func decode(_ type: UInt.Type) throws -> UInt { try decodeInteger(type) }
    package func decode(_ type: UInt8.Type) throws -> UInt8 { try decodeInteger(type) }
    package func decode(_ type: UInt16.Type) throws -> UInt16 { try decodeInteger(type) }
    package func decode(_ type: UInt32.Type) throws -> UInt32 { try decodeInteger(type) }
    package func decode(_ type: UInt64.Type) throws -> UInt64 { try decodeInteger(type) }
    package func decode<T: Decodable>(_ type: T.Type) throws -> T { try decodeValue(type) }
}

/// The keys from the root to a value, linked towards the root; turned into an array only for an error.
private final class CodingPathNode {
    package let key: any CodingKey
    package let parent: CodingPathNode?

    package init(key: any CodingKey, parent: CodingPathNode?) {
        self.key = key
        self.parent = parent
    }

    package var keys: [any CodingKey] { (parent?.keys ?? []) + [key] }
}

/// An array index as a coding key, for error paths.
private struct IndexKey: CodingKey {
    package let intValue: Int?
    package init(intValue: Int) { self.intValue = intValue }
    package init?(stringValue: String) { nil }
    package var stringValue: String { "\(intValue ?? 0)" }
}

private struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    package let decoder: TapeDecoder

    package var codingPath: [any CodingKey] { decoder.codingPath }

    package var allKeys: [Key] {
        members.compactMap { Key(stringValue: decoder.tape.string(at: $0.key)) }
    }

    /// The (key, value) element indexes of the object's members, in document order.
    private var members: [(key: Int, value: Int)] {
        var result: [(key: Int, value: Int)] = []
        decoder.tape.forEachMember(of: decoder.index) { key, value in result.append((key, value)) }
        return result
    }

    private func valueIndex(of key: Key) -> Int? {
        decoder.tape.member(key.stringValue, of: decoder.index)
    }

    private func child(for key: Key) throws -> TapeDecoder {
        guard let index = valueIndex(of: key) else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "no member \"\(key.stringValue)\""))
        }
        return decoder.child(index, key: key)
    }

    /// The member's decoder, or nil when it is absent or null.
    private func presentChild(for key: Key) -> TapeDecoder? {
        guard let index = valueIndex(of: key), decoder.tape.elements[index].kind != .null else { return nil }
        return decoder.child(index, key: key)
    }

    package func contains(_ key: Key) -> Bool { valueIndex(of: key) != nil }
    package func decodeNil(forKey key: Key) throws -> Bool { try child(for: key).decodeNil() }

    package func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try child(for: key).decode(type) }
    package func decode(_ type: String.Type, forKey key: Key) throws -> String { try child(for: key).decode(type) }
    package func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try child(for: key).decode(type) }
    package func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try child(for: key).decode(type) }
    package func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try child(for: key).decode(type) }
    package func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try child(for: key).decode(type) }
    package func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try child(for: key).decode(type) }
    package func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try child(for: key).decode(type) }
    package func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try child(for: key).decode(type) }
    package func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try child(for: key).decode(type) }
    package func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try child(for: key).decode(type) }
    package func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try child(for: key).decode(type) }
    package func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try child(for: key).decode(type) }
    package func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try child(for: key).decode(type) }
    package func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try child(for: key).decode(type) }

    // One lookup per optional member, instead of the default's `contains`, `decodeNil` and `decode`.
    package func decodeIfPresent(_ type: Bool.Type, forKey key: Key) throws -> Bool? { try presentChild(for: key)?.decode(type) }
    package func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? { try presentChild(for: key)?.decode(type) }
    package func decodeIfPresent(_ type: Double.Type, forKey key: Key) throws -> Double? { try presentChild(for: key)?.decode(type) }
    package func decodeIfPresent(_ type: Float.Type, forKey key: Key) throws -> Float? { try presentChild(for: key)?.decode(type) }
    package func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? { try presentChild(for: key)?.decode(type) }
    package func decodeIfPresent(_ type: Int8.Type, forKey key: Key) throws -> Int8? { try presentChild(for: key)?.decode(type) }
    package func decodeIfPresent(_ type: Int16.Type, forKey key: Key) throws -> Int16? { try presentChild(for: key)?.decode(type) }
    package func decodeIfPresent(_ type: Int32.Type, forKey key: Key) throws -> Int32? { try presentChild(for: key)?.decode(type) }
    package func decodeIfPresent(_ type: Int64.Type, forKey key: Key) throws -> Int64? { try presentChild(for: key)?.decode(type) }
    package func decodeIfPresent(_ type: UInt.Type, forKey key: Key) throws -> UInt? { try presentChild(for: key)?.decode(type) }
    package func decodeIfPresent(_ type: UInt8.Type, forKey key: Key) throws -> UInt8? { try presentChild(for: key)?.decode(type) }
    package func decodeIfPresent(_ type: UInt16.Type, forKey key: Key) throws -> UInt16? { try presentChild(for: key)?.decode(type) }
    package func decodeIfPresent(_ type: UInt32.Type, forKey key: Key) throws -> UInt32? { try presentChild(for: key)?.decode(type) }
    package func decodeIfPresent(_ type: UInt64.Type, forKey key: Key) throws -> UInt64? { try presentChild(for: key)?.decode(type) }
    package func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        try presentChild(for: key)?.decodeValue(type)
    }

    package func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try child(for: key).container(keyedBy: type)
    }

    package func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try child(for: key).unkeyedContainer()
    }

    package func superDecoder() throws -> any Decoder { decoder }
    package func superDecoder(forKey key: Key) throws -> any Decoder { try child(for: key) }
}

private struct UnkeyedContainer: UnkeyedDecodingContainer {
    package let decoder: TapeDecoder
    private(set) var currentIndex = 0
    /// The element index of the next value.
    private var next: Int

    package init(decoder: TapeDecoder) {
        self.decoder = decoder
        self.next = decoder.index + 1
    }

    package var codingPath: [any CodingKey] { decoder.codingPath }
    package var count: Int? { decoder.tape.elements[decoder.index].count }
    package var isAtEnd: Bool { currentIndex >= count! }

    /// The decoder of the next value; moves past it.
    private mutating func advance() throws -> TapeDecoder {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(Any.self, .init(codingPath: codingPath, debugDescription: "the array has no more elements"))
        }
        let child = decoder.child(next, key: IndexKey(intValue: currentIndex))
        next = decoder.tape.elements[next].next
        currentIndex += 1
        return child
    }

    package mutating func decodeNil() throws -> Bool {
        guard !isAtEnd, decoder.tape.elements[next].kind == .null else { return false }
        _ = try advance()
        return true
    }

    package mutating func decode(_ type: Bool.Type) throws -> Bool { try advance().decode(type) }
    package mutating func decode(_ type: String.Type) throws -> String { try advance().decode(type) }
    package mutating func decode(_ type: Double.Type) throws -> Double { try advance().decode(type) }
    package mutating func decode(_ type: Float.Type) throws -> Float { try advance().decode(type) }
    package mutating func decode(_ type: Int.Type) throws -> Int { try advance().decode(type) }
    package mutating func decode(_ type: Int8.Type) throws -> Int8 { try advance().decode(type) }
    package mutating func decode(_ type: Int16.Type) throws -> Int16 { try advance().decode(type) }
    package mutating func decode(_ type: Int32.Type) throws -> Int32 { try advance().decode(type) }
    package mutating func decode(_ type: Int64.Type) throws -> Int64 { try advance().decode(type) }
    package mutating func decode(_ type: UInt.Type) throws -> UInt { try advance().decode(type) }
    package mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try advance().decode(type) }
    package mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try advance().decode(type) }
    package mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try advance().decode(type) }
    package mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try advance().decode(type) }
    package mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try advance().decodeValue(type) }

    package mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try advance().container(keyedBy: type)
    }

    package mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer { try advance().unkeyedContainer() }
    package mutating func superDecoder() throws -> any Decoder { try advance() }
}
