import CoreMetrics
import Prometheus
import Testing

import TTNMonitor

@Suite("swift-metrics on Prometheus")
struct MonitorMetricsTests {
    @Test("timers get the buckets from 50 µs to 10 s")
    func timerBuckets() {
        let registry = PrometheusCollectorRegistry()
        let timer = Timer(label: "ttn_handler_duration_seconds", dimensions: [("handler", "decode.lua")], factory: MonitorMetrics.factory(registry: registry))
        timer.recordNanoseconds(75_000)
        timer.recordMilliseconds(3)
        let text = registry.emitToString()
        let buckets = text.split(separator: "\n").filter { $0.hasPrefix("ttn_handler_duration_seconds_bucket{") }
        #expect(buckets.count == MonitorMetrics.durationBuckets.count + 1)
        #expect(buckets.first == #"ttn_handler_duration_seconds_bucket{handler="decode.lua",le="0.00005"} 0"#)
        #expect(buckets.contains(#"ttn_handler_duration_seconds_bucket{handler="decode.lua",le="0.0001"} 1"#))
        #expect(buckets.contains(#"ttn_handler_duration_seconds_bucket{handler="decode.lua",le="0.005"} 2"#))
        #expect(buckets.last == #"ttn_handler_duration_seconds_bucket{handler="decode.lua",le="+Inf"} 2"#)
        #expect(MonitorMetrics.durationBuckets.first == .microseconds(50) && MonitorMetrics.durationBuckets.last == .seconds(10))
        #expect(MonitorMetrics.durationBuckets == MonitorMetrics.durationBuckets.sorted())
    }

    /// The only test that bootstraps the process-wide MetricsSystem; MonitorMetrics.bootstrap() makes a second call
    /// from anywhere else in the test process harmless.
    @Test("bootstrap wires the global MetricsSystem once and returns the same registry every time")
    func bootstrap() {
        let registry = MonitorMetrics.bootstrap()
        #expect(MonitorMetrics.bootstrap() === registry)
        Counter(label: "ttn_monitor_bootstrap_test_total").increment(by: 2)
        #expect(registry.emitToString().contains("ttn_monitor_bootstrap_test_total 2\n"))
    }
}
