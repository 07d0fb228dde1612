import Logging

/// Building JSON text byte by byte, for the log lines and the readiness body: no Foundation, no encoder.
extension [UInt8] {
    /// Appends `text` as a JSON string: quoted, with `"`, `\` and the control characters U+0000 to U+001F escaped,
    /// every other character (U+007F and non-ASCII included) kept as its UTF-8 bytes.
    mutating func appendJSONString(_ text: String) {
        append(UInt8(ascii: "\""))
        var text = text
        text.withUTF8 { bytes in
            var start = 0
            for index in bytes.indices {
                let byte = bytes[index]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<index]))
                appendEscape(byte)
                start = index + 1
            }
            append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start...]))
        }
        append(UInt8(ascii: "\""))
    }

    private mutating func appendEscape(_ byte: UInt8) {
        append(UInt8(ascii: "\\"))
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"): append(byte)
        case UInt8(ascii: "\n"): append(UInt8(ascii: "n"))
        case UInt8(ascii: "\r"): append(UInt8(ascii: "r"))
        case UInt8(ascii: "\t"): append(UInt8(ascii: "t"))
        default:
            let hex: StaticString = "0123456789abcdef"
            append(contentsOf: [UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
            append(hex.utf8Start[Int(byte >> 4)])
            append(hex.utf8Start[Int(byte & 0xF)])
        }
    }

    /// Appends `"key":` followed by the value, as a member of the object being written.
    mutating func appendJSONMember(_ key: String, _ value: Logger.MetadataValue) {
        appendJSONString(key)
        append(UInt8(ascii: ":"))
        appendJSON(value)
    }

    /// Appends a metadata value as swift-log shapes it: a string (a `stringConvertible` by its description), an
    /// array, or an object with its keys sorted, so that equal metadata gives equal text.
    mutating func appendJSON(_ value: Logger.MetadataValue) {
        switch value {
        case .string(let text): appendJSONString(text)
        case .stringConvertible(let convertible): appendJSONString(convertible.description)
        case .array(let values):
            append(UInt8(ascii: "["))
            for (index, element) in values.enumerated() {
                if index > 0 { append(UInt8(ascii: ",")) }
                appendJSON(element)
            }
            append(UInt8(ascii: "]"))
        case .dictionary(let members):
            append(UInt8(ascii: "{"))
            for (index, member) in members.sorted(by: { $0.key < $1.key }).enumerated() {
                if index > 0 { append(UInt8(ascii: ",")) }
                appendJSONMember(member.key, member.value)
            }
            append(UInt8(ascii: "}"))
        }
    }
}
