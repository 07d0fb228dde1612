import Foundation
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// scripts/http-receiver, started for one test: records what the HTTP sink POSTs, and answers as told.
struct HTTPReceiver {
    /// One recorded envelope, with the request it came in.
    struct Received {
        let request: Int
        let idempotencyKey: String?
        let contentType: String?
        let headers: [String: String]
        let envelope: [String: Any]
    }

    let port: Int
    let directory: String
    let scheme: String
    private let process: ChildProcess

    /// Starts the receiver, over https with `certificate` and `key` when given, and waits for its port.
    init(certificate: String? = nil, key: String? = nil) async throws {
        let server = try await ScriptServer("http-receiver") { directory in
            var arguments = ["--out", "\(directory)/received.jsonl"]
            if let certificate, let key { arguments += ["--tls-cert", certificate, "--tls-key", key] }
            return arguments
        }
        (process, port, directory) = (server.process, server.port, server.directory)
        scheme = certificate == nil ? "http" : "https"
    }

    /// The URL envelopes are POSTed to.
    func url(host: String = "127.0.0.1") -> String { "\(scheme)://\(host):\(port)/ingest" }

    /// Tells the receiver to answer `ok`, `fail`, `hang` or `refuse` (scripts/http-receiver explains each).
    func setMode(_ mode: String, status: Int? = nil) async throws {
        var address = "http://127.0.0.1:\(port)/control?mode=\(mode)"
        if let status { address += "&status=\(status)" }
        let (_, response) = try await URLSession.shared.data(from: try #require(URL(string: address)))
        try #require((response as? HTTPURLResponse)?.statusCode == 200, "the receiver refused mode \(mode)")
    }

    /// Everything recorded so far, oldest first.
    func received() throws -> [Received] {
        guard let text = try? String(contentsOfFile: "\(directory)/received.jsonl", encoding: .utf8) else { return [] }
        return try text.split(separator: "\n").map { line in
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            return Received(
                request: try #require(object["request"] as? Int), idempotencyKey: object["idempotency_key"] as? String,
                contentType: object["content_type"] as? String, headers: object["headers"] as? [String: String] ?? [:],
                envelope: try #require(object["envelope"] as? [String: Any])
            )
        }
    }

    /// Stops the receiver and removes its files; quick, so it may run in a `defer`.
    func stop() {
        process.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
