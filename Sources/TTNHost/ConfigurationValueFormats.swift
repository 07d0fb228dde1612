import Configuration

/// A duration setting (`max-age`, `timeout`, the retry delays): a number of seconds, whole or decimal (`30`,
/// `0.5`), or a number with one unit: `ms`, `s`, `m` (minutes), `h`, `d` (days), as in `500ms`, `1.5s`, `5m`, `7d`.
///
/// swift-configuration hands over the value as text (a YAML number too) and converts it through this type.
struct DurationSetting: ExpressibleByConfigString {
    static let accepted = "a number of seconds, or a number with a unit: 500ms, 30s, 5m, 2h, 7d"
    private static let units: [(suffix: String, seconds: Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)]

    let seconds: Double
    let description: String

    init?(configString: String) {
        let unit = Self.units.first { configString.hasSuffix($0.suffix) }
        guard let number = decimalNumber(configString.dropLast(unit?.suffix.count ?? 0)) else { return nil }
        seconds = number * (unit?.seconds ?? 1)
        description = configString
    }

    /// The duration to the nanosecond; only for `seconds` well inside `Int64` nanoseconds (292 years).
    var duration: Duration { .nanoseconds(Int64((seconds * 1e9).rounded())) }
}

/// A size setting (`max-size`): a whole number of bytes, or a whole number with one unit: `B`; `KiB`, `MiB`, `GiB`
/// (1024-based); `kB`, `MB`, `GB` (1000-based).
struct SizeSetting: ExpressibleByConfigString {
    static let accepted = "a whole number of bytes, or a whole number with a unit: 512KiB, 100MiB, 1GiB (1024-based), 100kB, 100MB, 1GB (1000-based)"
    // Longest suffix first, so that `MiB` is not read as `B`.
    private static let units: [(suffix: String, bytes: Int)] = [
        ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("kB", 1000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("B", 1),
    ]

    let bytes: Int
    let description: String

    init?(configString: String) {
        let unit = Self.units.first { configString.hasSuffix($0.suffix) }
        let digits = configString.dropLast(unit?.suffix.count ?? 0)
        guard !digits.isEmpty, digits.allSatisfy(\.isASCIIDigit), let count = Int(digits) else { return nil }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: unit?.bytes ?? 1)
        guard !overflow else { return nil }
        self.bytes = bytes
        description = configString
    }
}

/// `12`, `12.5`, `.5` or `12.`: ASCII digits with at most one point. Refuses what `Double(_:)` would also take
/// (`1e3`, `inf`, `nan`, `0x1p3`, signs), which no one means as a duration.
private func decimalNumber(_ text: Substring) -> Double? {
    let points = text.filter { $0 == "." }.count
    guard points <= 1, text.contains(where: \.isASCIIDigit), text.allSatisfy({ $0 == "." || $0.isASCIIDigit }) else { return nil }
    return Double(text)
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}
