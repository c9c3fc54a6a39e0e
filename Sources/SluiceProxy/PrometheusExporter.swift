import NIOConcurrencyHelpers
import Prometheus

/// Publishes the proxy's per-version counters in the Prometheus text format, through swift-prometheus.
///
/// The hot path never touches the registry: at each scrape the exporter drains the per-loop counters
/// and adds what happened since the last scrape. Latency goes out as quantile gauges over the time
/// since the last scrape (`quantile` label, as a Prometheus summary), computed from the HdrHistograms.
public final class PrometheusExporter: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let metrics: ProxyMetrics
    /// Serialises scrapes, so two at once cannot count one delta twice.
    private let scraping = NIOLock()

    public init(metrics: ProxyMetrics, registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.metrics = metrics
        self.registry = registry
    }

    /// The registry's exposition after adding everything since the last call.
    public func render() async throws -> String {
        let delta = try await metrics.takeUnexported()
        let inFlight = try await metrics.inFlight()
        return scraping.withLock {
            for (key, window) in delta.sorted(by: { $0.key.description < $1.key.description }) {
                record(key, window)
            }
            for (key, count) in inFlight {
                registry.makeGauge(descriptor: Name.inFlight, labels: labels(key)).set(Double(count))
            }
            var buffer: [UInt8] = []
            registry.emit(into: &buffer)
            return String(decoding: buffer, as: UTF8.self)
        }
    }

    /// Computed, because descriptors are not `Sendable`.
    private enum Name {
        static var requests: MetricNameDescriptor { .init(namespace: "sluice", metricName: "requests", unitName: "total",
                                                   helpText: "Requests routed to a version, mirrors included.") }
        static var responses: MetricNameDescriptor { .init(namespace: "sluice", metricName: "responses", unitName: "total",
                                                    helpText: "Responses by status class; proxy errors count as 5xx.") }
        static var upstreamErrors: MetricNameDescriptor { .init(namespace: "sluice", metricName: "upstream_errors", unitName: "total",
                                                         helpText: "Requests the proxy answered for the upstream: connect, reset, timeout, noHealthyEndpoint.") }
        static var mirrored: MetricNameDescriptor { .init(namespace: "sluice", metricName: "mirrored_requests", unitName: "total",
                                                   helpText: "Requests copied to a version as shadow traffic.") }
        static var mirrorsDropped: MetricNameDescriptor { .init(namespace: "sluice", metricName: "mirrors_dropped", unitName: "total",
                                                         helpText: "Shadow copies dropped because the shadow could not keep up.") }
        static var connects: MetricNameDescriptor { .init(namespace: "sluice", metricName: "upstream_connects", unitName: "total",
                                                   helpText: "Upstream connections opened for requests.") }
        static var connectWait: MetricNameDescriptor { .init(namespace: "sluice", metricName: "upstream_connect_wait", unitName: "seconds_total",
                                                      helpText: "Time requests waited for new upstream connections, kept out of request_duration.") }
        static var inFlight: MetricNameDescriptor { .init(namespace: "sluice", metricName: "requests_in_flight", unitName: "",
                                                   helpText: "Requests being served right now.") }
        static var latency: MetricNameDescriptor { .init(namespace: "sluice", metricName: "request_duration", unitName: "seconds",
                                                  helpText: "Latency quantiles since the previous scrape.") }
        static var firstByte: MetricNameDescriptor { .init(namespace: "sluice", metricName: "time_to_first_byte", unitName: "seconds",
                                                    helpText: "Quantiles of the time to the response's first byte since the previous scrape.") }
    }

    private func labels(_ key: MetricKey) -> [(String, String)] {
        [("deployment", key.route), ("version", key.version)]
    }

    private func record(_ key: MetricKey, _ window: VersionWindow) {
        let base = labels(key)
        registry.makeCounter(descriptor: Name.requests, labels: base).increment(by: Int64(window.requests))
        for statusClass in 1...5 {
            registry.makeCounter(descriptor: Name.responses, labels: base + [("class", "\(statusClass)xx")])
                .increment(by: Int64(window.statusClasses[statusClass]))
        }
        for kind in UpstreamErrorKind.allCases {
            registry.makeCounter(descriptor: Name.upstreamErrors, labels: base + [("kind", kind.rawValue)])
                .increment(by: Int64(window.upstreamErrors[kind] ?? 0))
        }
        registry.makeCounter(descriptor: Name.mirrored, labels: base).increment(by: Int64(window.mirrored))
        registry.makeCounter(descriptor: Name.mirrorsDropped, labels: base).increment(by: Int64(window.mirrorsDropped))
        registry.makeCounter(descriptor: Name.connects, labels: base).increment(by: Int64(window.connects))
        registry.makeCounter(descriptor: Name.connectWait, labels: base).increment(by: Double(window.connectMicros) / 1_000_000)
        for (name, histogram) in [(Name.latency, window.latency), (Name.firstByte, window.firstByte)] where histogram.totalCount > 0 {
            for quantile in [0.5, 0.9, 0.99] {
                registry.makeGauge(descriptor: name, labels: base + [("quantile", "\(quantile)")])
                    .set(Double(histogram.valueAtPercentile(quantile * 100)) / 1_000_000)
            }
        }
    }
}
