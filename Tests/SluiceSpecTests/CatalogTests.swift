import SluiceSpec
import Testing

/// A minimal valid deployment, with parts a test can swap out.
func deploymentYAML(
    name: String = "scorer", prefix: String = "/v2/models/scorer", host: String? = nil,
    version: String = "v2", strategy: String = "    canary:\n      steps:\n        - setWeight: 10\n"
) -> String {
    """
    apiVersion: sluice/v1
    kind: ModelDeployment
    metadata:
      name: \(name)
    spec:
      route:
        pathPrefix: \(prefix)
    \(host.map { "    host: \($0)\n" } ?? "")  version: \(version)
      versions:
        - name: v1
          endpoints: ["http://127.0.0.1:9001"]
        - name: v2
          endpoints: ["http://127.0.0.1:9002"]
      strategy:
    \(strategy)
    """
}

@Suite("Reading sets of spec files")
struct CatalogTests {
    @Test("the spec example of the design validates, template included")
    func designExample() throws {
        let deployment = """
            apiVersion: sluice/v1
            kind: ModelDeployment
            metadata:
              name: fraud-scorer                 # DNS label, unique among deployments
            spec:
              route:
                pathPrefix: /v2/models/fraud-scorer   # requests whose path starts with this belong here
                host: fraud.internal                  # optional Host match
              version: v2                        # desired version. Changing it starts a rollout.
              versions:
                - name: v1
                  endpoints: ["http://127.0.0.1:9001"]          # one or more upstreams of this version
                  healthCheck: {path: /v2/health/ready, interval: 5s}   # optional active probe
                - name: v2
                  endpoints: ["http://127.0.0.1:9002", "http://127.0.0.1:9003"]
              strategy:
                template: canary-default         # a Strategy by name, or inline `canary:` / `blueGreen:`
            """
        let strategy = """
            apiVersion: sluice/v1
            kind: Strategy
            metadata: {name: canary-default}
            spec:
              canary:
                steps:                           # an enum per step, exactly one key each
                  - setWeight: 10                # percent of the route's traffic to the new version
                  - pause: {duration: 30s}
                  - setWeight: 50
                  - pause: {}                    # no duration: wait for `sluice promote`
                analysis:                        # background analysis through the whole rollout
                  interval: 5s
                  metrics:
                    - name: success-rate
                      builtin: successRate       # measured by the proxy, per version
                      successCondition: ">= 0.99"
                    - name: latency
                      builtin: latencyP99
                      compareTo: stable          # judged against the stable version on the same window
                      maxRatio: 1.25
                    - name: errors
                      prometheus: {address: "http://127.0.0.1:9090", query: "..."}
                      successCondition: "< 0.01"
                    - name: quality-gate
                      webhook: {url: "http://127.0.0.1:8000/check", timeout: 5s}
            """
        let catalog = SpecCatalog(manifests: [Fixtures.yaml(deployment, path: "d.yaml")], strategies: [Fixtures.yaml(strategy, path: "s.yaml")])
        #expect(catalog.diagnostics == [])
        let resolved = try #require(catalog.deployments["fraud-scorer"])
        guard case .canary(let canary) = resolved.strategy else {
            Issue.record("expected a canary")
            return
        }
        #expect(canary.steps.count == 4)
        #expect(canary.analysis?.metrics.count == 4)
    }

    @Test("every error in a file is reported, not only the first")
    func allErrorsReported() {
        let text = deploymentYAML(strategy: "    canary:\n      steps:\n        - setWeight: 150\n        - pause: {duration: 10}\n        - setWieght: 5\n")
        let catalog = SpecCatalog(manifests: [Fixtures.yaml(text)])
        let messages = catalog.diagnostics.map(\.message)
        #expect(messages.count == 3, "\(messages)")
        #expect(messages.contains { $0.contains("150 is outside 0–100") })
        #expect(messages.contains { $0.contains("has no unit") })
        #expect(messages.contains { $0.contains("did you mean 'setWeight'") })
        #expect(catalog.diagnostics.map(\.location.line) == catalog.diagnostics.map(\.location.line).sorted())
    }

