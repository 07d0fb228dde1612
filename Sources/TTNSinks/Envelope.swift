extension SinkRecord {
    /// The record as every sink sends it on, one JSON object on one line:
    /// `{"id":"…","app":"…","script":"…","device":"…" or null,"time":"…","value":<value>}`.
    ///
    /// The strings are escaped as JSON requires (`"`, `\` and the control characters below U+0020, the latter as
    /// `\u00XX`); other characters stay as they are, in UTF-8. ``value`` is inserted verbatim: it is already JSON,
    /// on one line as `ttn.json.encode` writes it.
    public var envelope: String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(64 + id.utf8.count + application.utf8.count + script.utf8.count + time.utf8.count + value.utf8.count)
        bytes.append(contentsOf: #"{"id":"#.utf8)
        appendJSONString(id, to: &bytes)
        bytes.append(contentsOf: #","app":"#.utf8)
        appendJSONString(application, to: &bytes)
        bytes.append(contentsOf: #","script":"#.utf8)
        appendJSONString(script, to: &bytes)
        bytes.append(contentsOf: #","device":"#.utf8)
        if let device {
            appendJSONString(device, to: &bytes)
        } else {
            bytes.append(contentsOf: "null".utf8)
        }
        bytes.append(contentsOf: #","time":"#.utf8)
        appendJSONString(time, to: &bytes)
        bytes.append(contentsOf: #","value":"#.utf8)
        bytes.append(contentsOf: value.utf8)
        bytes.append(UInt8(ascii: "}"))
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Appends `text` as a quoted JSON string.
private func appendJSONString(_ text: String, to bytes: inout [UInt8]) {
    let hexDigits = Array("0123456789abcdef".utf8)
    bytes.append(UInt8(ascii: "\""))
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"):
            bytes.append(UInt8(ascii: "\\"))
            bytes.append(byte)
        case 0..<0x20:
            bytes.append(contentsOf: #"\u00"#.utf8)
            bytes.append(hexDigits[Int(byte >> 4)])
            bytes.append(hexDigits[Int(byte & 0xF)])
        default:
            bytes.append(byte)
        }
    }
    bytes.append(UInt8(ascii: "\""))
}
