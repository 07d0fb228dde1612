import Foundation
import TTNSinks
import Testing

@testable import TTNHost

@Suite("Configuration file: valid files")
struct ConfigurationFileTests {
    @Test("every key of a full file arrives in the loaded values")
    func fullFileRoundTrips() async throws {
        let yaml = """
            state-dir: /var/lib/ttn-host
            http: 127.0.0.1:9464
            limits:
              queue-limit-mb: 32
              history-limit: 50
              lua-time-limit-ms: 0
              lua-memory-limit-mb: 128
              lua-downlink-limit: 3
              state-limit-mb: 16
              downlink-timeout: 60
              shutdown-deadline: 5
              silence-warning: 600
              backfill-max-age: 3600
              backfill-recheck: 30
            applications:
              my-app:
                tenant: ttn
                region: nam1
                api-key: ${TTN_API_KEY}
                scripts: /etc/ttn-host/my-app
                api-url: https://nam1.cloud.thethings.network
              lab-app:
                tenant: ""
                host: broker.example.net
                port: 1883
                tls: false
                ca-file: /etc/ssl/lab.pem
                legacy-v2: false
            sinks:
              warehouse:
                type: http
                url: https://example.net/ingest
                headers: { Authorization: "Bearer ${WH_TOKEN}", X-Site.Name: north }
                batch: 10
                timeout: 2.5
                ca-file: /etc/ssl/warehouse.pem
                max-attempts: 8
                max-age: 7d
                retry-min-delay: 250ms
                retry-max-delay: 2m
              homeassistant: { type: mqtt, host: 127.0.0.1, port: 8883, topic: "ttn/{device}/state", username: ha,
                               password: "${HA_PASSWORD}", tls: true, ca-file: /etc/ssl/ha.pem, timeout: 30s }
              archive: { type: file, path: /var/log/ttn-host/archive.jsonl, max-size: 100MB, keep: 0 }
            """
        let environment = ["TTN_API_KEY": "NNSXS.KEY", "WH_TOKEN": "token-1", "HA_PASSWORD": "pass-2"]
        let file = try await loadConfiguration(yaml, environment: environment)

        let expected = ConfigurationFile(
            stateDirectory: "/var/lib/ttn-host", http: "127.0.0.1:9464",
            limits: HostLimits(
                queueLimitMegabytes: 32, historyLimit: 50, luaTimeLimitMilliseconds: 0, luaMemoryLimitMegabytes: 128, luaDownlinkLimit: 3,
                stateLimitMegabytes: 16, downlinkTimeoutSeconds: 60, shutdownDeadlineSeconds: 5, silenceWarningSeconds: 600,
                backfillMaxAgeSeconds: 3600, backfillRecheckSeconds: 30
            ),
            applications: [
                ApplicationEntry(id: "lab-app", tenant: "", host: "broker.example.net", port: 1883, tls: false, caFile: "/etc/ssl/lab.pem", legacyV2: false),
                ApplicationEntry(
                    id: "my-app", tenant: "ttn", region: "nam1", apiKey: "NNSXS.KEY", scripts: "/etc/ttn-host/my-app",
                    apiURL: "https://nam1.cloud.thethings.network"
                ),
            ],
            sinks: [
                SinkConfiguration(name: "archive", kind: .file(FileSinkConfiguration(path: "/var/log/ttn-host/archive.jsonl", maxSize: 100_000_000, keep: 0))),
                SinkConfiguration(
                    name: "homeassistant",
                    kind: .mqtt(
                        MQTTSinkConfiguration(
                            host: "127.0.0.1", port: 8883, topic: "ttn/{device}/state", username: "ha", password: "pass-2", tls: true,
                            caFile: "/etc/ssl/ha.pem", timeout: .seconds(30)
                        )
                    )
                ),
                SinkConfiguration(
                    name: "warehouse",
                    kind: .http(
                        HTTPSinkConfiguration(
                            url: "https://example.net/ingest", headers: ["Authorization": "Bearer token-1", "X-Site.Name": "north"], batch: 10,
                            timeout: .milliseconds(2500), caFile: "/etc/ssl/warehouse.pem"
                        )
                    ),
                    delivery: DeliveryPolicy(maxAttempts: 8, maxAge: .seconds(7 * 86_400), minimumRetryDelay: .milliseconds(250), maximumRetryDelay: .seconds(120))
                ),
            ]
        )
        #expect(file == expected)
    }

    @Test("a file without sections, and sections without entries, load as empty")
    func emptySections() async throws {
        let file = try await loadConfiguration("state-dir: ./state\napplications:\nsinks: {}\nlimits: ~\n")
        #expect(file == ConfigurationFile(stateDirectory: "./state"))
    }

