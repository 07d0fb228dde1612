/// Names for uplinks and events that stay the same across connections, processes and restarts: two connections
/// that receive the same uplink from TTN name it alike, so a message stream keeps one copy.
extension Uplink {
    /// `<device>/<as:up id>/<f_cnt>`, or with the session key id in place of the `as:up:` id when the uplink
    /// carries none. The `f_cnt` stays in even with an id: a simulator that reuses one id still gets each frame
    /// through. Without a device id: a hash of the JSON.
    package var deduplicationID: String {
        guard let position else { return "json/" + hexFNV1a64(jsonBytes) }
        return "\(position.deviceID)/\(position.uplinkID ?? position.sessionKeyID ?? "-")/\(position.fCnt)"
    }
}

extension TTNEvent {
    /// `<kind>/<device>/<hash of the JSON>`: TTN sends every connection the same JSON for one event.
    package var deduplicationID: String {
        "\(kind.rawValue)/\(deviceID)/" + hexFNV1a64(Array(json.utf8))
    }
}

/// The 64-bit FNV-1a hash of `bytes`, as 16 lowercase hex digits: short, stable across runs and platforms, and
/// spread well enough to name messages within a deduplication window (not for anything adversarial).
package func hexFNV1a64(_ bytes: some Sequence<UInt8>) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes {
        hash ^= UInt64(byte)
        hash = hash &* 0x100_0000_01b3
    }
    let digits = String(hash, radix: 16)
    return String(repeating: "0", count: 16 - digits.count) + digits
}
