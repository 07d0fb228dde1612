import Foundation

/// Standard base64 (RFC 4648 §4), the encoding of TTN's `bytes` fields.
package enum Base64 {
    /// The decoded bytes, or nil when `text` is not base64. Padding may be omitted.
    package static func decode(_ text: String) -> [UInt8]? {
        var padded = text
        let remainder = padded.utf8.count % 4
        if remainder == 1 { return nil }
        if remainder > 0 { padded += String(repeating: "=", count: 4 - remainder) }
        return Data(base64Encoded: padded).map { [UInt8]($0) }
    }

    package static func encode(_ bytes: some Collection<UInt8>) -> String {
        Data(bytes).base64EncodedString()
    }
}
