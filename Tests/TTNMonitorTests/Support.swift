import AsyncHTTPClient
import Foundation
import Logging
import Prometheus
import ServiceLifecycle
import Synchronization
import Testing

import TTNMonitor

/// A logger that drops everything, for the service group around the server under test.
let quietLogger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

/// Runs a ``MonitorServer`` on 127.0.0.1 and a free port inside a `ServiceGroup`, calls `body` with the port, then
/// shuts the group down gracefully and returns once the server's `run()` has returned.
func withMonitorServer<Result: Sendable>(
    registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
    beforeScrape: @escaping @Sendable () -> Void = {},
    readiness: @escaping @Sendable () -> Readiness = { .ready },
    status: @escaping @Sendable () -> [UInt8] = { Array("{}".utf8) },
    logger: Logger = quietLogger,
    _ body: (Int) async throws -> Result
) async throws -> Result {
    let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
    let server = MonitorServer(
        address: MonitorAddress(host: "127.0.0.1", port: 0), registry: registry, beforeScrape: beforeScrape,
        readiness: readiness, status: status, logger: logger, onListening: { portContinuation.yield($0) }
    )
    let group = ServiceGroup(services: [server], logger: quietLogger)
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask {
            defer { portContinuation.finish() }
            try await group.run()
        }
        var iterator = ports.makeAsyncIterator()
        let port = try #require(await iterator.next(), "the server stopped before it listened")
        do {
            let result = try await body(port)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return result
        } catch {
            await group.triggerGracefulShutdown()
            throw error
        }
    }
}

/// What the server answered.
struct Answer {
    var status: Int
    var contentType: String?
    var contentLength: String?
    var body: String
}

/// The client of every test: a refused connection fails at once instead of being tried again until the timeout.
private let client = {
    var configuration = HTTPClient.Configuration()
    configuration.connectionPool.retryConnectionEstablishment = false
    return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
}()

/// Requests `path` from the server on 127.0.0.1 at `port`, GET unless `head`.
func fetch(_ path: String, port: Int, head: Bool = false) async throws -> Answer {
    var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
    request.method = head ? .HEAD : .GET
    let response = try await client.execute(request, timeout: .seconds(60))
    let body = try await response.body.collect(upTo: 1 << 20)
    return Answer(
        status: Int(response.status.code), contentType: response.headers.first(name: "content-type"),
        contentLength: response.headers.first(name: "content-length"), body: String(buffer: body)
    )
}

/// `text` parsed as a JSON object.
func jsonObject(_ text: some StringProtocol) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "not a JSON object: \(text)")
}

/// A value that a test changes while the server reads it, behind a lock.
final class Shared<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) { mutex = Mutex(value) }

    var value: Value {
        get { mutex.withLock { $0 } }
        set { mutex.withLock { $0 = newValue } }
    }

    /// Runs `body` on the value under the lock.
    func update<Result: Sendable>(_ body: (inout Value) -> Result) -> Result { mutex.withLock { body(&$0) } }
}
