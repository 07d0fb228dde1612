import Foundation
import Testing

@Suite(
    "An ingestor's readiness", .enabled(if: Broker.shouldRun && NATSTestServer.shouldRun), .timeLimit(.minutes(3))
)
struct IngestorReadinessTests {
    @Test("an ingestor is ready only while both its TTN and its NATS connections are up")
    func followsBothConnections() async throws {
        var server = try await NATSTestServer.start()
        defer { server.stop() }
        let app = Broker.application()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ingestor-\(UUID().uuidString)").path
        let log = "\(directory).log"
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("TTN_") }
        environment["TTN_API_KEY"] = Broker.apiKey
        let binary = try #require(Broker.environment["TTN_HOST_BINARY"], "scripts/test sets TTN_HOST_BINARY to the built ttn-host")
        let ingestor = try ChildProcess(
            binary,
            [
                "ingest", "--app-id", app, "--host", "127.0.0.1", "--port", "\(try Broker.requirePort())", "--nats", server.url,
                "--replicas", "1", "--state-dir", directory, "--backfill", "off", "--http", "127.0.0.1:0", "--log-format", "json",
            ],
            environment: environment, output: log
        )
        defer { ingestor.stop() }
        let http = try await MonitoringProcessTests.listeningPort(log: log)
        #expect(await MonitoringProcessTests.waitFor(200, http, "/health/ready", timeout: .seconds(30)), "ready once both are connected")

        server.kill()
        #expect(await MonitoringProcessTests.waitFor(503, http, "/health/ready"), "not ready while NATS is away")
        let away = await MonitoringProcessTests.get(http, "/health/ready")
        #expect(away?.body.contains("\(app): not connected to the NATS cluster") == true, "\(away?.body ?? "no answer")")
        let metrics = try PrometheusText(try #require(await MonitoringProcessTests.get(http, "/metrics")?.body))
        #expect(metrics.value("ttn_ready", ["app": app]) == 0)
        #expect(metrics.value("ttn_connected", ["app": app]) == 1, "the TTN connection itself stays up")

        try await server.restart()
        #expect(await MonitoringProcessTests.waitFor(200, http, "/health/ready", timeout: .seconds(30)), "ready again once NATS is back")
        ingestor.signal(SIGTERM)
        #expect(await ingestor.exitStatus() == 0)
    }
}
