import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOSSL

/// `type: http`: POSTs each batch as a JSON array of ``SinkRecord/envelope``s.
///
/// Each request has `Content-Type: application/json`, the configured headers, and `Idempotency-Key` set to the
/// first envelope's id, which stays the same when a batch is sent again. A 2xx answer means delivered; any other
/// answer (redirects included), a connection error, or no complete answer within
/// ``HTTPSinkConfiguration/timeout`` throws. `https://` trusts the system's CAs, or only
/// ``HTTPSinkConfiguration/caFile`` when it is set.
///
/// The sink owns an `HTTPClient`; call ``shutdown()`` before letting the sink go.
public final class HTTPSink: Sink {
    public let name: String
    public let configuration: HTTPSinkConfiguration
    public var batchLimit: Int { configuration.batch }
    /// The URL as errors and logs show it: without user, password or query, which may hold secrets.
    private let displayURL: String
    private let client: HTTPClient
    private let logger: Logger

    /// The most of a failed answer's body that goes into the error.
    private static let bodyExcerptLength = 200

    /// - Parameter name: the sink's name in the configuration, used in errors and logs.
    /// - Throws: ``SinkError`` when the URL is not an `http://` or `https://` URL with a host, `batch` is below 1,
    ///   or the CA file cannot be read.
    public init(name: String, configuration: HTTPSinkConfiguration, logger: Logger = Logger(label: "ttn.sinks")) throws(SinkError) {
        guard let url = URLComponents(string: configuration.url), ["http", "https"].contains(url.scheme?.lowercased()),
            url.host?.isEmpty == false
        else {
            throw SinkError("sink \(name): url \(configuration.url) is not an http:// or https:// URL")
        }
        guard configuration.batch >= 1 else {
            throw SinkError("sink \(name): batch is \(configuration.batch); it must be 1 or more")
        }
        var tlsConfiguration: TLSConfiguration?
        if let caFile = configuration.caFile {
            guard FileManager.default.isReadableFile(atPath: caFile) else {
                throw SinkError("sink \(name): the CA file \(caFile) cannot be read; give the path of a PEM file")
            }
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .file(caFile)
            tlsConfiguration = tls
        }
        var shown = url
        shown.user = nil
        shown.password = nil
        shown.query = nil
        shown.fragment = nil
        self.name = name
        self.configuration = configuration
        self.displayURL = shown.string ?? configuration.url
        self.logger = logger
        var clientConfiguration = HTTPClient.Configuration(tlsConfiguration: tlsConfiguration, redirectConfiguration: .disallow)
        // A refused connection fails the delivery at once, with its reason; the delivery worker retries, with backoff.
        clientConfiguration.connectionPool.retryConnectionEstablishment = false
        self.client = HTTPClient(
            eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: clientConfiguration, backgroundActivityLogger: logger
        )
    }

    /// The request body for `records`: `[envelope,envelope,...]`.
    public static func body(for records: [SinkRecord]) -> [UInt8] {
        var body: [UInt8] = [UInt8(ascii: "[")]
        for (index, record) in records.enumerated() {
            if index > 0 { body.append(UInt8(ascii: ",")) }
            body.append(contentsOf: record.envelope.utf8)
        }
        body.append(UInt8(ascii: "]"))
        return body
    }

    public func deliver(_ records: [SinkRecord]) async throws(SinkError) {
        guard let first = records.first else { return }
        var request = HTTPClientRequest(url: configuration.url)
        request.method = .POST
        for (header, value) in configuration.headers.sorted(by: { $0.key < $1.key }) {
            request.headers.add(name: header, value: value)
        }
        request.headers.replaceOrAdd(name: "Content-Type", value: "application/json")
        request.headers.replaceOrAdd(name: "Idempotency-Key", value: first.id)
        request.body = .bytes(ByteBuffer(bytes: Self.body(for: records)))
        let prepared = request

        let answer: Answer?
        do {
            answer = try await withTimeLimit(configuration.timeout) { [client, logger] in
                try await Self.send(prepared, with: client, logger: logger)
            }
        } catch {
            throw SinkError("sink \(name): POST \(displayURL) failed: \(Self.reason(error))")
        }
        guard let answer else {
            throw SinkError("sink \(name): POST \(displayURL) got no complete answer within \(configuration.timeout)")
        }
        guard (200..<300).contains(answer.status) else {
            let excerpt = answer.bodyExcerpt.isEmpty ? "" : ": \(answer.bodyExcerpt)"
            throw SinkError("sink \(name): POST \(displayURL) answered \(answer.status) \(answer.reason)\(excerpt)")
        }
    }

    public func shutdown() async {
        do {
            try await client.shutdown()
        } catch {
            logger.warning("HTTP sink: closing the client failed", metadata: ["sink": "\(name)", "error": "\(error)"])
        }
    }

    /// Why a request failed, in words: the system's for a socket error, a hint for a TLS failure.
    private static func reason(_ error: any Error) -> String {
        switch error {
        case let error as HTTPClientError where error == .remoteConnectionClosed:
            "the receiver closed the connection without answering"
        case let error as IOError:
            "\(String(cString: strerror(error.errnoCode))) (errno \(error.errnoCode))"
        case let error as NIOSSLError:
            "TLS failed (\(error)); check that the receiver's certificate names this host and chains to the system's CAs, or to caFile"
        default:
            "\(error)"
        }
    }

    /// What the receiver answered: the status, and the start of the body for an error message.
    private struct Answer: Sendable {
        let status: Int
        let reason: String
        let bodyExcerpt: String
    }

    /// Sends `request` and reads the answer to its end (a 2xx) or as far as the error message needs (any other).
    private static func send(_ request: HTTPClientRequest, with client: HTTPClient, logger: Logger) async throws -> Answer {
        let response = try await client.execute(request, deadline: .distantFuture, logger: logger)
        let isSuccess = (200..<300).contains(response.status.code)
        var excerpt: [UInt8] = []
        for try await chunk in response.body {
            if isSuccess { continue }
            excerpt.append(contentsOf: chunk.readableBytesView.prefix(bodyExcerptLength * 4 - excerpt.count))
            if excerpt.count >= bodyExcerptLength * 4 { break }
        }
        let text = String(decoding: excerpt, as: UTF8.self).prefix(bodyExcerptLength)
        let oneLine = text.map { $0.isNewline ? " " : String($0) }.joined()
        return Answer(status: Int(response.status.code), reason: response.status.reasonPhrase, bodyExcerpt: oneLine.trimmingCharacters(in: .whitespaces))
    }
}
