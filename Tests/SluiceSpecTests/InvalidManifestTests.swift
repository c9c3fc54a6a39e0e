import SluiceSpec
import Testing

@Suite("Broken specs in manifests/invalid")
struct InvalidManifestTests {
    static let files = Fixtures.yamlFiles(in: "manifests/invalid")

    @Test("there are at least 25 broken examples, each with its expected error")
    func enoughExamples() {
        #expect(Self.files.count >= 25)
        for file in Self.files {
            #expect(Fixtures.expectation(for: file) != nil, "\(file) has no '# expect: LINE:COLUMN: MESSAGE' first line")
        }
    }

    @Test("each broken file reports its error at its line and column", arguments: files)
    func reportsExpectedError(file: String) throws {
        let expected = try #require(Fixtures.expectation(for: file))
        let catalog = SpecCatalog(manifests: [Fixtures.source(file)], strategies: Fixtures.strategies)
        #expect(!catalog.isValid)
        #expect(catalog.deployments.isEmpty, "an invalid file must contribute no deployment")
        let match = catalog.diagnostics.first {
            $0.location.line == expected.line && $0.location.column == expected.column && $0.message.contains(expected.message)
        }
        #expect(match != nil, "expected \(expected); got \(catalog.diagnostics.map(\.description))")
        for diagnostic in catalog.diagnostics {
            #expect(diagnostic.location.file == file)
        }
    }
}

@Suite("Example specs in manifests/ and strategies/")
struct ExampleManifestTests {
    @Test("every example and preset validates")
    func examplesAreValid() {
        #expect(Fixtures.manifests.count >= 4)
        #expect(Fixtures.strategies.count >= 4)
        let catalog = SpecCatalog(manifests: Fixtures.manifests, strategies: Fixtures.strategies)
        #expect(catalog.diagnostics == [])
        #expect(Set(catalog.deployments.keys) == ["fraud-scorer", "recommender", "churn-predictor", "defect-detector", "ocr", "ranker"])
        #expect(Set(catalog.templates.keys).isSuperset(of: ["progressive-canary", "conservative-canary", "fast-canary", "blue-green-preview", "vision-canary"]))
    }

