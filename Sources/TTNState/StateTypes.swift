#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The limits of every namespace. Defaults: key 256 bytes, value 64 KiB (encoded JSON, for stored and emitted
/// values), namespace 64 MiB total (keys + values), 100 emitted records per invocation. Sizes are UTF-8 bytes.
public struct StateLimits: Sendable, Hashable {
    /// The longest key.
    public var keyBytes = 256
    /// The largest value, as JSON text.
    public var valueBytes = 65_536
    /// The most one namespace may hold, keys and values together.
    public var namespaceBytes = 64 * 1024 * 1024
    /// The most records one invocation may emit.
    public var emitsPerInvocation = 100

    public init(keyBytes: Int = 256, valueBytes: Int = 65_536, namespaceBytes: Int = 64 * 1024 * 1024, emitsPerInvocation: Int = 100) {
        self.keyBytes = keyBytes
        self.valueBytes = valueBytes
        self.namespaceBytes = namespaceBytes
        self.emitsPerInvocation = emitsPerInvocation
    }
}

/// Why a state operation failed; `message` says what happened and what to do.
public struct StateError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        case keyTooLong, valueTooLarge, namespaceFull, notANumber, invalidKey, inUse, database, emitLimit
        /// Another process changed what the invocation read; it is to run again.
        case conflict
        /// The state could not be reached (a cluster without quorum, say); the work is to run again later.
        case unavailable
    }

    public let kind: Kind
    public let message: String
    public var description: String { message }

    package init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
}

/// One namespace in ``StateDatabase/namespaces()``: its live keys and their bytes (keys + values).
public struct NamespaceSummary: Sendable, Hashable {
    public let name: String
    public let keys: Int
    public let bytes: Int

    public init(name: String, keys: Int, bytes: Int) {
        self.name = name
        self.keys = keys
        self.bytes = bytes
    }
}

/// A number stored by ``ScriptState/increment(_:by:)``.
public enum StateNumber: Sendable, Hashable, CustomStringConvertible {
    case integer(Int64)
    case double(Double)

    /// The number as JSON text. A double always has a `.` or an exponent, so it reads back as a double; a
    /// non-finite one, which JSON cannot hold, is `null`.
    public var description: String {
        switch self {
        case .integer(let value): String(value)
        case .double(let value): value.isFinite ? value.description : "null"
        }
    }

    /// The number a JSON text holds (whitespace around it allowed): an integer when it is `-?digits` and fits
    /// Int64, else a double; nil when the text is not a JSON number.
    init?(json: String) {
        let bytes = Array(json.utf8)
        let isSpace = { (byte: UInt8) in byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D }
        guard let start = bytes.firstIndex(where: { !isSpace($0) }), let last = bytes.lastIndex(where: { !isSpace($0) }) else { return nil }
        let number = bytes[start...last]
        guard let integral = Self.scanJSONNumber(number) else { return nil }
        let text = String(decoding: number, as: UTF8.self)
        if integral, let value = Int64(text) {
            self = .integer(value)
        } else if let value = Double(text) {
            self = .double(value)
        } else {
            return nil
        }
    }

    /// Whether `bytes` is exactly -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? (nil if not), and whether it is
    /// integral (no fraction, no exponent).
    private static func scanJSONNumber(_ bytes: ArraySlice<UInt8>) -> Bool? {
        var index = bytes.startIndex
        func digits() -> Int {
            let first = index
            while index < bytes.endIndex, (0x30...0x39).contains(bytes[index]) { index += 1 }
            return index - first
        }
        if index < bytes.endIndex, bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard index < bytes.endIndex else { return nil }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else if digits() == 0 {
            return nil
        }
        var integral = true
        if index < bytes.endIndex, bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard digits() > 0 else { return nil }
            integral = false
        }
        if index < bytes.endIndex, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            if index < bytes.endIndex, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard digits() > 0 else { return nil }
            integral = false
        }
        return index == bytes.endIndex ? integral : nil
    }

    /// `self + amount`: integers stay integers, anything with a double gives a double.
    func adding(_ amount: StateNumber) -> StateNumber? {
        switch (self, amount) {
        case (.integer(let a), .integer(let b)):
            let (sum, overflow) = a.addingReportingOverflow(b)
            return overflow ? nil : .integer(sum)
        default:
            let sum = asDouble + amount.asDouble
            return sum.isFinite ? .double(sum) : nil
        }
    }

    private var asDouble: Double {
        switch self {
        case .integer(let value): Double(value)
        case .double(let value): value
        }
    }
}

/// A string compared and hashed by its UTF-8 bytes, as SQLite compares keys. Swift's `String` equality treats
/// canonically equivalent strings ("é" and "e\u{301}") as equal; SQLite, and a script, see two keys.
struct ExactKey: Hashable {
    let string: String

    init(_ string: String) { self.string = string }

    static func == (a: ExactKey, b: ExactKey) -> Bool { a.string.utf8.elementsEqual(b.string.utf8) }

    func hash(into hasher: inout Hasher) {
        let hashed: Void? = string.utf8.withContiguousStorageIfAvailable { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        if hashed == nil {
            for byte in string.utf8 { hasher.combine(byte) }
        }
    }
}

extension String {
    /// Bytewise (UTF-8) order, the order of SQLite's BINARY collation.
    func bytewisePrecedes(_ other: String) -> Bool { utf8.lexicographicallyPrecedes(other.utf8) }

    /// `self` for a message: quoted and escaped, cut after 40 characters.
    var quotedForMessage: String {
        count > 40 ? String(prefix(40)).debugDescription + "..." : debugDescription
    }
}

/// `bytes` as a person reads a limit: "256 bytes", "64 KiB", "64 MiB" (exact multiples only).
func sizeText(_ bytes: Int) -> String {
    if bytes >= 1 << 20, bytes % (1 << 20) == 0 { return "\(bytes >> 20) MiB" }
    if bytes >= 1 << 10, bytes % (1 << 10) == 0 { return "\(bytes >> 10) KiB" }
    return "\(bytes) bytes"
}

/// Now, in milliseconds since the Unix epoch: the unit of `expires_at`.
func epochMilliseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
}

extension Duration {
    /// The duration in whole milliseconds, rounded up (so that any positive duration is at least 1 ms), at most
    /// a few hundred million years.
    var roundedUpMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        let (milliseconds, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        guard !overflow, milliseconds < Int64.max / 4 else { return Int64.max / 4 }
        let perMillisecond: Int64 = 1_000_000_000_000_000
        return milliseconds + (attoseconds + perMillisecond - 1) / perMillisecond
    }
}
