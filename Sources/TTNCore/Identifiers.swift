/// The identifiers TTN accepts, checked byte by byte: a check compiles no pattern, and runs for every downlink.
package enum Identifier {
    /// Whether `id` can be an end device id: 2 to 36 lowercase letters and digits, with single dashes or
    /// underscores between them (`[a-z0-9](?:[-_]?[a-z0-9]){1,35}`).
    package static func isDeviceID(_ id: String) -> Bool {
        isIdentifier(id, lettersAndDigits: 2...36, underscores: true)
    }

    /// Whether `id` is an application id: 3 to 36 lowercase letters and digits with single dashes between them
    /// (`[a-z0-9](?:-?[a-z0-9]){2,35}`), or for legacy v2, 2 to 36 with single dashes or underscores between them
    /// (`[0-9a-z](?:[_-]?[0-9a-z]){1,35}`).
    package static func isApplicationID(_ id: String, legacyV2: Bool) -> Bool {
        isIdentifier(id, lettersAndDigits: legacyV2 ? 2...36 : 3...36, underscores: legacyV2)
    }

    /// Refuses a device id that TTN would drop a downlink to without a word.
    package static func checkDownlinkDevice(_ id: String) throws(TTNError) {
        guard isDeviceID(id) else {
            throw .invalidDownlink(
                "'\(id)' is not a valid device id",
                hint: "Use the end device id from the console: lowercase letters, digits and single dashes."
            )
        }
    }

    /// Whether `id` is lowercase letters and digits, `count` of them, with single separators between them: dashes,
    /// and underscores when allowed.
    private static func isIdentifier(_ id: String, lettersAndDigits count: ClosedRange<Int>, underscores: Bool) -> Bool {
        var lettersAndDigits = 0
        var afterSeparator = true  // so that the id cannot start with one
        for byte in id.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                lettersAndDigits += 1
                afterSeparator = false
            case UInt8(ascii: "-"), UInt8(ascii: "_"):
                if afterSeparator || (byte == UInt8(ascii: "_") && !underscores) { return false }
                afterSeparator = true
            default:
                return false
            }
        }
        return !afterSeparator && count.contains(lettersAndDigits)
    }
}