    @Test("diagnostics print as FILE:LINE:COLUMN: error: MESSAGE (at PATH)")
    func diagnosticFormat() throws {
        let catalog = SpecCatalog(manifests: [Fixtures.yaml(deploymentYAML(strategy: "    canary:\n      steps:\n        - setWeight: 101\n"), path: "m/scorer.yaml")])
        let diagnostic = try #require(catalog.diagnostics.first)
        #expect(diagnostic.description == "m/scorer.yaml:17:22: error: 101 is outside 0–100 (at spec.strategy.canary.steps[0].setWeight)")
    }

    @Test("two files claiming one route: the later file is blamed, the earlier keeps working")
    func duplicateRouteAcrossFiles() throws {
        let a = Fixtures.yaml(deploymentYAML(name: "a"), path: "a.yaml")
        let b = Fixtures.yaml(deploymentYAML(name: "b"), path: "b.yaml")
        let catalog = SpecCatalog(manifests: [b, a])
        let diagnostic = try #require(catalog.diagnostics.first)
        #expect(catalog.diagnostics.count == 1)
        #expect(diagnostic.location == SourceLocation(file: "b.yaml", line: 7, column: 17))
        #expect(diagnostic.message.contains("already claimed by deployment 'a' at a.yaml:7:17"))
        #expect(Array(catalog.deployments.keys) == ["a"])
    }

    @Test("route.rewrite.replacePrefix is read; an unknown key under rewrite is an error")
    func rewrite() throws {
        let text = deploymentYAML(host: "h.internal").replacingOccurrences(of: "    host: h.internal\n", with: "    rewrite: {replacePrefix: /v2}\n")
        let catalog = SpecCatalog(manifests: [Fixtures.yaml(text)])
        #expect(catalog.diagnostics == [])
        #expect(try #require(catalog.deployments["scorer"]).deployment.route.replacePrefix == "/v2")
        let typo = SpecCatalog(manifests: [Fixtures.yaml(text.replacingOccurrences(of: "replacePrefix", with: "replacePrefx"))])
        #expect(typo.diagnostics.map(\.message).contains { $0.contains("did you mean 'replacePrefix'") }, "\(typo.diagnostics)")
    }

    @Test("the same prefix on different hosts is no conflict")
    func sameprefixOtherHost() {
        let a = Fixtures.yaml(deploymentYAML(name: "a", host: "a.internal"), path: "a.yaml")
        let b = Fixtures.yaml(deploymentYAML(name: "b", host: "b.internal"), path: "b.yaml")
        let c = Fixtures.yaml(deploymentYAML(name: "c"), path: "c.yaml")
        let catalog = SpecCatalog(manifests: [a, b, c])
        #expect(catalog.diagnostics == [])
        #expect(catalog.deployments.count == 3)
    }

    @Test("one broken file leaves the others' deployments in the catalog")
    func brokenFileIsolated() {
        let good = Fixtures.yaml(deploymentYAML(name: "good", prefix: "/good"), path: "good.yaml")
        let bad = Fixtures.yaml(deploymentYAML(name: "bad", prefix: "/bad", version: "v9"), path: "bad.yaml")
        let catalog = SpecCatalog(manifests: [good, bad])
        #expect(catalog.invalidFiles == ["bad.yaml"])
        #expect(Array(catalog.deployments.keys) == ["good"])
    }

    @Test("a file with one bad document contributes none of its documents")
    func halfBrokenFile() {
        let text = deploymentYAML(name: "first", prefix: "/first") + "\n---\n" + deploymentYAML(name: "second", prefix: "/second", version: "v7")
        let catalog = SpecCatalog(manifests: [Fixtures.yaml(text)])
        #expect(catalog.deployments.isEmpty)
        #expect(catalog.diagnostics.count == 1)
        #expect(catalog.diagnostics.first?.location.line == 27)
    }

