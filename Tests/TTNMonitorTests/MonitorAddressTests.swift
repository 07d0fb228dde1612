import Testing

import TTNMonitor

/// The reason a MonitorAddressError gives for `text`; nil when it parses.
private func parseError(_ text: String) -> String? {
    do {
        _ = try MonitorAddress(parsing: text)
        return nil
    } catch {
        return error.reason
    }
}

@Suite("Parsing --http ADDR")
struct MonitorAddressTests {
    @Test(
        "HOST:PORT with an IPv4 address, a bracketed IPv6 address or a host name, and :PORT for all interfaces",
        arguments: [
            ("127.0.0.1:9464", "127.0.0.1", 9464, "127.0.0.1:9464"),
            ("0.0.0.0:9464", "0.0.0.0", 9464, "0.0.0.0:9464"),
            ("[::1]:9464", "::1", 9464, "[::1]:9464"),
            ("[::]:0", "::", 0, "[::]:0"),
            ("localhost:9464", "localhost", 9464, "localhost:9464"),
            ("metrics-1.example.net:80", "metrics-1.example.net", 80, "metrics-1.example.net:80"),
            (":9464", "0.0.0.0", 9464, "0.0.0.0:9464"),
            ("127.0.0.1:0", "127.0.0.1", 0, "127.0.0.1:0"),
            ("127.0.0.1:65535", "127.0.0.1", 65535, "127.0.0.1:65535"),
        ]
    )
    func good(text: String, host: String, port: Int, description: String) throws {
        let address = try MonitorAddress(parsing: text)
        #expect(address == MonitorAddress(host: host, port: port))
        #expect(address.description == description)
        #expect(try MonitorAddress(parsing: address.description) == address)
    }

    @Test(
        "anything else is not HOST:PORT",
        arguments: ["", "9464", "127.0.0.1", "127.0.0.1:", "127.0.0.1:x", "127.0.0.1:-1", "127.0.0.1:+80", "::1:9464", "[::1]9464", "[::1]", "http://127.0.0.1:9464", "127.0.0.1:9464 "]
    )
    func notHostPort(text: String) {
        #expect(parseError(text) == "expected HOST:PORT such as 127.0.0.1:9464, [::1]:9464 or :9464 (all interfaces), got '\(text)'")
    }

    @Test("a port past 65535 is out of range")
    func portOutOfRange() {
        #expect(parseError("127.0.0.1:65536") == "port 65536 in '127.0.0.1:65536' is out of range; use 0 to 65535 (0 for any free port)")
        #expect(parseError(":99999999999999999999")?.hasPrefix("port 99999999999999999999 in ") == true)
    }

    @Test("a host that is neither an address nor a host name says so")
    func badHost() {
        #expect(parseError("999.1.1.1:9464") == "'999.1.1.1' in '999.1.1.1:9464' is neither an IPv4 address nor a host name")
        #expect(parseError("my host:9464") == "'my host' in 'my host:9464' is neither an IPv4 address nor a host name")
        #expect(parseError(" 127.0.0.1:9464") == "' 127.0.0.1' in ' 127.0.0.1:9464' is neither an IPv4 address nor a host name")
        #expect(parseError("[127.0.0.1]:9464") == "'127.0.0.1' in '[127.0.0.1]:9464' is not an IPv6 address")
        #expect(parseError("[fe80::zz]:9464") == "'fe80::zz' in '[fe80::zz]:9464' is not an IPv6 address")
    }

    @Test("the message names the option, for the command line")
    func message() {
        let error = MonitorAddressError("port 70000 in '127.0.0.1:70000' is out of range; use 0 to 65535 (0 for any free port)")
        #expect(error.message == "--http: port 70000 in '127.0.0.1:70000' is out of range; use 0 to 65535 (0 for any free port)")
        #expect("\(error)" == error.message)
    }
}
