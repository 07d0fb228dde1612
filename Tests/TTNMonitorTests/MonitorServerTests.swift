import AsyncHTTPClient
import CoreMetrics
import InMemoryLogging
import Logging
import Prometheus
import ServiceLifecycle
import Testing

import TTNMonitor

@Suite("The monitoring endpoint, over real HTTP", .timeLimit(.minutes(1)))
struct MonitorServerTests {
    @Test("/metrics shows what swift-metrics recorded, after beforeScrape brought it up to date")
    func metrics() async throws {
        let registry = PrometheusCollectorRegistry()
        let factory = MonitorMetrics.factory(registry: registry)
        Counter(label: "ttn_uplinks_total", dimensions: [("app", "my-app")], factory: factory).increment(by: 3)
        let queued = Gauge(label: "ttn_queued", factory: factory)
        let scrapes = Shared(0)
        let beforeScrape: @Sendable () -> Void = {
            let count = scrapes.update { count in
                count += 1
                return count
            }
            queued.record(count * 10)
        }
        try await withMonitorServer(registry: registry, beforeScrape: beforeScrape) { port in
            let first = try await fetch("/metrics", port: port)
            #expect(first.status == 200)
            #expect(first.contentType == "text/plain; version=0.0.4; charset=utf-8")
            #expect(first.body.contains("# TYPE ttn_uplinks_total counter\nttn_uplinks_total{app=\"my-app\"} 3\n"))
            #expect(first.body.contains("ttn_queued 10.0\n"))
            let second = try await fetch("/metrics", port: port)
            #expect(second.body.contains("ttn_queued 20.0\n"))
        }
        #expect(scrapes.value == 2)
    }

    @Test("/health/live answers ok")
    func live() async throws {
        try await withMonitorServer { port in
            let answer = try await fetch("/health/live", port: port)
            #expect(answer.status == 200)
            #expect(answer.body == "ok")
        }
    }

    @Test("/health/ready is 503 with the reasons until readiness has none, then 200")
    func ready() async throws {
        let readiness = Shared(Readiness(reasons: ["my-app: not connected to the MQTT broker", "scripts: \"decode.lua\" failed to load"]))
        try await withMonitorServer(readiness: { readiness.value }) { port in
            let waiting = try await fetch("/health/ready", port: port)
            #expect(waiting.status == 503)
            #expect(waiting.contentType == "application/json")
            #expect(waiting.body == #"{"ready":false,"reasons":["my-app: not connected to the MQTT broker","scripts: \"decode.lua\" failed to load"]}"#)
            let parsed = try jsonObject(waiting.body)
            #expect(parsed["reasons"] as? [String] == ["my-app: not connected to the MQTT broker", "scripts: \"decode.lua\" failed to load"])

            readiness.value = .ready
            let ready = try await fetch("/health/ready", port: port)
            #expect(ready.status == 200)
            #expect(ready.body == #"{"ready":true,"reasons":[]}"#)
        }
    }

    @Test("/status answers the JSON the status closure returns")
    func status() async throws {
        let json = #"{"applications":{"my-app":{"uplinks":12,"handlers":{"decode.lua":{"errors":0}}}}}"#
        try await withMonitorServer(status: { Array(json.utf8) }) { port in
            let answer = try await fetch("/status", port: port)
            #expect(answer.status == 200)
            #expect(answer.contentType == "application/json")
            #expect(answer.body == json)
        }
    }

    @Test("unknown paths are 404; HEAD answers like GET without the body")
    func notFoundAndHead() async throws {
        try await withMonitorServer { port in
            for path in ["/", "/nope", "/metrics/extra", "/health"] {
                #expect(try await fetch(path, port: port).status == 404, "\(path)")
            }
            let head = try await fetch("/health/live", port: port, head: true)
            #expect(head.status == 200)
            #expect(head.contentLength == "2")
            #expect(head.body.isEmpty)
            #expect(try await fetch("/metrics", port: port, head: true).status == 200)
        }
    }

    @Test("one info line once listening, with the port it got; requests and shutdown log below info")
    func logging() async throws {
        let handler = InMemoryLogHandler()
        var logger = Logger(label: "ttn.monitor") { _ in handler }
        logger.logLevel = .info
        let port = try await withMonitorServer(logger: logger) { port in
            _ = try await fetch("/metrics", port: port)
            _ = try await fetch("/nope", port: port)
            return port
        }
        let entries = handler.entries
        #expect(entries.map(\.message.description) == ["Monitoring endpoint listening"])
        #expect(entries.first?.level == .info)
        #expect(entries.first?.metadata["http.address"] == "127.0.0.1:\(port)")
    }

    @Test("graceful shutdown ends run() with a keep-alive connection still open, and the port is closed")
    func gracefulShutdown() async throws {
        // withMonitorServer returns once the server's run() has returned after the group's graceful shutdown.
        let port = try await withMonitorServer { port in
            _ = try await fetch("/health/live", port: port)  // leaves an idle connection in the client's pool
            return port
        }
        await #expect(throws: (any Error).self) { try await fetch("/health/live", port: port) }
    }

    @Test("a port that is taken fails run() with the address and the reason")
    func portTaken() async throws {
        try await withMonitorServer { port in
            let second = MonitorServer(
                address: MonitorAddress(host: "127.0.0.1", port: port), registry: PrometheusCollectorRegistry(),
                readiness: { .ready }, status: { [] }, logger: quietLogger
            )
            let error = await #expect(throws: MonitorAddressError.self) { try await second.run() }
            #expect(error?.reason.hasPrefix("cannot listen on 127.0.0.1:\(port): ") == true, "\(String(describing: error))")
            #expect(error?.reason.contains("Address already in use") == true, "\(String(describing: error))")
        }
    }
}
