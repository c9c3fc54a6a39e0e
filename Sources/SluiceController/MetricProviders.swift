import AsyncHTTPClient
import Foundation
import Histogram
import NIOCore
import NIOHTTP1
import SluiceAnalysis
import SluiceProxy
import SluiceRollout
import SluiceSpec

/// Prometheus and webhook metrics, through async-http-client. Builtin metrics are read from the proxy
/// by `AnalysisRunner` itself, for both versions at once.
public struct HTTPMetricsSource: MetricsSource {
    /// Answers larger than this are refused, so a runaway query cannot exhaust memory.
    static let maxBody = 1 << 20
    let client: HTTPClient

    public init(client: HTTPClient = .shared) {
        self.client = client
    }

    public func sample(_ metric: MetricSpec, context: MeasurementContext) async -> MetricReading {
        switch metric.source {
        case .prometheus(let query): await prometheus(query, context: context)
        case .webhook(let hook): await webhook(hook, context: context)
        case .builtin: .error("builtin metrics are measured from the proxy")
        case .shadow: .error("shadow metrics are measured from the proxy's pairs")
        }
    }

    // MARK: Prometheus

    /// An instant query (`GET /api/v1/query`). A vector with one series or a scalar gives its value; an
    /// empty vector is "no data", never zero; several series are an error, since there is no telling
    /// which one to judge.
    func prometheus(_ query: PrometheusQuery, context: MeasurementContext) async -> MetricReading {
        let promQL = context.render(query.query)
        let url = "\(query.address)/api/v1/query?query=\(Self.percentEncoded(promQL))"
        do {
            let response = try await client.execute(HTTPClientRequest(url: url), timeout: .init(query.timeout))
            let body = try await response.body.collect(upTo: Self.maxBody)
            return Self.parsePrometheus(status: Int(response.status.code), body: Data(buffer: body), query: promQL)
        } catch {
            return .error("prometheus at \(query.address): \(Self.describe(error, timeout: query.timeout))")
        }
    }

    static func parsePrometheus(status: Int, body: Data, query: String) -> MetricReading {
        let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any]
        guard status == 200, let object, object["status"] as? String == "success" else {
            let why = object?["error"] as? String ?? String(decoding: body.prefix(200), as: UTF8.self)
            return .error("prometheus answered \(status) to '\(query)': \(why)")
        }
        guard let data = object["data"] as? [String: Any], let type = data["resultType"] as? String else {
            return .error("prometheus answer has no data.resultType")
        }
        switch type {
        case "scalar":
            return .value(sampleValue(data["result"]))
        case "vector":
            let series = data["result"] as? [[String: Any]] ?? []
            guard series.count <= 1 else {
                return .error("query '\(query)' returned \(series.count) series; aggregate it to one, for example with sum()")
            }
            return .value(series.first.flatMap { sampleValue($0["value"]) })
        default:
            return .error("query '\(query)' returned a \(type); use an instant vector or scalar")
        }
    }

    /// `[timestamp, "value"]`; Prometheus writes values as strings, NaN included.
    static func sampleValue(_ pair: Any?) -> Double? {
        guard let pair = pair as? [Any], pair.count == 2, let text = pair[1] as? String else { return nil }
        return Double(text)
    }

    static func percentEncoded(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }

    // MARK: Webhooks

    /// POSTs the context as JSON. 2xx passes and non-2xx fails (the judge decides, with the status and
    /// the body's start); a JSON body `{"value": x}` is judged by the metric's conditions; a timeout or
    /// a refused connection is an error.
    func webhook(_ hook: Webhook, context: MeasurementContext) async -> MetricReading {
        var request = HTTPClientRequest(url: "\(hook.endpoint)\(hook.path)")
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.headers.add(name: "user-agent", value: "sluice")
        for (name, value) in hook.headers.sorted(by: { $0.key < $1.key }) { request.headers.add(name: name, value: value) }
        do {
            request.body = .bytes(ByteBuffer(data: try Self.webhookBody(context)))
            let response = try await client.execute(request, timeout: .init(hook.timeout))
            let body = try await response.body.collect(upTo: Self.maxBody)
            let text = String(buffer: body)
            let value = (try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any])?["value"] as? Double
            return .webhook(status: Int(response.status.code), value: value, body: text.trimmingCharacters(in: .whitespacesAndNewlines))
        } catch {
            return .error("webhook \(hook.url): \(Self.describe(error, timeout: hook.timeout))")
        }
    }

    static func webhookBody(_ context: MeasurementContext) throws -> Data {
        let iso = ISO8601DateFormatter()
        iso.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let date = { (instant: Instant) in iso.string(from: Date(timeIntervalSince1970: Double(instant.milliseconds) / 1000)) }
        let body: [String: Any] = [
            "deployment": context.deployment, "route": context.route, "stable": context.stable, "candidate": context.candidate,
            "weights": context.weights, "step": context.step, "analysis": context.analysis, "metric": context.metric,
            "window": ["start": date(context.windowStart), "end": date(context.windowEnd), "seconds": context.windowSeconds],
        ]
        return try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
    }

    static func describe(_ error: any Error, timeout: Duration) -> String {
        if let error = error as? HTTPClientError, error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            return "timed out after \(timeout.specDescription)"
        }
        if let error = error as? IOError { return "cannot connect: \(error.description)" }
        return "\(error)"
    }
}

/// The proxy's per-version windows as the judges' samples.
enum BuiltinSamples {
    static func sample(_ window: VersionWindow?, seconds: Double) -> VersionSample {
        guard let window else { return .empty(seconds: seconds) }
        return VersionSample(responses: window.responses, errors: window.errors, latency: bins(window.latency), firstByte: bins(window.firstByte), seconds: seconds)
    }

    static func bins(_ histogram: Histogram<UInt64>) -> [LatencyBin] {
        histogram.recordedValues().map { LatencyBin(seconds: Double($0.value) / 1_000_000, count: Int($0.count)) }
    }
}