    @Test("templates resolve from manifests too, and unknown ones list what is known")
    func templates() throws {
        let template = Fixtures.yaml("""
            apiVersion: sluice/v1
            kind: Strategy
            metadata: {name: quick}
            spec:
              canary:
                steps: [{setWeight: 50}]
            """, path: "t.yaml")
        let user = Fixtures.yaml(deploymentYAML(strategy: "    template: quick"), path: "u.yaml")
        #expect(SpecCatalog(manifests: [template, user]).deployments["scorer"]?.strategy == .canary(CanaryStrategy(steps: [.setWeight(50)])))

        let lost = SpecCatalog(manifests: [Fixtures.yaml(deploymentYAML(strategy: "    template: slow"), path: "u.yaml")], strategies: [template])
        #expect(lost.diagnostics.map(\.message) == ["unknown strategy template 'slow'; known: quick"])
        let none = SpecCatalog(manifests: [Fixtures.yaml(deploymentYAML(strategy: "    template: slow"), path: "u.yaml")])
        #expect(none.diagnostics.first?.message.contains("no Strategy documents were loaded") == true)
    }

    @Test("a strategies directory may not hold deployments")
    func deploymentInStrategies() {
        let catalog = SpecCatalog(manifests: [], strategies: [Fixtures.yaml(deploymentYAML(), path: "strategies/x.yaml")])
        #expect(catalog.diagnostics.first?.message.contains("holds only Strategy documents") == true)
        #expect(catalog.deployments.isEmpty)
    }

    @Test("empty files and empty documents are ignored; a bare list is not a document")
    func emptyDocuments() {
        #expect(SpecCatalog(manifests: [Fixtures.yaml(""), Fixtures.yaml("# nothing yet\n", path: "b.yaml"), Fixtures.yaml("---\n---\n", path: "c.yaml")]).isValid)
        let list = SpecCatalog(manifests: [Fixtures.yaml("- a\n- b\n")])
        #expect(list.diagnostics.first?.message.contains("expected a document with apiVersion") == true)
    }

    @Test("defaults apply where fields are absent")
    func defaults() throws {
        let text = deploymentYAML(strategy: """
                canary:
                  steps: [{setWeight: 10}, {pause: }]
                  analysis:
                    metrics:
                      - {name: ok, builtin: successRate, successCondition: ">= 0.9"}
            """)
        let resolved = try #require(SpecCatalog(manifests: [Fixtures.yaml(text)]).deployments["scorer"])
        #expect(resolved.deployment.progressDeadline == ModelDeployment.defaultProgressDeadline)
        guard case .canary(let canary) = resolved.strategy, let analysis = canary.analysis else {
            Issue.record("expected a canary with analysis")
            return
        }
        #expect(canary.steps == [.setWeight(10), .pause(nil)])
        #expect(analysis.interval == AnalysisSpec.defaultInterval)
        let metric = analysis.metrics[0]
        #expect(metric.failureLimit == 0)
        #expect(metric.consecutiveErrorLimit == MetricSpec.defaultConsecutiveErrorLimit)
        #expect(metric.alpha == MetricSpec.defaultAlpha)
        #expect(metric.minSamples == MetricSpec.defaultMinSamples)
    }

