import Foundation
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Prometheus text exposition, parsed strictly enough that a malformed line fails the test: every sample is
/// `name{label="value",...} number`, and every family is announced by `# TYPE` before its samples.
struct PrometheusText {
    struct Sample: Hashable {
        let name: String
        let labels: [String: String]
        let value: Double
    }

    let samples: [Sample]
    let types: [String: String]

    init(_ text: String) throws {
        var samples: [Sample] = []
        var types: [String: String] = [:]
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                try #require(parts.count == 4, "a # TYPE line with a name and a type: \(line)")
                types[String(parts[2])] = String(parts[3])
                continue
            }
            if line.hasPrefix("#") { continue }
            let space = try #require(line.lastIndex(of: " "), "a sample has a value: \(line)")
            let value = try #require(Double(line[line.index(after: space)...]), "a number: \(line)")
            let series = line[..<space]
            var labels: [String: String] = [:]
            let name: Substring
            if let brace = series.firstIndex(of: "{") {
                name = series[..<brace]
                try #require(series.hasSuffix("}"), "labels close: \(line)")
                let body = series[series.index(after: brace)..<series.index(before: series.endIndex)]
                for pair in body.split(separator: ",") where !pair.isEmpty {
                    let equals = try #require(pair.firstIndex(of: "="), "label=value: \(line)")
                    let quoted = pair[pair.index(after: equals)...]
                    try #require(quoted.hasPrefix("\"") && quoted.hasSuffix("\"") && quoted.count >= 2, "a quoted label value: \(line)")
                    labels[String(pair[..<equals])] = String(quoted.dropFirst().dropLast())
                }
            } else {
                name = series
            }
            try #require(name.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" || $0 == ":" }, "a metric name: \(line)")
            let family = types.keys.first { name == $0 || name.hasPrefix($0 + "_") }
            try #require(family != nil, "\(name) is announced by a # TYPE line before it")
            samples.append(Sample(name: String(name), labels: labels, value: value))
        }
        self.samples = samples
        self.types = types
    }

    /// The value of the one sample of `name` whose labels include `labels`; nil when there is none.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        let matching = samples.filter { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }
        return matching.count == 1 ? matching[0].value : nil
    }
}

@Suite("ttn-host's monitoring endpoint", .enabled(if: Broker.shouldRun), .timeLimit(.minutes(3)))
struct MonitoringProcessTests {
    /// GET `path`: status and body; nil when nothing answered.
    static func get(_ port: Int, _ path: String) async -> (status: Int, body: String)? {
        guard let url = URL(string: "http://127.0.0.1:\(port)\(path)"),
            let (data, response) = try? await URLSession.shared.data(from: url),
            let status = (response as? HTTPURLResponse)?.statusCode
        else { return nil }
        return (status, String(decoding: data, as: UTF8.self))
    }

