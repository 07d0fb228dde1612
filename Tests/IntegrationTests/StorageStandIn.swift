import Foundation
import TTNSync
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// scripts/storage-stand-in, started for one test: The Things Stack's Storage Integration API on loopback, with the
/// uplinks it captured from a broker or was given through ``store(_:application:)``.
struct StorageStandIn {
    /// One API request the stand-in answered (`GET /stand-in/requests`).
    struct Request: Sendable {
        let path: String
        /// The query as sent, and decoded (the first value of each parameter).
        let query: String
        let parameters: [String: String]
        let status: Int
        /// How many messages it answered (for a `/count`: how many devices).
        let results: Int
    }

    /// What `GET /stand-in/status` says about the capture from the broker.
    struct Status: Sendable {
        /// mosquitto_sub has subscribed (it stays so while a dropped connection is not yet noticed).
        let capturing: Bool
        /// How often mosquitto_sub subscribed: once more after each reconnect.
        let subscriptions: Int
        let captured: Int
        let mosquittoSubStarts: Int
    }

    /// An answer of the API.
    struct Answer: Sendable {
        let status: Int
        let contentType: String?
        let body: [UInt8]

        /// The body's non-empty lines: one `{"result":...}` each for a stream.
        var lines: [[UInt8]] { body.split(separator: UInt8(ascii: "\n")).map(Array.init) }

        /// The body as a JSON object (an error, or a count), if it is one.
        var object: [String: Any]? { try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] }
    }

    let port: Int
    let directory: String
    private let process: ChildProcess

    /// The base URL, e.g. `http://127.0.0.1:PORT`; the API is under `/api/v3`.
    var url: String { "http://127.0.0.1:\(port)" }

    /// The log of the stand-in (one line per request, and what mosquitto_sub said).
    var log: String { (try? String(contentsOfFile: "\(directory)/log", encoding: .utf8)) ?? "" }

    /// Starts the stand-in accepting `key`, with the integration activated for `applications`, showing a message
    /// `delay` after it is stored. With `broker` (the port of a broker on 127.0.0.1) it captures the uplinks
    /// published there, as the network user; then this returns once mosquitto_sub has subscribed.
    init(key: String = Broker.apiKey, applications: [String], delay: Duration = .zero, broker: Int? = nil) async throws {
        var arguments = ["--key", key, "--delay", "\(delay.timeInterval)"]
        arguments += applications.flatMap { ["--app", $0] }
        if let broker {
            arguments += ["--broker-host", "127.0.0.1", "--broker-port", "\(broker)", "--broker-user", Broker.networkUser]
            arguments += ["--broker-password", Broker.networkPassword]
        }
        let server = try await ScriptServer("storage-stand-in") { _ in arguments }
        (process, port, directory) = (server.process, server.port, server.directory)
        if broker != nil {
            let capturing = try await Self.poll { try await self.status().capturing }
            if !capturing { process.stop() }
            try #require(capturing, "mosquitto_sub did not subscribe; see \(directory)/log")
        }
    }

    /// Stores `uplinkJSON` (one ApplicationUp object, or several on lines of their own) as the network's
    /// Application Server would, under `application` or else the one its identifiers name. Returns how many were
    /// stored: a message stored before is not stored again.
    @discardableResult
    func store(_ uplinkJSON: [UInt8], application: String? = nil) async throws -> Int {
        var address = "\(url)/stand-in/uplinks"
        if let application { address += "?app=\(application)" }
        var request = URLRequest(url: try #require(URL(string: address)))
        request.httpMethod = "POST"
        request.httpBody = Data(uplinkJSON)
        let answer = try await Self.send(request)
        try #require(answer.status == 200, "the stand-in refused the uplink: \(String(decoding: answer.body, as: UTF8.self))")
        return try #require(answer.object?["stored"] as? Int)
    }

    /// How many messages are stored for `application` (or for all), whether the API shows them yet or not.
    func count(application: String? = nil) async throws -> Int {
        var address = "\(url)/stand-in/count"
        if let application { address += "?app=\(application)" }
        let answer = try await Self.send(URLRequest(url: try #require(URL(string: address))))
        return try #require(Int(String(decoding: answer.body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)))
    }

    /// The API requests answered so far, oldest first.
    func requests() async throws -> [Request] {
        let answer = try await Self.send(URLRequest(url: try #require(URL(string: "\(url)/stand-in/requests"))))
        let list = try #require(try JSONSerialization.jsonObject(with: Data(answer.body)) as? [[String: Any]])
        return try list.map { entry in
            Request(
                path: try #require(entry["path"] as? String), query: try #require(entry["query"] as? String),
                parameters: try #require(entry["parameters"] as? [String: String]),
                status: try #require(entry["status"] as? Int), results: try #require(entry["results"] as? Int)
            )
        }
    }

    func status() async throws -> Status {
        let answer = try await Self.send(URLRequest(url: try #require(URL(string: "\(url)/stand-in/status"))))
        let object = try #require(answer.object)
        return Status(
            capturing: try #require(object["capturing"] as? Bool), subscriptions: try #require(object["subscriptions"] as? Int),
            captured: try #require(object["captured"] as? Int), mosquittoSubStarts: try #require(object["mosquitto_sub_starts"] as? Int)
        )
    }

    /// `GET` of the API's stored uplinks (`type` uplink_message) of `application`, or of its `device`, or their
    /// `/count`; `key` nil sends no Authorization header.
    func uplinks(
        application: String, device: String? = nil, count: Bool = false, query: [String: String] = [:],
        key: String? = Broker.apiKey, accept: String? = nil
    ) async throws -> Answer {
        var components = try #require(URLComponents(string: url))
        components.path = "/api/v3/as/applications/\(application)" + (device.map { "/devices/\($0)" } ?? "")
            + "/packages/storage/uplink_message" + (count ? "/count" : "")
        if !query.isEmpty {
            components.queryItems = query.sorted { $0.key < $1.key }.map { URLQueryItem(name: $0.key, value: $0.value) }
            // URLComponents leaves `+` (of a time zone offset) as is, which a server decodes as a space.
            components.percentEncodedQuery = components.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
        }
        var request = URLRequest(url: try #require(components.url))
        if let key { request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization") }
        if let accept { request.setValue(accept, forHTTPHeaderField: "Accept") }
        return try await Self.send(request)
    }

    /// Stops the stand-in (and its mosquitto_sub) and removes its files; quick, so it may run in a `defer`.
    func stop() {
        process.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// No cache: the same GET must ask the stand-in again.
    private static let session: URLSession = {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.urlCache = nil
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        return URLSession(configuration: configuration)
    }()

    private static func send(_ request: URLRequest) async throws -> Answer {
        let (data, response) = try await session.data(for: request)
        let http = try #require(response as? HTTPURLResponse)
        return Answer(status: http.statusCode, contentType: http.value(forHTTPHeaderField: "Content-Type"), body: [UInt8](data))
    }

    /// Asks `condition` (which may ask the stand-in) every 20 ms until it holds or `timeout` passes; whether it held.
    /// The timeout only bounds how long a failing test waits.
    static func poll(timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async rethrows -> Bool {
        let deadline = ContinuousClock.now + timeout * Broker.timeScale
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return try await condition()
    }
}
