import Foundation

/// A JSON text parsed into one flat array of elements in document order, over the original bytes.
///
/// Parsing checks the whole text in one pass (RFC 8259 grammar, UTF-8, escapes, nesting depth) and
/// allocates only the element array. Strings and numbers stay bytes until something reads them, so a message
/// whose fields are never read costs little more than the scan. ``TapeDecoder`` reads Codable types from it.
package final class JSONTape: Sendable {
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

    /// One value, or one object member's key (a string element followed by its value). 32-bit offsets keep it
    /// at 20 bytes, as tapes stay in the client's history.
    package struct Element: Sendable {
        package var kind: Kind
        /// A string without escapes, or an integer number without fraction or exponent.
        package var isPlain: Bool
        private var startOffset: UInt32
        private var endOffset: UInt32
        private var memberCount: UInt32
        private var nextIndex: UInt32

        package init(kind: Kind, isPlain: Bool, start: Int, end: Int, next: Int) {
            self.kind = kind
            self.isPlain = isPlain
            self.startOffset = UInt32(start)
            self.endOffset = UInt32(end)
            self.memberCount = 0
            self.nextIndex = UInt32(next)
        }

        /// Strings: the bytes between the quotes; numbers: the number's bytes; containers: the brackets.
        package var start: Int { Int(startOffset) }
        package var end: Int {
            get { Int(endOffset) }
            set { endOffset = UInt32(newValue) }
        }
        /// Members of an object or elements of an array.
        package var count: Int {
            get { Int(memberCount) }
            set { memberCount = UInt32(newValue) }
        }
        /// The index of the element after this value and everything inside it.
        package var next: Int {
            get { Int(nextIndex) }
            set { nextIndex = UInt32(newValue) }
        }
    }

    /// A syntax error, with the byte offset where it was found.
    package struct SyntaxError: Error, CustomStringConvertible {
        package var reason: String
        package var offset: Int
        package var description: String { "\(reason) at byte \(offset)" }
    }

    /// Deeper nesting is refused, so hostile input cannot exhaust the stack.
    package static let maximumDepth = 256

    package let bytes: [UInt8]
    package let elements: [Element]
    /// Every object and array in document order, four numbers each: where it starts and ends (the byte after its
    /// closing bracket), how many members or elements it has, and the number of the first container after
    /// everything inside it. TTNLua's lazy tables decode a checked uplink with it, without scanning it again.
    /// Recorded when asked for at parse time; nil otherwise.
    package let containerOutline: [UInt32]?

    /// Parses `bytes`, which must hold exactly one JSON value and optional whitespace around it; with
    /// `recordingOutline`, records ``containerOutline`` as well.
    package init(_ bytes: [UInt8], recordingOutline: Bool = false) throws(SyntaxError) {
        guard bytes.count < UInt32.max else { throw SyntaxError(reason: "text longer than 4 GiB", offset: 0) }
        self.bytes = bytes
        (elements, containerOutline) = try bytes.withUnsafeBufferPointer { (buffer) throws(SyntaxError) in
            try Parser.parse(buffer, recordingOutline: recordingOutline)
        }
    }

    // MARK: Reading values

    /// The string value of the string element at `index`, with escapes resolved.
    package func string(at index: Int) -> String {
        let element = elements[index]
        return bytes.withUnsafeBufferPointer { buffer in
            let content = UnsafeBufferPointer(rebasing: buffer[element.start..<element.end])
            return element.isPlain ? String(decoding: content, as: UTF8.self) : Self.unescape(content)
        }
    }

    /// Whether the string element at `index` equals the ASCII literal `text` (a member name the client knows).
    package func string(at index: Int, equalsLiteral text: StaticString) -> Bool {
        string(at: index, equals: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount), "\(text)")
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
        guard elements[index].kind == .object else { return }
        var key = index + 1
        for _ in 0..<elements[index].count {
            try body(key, key + 1)
            key = elements[key + 1].next
        }
    }

    /// Calls `body` with each element's position and index in the array at `index`, in order; nothing when the
    /// element is not an array.
    package func forEachElement<Failure: Error>(
        of index: Int, _ body: (_ position: Int, _ element: Int) throws(Failure) -> Void
    ) throws(Failure) {
        guard elements[index].kind == .array else { return }
        var element = index + 1
        for position in 0..<elements[index].count {
            try body(position, element)
            element = elements[element].next
        }
    }

    /// The number element at `index` as a finite Double, or nil when it is too large for one.
    package func double(at index: Int) -> Double? {
        let element = elements[index]
        if let value = bytes.withUnsafeBufferPointer({ Self.exactDouble(UnsafeBufferPointer(rebasing: $0[element.start..<element.end])) }) {
            return value
        }
        // The standard library's conversion: correctly rounded, and independent of the C locale (strtod is not).
        let text = String(decoding: bytes[element.start..<element.end], as: UTF8.self)
        guard let value = Double(text), value.isFinite else { return nil }
        return value
    }

    /// Whether every number in the text is a finite Double (what ``jsonValue(at:)`` needs to succeed).
    package func numbersFitDouble() -> Bool {
        elements.indices.allSatisfy { elements[$0].kind != .number || double(at: $0) != nil }
    }

    /// Powers of ten that a Double holds exactly.
    private static let exactPowersOfTen: [Double] = (0...22).map { (exponent: Int) in
        (0..<exponent).reduce(1.0) { power, _ in power * 10 }
    }

    /// A JSON number (checked by the parser) whose digits make an integer below 2^53 and whose decimal exponent is
    /// at most 22 either way: both are exact Doubles, so one multiplication or division gives the correctly
    /// rounded value (Clinger's fast path). Nil for any other number, left to the full conversion.
    private static func exactDouble(_ number: UnsafeBufferPointer<UInt8>) -> Double? {
        var position = 0
        let negative = number[0] == UInt8(ascii: "-")
        if negative { position = 1 }
        var mantissa: UInt64 = 0
        var exponent = 0
        var inFraction = false
        while position < number.count {
            let byte = number[position]
            if byte == UInt8(ascii: ".") {
                inFraction = true
            } else if byte &- UInt8(ascii: "0") < 10 {
                mantissa = mantissa * 10 + UInt64(byte &- UInt8(ascii: "0"))
                guard mantissa < 1 << 53 else { return nil }
                if inFraction { exponent -= 1 }
            } else {
                break  // the exponent
            }
            position += 1
        }
        if position < number.count {
            position += 1  // e or E
            var sign = 1
            if number[position] == UInt8(ascii: "-") || number[position] == UInt8(ascii: "+") {
                sign = number[position] == UInt8(ascii: "-") ? -1 : 1
                position += 1
            }
            guard number.count - position <= 3 else { return nil }
            var written = 0
            while position < number.count {
                written = written * 10 + Int(number[position] &- UInt8(ascii: "0"))
                position += 1
            }
            exponent += sign * written
        }
        guard abs(exponent) <= 22 else { return nil }
        let power = exactPowersOfTen[abs(exponent)]
        let magnitude = exponent < 0 ? Double(mantissa) / power : Double(mantissa) * power
        return negative ? -magnitude : magnitude
    }

    /// The number element at `index` as an integer, or nil when it has a fraction or does not fit an Int64.
    package func integer(at index: Int) -> Int64? {
        let element = elements[index]
        guard element.isPlain else {
            guard let value = double(at: index), value.rounded() == value, abs(value) < 9.0e18 else { return nil }
            return Int64(value)
        }
        var position = element.start
        let negative = bytes[position] == UInt8(ascii: "-")
        if negative { position += 1 }
        var magnitude: UInt64 = 0
        while position < element.end {
            let (product, overflowA) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, overflowB) = product.addingReportingOverflow(UInt64(bytes[position] &- UInt8(ascii: "0")))
            guard !overflowA, !overflowB else { return nil }
            magnitude = sum
            position += 1
        }
        if negative {
            return magnitude <= UInt64(Int64.max) + 1 ? Int64(truncatingIfNeeded: 0 &- magnitude) : nil
        }
        return magnitude <= UInt64(Int64.max) ? Int64(magnitude) : nil
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

    /// Resolves the escapes of string content that the parser has already checked.
    private static func unescape(_ content: UnsafeBufferPointer<UInt8>) -> String {
        var output: [UInt8] = []
        output.reserveCapacity(content.count)
        var position = 0
        while position < content.count {
            let byte = content[position]
            guard byte == UInt8(ascii: "\\") else {
                output.append(byte)
                position += 1
                continue
            }
            let escaped = content[position + 1]
            position += 2
            switch escaped {
            case UInt8(ascii: "b"): output.append(0x08)
            case UInt8(ascii: "f"): output.append(0x0C)
            case UInt8(ascii: "n"): output.append(0x0A)
            case UInt8(ascii: "r"): output.append(0x0D)
            case UInt8(ascii: "t"): output.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = hexValue(content, at: position)
                position += 4
                if (0xD800..<0xDC00).contains(scalar) {  // the parser checked that a low surrogate follows
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (hexValue(content, at: position + 2) - 0xDC00)
                    position += 6
                }
                output.append(contentsOf: String(Character(Unicode.Scalar(scalar)!)).utf8)
            default: output.append(escaped)  // \" \\ \/
            }
        }
        return String(decoding: output, as: UTF8.self)
    }

    private static func hexValue(_ content: UnsafeBufferPointer<UInt8>, at position: Int) -> UInt32 {
        var value: UInt32 = 0
        for byte in content[position..<position + 4] { value = value << 4 | UInt32(hexDigit(byte)!) }
        return value
    }

    fileprivate static func hexDigit(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// The one-pass validating parser behind ``JSONTape``. It reads through a pointer that every step checks
/// against the end of the text, and writes the elements straight into the tape's array (an array's append
/// checks that the array is not shared, every time), made with room for about 1.3 times what TTN's uplinks
/// need. A text with more elements than that moves them to a buffer of its own, copied into the array at the end.
private struct Parser {
    private let start: UnsafePointer<UInt8>
    private let end: UnsafePointer<UInt8>
    private var position: UnsafePointer<UInt8>
    private var depth = 0
    private var elements: UnsafeMutablePointer<JSONTape.Element>
    private var count = 0
    private var capacity: Int
    /// Whether `elements` is a buffer of the parser's own (to deallocate), not the array's.
    private var ownsElements = false
    /// ``JSONTape/containerOutline`` so far, four numbers per container, when recording it (nil otherwise).
    private var outline: UnsafeMutablePointer<UInt32>?
    private var outlineCount = 0
    private var outlineCapacity = 0

    /// The elements of `buffer`, which must hold exactly one JSON value and optional whitespace around it, and
    /// with `recordingOutline` the outline of its containers.
    package static func parse(
        _ buffer: UnsafeBufferPointer<UInt8>, recordingOutline: Bool
    ) throws(JSONTape.SyntaxError) -> ([JSONTape.Element], [UInt32]?) {
        var failure: JSONTape.SyntaxError?
        var moved: UnsafeMutableBufferPointer<JSONTape.Element>?
        var outline: [UInt32]?
        let inPlace = [JSONTape.Element](unsafeUninitializedCapacity: max(16, buffer.count / 8)) { storage, initialized in
            var parser = Parser(buffer, elements: storage)
            if recordingOutline {
                parser.outlineCapacity = 4 * max(4, buffer.count / 100)  // about 1.5 times a TTN uplink's
                parser.outline = .allocate(capacity: parser.outlineCapacity)
            }
            defer { parser.outline?.deallocate() }
            do throws(JSONTape.SyntaxError) {
                parser.skipWhitespace()
                try parser.parseValue()
                parser.skipWhitespace()
                if parser.position < parser.end { throw parser.error("unexpected data after the JSON value") }
            } catch {
                failure = error
            }
            if parser.ownsElements {
                moved = UnsafeMutableBufferPointer(start: parser.elements, count: parser.count)
            } else {
                initialized = parser.count
            }
            outline = parser.outline.map { Array(UnsafeBufferPointer(start: $0, count: parser.outlineCount)) }
        }
        defer { moved?.deallocate() }
        if let failure { throw failure }
        return (moved.map { Array($0) } ?? inPlace, outline)
    }

    private init(_ buffer: UnsafeBufferPointer<UInt8>, elements: UnsafeMutableBufferPointer<JSONTape.Element>) {
        // An empty buffer may have no address; any address then stands for the empty text.
        start = buffer.baseAddress ?? UnsafePointer(bitPattern: 1)!
        end = start + buffer.count
        position = start
        self.elements = elements.baseAddress!
        capacity = elements.count
    }

    private func error(_ reason: String) -> JSONTape.SyntaxError {
        JSONTape.SyntaxError(reason: reason, offset: position - start)
    }

    /// The byte at the position, or nil at the end of the text.
    private var current: UInt8? { position < end ? position.pointee : nil }

    private mutating func skipWhitespace() {
        while position < end {
            switch position.pointee {
            case 0x20, 0x0A, 0x0D, 0x09: position += 1
            default: return
            }
        }
    }

    private mutating func parseValue() throws(JSONTape.SyntaxError) {
        guard let byte = current else { throw error("unexpected end of the JSON text") }
        switch byte {
        case UInt8(ascii: "{"): try parseContainer(.object, closing: UInt8(ascii: "}"))
        case UInt8(ascii: "["): try parseContainer(.array, closing: UInt8(ascii: "]"))
        case UInt8(ascii: "\""): try parseString()
        case UInt8(ascii: "t"): try parseLiteral("true", .true)
        case UInt8(ascii: "f"): try parseLiteral("false", .false)
        case UInt8(ascii: "n"): try parseLiteral("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try parseNumber()
        default: throw error("unexpected character '\(Unicode.Scalar(byte))'")
        }
    }

    @inline(__always)
    private mutating func append(_ kind: JSONTape.Kind, plain: Bool, from first: UnsafePointer<UInt8>) {
        if count == capacity {
            let larger = UnsafeMutablePointer<JSONTape.Element>.allocate(capacity: capacity * 2)
            larger.moveInitialize(from: elements, count: count)
            if ownsElements { elements.deallocate() }
            elements = larger
            capacity *= 2
            ownsElements = true
        }
        (elements + count).initialize(
            to: .init(kind: kind, isPlain: plain, start: first - start, end: position - start, next: count + 1)
        )
        count += 1
    }

    private mutating func parseLiteral(_ literal: StaticString, _ kind: JSONTape.Kind) throws(JSONTape.SyntaxError) {
        let first = position
        for expected in UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount) {
            guard current == expected else { throw error("invalid literal (expected \(literal))") }
            position += 1
        }
        append(kind, plain: true, from: first)
    }

    private mutating func parseContainer(_ kind: JSONTape.Kind, closing: UInt8) throws(JSONTape.SyntaxError) {
        depth += 1
        guard depth <= JSONTape.maximumDepth else { throw error("nesting deeper than \(JSONTape.maximumDepth) levels") }
        let index = count
        let container = outline != nil ? beginOutlineEntry() : 0
        append(kind, plain: true, from: position)
        position += 1
        skipWhitespace()
        var members = 0
        if current == closing {
            position += 1
        } else {
            while true {
                if kind == .object {
                    guard current == UInt8(ascii: "\"") else { throw error("expected a member name in quotes") }
                    try parseString()
                    skipWhitespace()
                    guard current == UInt8(ascii: ":") else { throw error("expected ':' after a member name") }
                    position += 1
                    skipWhitespace()
                }
                try parseValue()
                members += 1
                skipWhitespace()
                if current == UInt8(ascii: ",") {
                    position += 1
                    skipWhitespace()
                } else if current == closing {
                    position += 1
                    break
                } else {
                    throw error(kind == .object ? "expected ',' or '}' in an object" : "expected ',' or ']' in an array")
                }
            }
        }
        elements[index].end = position - start
        elements[index].count = members
        elements[index].next = self.count
        if let outline {
            outline[container + 1] = UInt32(position - start)
            outline[container + 2] = UInt32(members)
            outline[container + 3] = UInt32(outlineCount / 4)  // the number of the next container
        }
        depth -= 1
    }

    /// Starts the outline's entry for the container at the position; returns where it is.
    private mutating func beginOutlineEntry() -> Int {
        if outlineCount == outlineCapacity {
            let larger = UnsafeMutablePointer<UInt32>.allocate(capacity: outlineCapacity * 2)
            larger.moveInitialize(from: outline!, count: outlineCount)
            outline!.deallocate()
            outline = larger
            outlineCapacity *= 2
        }
        outline![outlineCount] = UInt32(position - start)
        outlineCount += 4
        return outlineCount - 4
    }

    private mutating func parseString() throws(JSONTape.SyntaxError) {
        position += 1  // the opening quote
        let first = position
        var plain = true
        while true {
            skipPlainCharacters()
            guard position < end else { throw error("unterminated string") }
            let byte = position.pointee
            if byte == UInt8(ascii: "\"") { break }
            if byte == UInt8(ascii: "\\") {
                plain = false
                try parseEscape()
            } else if byte < 0x20 {
                throw error("control character in a string (escape it)")
            } else {
                try parseMultibyteCharacter()
            }
        }
        append(.string, plain: plain, from: first)
        position += 1  // the closing quote
    }

    /// Moves past printable ASCII other than `"` and `\\`: most of a message's bytes. Eight at a time: a word's
    /// bytes that need attention (`"`, `\\`, below 0x20 or above 0x7F) are flagged by bit tricks whose lowest
    /// flag is always exact (a false flag can only follow a true one), so the first of them is found at once.
    @inline(__always)
    private mutating func skipPlainCharacters() {
        let ones: UInt64 = 0x0101_0101_0101_0101, highBits: UInt64 = 0x8080_8080_8080_8080
        /// The high bit of each zero byte of `word`, and maybe of bytes above the lowest one.
        func zeroBytes(_ word: UInt64) -> UInt64 { (word &- ones) & ~word & highBits }
        var next = position
        defer { position = next }
        while end - next >= 8 {
            let word = UInt64(littleEndian: UnsafeRawPointer(next).loadUnaligned(as: UInt64.self))
            let flags = ((word | (word &- ones &* 0x20)) & highBits)  // a byte >= 0x80, or < 0x20
                | zeroBytes(word ^ (ones &* 0x22)) | zeroBytes(word ^ (ones &* 0x5C))
            if flags != 0 {
                next += flags.trailingZeroBitCount / 8
                return
            }
            next += 8
        }
        while next < end {
            let byte = next.pointee
            guard byte &- 0x20 < 0x60, byte != UInt8(ascii: "\""), byte != UInt8(ascii: "\\") else { return }
            next += 1
        }
    }

    private mutating func parseEscape() throws(JSONTape.SyntaxError) {
        position += 1
        guard let escaped = current else { throw error("unterminated escape") }
        position += 1
        switch escaped {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
            UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
            return
        case UInt8(ascii: "u"):
            let unit = try parseHexQuad()
            if (0xDC00..<0xE000).contains(unit) { throw error("unpaired low surrogate in \\u escape") }
            guard (0xD800..<0xDC00).contains(unit) else { return }
            guard end - position >= 2, position[0] == UInt8(ascii: "\\"), position[1] == UInt8(ascii: "u") else {
                throw error("unpaired high surrogate in \\u escape")
            }
            position += 2
            guard (0xDC00..<0xE000).contains(try parseHexQuad()) else { throw error("unpaired high surrogate in \\u escape") }
        default:
            throw error("invalid escape '\\\(Unicode.Scalar(escaped))'")
        }
    }

    private mutating func parseHexQuad() throws(JSONTape.SyntaxError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let byte = current, let digit = JSONTape.hexDigit(byte) else { throw error("invalid \\u escape") }
            value = value << 4 | UInt32(digit)
            position += 1
        }
        return value
    }

    /// Checks one UTF-8 sequence of two to four bytes (Unicode table 3-7: no overlong forms, no surrogates).
    private mutating func parseMultibyteCharacter() throws(JSONTape.SyntaxError) {
        let lead = position.pointee
        let length: Int
        var secondRange: ClosedRange<UInt8> = 0x80...0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; secondRange = 0xA0...0xBF
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; secondRange = 0x80...0x9F
        case 0xF0: length = 4; secondRange = 0x90...0xBF
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; secondRange = 0x80...0x8F
        default: throw error("invalid UTF-8")
        }
        guard end - position >= length, secondRange.contains(position[1]) else { throw error("invalid UTF-8") }
        for offset in 2..<length where !(0x80...0xBF).contains(position[offset]) {
            throw error("invalid UTF-8")
        }
        position += length
    }

    private mutating func parseNumber() throws(JSONTape.SyntaxError) {
        let first = position
        if current == UInt8(ascii: "-") { position += 1 }
        if current == UInt8(ascii: "0") {
            position += 1
        } else {
            guard skipDigits() > 0 else { throw error("invalid number") }
        }
        var plain = true
        if current == UInt8(ascii: ".") {
            plain = false
            position += 1
            guard skipDigits() > 0 else { throw error("invalid number: digits must follow '.'") }
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            plain = false
            position += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { position += 1 }
            guard skipDigits() > 0 else { throw error("invalid number: digits must follow the exponent") }
        }
        append(.number, plain: plain, from: first)
    }

    private mutating func skipDigits() -> Int {
        let first = position
        while position < end, position.pointee &- UInt8(ascii: "0") < 10 { position += 1 }
        return position - first
    }
}
