import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import TTNCore
import TTNSync

/// Reads the uplinks that TTN's Storage Integration kept for one application: the only way to get back what TTN's
/// MQTT server (QoS 0, no sessions) sent while a client was away.
///
/// It asks `GET {api}/api/v3/as/applications/{app}/packages/storage/uplink_message` (or the per-device path) with
/// `after`, `before`, `limit` and `order=received_at`, authorized by `Bearer <API key>`; the answer has one
/// `{"result": {...}}` line per uplink, each holding the uplink as TTN publishes it on MQTT.
public struct StorageIntegrationClient: Sendable {
    /// The API's base address, as `https://eu1.cloud.thethings.network`.
    public let baseURL: String
    public let applicationID: String
    private let apiKey: String
    private let timeout: Duration
    private let uplinkTopic: @Sendable (_ deviceID: String) -> String

    /// - Parameters:
    ///   - baseURL: `https://<cluster>.cloud.thethings.network`, or the address of another The Things Stack.
    ///   - apiKey: a key with the right "Read application traffic"; the MQTT key of the application does.
    ///   - timeout: how long one request may take, answer included.
    ///   - uplinkTopic: the MQTT topic a device's uplinks come on, given to the fetched uplinks; by default
    ///     `v3/<app>@ttn/devices/<device>/up`.
    public init(
        baseURL: String, applicationID: String, apiKey: String, timeout: Duration = .seconds(30),
        uplinkTopic: (@Sendable (_ deviceID: String) -> String)? = nil
    ) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.applicationID = applicationID
        self.apiKey = apiKey
        self.timeout = timeout
        self.uplinkTopic = uplinkTopic ?? { "v3/\(applicationID)@ttn/devices/\($0)/up" }
    }

    /// The uplinks received after `after` (and up to `before`), oldest first, at most `limit`; of one device when
    /// `deviceID` is given. Each is checked like an uplink from MQTT, with the topic it would have had there.
    /// - Throws: ``StorageIntegrationError``: not activated (404), refused key (401, 403), no answer, or an answer
    ///   that is not the API's.
    public func uplinks(
        after: Timestamp?, before: Timestamp? = nil, deviceID: String? = nil, limit: Int
    ) async throws(StorageIntegrationError) -> [Uplink] {
        let url = requestURL(after: after, before: before, deviceID: deviceID, limit: limit)
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Authorization", value: "Bearer \(apiKey)")
        request.headers.add(name: "Accept", value: "application/json")
        let body: ByteBuffer
        let status: HTTPResponseStatus
        do {
            let response = try await HTTPClient.shared.execute(request, timeout: .nanoseconds(timeout.nanoseconds))
            status = response.status
            body = try await response.body.collect(upTo: 256 << 20)
        } catch {
            throw StorageIntegrationError(.unreachable, "the Storage Integration at \(baseURL) did not answer: \(error)")
        }
        let text = String(buffer: body)
        switch status.code {
        case 200: break
        case 401, 403:
            throw StorageIntegrationError(
                .unauthorized,
                "the Storage Integration at \(baseURL) refused the API key (HTTP \(status.code)); it needs the right "
                    + "\"Read application traffic\" for \(applicationID)"
            )
        case 404:
            throw StorageIntegrationError(
                .notActivated,
                "the Storage Integration is not activated for application \(applicationID) at \(baseURL) (HTTP 404); "
                    + "activate it in the Console (Integrations > Storage Integration > Activate), or turn backfill off "
                    + "(--backfill off). If it is activated, check that --api-url names the application's cluster"
            )
        default:
            throw StorageIntegrationError(
                .badAnswer, "the Storage Integration at \(baseURL) answered HTTP \(status.code): \(text.prefix(200))"
            )
        }
        return try Self.parse(Array(body.readableBytesView), uplinkTopic: uplinkTopic)
    }

    /// The uplinks of an answer's body: one `{"result": {...}}` per line (blank lines allowed).
    /// - Throws: ``StorageIntegrationError/Kind/badAnswer`` naming the line that is not one.
    package static func parse(
        _ body: [UInt8], uplinkTopic: (_ deviceID: String) -> String
    ) throws(StorageIntegrationError) -> [Uplink] {
        var uplinks: [Uplink] = []
        for (number, line) in body.split(separator: UInt8(ascii: "\n")).enumerated() {
            guard line.contains(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\r") }) else { continue }
            do {
                uplinks.append(try uplink(fromLine: Array(line), uplinkTopic: uplinkTopic))
            } catch {
                throw StorageIntegrationError(.badAnswer, "line \(number + 1) of the Storage Integration's answer: \(error.message)")
            }
        }
        return uplinks
    }

    private static func uplink(fromLine line: [UInt8], uplinkTopic: (_ deviceID: String) -> String) throws(TTNError) -> Uplink {
        let tape: JSONTape
        do {
            tape = try JSONTape(line)
        } catch {
            throw .invalidMessage("not JSON: \(error)")
        }
        guard tape.elements[0].kind == .object, let result = tape.member("result", of: 0), tape.elements[result].kind == .object else {
            throw .invalidMessage("not an object with a \"result\" object")
        }
        let element = tape.elements[result]
        let json = line[element.start..<element.end]
        // The topic it would have come on, so that handlers see the same as for a live uplink.
        var uplink = try Uplink(json: json)
        if let device = uplink.deviceID { uplink = try Uplink(json: json, topic: uplinkTopic(device)) }
        uplink.isBackfilled = true
        return uplink
    }

    private func requestURL(after: Timestamp?, before: Timestamp?, deviceID: String?, limit: Int) -> String {
        var components = URLComponents()
        var query = [URLQueryItem(name: "order", value: "received_at"), URLQueryItem(name: "limit", value: String(limit))]
        if let after { query.append(URLQueryItem(name: "after", value: after.description)) }
        if let before { query.append(URLQueryItem(name: "before", value: before.description)) }
        components.queryItems = query
        let device = deviceID.map { "/devices/\($0)" } ?? ""
        return "\(baseURL)/api/v3/as/applications/\(applicationID)\(device)/packages/storage/uplink_message\(components.string ?? "")"
    }
}

/// Why the Storage Integration gave no uplinks.
public struct StorageIntegrationError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// The application has no Storage Integration (404): backfill cannot work until it is activated.
        case notActivated
        /// The key was refused (401 or 403).
        case unauthorized
        /// No answer: the network, DNS, TLS or the timeout.
        case unreachable
        /// An answer that is not the API's: another status, or a body that is not uplinks.
        case badAnswer
    }

    public let kind: Kind
    public let message: String
    public var description: String { message }

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
}
