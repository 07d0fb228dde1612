import Foundation
import Synchronization
import TTNSync
import Testing

@testable import TTNMQTT

/// The TTN-like mosquitto broker started by scripts/test (scripts/start-broker).
enum Broker {
    static let environment = ProcessInfo.processInfo.environment
    static let port = environment["TTN_BROKER_PORT"].flatMap(Int.init)
    static let tlsPort = environment["TTN_BROKER_TLS_PORT"].flatMap(Int.init)
    static let caFile = environment["TTN_BROKER_CA_FILE"]
    static let wrongCAFile = environment["TTN_BROKER_WRONG_CA_FILE"]
    static let apiKey = environment["TTN_BROKER_API_KEY"] ?? ""
    static let networkUser = environment["TTN_BROKER_NETWORK_USER"] ?? "ttn-network"
    static let networkPassword = environment["TTN_BROKER_NETWORK_PASSWORD"] ?? ""
    /// Stretches the bounds of ``eventually(timeout:_:)`` for sanitizer runs, which are several times slower
    /// (scripts/test sets TTN_TEST_TIME_SCALE for them). A bound is how long a failing test waits, never how fast a
    /// passing one must be.
    static let timeScale = environment["TTN_TEST_TIME_SCALE"].flatMap(Double.init).map { max($0, 1) } ?? 1
    /// Integration tests run when a broker is configured, and always in CI, where a missing broker must fail.
    static let shouldRun = port != nil || environment["CI"] != nil
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    private static let nextApplication = Atomic(0)

    /// A fresh application id (`test-app-NN`) so tests running in parallel never see each other's traffic.
    static func application() -> String {
        let number = nextApplication.add(1, ordering: .relaxed).newValue
        precondition(number <= 80, "scripts/start-broker creates test-app-01...80; add more users there")
        return String(format: "test-app-%02d", number)
    }

    /// The path of a program from the PATH, e.g. `mosquitto_sub` (scripts/setup installs mosquitto-clients).
    static func executable(_ name: String) throws -> String {
        let directories = (environment["PATH"] ?? "/usr/bin").split(separator: ":")
        return try #require(
            directories.map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) },
            "\(name) is not installed; scripts/setup installs it"
        )
    }

    static func requirePort() throws -> Int {
        try #require(port, "No broker: run the tests through scripts/test, which starts one (TTN_BROKER_PORT).")
    }

    /// A client for `application` on the test broker, through the seed's constructor.
    static func client(_ application: String, device: String? = nil, key: String = apiKey) -> MQTTClient {
        MQTTClient(application, "70B3D57ED0000000", key, device)
    }
}

/// The network's side of the broker: publishes uplinks as TTN would and records what applications send.
final class NetworkSide: ConnectionObserver {
    let connection: MosquittoConnection
    private let received = Locked<[ReceivedMessage]>([])

    init(port: Int, watching filters: [String] = []) throws {
        connection = try Self.connection(port: port, filters: filters, name: "network")
        connection.addObserver(self)
    }

    /// A connection to the test broker as the network's user, subscribed to `filters`; `name` prefixes its client
    /// id and labels its log.
    static func connection(port: Int, filters: [String], name: String) throws -> MosquittoConnection {
        let key = ConnectionKey(
            server: .init(host: "127.0.0.1", port: port), username: Broker.networkUser,
            password: Broker.networkPassword, tls: .disabled, legacyV2: false
        )
        let settings = MosquittoConnection.Settings(
            keepAlive: 30, connectTimeout: .seconds(10) * Broker.timeScale, minimumReconnectDelay: .milliseconds(100),
            maximumReconnectDelay: .seconds(1), clientID: "\(name)-\(UUID().uuidString.prefix(8))"
        )
        return try MosquittoConnection(key: key, settings: settings, filters: filters, logger: .init(label: name))
    }

    func publishUplink(application: String, device: String, json: [UInt8]) throws {
        try connection.publish(topic: "v3/\(application)@ttn/devices/\(device)/up", payload: json, qos: 1)
    }

    func publish(topic: String, payload: [UInt8]) throws {
        try connection.publish(topic: topic, payload: payload, qos: 1)
    }