    @Test("shadow metrics read compare, ignore, statistic and capture; their conditions are checked in the metric's units")
    func shadowMetrics() throws {
        let text = deploymentYAML(strategy: """
                canary:
                  steps:
                    - setMirror: 100
                    - analysis:
                        metrics:
                          - name: agreement
                            builtin: shadowAgreement
                            compare: {json: "$.predictions[*].score", tolerance: 0.01, relative: true}
                            ignore: ["$.id", "$.predictions[*].timestamp"]
                            capture: true
                            successCondition: ">= 98%"
                            minSamples: 500
                          - {name: drift, builtin: shadowDrift, statistic: js, successCondition: "< 0.1"}
                          - {name: p99, builtin: shadowLatencyP99, successCondition: "< 200ms"}
                    - setMirror: 0
                    - setWeight: 10
            """)
        let catalog = SpecCatalog(manifests: [Fixtures.yaml(text)])
        #expect(catalog.diagnostics == [])
        let resolved = try #require(catalog.deployments["scorer"])
        guard case .canary(let canary) = resolved.strategy, case .analysis(let step) = canary.steps[1] else {
            Issue.record("expected a canary with an analysis step")
            return
        }
        let agreement = try #require(step.metrics[0].shadow)
        #expect(agreement.measure == .shadowAgreement)
        #expect(agreement.compare == ShadowCompare(json: try JSONPath("$.predictions[*].score"), tolerance: 0.01, relative: true))
        #expect(agreement.ignore.map(\.description) == ["$.id", "$.predictions[*].timestamp"])
        #expect(agreement.capture)
        #expect(step.metrics[0].successCondition?.value == 0.98)
        #expect(step.metrics[0].minSamples == 500)
        let drift = try #require(step.metrics[1].shadow)
        #expect(drift.statistic == .js && drift.compare == ShadowCompare() && !drift.capture)
        #expect(step.metrics[2].successCondition?.value == 0.2)
        #expect(step.comparesShadows)

        let wrongUnit = SpecCatalog(manifests: [Fixtures.yaml(text.replacingOccurrences(of: "< 200ms", with: "< 200"))])
        #expect(wrongUnit.diagnostics.map(\.message).contains { $0.contains("shadowLatencyP99 is a duration") }, "\(wrongUnit.diagnostics)")
        let notFraction = SpecCatalog(manifests: [Fixtures.yaml(text.replacingOccurrences(of: ">= 98%", with: ">= 98"))])
        #expect(notFraction.diagnostics.map(\.message).contains { $0.contains("shadowAgreement is a fraction") }, "\(notFraction.diagnostics)")
        let compareTo = SpecCatalog(manifests: [Fixtures.yaml(text.replacingOccurrences(of: "capture: true", with: "compareTo: stable"))])
        #expect(compareTo.diagnostics.map(\.message).contains { $0.contains("already compares the shadow with stable") }, "\(compareTo.diagnostics)")
    }

    @Test("a lower weight is accepted when the step says so")
    func allowDecrease() throws {
        let text = deploymentYAML(strategy: "    canary:\n      steps:\n        - setWeight: 50\n        - setWeight: {weight: 20, allowDecrease: true}\n")
        let resolved = try #require(SpecCatalog(manifests: [Fixtures.yaml(text)]).deployments["scorer"])
        #expect(resolved.strategy == .canary(CanaryStrategy(steps: [.setWeight(50), .setWeight(20)])))
    }

    @Test("wrong types name what was found", arguments: [
        ("    canary:\n      steps: {setWeight: 10}\n", "expected a list of steps, found a mapping"),
        ("    canary:\n      steps:\n        - setWeight: [10]\n", "expected a weight from 0 to 100, found a list"),
        ("    canary:\n      steps:\n        - setWeight: 12.5\n", "expected a weight from 0 to 100, found 12.5"),
        ("    canary:\n      steps:\n        - setWeight:\n", "expected a weight from 0 to 100, found nothing (null)"),
        ("    canary:\n      steps:\n        - pause: 30s\n", "expected a pause such as {duration: 30s} or {}, found '30s'"),
        ("    canary:\n      steps:\n        - {}\n", "a step needs one of 'setWeight', 'pause', 'analysis', 'setMirror'"),
        ("    blueGreen:\n      autoPromotionSeconds: soon\n", "expected a number of seconds, found 'soon'"),
        ("    fast-canary\n", "to use a Strategy by name, write template: fast-canary"),
        ("    blueGreen:\n      previewHeader: {name: \"x preview\", value: yes}\n", "'x preview' is not a valid header name"),
    ])
    func wrongTypes(strategy: String, message: String) {
        let catalog = SpecCatalog(manifests: [Fixtures.yaml(deploymentYAML(strategy: strategy))])
        #expect(catalog.diagnostics.contains { $0.message.contains(message) }, "\(catalog.diagnostics.map(\.message))")
    }
}
