import Foundation
import Testing

@testable import TTNHost

@Suite("Configuration file: errors name the key")
struct ConfigurationFileErrorTests {
    /// A file that must be refused: the key the error must name, and words its message must contain.
    struct Refusal: CustomTestStringConvertible, Sendable {
        let what: String
        let yaml: String
        let key: String
        let says: [String]
        var environment: [String: String] = [:]
        var testDescription: String { what }
    }

    static let refusals: [Refusal] = [
        Refusal(what: "unknown top-level key", yaml: "stat-dir: /tmp\n", key: "stat-dir", says: ["unknown key", "Did you mean state-dir?"]),
        Refusal(
            what: "unknown key, nothing close", yaml: "metrics: on\n", key: "metrics",
            says: ["unknown key", "state-dir, http, limits, applications, sinks"]
        ),
        Refusal(
            what: "unknown nested key with a suggestion",
            yaml: "sinks:\n  warehouse: { type: http, url: 'https://x.net/', hedaers: { Authorization: x } }\n",
            key: "sinks.warehouse.hedaers", says: ["Did you mean headers?"]
        ),
        Refusal(what: "unknown limit", yaml: "limits: { queue-limt-mb: 5 }\n", key: "limits.queue-limt-mb", says: ["Did you mean queue-limit-mb?"]),
        Refusal(
            what: "unknown application key", yaml: "applications:\n  my-app: { api_key: x }\n", key: "applications.my-app.api_key",
            says: ["Did you mean api-key?"]
        ),
        Refusal(
            what: "a key of another sink type", yaml: "sinks:\n  s: { type: http, url: 'https://x.net/', topic: t }\n", key: "sinks.s.topic",
            says: ["is a key of mqtt sinks", "url, headers"]
        ),
        Refusal(
            what: "text where a whole number belongs", yaml: "sinks:\n  warehouse: { type: http, url: 'https://x.net/', batch: ten }\n",
            key: "sinks.warehouse.batch", says: ["expected a whole number", "got \"ten\""]
        ),
        Refusal(what: "a quoted number", yaml: "limits: { queue-limit-mb: \"5\" }\n", key: "limits.queue-limit-mb", says: ["expected a whole number", "without quotes"]),
        Refusal(
            what: "not a boolean", yaml: "applications:\n  my-app: { tls: maybe }\n", key: "applications.my-app.tls",
            says: ["expected true or false", "got \"maybe\""]
        ),
        Refusal(what: "a list where text belongs", yaml: "state-dir: [a, b]\n", key: "state-dir", says: ["expected text, got a list"]),
        Refusal(what: "a mapping where text belongs", yaml: "state-dir: { path: /x }\n", key: "state-dir", says: ["got a mapping"]),
        Refusal(what: "a value where a mapping belongs", yaml: "limits: 5\n", key: "limits", says: ["expected a mapping of limits", "got \"5\""]),
        Refusal(
            what: "a number in a substituted number", yaml: "limits: { queue-limit-mb: \"${LIMIT}\" }\n", key: "limits.queue-limit-mb",
            says: ["replaced in text values only"], environment: ["LIMIT": "5"]
        ),
        Refusal(
            what: "unknown sink type", yaml: "sinks:\n  s: { type: ftp, url: x }\n", key: "sinks.s.type",
            says: ["unknown sink type \"ftp\"", "http, mqtt, file"]
        ),
        Refusal(what: "sink without a type", yaml: "sinks:\n  s: { url: 'https://x.net/' }\n", key: "sinks.s.type", says: ["missing", "http, mqtt, file"]),
        Refusal(what: "http sink without url", yaml: "sinks:\n  s: { type: http }\n", key: "sinks.s.url", says: ["missing"]),
        Refusal(what: "mqtt sink without topic", yaml: "sinks:\n  s: { type: mqtt, host: localhost }\n", key: "sinks.s.topic", says: ["missing"]),
        Refusal(what: "file sink without path", yaml: "sinks:\n  s: { type: file }\n", key: "sinks.s.path", says: ["missing"]),
        Refusal(what: "url that is not http", yaml: "sinks:\n  s: { type: http, url: 'ftp://x.net/' }\n", key: "sinks.s.url", says: ["http://"]),
        Refusal(what: "limit out of range", yaml: "limits: { queue-limit-mb: 0 }\n", key: "limits.queue-limit-mb", says: ["must be from 1 to 1048576", "not 0"]),
        Refusal(
            what: "port out of range", yaml: "sinks:\n  s: { type: mqtt, host: h.net, topic: t, port: 70000 }\n", key: "sinks.s.port",
            says: ["from 1 to 65535", "not 70000"]
        ),
        Refusal(what: "keep out of range", yaml: "sinks:\n  s: { type: file, path: p, keep: -1 }\n", key: "sinks.s.keep", says: ["not -1"]),
        Refusal(
            what: "duration with a space and a word", yaml: "sinks:\n  s: { type: http, url: 'https://x.net/', timeout: 10 minutes }\n",
            key: "sinks.s.timeout", says: ["expected a duration", "500ms", "got \"10 minutes\""]
        ),
        Refusal(
            what: "duration of zero", yaml: "sinks:\n  s: { type: http, url: 'https://x.net/', max-age: 0s }\n", key: "sinks.s.max-age",
            says: ["more than 0"]
        ),
        Refusal(what: "duration of a year and more", yaml: "sinks:\n  s: { type: file, path: p, max-age: 366d }\n", key: "sinks.s.max-age", says: ["at most 365d"]),
        Refusal(
            what: "retry delays the wrong way round", yaml: "sinks:\n  s: { type: file, path: p, retry-min-delay: 1m }\n",
            key: "sinks.s.retry-min-delay", says: ["retry-max-delay", "its default"]
        ),
        Refusal(
            what: "size in lowercase", yaml: "sinks:\n  s: { type: file, path: p, max-size: 100mb }\n", key: "sinks.s.max-size",
            says: ["expected a size", "100MiB", "got \"100mb\""]
        ),
        Refusal(what: "fractional size", yaml: "sinks:\n  s: { type: file, path: p, max-size: 1.5GB }\n", key: "sinks.s.max-size", says: ["whole number"]),
        Refusal(
            what: "missing environment variable", yaml: "applications:\n  my-app: { api-key: '${TTN_KEY_MISSING}' }\n",
            key: "applications.my-app.api-key", says: ["TTN_KEY_MISSING", "is not set"]
        ),
        Refusal(what: "unclosed ${", yaml: "state-dir: '/srv/${BASE'\n", key: "state-dir", says: ["without a variable name", "$${"]),
        Refusal(
            what: "region and host", yaml: "applications:\n  my-app: { region: eu1, host: broker.example.net }\n", key: "applications.my-app.host",
            says: ["region or host, not both"]
        ),
        Refusal(what: "unknown region", yaml: "applications:\n  my-app: { region: mars }\n", key: "applications.my-app.region", says: ["eu1"]),
        Refusal(what: "invalid application id", yaml: "applications:\n  My_App: { region: eu1 }\n", key: "applications.My_App", says: ["3 to 36"]),
        Refusal(what: "a v2 id without legacy-v2", yaml: "applications:\n  my_app: { region: eu1 }\n", key: "applications.my_app", says: ["not a TTN application id"]),
        Refusal(
            what: "dotted sink name", yaml: "sinks:\n  warehouse.eu: { type: file, path: p }\n", key: "sinks.warehouse.eu",
            says: ["cannot contain a dot", "warehouse-eu"]
        ),
        Refusal(what: "invalid sink name", yaml: "sinks:\n  'my sink': { type: file, path: p }\n", key: "sinks.my sink", says: ["not a sink name"]),
        Refusal(
            what: "invalid header name", yaml: "sinks:\n  s: { type: http, url: 'https://x.net/', headers: { 'Bad Name': x } }\n",
            key: "sinks.s.headers.Bad Name", says: ["not an HTTP header name"]
        ),
        Refusal(what: "empty required text", yaml: "sinks:\n  s: { type: mqtt, host: '', topic: t }\n", key: "sinks.s.host", says: ["is empty"]),
    ]

