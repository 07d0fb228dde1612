#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension [UInt8] {
    /// Appends the wall-clock time as ISO 8601 in UTC with milliseconds, `2026-12-04T10:00:00.123Z`.
    mutating func appendUTCTimestamp() {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        appendUTCTimestamp(seconds: Int(now.tv_sec), milliseconds: Int(now.tv_nsec) / 1_000_000)
    }

    /// Appends `seconds` since 1970 plus `milliseconds` (0 to 999) as ``appendUTCTimestamp()`` does: by hand, as
    /// Foundation's formatters cost microseconds per line.
    mutating func appendUTCTimestamp(seconds: Int, milliseconds: Int) {
        var time = time_t(seconds)
        var fields = tm()
        gmtime_r(&time, &fields)
        appendDigits(Int(fields.tm_year) + 1900, count: 4)
        append(UInt8(ascii: "-"))
        appendDigits(Int(fields.tm_mon) + 1, count: 2)
        append(UInt8(ascii: "-"))
        appendDigits(Int(fields.tm_mday), count: 2)
        append(UInt8(ascii: "T"))
        appendDigits(Int(fields.tm_hour), count: 2)
        append(UInt8(ascii: ":"))
        appendDigits(Int(fields.tm_min), count: 2)
        append(UInt8(ascii: ":"))
        appendDigits(Int(fields.tm_sec), count: 2)
        append(UInt8(ascii: "."))
        appendDigits(milliseconds, count: 3)
        append(UInt8(ascii: "Z"))
    }

    /// Appends the last `count` decimal digits of `value` (not negative), zero-padded.
    private mutating func appendDigits(_ value: Int, count: Int) {
        var divisor = 1
        for _ in 1..<count { divisor *= 10 }
        while divisor > 0 {
            append(UInt8(ascii: "0") + UInt8(value / divisor % 10))
            divisor /= 10
        }
    }
}