    @Test("a sink without optional keys gets the sink types' defaults")
    func sinkDefaults() async throws {
        let file = try await loadConfiguration(
            """
            sinks:
              hook: { type: http, url: "http://localhost:8080/in" }
              local: { type: mqtt, host: localhost, topic: out }
              log: { type: file, path: out.jsonl }
              forever: { type: file, path: all.jsonl, max-size: 0 }
            """
        )
        #expect(
            file.sinks == [
                SinkConfiguration(name: "forever", kind: .file(FileSinkConfiguration(path: "all.jsonl", maxSize: nil))),
                SinkConfiguration(name: "hook", kind: .http(HTTPSinkConfiguration(url: "http://localhost:8080/in"))),
                SinkConfiguration(name: "local", kind: .mqtt(MQTTSinkConfiguration(host: "localhost", topic: "out"))),
                SinkConfiguration(name: "log", kind: .file(FileSinkConfiguration(path: "out.jsonl"))),
            ]
        )
    }

    @Test("an application with no settings is one to complete from flags and the environment")
    func applicationWithoutSettings() async throws {
        let file = try await loadConfiguration("applications:\n  my-app:\n")
        #expect(file.applications == [ApplicationEntry(id: "my-app")])
    }

    @Test("${NAME} is replaced in text values; $${ is a literal ${; a lone $ stays")
    func environmentSubstitution() async throws {
        let file = try await loadConfiguration(
            """
            state-dir: ${BASE}/state-${BASE}
            http: "$${NOT_A_VARIABLE} costs $5"
            applications:
              my-app: { api-key: "${KEY}", tenant: "${EMPTY}" }
            """,
            environment: ["BASE": "/srv", "KEY": "NNSXS.ABC", "EMPTY": ""]
        )
        #expect(file.stateDirectory == "/srv/state-/srv")
        #expect(file.http == "${NOT_A_VARIABLE} costs $5")
        #expect(file.applications.first?.apiKey == "NNSXS.ABC")
        #expect(file.applications.first?.tenant == "")
    }

    @Test(
        "durations: seconds as numbers, or a number with ms, s, m, h or d",
        arguments: [
            ("30", Duration.seconds(30)), ("0.5", .milliseconds(500)), ("500ms", .milliseconds(500)), ("1.5s", .milliseconds(1500)),
            ("5m", .seconds(300)), ("2h", .seconds(7200)), ("7d", .seconds(604_800)),
        ]
    )
    func durations(text: String, expected: Duration) async throws {
        let file = try await loadConfiguration("sinks:\n  s: { type: http, url: 'http://h/', timeout: \(text) }\n")
        guard case .http(let http) = file.sinks.first?.kind else {
            Issue.record("no http sink in \(file.sinks)")
            return
        }
        #expect(http.timeout == expected)
    }

    @Test(
        "sizes: bytes, or a whole number with B, KiB, MiB, GiB (1024) or kB, MB, GB (1000)",
        arguments: [
            ("1000", 1000), ("10B", 10), ("512KiB", 524_288), ("100MiB", 104_857_600), ("1GiB", 1_073_741_824), ("100kB", 100_000),
            ("100MB", 100_000_000), ("1GB", 1_000_000_000),
        ]
    )
    func sizes(text: String, expected: Int) async throws {
        let file = try await loadConfiguration("sinks:\n  s: { type: file, path: out.jsonl, max-size: \(text) }\n")
        guard case .file(let sink) = file.sinks.first?.kind else {
            Issue.record("no file sink in \(file.sinks)")
            return
        }
        #expect(sink.maxSize == expected)
    }

    @Test("the example in examples/config loads")
    func exampleLoads() async throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("examples/config/ttn-host.yaml").path
        let file = try await ConfigurationFile.load(path: path, environment: ["TTN_API_KEY": "NNSXS.KEY", "WH_TOKEN": "token"])
        #expect(file.applications.map(\.id) == ["my-app"])
        #expect(file.applications.first?.apiKey == "NNSXS.KEY")
        #expect(file.sinks.map(\.name) == ["archive", "homeassistant", "warehouse"])
        #expect(file.limits.queueLimitMegabytes == 64)
    }

    @Test("an application's description leaves out its API key")
    func applicationDescriptionHidesKey() {
        let entry = ApplicationEntry(id: "my-app", region: "eu1", apiKey: "NNSXS.SECRET")
        #expect(!entry.description.contains("NNSXS.SECRET"))
        #expect(entry.description.contains("region: eu1"))
    }
}
