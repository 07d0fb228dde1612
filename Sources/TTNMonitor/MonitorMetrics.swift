import CoreMetrics
import Prometheus

/// swift-metrics on Prometheus: what `Counter`, `Gauge`, `Meter` and `Timer` record, ``MonitorServer`` shows.
public enum MonitorMetrics {
    /// The histogram buckets of every `Timer`, from 50 µs to 10 s in 1-2.5-5 steps.
    ///
    /// Lua handlers take 5 to 100 µs, handlers that call HTTP take milliseconds, and a handler past a second is
    /// stuck on something: the buckets split each of these, with 17 of them so that a histogram per handler stays
    /// cheap to scrape. swift-prometheus's own default starts at 5 ms, below which every Lua handler would vanish.
    public static let durationBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500),
        .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]

    /// A factory that makes swift-metrics' metrics in `registry`, with ``durationBuckets`` for timers.
    ///
    /// Tests pass it to the metrics' `factory:` initializers (`Counter(label:dimensions:factory:)`) instead of
    /// bootstrapping the process-wide `MetricsSystem`.
    public static func factory(registry: PrometheusCollectorRegistry) -> PrometheusMetricsFactory {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = durationBuckets
        return factory
    }

    /// Bootstraps `MetricsSystem` with ``factory(registry:)`` over a new registry, once, and returns that registry.
    ///
    /// Later calls bootstrap nothing and return the same registry, so `ttn-host` and tests may call it as often as
    /// they like.
    ///
    /// - Important: `MetricsSystem.bootstrap` may be called once per process and traps on a second call: nothing
    ///   else in the process may bootstrap `MetricsSystem`, before or after.
    @discardableResult
    public static func bootstrap() -> PrometheusCollectorRegistry {
        bootstrapped
    }

    /// Initialized once per process, on first use, under the runtime's lock for global initializers.
    private static let bootstrapped: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(factory(registry: registry))
        return registry
    }()
}