    /// Copied under the lock, as `LogCapture.entries` explains.
    var messages: [ReceivedMessage] { received.withLock { $0.map { $0 } } }

    /// Waits until `count` messages arrived (or 10 s passed) and returns what arrived.
    func waitForMessages(_ count: Int) async -> [ReceivedMessage] {
        _ = await eventually { self.messages.count >= count }
        return messages
    }

    func close() { connection.close() }

    func connectionDidReceive(_ message: ReceivedMessage) { received.withLock { $0.append(message) } }
    func connectionDidFinishBurst() {}
    func connectionDidSubscribe(sessionPresent: Bool) {}
    func connectionDidPublish(messageID: Int) {}
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held. Not a timing assertion:
/// the timeout only bounds how long a failing test waits.
func eventually(timeout: Duration = .seconds(10), _ condition: @Sendable () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout * Broker.timeScale
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}

/// Collects values from any thread.
final class Recorder<Value: Sendable>: Sendable {
    private let values = Locked<[Value]>([])
    func append(_ value: Value) { values.withLock { $0.append(value) } }
    /// Copied under the lock, as `LogCapture.entries` explains.
    var all: [Value] { values.withLock { $0.map { $0 } } }
    var count: Int { values.withLock { $0.count } }
}

/// A child process, started with posix_spawn. (Foundation's `Process.waitUntilExit` can hang here when the
/// child leaves a daemon running.) Its output goes to a file, or to /dev/null.
struct ChildProcess {
    let pid: pid_t

    struct SpawnError: Error { let code: Int32 }

    init(_ path: String, _ arguments: [String], environment: [String: String], output: String = "/dev/null") throws {
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // The test thread may block signals; the child must not inherit that mask, or SIGTERM cannot stop it.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
        var pid: pid_t = 0
        let code = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
        guard code == 0 else { throw SpawnError(code: code) }
        self.pid = pid
    }

    func signal(_ number: Int32) { kill(pid, number) }

    /// Waits for the child; its exit status, or 128 + the signal that ended it. Blocks the calling thread: for
    /// short waits, or where no `await` is possible.
    func wait() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        return Self.exitStatus(status)
    }

    /// Waits for the child without holding a thread: the tests share a cooperative pool of one thread per core,
    /// and a few blocked threads would stall every other test's waits.
    func exitStatus() async -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 {
            try? await Task.sleep(for: .milliseconds(10))
        }
        return Self.exitStatus(status)
    }

    /// Kills the child if it still runs, and reaps it: for a `defer`, so that a failed test leaves no process behind.
    func stop() {
        var status: Int32 = 0
        // 0: the child runs and is not reaped, so `pid` is still ours to kill; otherwise it was reaped already.
        guard waitpid(pid, &status, WNOHANG) == 0 else { return }
        kill(pid, SIGKILL)
        _ = wait()
    }

    private static func exitStatus(_ status: Int32) -> Int32 {
        status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    }
}

/// A test server of scripts/ (`http-receiver`, `storage-stand-in`) started in a fresh temporary directory, which
/// holds its log and the port it writes with `--port-file`.
struct ScriptServer {
    let process: ChildProcess
    let port: Int
    let directory: String

    /// Creates the directory, starts `scripts/<script>` with `arguments(directory)` plus `--port-file`, and waits for
    /// the port; stops the script and fails the test when none comes.
    init(_ script: String, arguments: (_ directory: String) -> [String]) async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("\(script)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        let portFile = "\(directory)/port"
        process = try ChildProcess(
            Broker.repository.appendingPathComponent("scripts/\(script)").path, arguments(directory) + ["--port-file", portFile],
            environment: ProcessInfo.processInfo.environment, output: "\(directory)/log"
        )
        let started = await eventually { FileManager.default.fileExists(atPath: portFile) }
        if !started { process.stop() }
        try #require(started, "scripts/\(script) did not start; see \(directory)/log")
        let text = try String(contentsOfFile: portFile, encoding: .utf8)
        port = try #require(Int(text.trimmingCharacters(in: .whitespacesAndNewlines)))
    }
}