    /// The port of the endpoint a ttn-host started with `--http 127.0.0.1:0 --log-format json` listens on, from the
    /// line it logs to `log`; fails the test when none comes.
    static func listeningPort(log: String) async throws -> Int {
        @Sendable func port() -> Int? {
            ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").lazy.compactMap { line -> Int? in
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                    object["message"] as? String == "Monitoring endpoint listening",
                    let address = object["http.address"] as? String
                else { return nil }
                return address.split(separator: ":").last.flatMap { Int($0) }
            }.first
        }
        #expect(await eventually { port() != nil }, "the endpoint logs where it listens: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        return try #require(port())
    }

    /// Polls `path` until its status is `status`.
    static func waitFor(_ status: Int, _ port: Int, _ path: String, timeout: Duration = .seconds(20)) async -> Bool {
        let deadline = ContinuousClock.now + timeout * Broker.timeScale
        while ContinuousClock.now < deadline {
            if await get(port, path)?.status == status { return true }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    @Test("ready is 503 before the connection and while the broker is down; /metrics counts what was sent; logs are JSON lines")
    func endpoints() async throws {
        let app = Broker.application()
        let brokerDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("monitoring-broker-\(UUID().uuidString)")
        defer { PrivateBroker.stop(in: brokerDirectory) }
        let brokerPort = try await PrivateBroker.freePort(in: brokerDirectory)
        let scripts = try scriptDirectory([
            "reply.lua": """
                setMessageHandler(function()
                  local m = getLastMessage()
                  if m.uplink_message.f_cnt == 3 then error("frame 3 fails") end
                  publish({f_port = 7, bytes = {1}})
                end)
                """,
        ])
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("ttn-host-\(UUID().uuidString).log").path
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("TTN_") }
        environment["TTN_APP_ID"] = app
        environment["TTN_API_KEY"] = Broker.apiKey
        environment["TTN_HOST"] = "127.0.0.1"
        environment["TTN_PORT"] = "\(brokerPort)"
        environment["TTN_STATE_DIR"] = FileManager.default.temporaryDirectory.appendingPathComponent("state-\(UUID().uuidString)").path
        let binary = try #require(Broker.environment["TTN_HOST_BINARY"], "scripts/test sets TTN_HOST_BINARY to the built ttn-host")
        let host = try ChildProcess(
            binary, ["--scripts", scripts.path, "--http", "127.0.0.1:0", "--log-format", "json", "--backfill", "off"],
            environment: environment, output: log
        )
        defer { host.stop() }
        @Sendable func lines() -> [String] { ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) }
        let http = try await Self.listeningPort(log: log)

        #expect(await Self.get(http, "/health/live")?.status == 200)
        let starting = await Self.get(http, "/health/ready")
        #expect(starting?.status == 503, "not ready before the broker is up: \(String(describing: starting))")
        #expect(starting?.body.contains(app) == true)

        _ = try await PrivateBroker.start(in: brokerDirectory, port: brokerPort)
        #expect(await Self.waitFor(200, http, "/health/ready", timeout: .seconds(30)), "ready once connected")

        let network = try NetworkSide(port: brokerPort)
        for fCnt in 0..<20 where fCnt != 10 {
            try network.publishUplink(application: app, device: "meter", json: uplinkJSON(device: "meter", counter: fCnt))
        }
        var metrics: PrometheusText?
        let labels = ["app": app, "handler": "reply.lua"]
        let deadline = ContinuousClock.now + .seconds(20) * Broker.timeScale
        while ContinuousClock.now < deadline {
            if let text = await Self.get(http, "/metrics")?.body, let parsed = try? PrometheusText(text),
                parsed.value("ttn_handler_invocations_total", labels.merging(["outcome": "ok"]) { $1 }) == 18
            {
                metrics = parsed
                break
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        network.close()
        let scraped = try #require(metrics, "the counters reach what was sent")
        #expect(scraped.value("ttn_uplinks_received_total", ["app": app]) == 19)
        #expect(scraped.value("ttn_handler_invocations_total", labels.merging(["outcome": "failed"]) { $1 }) == 1)
        #expect(scraped.value("ttn_downlinks_total", ["app": app, "outcome": "sent"]) == 18)
        #expect(scraped.value("ttn_gaps_total", ["app": app]) == 1)
        #expect(scraped.value("ttn_uplinks_missing_total", ["app": app]) == 1)
        #expect(scraped.value("ttn_handler_dropped_total", labels) == 0)
        #expect(scraped.value("ttn_connected", ["app": app]) == 1)
        #expect(scraped.value("ttn_ready", ["app": app]) == 1)
        #expect(scraped.value("ttn_backfill_active", ["app": app]) == 0, "--backfill off")
        #expect((scraped.value("ttn_seconds_since_last_uplink", ["app": app]) ?? -1) >= 0, "the silence gauge")
        #expect(scraped.value("ttn_handler_queue_bytes", labels) != nil)
        #expect(scraped.value("ttn_handler_duration_seconds_count", labels) == 19)
        #expect(scraped.types["ttn_uplinks_received_total"] == "counter")
        #expect(scraped.types["ttn_handler_duration_seconds"] == "histogram")
        let status = try #require(await Self.get(http, "/status"))
        let document = try #require(try JSONSerialization.jsonObject(with: Data(status.body.utf8)) as? [String: Any])
        let application = try #require((document["applications"] as? [[String: Any]])?.first)
        #expect(application["id"] as? String == app)
        #expect((application["statistics"] as? [String: Any])?["uplinks"] as? Int == 19)

        PrivateBroker.stop(in: brokerDirectory)
        #expect(await Self.waitFor(503, http, "/health/ready"), "not ready while the broker is down")
        #expect(await Self.get(http, "/health/ready")?.body.contains("not connected") == true)
        _ = try await PrivateBroker.start(in: brokerDirectory, port: brokerPort)
        #expect(await Self.waitFor(200, http, "/health/ready", timeout: .seconds(40)), "ready again after the reconnect")
        let afterReconnect = try PrometheusText(try #require(await Self.get(http, "/metrics")?.body))
        #expect(afterReconnect.value("ttn_reconnects_total", ["app": app]) == 1)

        host.signal(SIGTERM)
        #expect(await host.exitStatus() == 0)
        let all = lines()
        #expect(!all.isEmpty)
        for line in all {
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["level"] is String && object?["message"] is String, "a JSON log line: \(line)")
        }
        #expect(!all.joined().contains(Broker.apiKey), "the key is never logged")
    }
}
