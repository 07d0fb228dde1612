import Hummingbird
import NIOCore

extension MonitorServer {
    /// The Prometheus text exposition format, version 0.0.4.
    static let metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The four paths; Hummingbird answers HEAD from GET and anything else with 404.
    func makeRouter() -> Router<BasicRequestContext> {
        let router = Router(options: .autoGenerateHeadEndpoints)
        // Scrapers and probes call every few seconds: at debug they would drown the host's own lines.
        router.add(middleware: LogRequestsMiddleware(.trace))
        router.get("metrics") { [registry, beforeScrape] _, _ in
            beforeScrape()
            var text: [UInt8] = []
            registry.emit(into: &text)
            return Self.response(.ok, contentType: Self.metricsContentType, body: text)
        }
        router.get("health/live") { _, _ in
            Self.response(.ok, contentType: "text/plain; charset=utf-8", body: Array("ok".utf8))
        }
        router.get("health/ready") { [readiness] _, _ in
            let readiness = readiness()
            return Self.response(readiness.isReady ? .ok : .serviceUnavailable, contentType: "application/json", body: readiness.json)
        }
        router.get("status") { [status] _, _ in
            Self.response(.ok, contentType: "application/json", body: status())
        }
        return router
    }

    private static func response(_ status: HTTPResponse.Status, contentType: String, body: [UInt8]) -> Response {
        Response(
            status: status, headers: [.contentType: contentType, .cacheControl: "no-store"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: body))
        )
    }
}
