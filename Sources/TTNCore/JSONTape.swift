package import CJSON
import Foundation

/// A JSON text parsed into one flat array of elements in document order, over the original bytes.
///
/// The parse is the project's one JSON grammar (`ttn_json_parse` in CJSON, which the Lua side uses too): it
/// checks the whole text in one pass (RFC 8259, UTF-8, escapes, nesting depth) and allocates only the elements.
/// Strings and numbers stay bytes until something reads them, so a message whose fields are never read costs
/// little more than the scan. ``TapeDecoder`` reads Codable types from it, and TTNLua's lazy tables read the
/// same elements.
///
/// `@unchecked Sendable`: the elements are written once, by the parse in `init`, and only read afterwards.
package final class JSONTape: @unchecked Sendable {
    package enum Kind: UInt8, Sendable {
        case null, `true`, `false`, number, string, array, object

        /// What an error message calls a value of this kind: "a string", "null".
        package var described: String {
            switch self {
            case .null: "null"
            case .true, .false: "a boolean"
            case .number: "a number"
            case .string: "a string"
            case .array: "an array"
            case .object: "an object"
            }
        }
    }

    /// One value, or one object member's key (a string element followed by its value).
    package struct Element: Sendable {
        package let raw: ttn_json_element

        /// The parser writes only `enum ttn_json_kind` values, whose numbers are ``Kind``'s raw values, and a
        /// one-byte enum without payloads is stored as its case's number: the byte is the case, with no check.
        package var kind: Kind { unsafeBitCast(raw.kind, to: Kind.self) }
        /// A string without escapes, or an integer number without fraction or exponent.
        package var isPlain: Bool { raw.plain != 0 }
        /// Strings: the bytes between the quotes; numbers: the number's bytes; containers: the brackets.
        package var start: Int { Int(raw.start) }
        package var end: Int { Int(raw.end) }
        /// Members of an object or elements of an array.
        package var count: Int { Int(raw.count) }
        /// The index of the element after this value and everything inside it.
        package var next: Int { Int(raw.next) }
    }

    /// The elements in document order.
    package struct Elements: RandomAccessCollection, Sendable {
        fileprivate let tape: JSONTape
        package var startIndex: Int { 0 }
        package var endIndex: Int { tape.storage.count }
        package subscript(index: Int) -> Element {
            precondition(index >= 0 && index < tape.storage.count, "element index out of range")
            return Element(raw: tape.storage.elements[index])
        }
    }

    /// A syntax error, with the byte offset where it was found.
    package struct SyntaxError: Error, CustomStringConvertible {
        package var reason: String
        package var offset: Int
        package var description: String { "\(reason) at byte \(offset)" }
    }

    /// Deeper nesting of objects and arrays is refused, so hostile input cannot exhaust the stack.
    package static let maximumDepth = Int(TTN_JSON_MAX_DEPTH)

    package let bytes: [UInt8]
    /// The parse's output; its elements are freed with the tape.
    private let storage: ttn_json_tape

    package var elements: Elements { Elements(tape: self) }

    /// The bytes the text and the elements take, as a queue budget counts them.
    package var memoryFootprint: Int { bytes.count + storage.count * MemoryLayout<ttn_json_element>.stride }

    /// Parses `bytes`, which must hold exactly one JSON value and optional whitespace around it.
    package init(_ bytes: [UInt8]) throws(SyntaxError) {
        self.bytes = bytes
        var tape = ttn_json_tape()
        let status = bytes.withUnsafeBytes { text in
            withUnsafePointer(to: CChar(0)) { empty in  // an empty array may have no address
                ttn_json_parse(text.baseAddress?.assumingMemoryBound(to: CChar.self) ?? empty, text.count, &tape, nil, nil)
            }
        }
        storage = tape
        guard status == TTN_JSON_OK.rawValue else {
            throw SyntaxError(reason: String(cString: tape.error), offset: tape.error_offset)
        }
    }

    deinit {
        free(storage.elements)
    }

    /// Runs `body` with the text and the raw elements, for a reader in C (TTNLua's lazy tables).
    package func withUnsafeParts<Result>(
        _ body: (_ text: UnsafeBufferPointer<UInt8>, _ elements: UnsafeBufferPointer<ttn_json_element>) throws -> Result
    ) rethrows -> Result {
        try bytes.withUnsafeBufferPointer { text in
            try body(text, UnsafeBufferPointer(start: storage.elements, count: storage.count))
        }
    }

    /// The elements as an unchecked buffer, for a reader's hot loop.
    package struct UnsafeElements {
        fileprivate let buffer: UnsafeBufferPointer<ttn_json_element>
        package subscript(index: Int) -> Element { Element(raw: buffer[index]) }
    }

    /// Runs `body` with the elements as an unchecked buffer, valid only inside it.
    package func withUnsafeElements<Result>(_ body: (UnsafeElements) throws -> Result) rethrows -> Result {
        try withExtendedLifetime(self) {
            try body(UnsafeElements(buffer: UnsafeBufferPointer(start: storage.elements, count: storage.count)))
        }
    }

    /// Runs `body` with the text as C characters and the element at `index`.
    private func withElement<Result>(
        _ index: Int, _ body: (UnsafePointer<CChar>, UnsafePointer<ttn_json_element>) -> Result
    ) -> Result {
        precondition(index >= 0 && index < storage.count, "element index out of range")
        return bytes.withUnsafeBytes { text in
            body(text.baseAddress!.assumingMemoryBound(to: CChar.self), storage.elements + index)
        }
    }

    // MARK: Reading values

    /// The string value of the string element at `index`, with escapes resolved.
    package func string(at index: Int) -> String {
        let element = elements[index]
        if element.isPlain {
            return bytes.withUnsafeBufferPointer { String(decoding: $0[element.start..<element.end], as: UTF8.self) }
        }
        return withElement(index) { text, raw in
            String(unsafeUninitializedCapacity: element.end - element.start) { output in
                output.withMemoryRebound(to: CChar.self) { ttn_json_unescape(text, raw, $0.baseAddress!) }
            }
        }
    }

    /// The value elements of the members named `names` (ASCII literals: member names the client knows) of the object
    /// at `index`, in the order of `names`: for each the last one when the name repeats, as ``member(_:of:)`` reads
    /// them, and nil when it is absent or the element is not an object. Each member's name is read once.
    package func members<let count: Int>(_ names: InlineArray<count, StaticString>, of index: Int) -> InlineArray<count, Int?> {
        var found = InlineArray<count, Int?>(repeating: nil)
        forEachMember(of: index) { key, value in
            if let name = string(at: key, equalsOneOf: names) { found[name] = value }
        }
        return found
    }

    /// Which of `names` the string element at `index` equals: its position in `names`, or nil for none. Only the
    /// names of the element's length are compared.
    private func string<let count: Int>(at index: Int, equalsOneOf names: InlineArray<count, StaticString>) -> Int? {
        let element = elements[index]
        guard element.isPlain else {
            let text = string(at: index)
            return names.indices.first { "\(names[$0])" == text }
        }
        let length = element.end - element.start
        return bytes.withUnsafeBufferPointer { bytes in
            names.indices.first { position in
                let name = names[position]
                return name.utf8CodeUnitCount == length
                    && (length == 0 || memcmp(name.utf8Start, bytes.baseAddress! + element.start, length) == 0)
            }
        }
    }

    /// Whether the string element at `index` equals `text`, whose UTF-8 bytes are `wanted`.
    private func string(at index: Int, equals wanted: UnsafeBufferPointer<UInt8>, _ text: @autoclosure () -> String) -> Bool {
        let element = elements[index]
        guard element.isPlain else { return string(at: index) == text() }
        let length = element.end - element.start
        guard length == wanted.count else { return false }
        return length == 0 || bytes.withUnsafeBufferPointer { memcmp(wanted.baseAddress!, $0.baseAddress! + element.start, length) == 0 }
    }

    /// The value element of the member `name` of the object at `index`; the last one when the name repeats, as in
    /// most JSON readers. Nil when the element is not an object or has no such member.
    package func member(_ name: String, of index: Int) -> Int? {
        var utf8 = name
        return utf8.withUTF8 { wanted in
            var found: Int?
            forEachMember(of: index) { key, value in
                if string(at: key, equals: wanted, name) { found = value }
            }
            return found
        }
    }

    /// Calls `body` with each member's key and value element of the object at `index`, in order; nothing when
    /// the element is not an object.
    package func forEachMember<Failure: Error>(
        of index: Int, _ body: (_ key: Int, _ value: Int) throws(Failure) -> Void
    ) throws(Failure) {
        try forEachValue(of: index, in: .object) { (_, value) throws(Failure) in try body(value - 1, value) }
    }

    /// Calls `body` with each element's position and index in the array at `index`, in order; nothing when the
    /// element is not an array.
    package func forEachElement<Failure: Error>(
        of index: Int, _ body: (_ position: Int, _ element: Int) throws(Failure) -> Void
    ) throws(Failure) {
        try forEachValue(of: index, in: .array, body)
    }

    /// The walk over the values of the container at `index`, when it is of `kind`: each value's position and
    /// element. An object's value follows its key, and the element after a value is the next key.
    private func forEachValue<Failure: Error>(
        of index: Int, in kind: Kind, _ body: (_ position: Int, _ value: Int) throws(Failure) -> Void
    ) throws(Failure) {
        guard elements[index].kind == kind else { return }
        let keys = kind == .object ? 1 : 0
        var value = index + 1 + keys
        for position in 0..<elements[index].count {
            try body(position, value)
            value = elements[value].next + keys
        }
    }

    /// The number element at `index` as a finite Double, or nil when it is too large for one.
    package func double(at index: Int) -> Double? {
        let value = withElement(index) { text, raw in ttn_json_double(text, raw) }
        return value.isFinite ? value : nil
    }

    /// Whether every number in the text is a finite Double (what ``jsonValue(at:)`` needs to succeed).
    package func numbersFitDouble() -> Bool {
        elements.indices.allSatisfy { elements[$0].kind != .number || double(at: $0) != nil }
    }

    /// The number element at `index` as an integer, or nil when it has a fraction or does not fit an Int64.
    package func integer(at index: Int) -> Int64? {
        var value: Int64 = 0
        if withElement(index, { text, raw in ttn_json_integer(text, raw, &value) }) != 0 { return value }
        guard !elements[index].isPlain, let real = double(at: index), real.rounded() == real, abs(real) < 9.0e18 else {
            return nil
        }
        return Int64(real)
    }

    /// The value at `index` as a ``JSONValue``; nil when a number in it is too large for a Double.
    package func jsonValue(at index: Int) -> JSONValue? {
        let element = elements[index]
        switch element.kind {
        case .null: return .null
        case .true: return .bool(true)
        case .false: return .bool(false)
        case .number: return double(at: index).map(JSONValue.number)
        case .string: return .string(string(at: index))
        case .array:
            var values: [JSONValue] = []
            values.reserveCapacity(element.count)
            var child = index + 1
            for _ in 0..<element.count {
                guard let value = jsonValue(at: child) else { return nil }
                values.append(value)
                child = elements[child].next
            }
            return .array(values)
        case .object:
            var members: [String: JSONValue] = [:]
            members.reserveCapacity(element.count)
            var key = index + 1
            for _ in 0..<element.count {
                guard let value = jsonValue(at: key + 1) else { return nil }
                members[string(at: key)] = value
                key = elements[key + 1].next
            }
            return .object(members)
        }
    }
}
