#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where ``MonitorServer`` listens: the value of `--http` (config key `http`).
///
/// Written `HOST:PORT`, where HOST is an IPv4 address, an IPv6 address in brackets or a host name, or `:PORT` for
/// every IPv4 interface (`0.0.0.0`, as the unspecified address is the one that always exists; write `[::]:PORT`
/// for IPv6). Port 0 asks for any free port, which ``MonitorServer`` reports once it listens.
///
/// ```swift
/// let address = try MonitorAddress(parsing: "127.0.0.1:9464")
/// ```
public struct MonitorAddress: Sendable, Hashable, CustomStringConvertible {
    /// An IPv4 or IPv6 address (without brackets) or a host name, resolved when the server starts.
    public var host: String
    /// 0 to 65535; 0 is any free port.
    public var port: Int

    /// The address as `--http` takes it: `127.0.0.1:9464`, `[::1]:9464`.
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// An address as given, unchecked; ``init(parsing:)`` is the one for what users write.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses the value of `--http`.
    ///
    /// - Throws: ``MonitorAddressError`` when `text` is not `HOST:PORT` or `:PORT`, the port is not a number from 0
    ///   to 65535, or HOST is neither an IP address nor a host name.
    public init(parsing text: String) throws(MonitorAddressError) {
        let expected = "expected HOST:PORT such as 127.0.0.1:9464, [::1]:9464 or :9464 (all interfaces), got '\(text)'"
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw MonitorAddressError(expected)
            }
            hostPart = text[text.index(after: text.startIndex)..<close]
            portPart = text[text.index(close, offsetBy: 2)...]
            guard Self.isAddress(hostPart, family: AF_INET6) else {
                throw MonitorAddressError("'\(hostPart)' in '\(text)' is not an IPv6 address")
            }
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else {
                throw MonitorAddressError(expected)
            }
            hostPart = text[..<colon].isEmpty ? "0.0.0.0" : text[..<colon]
            portPart = text[text.index(after: colon)...]
            guard Self.isHost(hostPart) else {
                throw MonitorAddressError("'\(hostPart)' in '\(text)' is neither an IPv4 address nor a host name")
            }
        }
        guard !portPart.isEmpty, portPart.allSatisfy(\.isDecimalDigit) else {
            throw MonitorAddressError(expected)
        }
        guard portPart.count <= 5, let port = Int(portPart), port <= 65535 else {
            throw MonitorAddressError("port \(portPart) in '\(text)' is out of range; use 0 to 65535 (0 for any free port)")
        }
        self.init(host: String(hostPart), port: port)
    }

    /// An IPv4 address when all digits and dots (so `999.1.1.1` is refused, not looked up), else a host name of
    /// letters, digits, `-`, `_` and `.`.
    private static func isHost(_ text: Substring) -> Bool {
        guard !text.isEmpty, text.utf8.count <= 253 else { return false }
        if text.allSatisfy({ $0 == "." || $0.isDecimalDigit }) {
            return isAddress(text, family: AF_INET)
        }
        return text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    }

    private static func isAddress(_ text: Substring, family: Int32) -> Bool {
        var buffer = (UInt64(0), UInt64(0))  // room for an in6_addr
        return withUnsafeMutableBytes(of: &buffer) { inet_pton(family, String(text), $0.baseAddress) == 1 }
    }
}

extension Character {
    /// 0 to 9, not the other characters Unicode counts as numbers.
    fileprivate var isDecimalDigit: Bool { ("0"..."9").contains(self) }
}

/// Why a monitoring address cannot be used: it does not parse, or the server cannot listen on it.
public struct MonitorAddressError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What is wrong, without the option's name, for callers that name it their own way (the config key `http`).
    public let reason: String
    /// The message for the command line: `--http: ` and the reason.
    public var message: String { "--http: \(reason)" }
    public var description: String { message }

    public init(_ reason: String) { self.reason = reason }
}
