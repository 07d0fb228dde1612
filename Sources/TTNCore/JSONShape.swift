import Foundation

/// The JSON types a typed model expects for the members it knows. Checking a ``JSONTape`` against it refuses
/// a message whose known fields have the wrong type when it arrives, before any handler sees it, without
/// decoding the model: the typed ``Uplink`` fields are decoded only when first read.
///
/// Members not listed are ignored, and a listed member may be absent or null, as in the Codable models. A
/// member that occurs twice must have the right type both times (decoding reads the last).
/// A model's shape is read off its `Decodable` conformance (``of(_:)``), so the model is its one declaration;
/// `UplinkShapeTests` checks that ``uplink`` accepts and refuses exactly what decoding ``Uplink`` does.
///
/// A shape is stored flat, as arrays of plain values (nodes, members, and the member names' bytes), because the
/// check runs on the network thread for every uplink: walking it takes no reference counting and compares
/// member names with `memcmp`. Flat arrays also keep LeakSanitizer quiet, which did not recognize the tagged
/// pointers of an indirect enum's boxes in the global shapes and reported them as leaked.
package struct JSONShape: Sendable {
    private enum Kind: UInt8, Sendable {
        case string, number, integer, boolean, any, array, map, object

        package var expected: String {
            switch self {
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

    /// One shape. `array`: `first` is the elements' node; `map`: the members' node; `object`: its known members
    /// are `members[first ..< first + count]`.
    private struct Node: Sendable {
        package var kind: Kind
        package var first: Int32 = 0
        package var count: Int32 = 0
    }

    /// A known member of an object: its name, as `names[nameStart ..< nameStart + nameLength]`, and its shape.
    private struct Member: Sendable {
        package var node: Int32
        package var nameStart: Int32
        package var nameLength: Int32
    }

    /// Node 0 is the shape itself.
    private var nodes: [Node]
    private var members: [Member] = []
    /// The member names' UTF-8 bytes, one after another.
    private var names: [UInt8] = []
    /// The member names as strings, parallel to `members`, for error messages.
    private var memberNames: [String] = []

    private init(_ kind: Kind) {
        nodes = [Node(kind: kind)]
    }

    /// Copies `other`'s nodes and members after this shape's own; returns the index of `other`'s root node.
    private mutating func append(_ other: JSONShape) -> Int32 {
        let nodeOffset = Int32(nodes.count), memberOffset = Int32(members.count), nameOffset = Int32(names.count)
        for var node in other.nodes {
            switch node.kind {
            case .array, .map: node.first += nodeOffset
            case .object: node.first += memberOffset
            default: break
            }
            nodes.append(node)
        }
        for var member in other.members {
            member.node += nodeOffset
            member.nameStart += nameOffset
            members.append(member)
        }
        names += other.names
        memberNames += other.memberNames
        return nodeOffset
    }

    package static let string = JSONShape(.string)
    package static let number = JSONShape(.number)
    package static let integer = JSONShape(.integer)
    package static let boolean = JSONShape(.boolean)
    /// Any JSON value: free-form members such as `decoded_payload`.
    package static let any = JSONShape(.any)
    package static func array(of elements: JSONShape) -> JSONShape { container(.array, of: elements) }
    /// An object whose members all have one shape, such as `locations`.
    package static func map(of values: JSONShape) -> JSONShape { container(.map, of: values) }

    private static func container(_ kind: Kind, of content: JSONShape) -> JSONShape {
        var shape = JSONShape(kind)
        shape.nodes[0].first = shape.append(content)
        return shape
    }

    /// An object with known members.
    package static func object(_ known: [(name: String, shape: JSONShape)]) -> JSONShape {
        var shape = JSONShape(.object)
        // The members of the root come first, so they are contiguous; their shapes' own members follow.
        for (name, _) in known {
            shape.members.append(Member(node: 0, nameStart: Int32(shape.names.count), nameLength: Int32(name.utf8.count)))
            shape.names += name.utf8
            shape.memberNames.append(name)
        }
        shape.nodes[0].count = Int32(known.count)
        for (position, member) in known.enumerated() {
            shape.members[position].node = shape.append(member.shape)
        }
        return shape
    }

    /// A mismatch: the path to the member and what was expected there.
    package struct Mismatch: Error, CustomStringConvertible {
        package var path: [String]
        package var expected: String
        package var description: String { "\(path.isEmpty ? "the message" : path.joined(separator: ".")): expected \(expected)" }
    }

    /// Checks the value at `index` of `tape`.
    package func check(_ tape: JSONTape, at index: Int) throws(Mismatch) {
        let mismatch = tape.withUnsafeElements { elements in
            tape.bytes.withUnsafeBufferPointer { bytes in
                nodes.withUnsafeBufferPointer { nodes in
                    members.withUnsafeBufferPointer { members in
                        names.withUnsafeBufferPointer { names in
                            Checker(
                                tape: tape, elements: elements, bytes: bytes, nodes: nodes, members: members, names: names,
                                memberNames: memberNames
                            ).mismatch(node: 0, at: index)
                        }
                    }
                }
            }
        }
        if let mismatch { throw mismatch }
    }

    /// One check's walk over a tape, on the buffers of the tape and of the shape.
    private struct Checker {
        package let tape: JSONTape
        package let elements: JSONTape.UnsafeElements
        package let bytes: UnsafeBufferPointer<UInt8>
        package let nodes: UnsafeBufferPointer<Node>
        package let members: UnsafeBufferPointer<Member>
        package let names: UnsafeBufferPointer<UInt8>
        package let memberNames: [String]

        /// Nil when the value at `index` has the shape of `node`; otherwise what does not match, and where.
        package func mismatch(node: Int, at index: Int) -> Mismatch? {
            let shape = nodes[node]
            let element = elements[index]
            switch (shape.kind, element.kind) {
            case (.string, .string), (.boolean, .true), (.boolean, .false):
                return nil
            case (.any, _):
                for child in index..<element.next where elements[child].kind == .number && !fitsDouble(child) {
                    return Mismatch(path: [], expected: "numbers that fit a Double")
                }
                return nil
            case (.number, .number):
                return fitsDouble(index) ? nil : Mismatch(path: [], expected: "a number that fits a Double")
            case (.integer, .number):
                return fitsInteger(index) ? nil : Mismatch(path: [], expected: "an integer that fits 64 bits")
            case (.array, .array):
                var child = index + 1
                for position in 0..<element.count {
                    if let mismatch = mismatch(node: Int(shape.first), at: child) { return mismatch.inside("\(position)") }
                    child = elements[child].next
                }
                return nil
            case (.map, .object):
                var key = index + 1
                for _ in 0..<element.count {
                    if let mismatch = mismatch(node: Int(shape.first), at: key + 1) { return mismatch.inside(tape.string(at: key)) }
                    key = elements[key + 1].next
                }
                return nil
            case (.object, .object):
                // One pass over the message's members; a repeated member is checked every time it occurs.
                var key = index + 1
                for _ in 0..<element.count {
                    let value = key + 1
                    if elements[value].kind != .null, let member = knownMember(named: key, of: shape),
                        let mismatch = mismatch(node: Int(members[member].node), at: value)
                    {
                        return mismatch.inside(memberNames[member])
                    }
                    key = elements[value].next
                }
                return nil
            default:
                return Mismatch(path: [], expected: shape.kind.expected)
            }
        }

        /// The index in `members` of the known member of `shape` whose name is the key element at `key`.
        private func knownMember(named key: Int, of shape: Node) -> Int? {
            let element = elements[key]
            guard element.isPlain else {  // escapes in a member name: rare, compared as strings
                let name = tape.string(at: key)
                return (Int(shape.first)..<Int(shape.first + shape.count)).first { memberNames[$0] == name }
            }
            let length = element.end - element.start
            for member in Int(shape.first)..<Int(shape.first + shape.count) where Int(members[member].nameLength) == length {
                let name = names.baseAddress! + Int(members[member].nameStart)
                if length == 0 || memcmp(bytes.baseAddress! + element.start, name, length) == 0 { return member }
            }
            return nil
        }

        /// Whether the number element at `index` is a finite Double. Without an exponent, 300 characters cannot
        /// reach Double's range (about 1.8e308); anything else is converted to know.
        private func fitsDouble(_ index: Int) -> Bool {
            let element = elements[index]
            if element.end - element.start <= 300
                && !bytes[element.start..<element.end].contains(where: { $0 | 0x20 == UInt8(ascii: "e") })
            {
                return true
            }
            return tape.double(at: index) != nil
        }

        /// Whether the number element at `index` is an integer that fits an Int64. Up to 18 digits always do.
        private func fitsInteger(_ index: Int) -> Bool {
            let element = elements[index]
            let digits = element.end - element.start - (bytes[element.start] == UInt8(ascii: "-") ? 1 : 0)
            return (element.isPlain && digits <= 18) || tape.integer(at: index) != nil
        }
    }
}

extension JSONShape.Mismatch {
    /// The same mismatch, one member or element further down.
    fileprivate func inside(_ name: String) -> Self { Self(path: [name] + path, expected: expected) }
}