    @Test("the canary example reads into the model it describes")
    func canaryExample() throws {
        let catalog = SpecCatalog(manifests: [Fixtures.source("manifests/fraud-scorer.yaml")])
        let resolved = try #require(catalog.deployments["fraud-scorer"])
        let deployment = resolved.deployment
        #expect(deployment.route == Route(pathPrefix: "/v2/models/fraud-scorer"))
        #expect(deployment.version == "v1")
        #expect(deployment.labels == ["team": "risk"])
        #expect(deployment.versions.map(\.name) == ["v1", "v2"])
        #expect(deployment.versions[1].endpoints == [
            Endpoint(scheme: .http, host: "127.0.0.1", port: 9002), Endpoint(scheme: .http, host: "127.0.0.1", port: 9003),
        ])
        #expect(deployment.versions[0].healthCheck == HealthCheck(path: "/v2/health/ready", interval: .seconds(5)))
        guard case .canary(let canary) = resolved.strategy else {
            Issue.record("expected a canary, got \(resolved.strategy)")
            return
        }
        #expect(canary.steps == [.setWeight(10), .pause(.seconds(30)), .setWeight(50), .pause(nil)])
        let analysis = try #require(canary.analysis)
        #expect(analysis.interval == .seconds(5))
        #expect(analysis.metrics.map(\.name) == ["success-rate", "errors-vs-stable", "median-latency", "latency"])
        #expect(analysis.metrics[0].source == .builtin(.successRate))
        #expect(analysis.metrics[0].successCondition?.op == .greaterThanOrEqual)
        #expect(analysis.metrics[0].successCondition?.value == 0.99)
        // compareTo without maxRatio: the sequential test at the default alpha.
        #expect(analysis.metrics[1].source == .builtin(.errorRate))
        #expect(analysis.metrics[1].compareToStable && analysis.metrics[1].maxRatio == nil)
        #expect(analysis.metrics[1].alpha == MetricSpec.defaultAlpha)
        #expect(analysis.metrics[2].compareToStable)
        #expect(analysis.metrics[2].maxRatio == 1.25)
        #expect(analysis.metrics[2].source == .builtin(.latencyP50))
        #expect(analysis.metrics[2].minSamples == MetricSpec.defaultMinSamples)
        // Latency metrics leave their first 10 s out unless told otherwise; rates have no warm-up.
        #expect(analysis.metrics[2].warmup == MetricSpec.defaultWarmup && analysis.metrics[3].warmup == .seconds(10))
        #expect(analysis.metrics[0].warmup == nil && analysis.metrics[1].warmup == nil)
        #expect(analysis.metrics[2].minDifference == .milliseconds(1) && analysis.metrics[3].minDifference == MetricSpec.defaultMinDifference)
        #expect(analysis.metrics[1].minDifference == nil, "not a latency")
    }

    @Test("warmup: a duration up to 1h on a latency metric, 0s for none")
    func warmup() {
        func read(_ warmup: String) -> SpecCatalog {
            let yaml = """
                apiVersion: sluice/v1
                kind: ModelDeployment
                metadata: {name: scorer}
                spec:
                  route: {pathPrefix: /v2/models/scorer}
                  version: v2
                  versions:
                    - {name: v1, endpoints: ["http://127.0.0.1:9001"]}
                    - {name: v2, endpoints: ["http://127.0.0.1:9002"]}
                  strategy:
                    canary:
                      steps: [{setWeight: 10}]
                      analysis:
                        metrics:
                          - {name: p99, builtin: ttfbP99, compareTo: stable, warmup: \(warmup)}
                """
            return SpecCatalog(manifests: [SourceFile(path: "scorer.yaml", text: yaml)])
        }
        func warmupOf(_ catalog: SpecCatalog) -> Duration?? {
            guard case .canary(let canary)? = catalog.deployments["scorer"]?.strategy else { return nil }
            return canary.analysis?.metrics.first?.warmup
        }
        #expect(warmupOf(read("45s")) == .some(.seconds(45)))
        #expect(warmupOf(read("0s")) == .some(.zero))
        #expect(read("2h").diagnostics.map(\.message) == ["warmup is at most 1h"])
        #expect(read("soon").diagnostics.first?.message.contains("invalid duration") == true)
    }

    @Test("a template reference resolves to the preset from strategies/")
    func templateResolves() throws {
        let catalog = SpecCatalog(manifests: [Fixtures.source("manifests/recommender.yaml")], strategies: Fixtures.strategies)
        let resolved = try #require(catalog.deployments["recommender"])
        #expect(resolved.deployment.strategy == .template("blue-green-preview"))
        #expect(resolved.deployment.version == "2026.11.1", "version names are kept as written, never read as numbers")
        #expect(resolved.deployment.route.host == "recs.internal")
        guard case .blueGreen(let blueGreen) = resolved.strategy else {
            Issue.record("expected blue-green, got \(resolved.strategy)")
            return
        }
        #expect(blueGreen.previewHeader == HeaderMatch(name: "x-sluice-preview", value: "true"))
        #expect(blueGreen.rollbackWindow == .seconds(600))
        #expect(blueGreen.autoPromotionSeconds == nil)
        #expect(blueGreen.prePromotionAnalysis?.count == 3)
        #expect(blueGreen.postPromotionAnalysis?.metrics[1].successCondition?.value == 0.5)
    }

    @Test("a multi-document file defines a template and the deployments that use it")
    func multiDocument() throws {
        let catalog = SpecCatalog(manifests: [Fixtures.source("manifests/vision.yaml")], strategies: Fixtures.strategies)
        #expect(catalog.diagnostics == [])
        let detector = try #require(catalog.deployments["defect-detector"])
        #expect(detector.deployment.route.stickiness == .header("x-camera-id"))
        guard case .canary(let canary) = detector.strategy else {
            Issue.record("expected a canary")
            return
        }
        #expect(canary.steps.count == 7 && canary.steps[0] == .setMirror(50) && canary.steps[2] == .setMirror(0))
        guard case .analysis(let shadowStep) = canary.steps[1] else {
            Issue.record("expected the shadow analysis step")
            return
        }
        #expect(shadowStep.metrics.map(\.shadow?.measure) == [.shadowAgreement])
        #expect(shadowStep.metrics[0].minSamples == 300)
        #expect(canary.analysis?.metrics[0].successCondition?.value == 0.99, "99% reads as the fraction 0.99")
        #expect(catalog.deployments["ocr"] != nil)
    }

    @Test("the Prometheus example keeps its query, timeout and webhook")
    func prometheusExample() throws {
        let catalog = SpecCatalog(manifests: [Fixtures.source("manifests/churn-predictor.yaml")])
        let resolved = try #require(catalog.deployments["churn-predictor"])
        #expect(resolved.deployment.progressDeadline == .seconds(1800))
        guard case .canary(let canary) = resolved.strategy, let metrics = canary.analysis?.metrics else {
            Issue.record("expected a canary with analysis")
            return
        }
        guard case .prometheus(let query) = metrics[0].source, case .webhook(let hook) = metrics[1].source else {
            Issue.record("unexpected sources \(metrics.map(\.source))")
            return
        }
        #expect(query.address == Endpoint(scheme: .http, host: "127.0.0.1", port: 9090))
        #expect(query.query.contains("{{candidate}}"))
        #expect(query.timeout == .seconds(3))
        #expect(metrics[0].consecutiveErrorLimit == 3)
        #expect(hook.endpoint == Endpoint(scheme: .http, host: "127.0.0.1", port: 8000))
        #expect(hook.path == "/check")
        #expect(hook.headers == ["x-team": "growth"])
    }
}