    @Test("each refused file names its key", arguments: refusals)
    func refusal(_ refusal: Refusal) async throws {
        let error = try #require(await configurationError(refusal.yaml, environment: refusal.environment))
        #expect(error.key == refusal.key, "\(error)")
        for words in refusal.says {
            #expect(error.message.contains(words), "\(error)")
        }
        #expect(error.description.hasPrefix("\(error.path): \(refusal.key): "))
    }

    @Test("text that is not YAML names the file and the line")
    func invalidYAML() async throws {
        let error = try #require(await configurationError("sinks:\n  s: { type: file\n  path: p\n"))
        #expect(error.key == nil)
        #expect(error.message.contains("YAML"), "\(error)")
        #expect(error.message.contains("did not find expected ',' or '}'"), "\(error)")
        #expect(!error.message.contains("path: p"), "the offending line is left out: \(error)")
        #expect(error.description.hasPrefix(error.path + ": "))
        #expect(error.path.hasSuffix(".yaml"))
    }

    @Test("YAML that is not a mapping is refused")
    func notAMapping() async throws {
        let error = try #require(await configurationError("- state-dir\n- sinks\n"))
        #expect(error.key == nil)
        #expect(error.message.contains("not a YAML mapping"), "\(error)")
    }

    @Test("a missing file names the path")
    func missingFile() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("absent-\(UUID().uuidString).yaml").path
        do {
            _ = try await ConfigurationFile.load(path: path, environment: [:])
            Issue.record("loaded a file that does not exist")
        } catch {
            #expect(error.key == nil)
            #expect(error.description == "\(path): no such file; check the path given to --config")
        }
    }

    @Test(
        "secrets are not in messages",
        arguments: [
            // A secret of the wrong kind.
            ("applications:\n  my-app: { api-key: [NNSXS.SECRET, x] }\n", [String: String]()),
            // A line that is not YAML.
            ("applications:\n  my-app: { api-key: \"NNSXS.SECRET }\n", [:]),
            // A misspelt secret key.
            ("applications:\n  my-app: { api_key: NNSXS.SECRET }\n", [:]),
            // A value from the environment that is refused.
            ("sinks:\n  s: { type: http, url: '${URL}' }\n", ["URL": "ftp://NNSXS.SECRET@x.net/"]),
            // A header whose value is a list.
            ("sinks:\n  s: { type: http, url: 'https://x.net/', headers: { Authorization: [Bearer, NNSXS.SECRET] } }\n", [:]),
        ]
    )
    func secretsNotShown(yaml: String, environment: [String: String]) async throws {
        let error = try #require(await configurationError(yaml, environment: environment))
        #expect(!error.description.contains("SECRET"), "\(error)")
    }
}
