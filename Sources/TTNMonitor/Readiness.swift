/// Whether the process is ready for work, as `GET /health/ready` answers: the reasons it is not, none when it is.
///
/// Each reason is a sentence for the operator that names what it is about, such as
/// `my-app: not connected to the MQTT broker`.
public struct Readiness: Sendable, Hashable {
    /// Why the process is not ready, in the order found; empty when it is ready.
    public var reasons: [String]
    /// True when nothing keeps the process from being ready.
    public var isReady: Bool { reasons.isEmpty }

    /// - Parameter reasons: why the process is not ready; none (the default) means ready.
    public init(reasons: [String] = []) {
        self.reasons = reasons
    }

    /// Ready: no reasons.
    public static let ready = Readiness()

    /// The body of `/health/ready`: `{"ready":false,"reasons":["my-app: not connected to the MQTT broker"]}`.
    var json: [UInt8] {
        var body: [UInt8] = Array(#"{"ready":"#.utf8)
        body.append(contentsOf: (isReady ? "true" : "false").utf8)
        body.append(contentsOf: #","reasons":["#.utf8)
        for (index, reason) in reasons.enumerated() {
            if index > 0 { body.append(UInt8(ascii: ",")) }
            body.appendJSONString(reason)
        }
        body.append(contentsOf: "]}".utf8)
        return body
    }
}
