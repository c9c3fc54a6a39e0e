@testable import SluiceSpec
import Testing

@Suite("Spec values: durations, conditions, endpoints")
struct ValueParsingTests {
    @Test("durations parse into milliseconds", arguments: [
        ("500ms", 500), ("30s", 30_000), ("1.5s", 1_500), ("5m", 300_000), ("1h", 3_600_000),
        ("1h30m", 5_400_000), ("1m30s", 90_000), ("0s", 0), (" 10s ", 10_000),
    ] as [(String, Int64)])
    func durations(text: String, milliseconds: Int64) throws {
        let duration = try Duration.parseSpec(text).get()
        #expect(duration.milliseconds == milliseconds)
    }

    @Test("bad durations say what is wrong", arguments: [
        ("30", "has no unit"), ("30sec", "unknown duration unit 'sec'"), ("-5s", "negative"),
        ("", "empty duration"), ("soon", "invalid duration"), ("9000h", "longer than a year"),
    ])
    func badDurations(text: String, message: String) {
        guard case .failure(let error) = Duration.parseSpec(text) else {
            Issue.record("'\(text)' should not parse")
            return
        }
        #expect(error.message.contains(message), "\(error.message)")
    }

    @Test("durations print in the spec's notation", arguments: [
        (Duration.milliseconds(500), "500ms"), (.seconds(30), "30s"), (.seconds(90), "1m30s"),
        (.seconds(3600), "1h"), (.zero, "0s"), (.milliseconds(1_250), "1s250ms"),
    ])
    func durationDescription(duration: Duration, text: String) throws {
        #expect(duration.specDescription == text)
        #expect(try Duration.parseSpec(text).get() == duration)
    }

    @Test("conditions keep base units", arguments: [
        (">= 0.99", Condition.Operator.greaterThanOrEqual, 0.99, Condition.Unit.none),
        ("<0.01", .lessThan, 0.01, .none),
        ("< 250ms", .lessThan, 0.25, .seconds),
        ("<= 1.5s", .lessThanOrEqual, 1.5, .seconds),
        (">= 99.5%", .greaterThanOrEqual, 0.995, .percent),
        ("== 0", .equal, 0, .none),
        ("!= 1", .notEqual, 1, .none),
        ("> 100", .greaterThan, 100, .none),
    ])
    func conditions(text: String, op: Condition.Operator, value: Double, unit: Condition.Unit) throws {
        let condition = try Condition.parse(text).get()
        #expect(condition.op == op)
        #expect(abs(condition.value - value) < 1e-12)
        #expect(condition.unit == unit)
    }

    @Test("conditions judge a measured value")
    func conditionJudges() throws {
        let floor = try Condition.parse(">= 0.99").get()
        #expect(floor.isSatisfied(by: 0.99))
        #expect(!floor.isSatisfied(by: 0.989))
        let ceiling = try Condition.parse("< 250ms").get()
        #expect(ceiling.isSatisfied(by: 0.2499))
        #expect(!ceiling.isSatisfied(by: 0.25))
    }

    @Test("bad conditions are refused", arguments: ["0.99", ">=", "about 0.99", ">= abc", "< 10 parsecs", "< inf", ">= nan"])
    func badConditions(text: String) {
        #expect(throws: SpecValueError.self) { try Condition.parse(text).get() }
    }

    @Test("endpoints parse", arguments: [
        ("http://127.0.0.1:9001", Endpoint(scheme: .http, host: "127.0.0.1", port: 9001)),
        ("https://Scorer.internal", Endpoint(scheme: .https, host: "scorer.internal", port: 443)),
        ("http://localhost/", Endpoint(scheme: .http, host: "localhost", port: 80)),
        ("http://[::1]:8080", Endpoint(scheme: .http, host: "::1", port: 8080)),
    ])
    func endpoints(text: String, endpoint: Endpoint) throws {
        #expect(try Endpoint.parse(text).get() == endpoint)
    }

    @Test("bad endpoints say what is wrong", arguments: [
        ("127.0.0.1:9001", "not an http(s) URL"), ("ftp://host:21", "scheme 'ftp'"), ("http://:9001", "no host"),
        ("http://host:0", "invalid port"), ("http://host:http", "invalid port"), ("http://host:9001/v2", "has a path"),
        ("http://user:pw@host:1", "user information"), ("http://ho st:1", "invalid host"), ("http://[::1:80", "unclosed IPv6"),
    ])
    func badEndpoints(text: String, message: String) {
        guard case .failure(let error) = Endpoint.parse(text) else {
            Issue.record("'\(text)' should not parse")
            return
        }
        #expect(error.message.contains(message), "\(error.message)")
    }

    @Test("endpoints print back as URLs")
    func endpointDescription() {
        #expect(Endpoint(scheme: .http, host: "::1", port: 80).description == "http://[::1]:80")
        #expect(Endpoint(scheme: .https, host: "a.b", port: 8443).description == "https://a.b:8443")
    }

    @Test("suggestions find near misses and nothing else")
    func suggestions() {
        let keys = ["pathPrefix", "host", "stickiness"]
        #expect(Suggestion.closest(to: "pathprefix", in: keys) == "pathPrefix")
        #expect(Suggestion.closest(to: "pathPrefx", in: keys) == "pathPrefix")
        #expect(Suggestion.closest(to: "hots", in: keys) == "host")
        #expect(Suggestion.closest(to: "weight", in: keys) == nil)
        #expect(Suggestion.editDistance("kitten", "sitting") == 3)
        #expect(Suggestion.editDistance("", "abc") == 3)
    }

    @Test("YAML paths print as users write them")
    func paths() {
        let path = SpecPath.root.appending("spec").appending("versions").appending(index: 1).appending("endpoints").appending(index: 0)
        #expect(path.description == "spec.versions[1].endpoints[0]")
    }
}
