import Foundation
import SluiceAnalysis
import SluiceRollout
import Testing
@testable import SluiceController

@Suite("Metric providers: Prometheus answers, query templates, webhook bodies")
struct MetricProviderTests {
    static func parse(_ json: String, status: Int = 200) -> MetricReading {
        HTTPMetricsSource.parsePrometheus(status: status, body: Data(json.utf8), query: "q")
    }

    @Test("a one-series vector and a scalar give their value; an empty vector is no data, never zero")
    func values() {
        #expect(Self.parse(#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"0.25"]}]}}"#) == .value(0.25))
        #expect(Self.parse(#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.1,"3"]}}"#) == .value(3))
        #expect(Self.parse(#"{"status":"success","data":{"resultType":"vector","result":[]}}"#) == .value(nil))
        guard case .value(let nan?) = Self.parse(#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#) else {
            Issue.record("NaN should parse as a value for the judge to treat as no data")
            return
        }
        #expect(nan.isNaN)
    }

    @Test("several series, a matrix, a bad status and Prometheus's own errors are provider errors")
    func errors() {
        let two = #"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"1"]},{"metric":{"a":"2"},"value":[1,"2"]}]}}"#
        #expect(Self.parse(two) == .error("query 'q' returned 2 series; aggregate it to one, for example with sum()"))
        #expect(Self.parse(#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#) == .error("query 'q' returned a matrix; use an instant vector or scalar"))
        #expect(Self.parse(#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#, status: 400)
                == .error("prometheus answered 400 to 'q': parse error at char 5"))
        guard case .error = Self.parse("<html>bad gateway</html>", status: 502) else {
            Issue.record("a non-JSON answer is an error")
            return
        }
    }

    static let context = MeasurementContext(
        deployment: "fraud-scorer", route: "/v2/models/fraud-scorer", stable: "v1", candidate: "v2", weights: ["v1": 90, "v2": 10],
        step: 1, analysis: "background", metric: "errors", windowStart: Instant(milliseconds: 1_700_000_000_000),
        windowEnd: Instant(milliseconds: 1_700_000_005_000))

    @Test("queries are templated with the deployment, route, versions and window")
    func templates() {
        let query = #"sum(rate(x{deployment="{{deployment}}",version="{{ candidate }}",route="{{route}}"}[{{interval}}])) / on() y{v="{{stable}}"} {{unknown}} {{"#
        #expect(Self.context.render(query) == #"sum(rate(x{deployment="fraud-scorer",version="v2",route="/v2/models/fraud-scorer"}[5s])) / on() y{v="v1"} {{unknown}} {{"#)
        #expect(HTTPMetricsSource.percentEncoded(#"a{b="c"} / d[5s]"#) == "a%7Bb%3D%22c%22%7D%20%2F%20d%5B5s%5D")
    }

    @Test("a webhook receives the whole context as JSON")
    func webhookBody() throws {
        let body = try JSONSerialization.jsonObject(with: try HTTPMetricsSource.webhookBody(Self.context)) as? [String: Any]
        #expect(body?["deployment"] as? String == "fraud-scorer")
        #expect(body?["candidate"] as? String == "v2" && body?["stable"] as? String == "v1")
        #expect(body?["weights"] as? [String: Int] == ["v1": 90, "v2": 10])
        #expect(body?["step"] as? Int == 1 && body?["metric"] as? String == "errors")
        let window = body?["window"] as? [String: Any]
        #expect(window?["seconds"] as? Double == 5)
        #expect(window?["start"] as? String == "2023-11-14T22:13:20.000Z")
    }
}
