import Yams

/// The kinds of document Sluice reads.
enum DocumentKind: String, CaseIterable {
    case modelDeployment = "ModelDeployment"
    case strategy = "Strategy"
}

/// Where a value stood in its file, kept from the YAML (without the YAML) for the checks that span
/// documents and files.
struct Place: Sendable {
    var location: SourceLocation
    var path: String
}

/// Positions kept from the YAML for checks that span documents and files.
struct DeploymentOrigin: Sendable {
    var name: Place
    /// The route's `pathPrefix`, or the route when it has none.
    var pathPrefix: Place
    var template: Place?
    var strategy: Place
    /// An inline experiment's `challengers` entries, in order.
    var challengers: [Place] = []
}

extension SpecReader {
    func place(_ value: SpecValue) -> Place {
        Place(location: location(value.mark), path: value.path.description)
    }

    static let apiVersion = "sluice/v1"

    /// Decodes one document. Returns `nil` for an empty document and for one whose errors were reported.
    func document(_ node: Node) -> ParsedDocument? {
        let root = SpecValue(node: node, path: .root, keyMark: node.mark)
        if root.isNull { return nil }
        guard let top = fields(root, keys: ["apiVersion", "kind", "metadata", "spec"], what: "a document with apiVersion, kind, metadata and spec") else {
            return nil
        }
        let before = diagnostics.count
        if let version = top.required("apiVersion", { string($0) }), version != Self.apiVersion {
            error("unsupported apiVersion '\(version)'; this Sluice reads '\(Self.apiVersion)'", at: top.value("apiVersion")!)
        }
        let kind: DocumentKind? = top.required("kind") { value in
            guard let text = string(value) else { return nil }
            guard let kind = DocumentKind(rawValue: text) else {
                error(Suggestion.unknown("kind", text, known: DocumentKind.allCases.map(\.rawValue)), at: value)
                return nil
            }
            return kind
        }
        let metadata = top.required("metadata") { self.metadata($0) }
        guard let kind else {
            return nil
        }
        switch kind {
        case .modelDeployment:
            let spec = top.required("spec") { deploymentSpec($0, name: metadata?.name) }
            guard diagnostics.count == before, let metadata, let (deployment, origin) = spec else { return nil }
            var result = deployment
            result.name = metadata.name
            result.labels = metadata.labels
            var challengers: [Place] = []
            if let list = origin.strategy.child("experiment")?.child("challengers"), case .sequence(let nodes) = list.node {
                challengers = nodes.enumerated().map { index, node in
                    place(SpecValue(node: node, path: list.path.appending(index: index), keyMark: node.mark))
                }
            }
            return .deployment(result, DeploymentOrigin(name: place(metadata.nameValue), pathPrefix: place(origin.route.child("pathPrefix") ?? origin.route),
                                                        template: origin.template.map(place), strategy: place(origin.strategy), challengers: challengers))
        case .strategy:
            let spec: StrategySpec? = top.required("spec") { value in
                fields(value, keys: Self.strategyKinds).flatMap { strategySpec($0, what: "a Strategy spec") }
            }
            guard diagnostics.count == before, let metadata, let spec else { return nil }
            return .strategy(StrategyTemplate(name: metadata.name, labels: metadata.labels, spec: spec), place(metadata.nameValue))
        }
    }

    struct Metadata {
        var name: String
        var nameValue: SpecValue
        var labels: [String: String]
    }

    private func metadata(_ value: SpecValue) -> Metadata? {
        guard let f = fields(value, keys: ["name", "labels", "annotations"]) else { return nil }
        let name: String? = f.required("name") { value in
            guard let text = string(value) else { return nil }
            return check(Self.dnsLabel(text), at: value)
        }
        let labels = f.optional("labels") { stringMap($0) } ?? [:]
        _ = f.optional("annotations") { stringMap($0) }
        guard let name, let nameValue = f.value("name") else { return nil }
        return Metadata(name: name, nameValue: nameValue, labels: labels)
    }

    /// RFC 1123 label: what Kubernetes users expect of a name, and safe in URLs, files and metrics.
    static func dnsLabel(_ text: String) -> Result<String, SpecValueError> {
        let valid = (1...63).contains(text.count)
            && text.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "-" }
            && text.first != "-" && text.last != "-"
        return valid
            ? .success(text)
            : .failure(.init("name '\(text)' must be a DNS label: up to 63 lower-case letters, digits and '-', starting and ending with a letter or digit"))
    }

    // MARK: ModelDeployment

    private func deploymentSpec(_ value: SpecValue, name: String?) -> (ModelDeployment, (route: SpecValue, template: SpecValue?, strategy: SpecValue))? {
        guard let f = fields(value, keys: ["route", "version", "versions", "strategy", "progressDeadline"]) else { return nil }
        let route = f.required("route") { self.route($0) }
        let versions = f.required("versions") { list($0, nonEmpty: true, what: "versions") { modelVersion($0) } }
        if let versions, let valueList = f.value("versions"), case .sequence(let sequence) = valueList.node {
            var seen: Set<String> = []
            for (index, version) in versions.enumerated() where !seen.insert(version.name).inserted {
                let item = sequence[index]
                error("duplicate version '\(version.name)'", at: item.mark, valueList.path.appending(index: index).appending("name"))
            }
        }
        let version: String? = f.required("version") { value in
            guard let text = string(value) else { return nil }
            if let versions, !versions.contains(where: { $0.name == text }) {
                let names = versions.map(\.name).joined(separator: ", ")
                error("unknown version '\(text)'; spec.versions has: \(names)", at: value)
                return nil
            }
            return text
        }
        let strategy = f.required("strategy") { strategyReference($0) }
        let deadline = f.optional("progressDeadline") { duration($0) } ?? ModelDeployment.defaultProgressDeadline
        guard let route, let versions, let version, let strategy,
              let routeValue = f.value("route"), let strategyValue = f.value("strategy") else { return nil }
        let deployment = ModelDeployment(
            name: name ?? "", route: route, version: version, versions: versions,
            strategy: strategy, progressDeadline: deadline
        )
        let templateValue = strategyValue.child("template")
        return (deployment, (routeValue, templateValue, strategyValue))
    }

    private func route(_ value: SpecValue) -> Route? {
        guard let f = fields(value, keys: ["pathPrefix", "host", "stickiness", "rewrite", "haproxy"]) else { return nil }
        let prefix: String? = f.required("pathPrefix") { plainPath($0, what: "pathPrefix") }
        let host: String? = f.optional("host") { value in
            guard let text = string(value) else { return nil }
            let valid = text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-.:".contains($0)) }
            guard valid, text.first != "." else {
                error("host '\(text)' is not a valid host name", at: value)
                return nil
            }
            return text.lowercased()
        }
        let stickiness = f.optional("stickiness") { self.stickiness($0) }
        let replacePrefix: String? = f.optional("rewrite") { value in
            guard let rewrite = fields(value, keys: ["replacePrefix"]) else { return nil }
            return rewrite.required("replacePrefix") { plainPath($0, what: "replacePrefix") }
        }
        let haproxy: HAProxyRoute? = f.optional("haproxy") { value in
            guard let haproxy = fields(value, keys: ["backend"]) else { return nil }
            return haproxy.required("backend") { value in
                guard let text = string(value) else { return nil }
                guard !text.isEmpty, text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.:".contains($0)) }) else {
                    error("haproxy backend '\(text)' must be an HAProxy backend name: letters, digits, '-', '_', '.', ':'", at: value)
                    return nil
                }
                return HAProxyRoute(backend: text)
            }
        }
        guard let prefix else { return nil }
        return Route(pathPrefix: prefix, host: host, stickiness: stickiness, replacePrefix: replacePrefix, haproxy: haproxy)
    }

    /// A path that starts with '/' and has no spaces, query or fragment.
    private func plainPath(_ value: SpecValue, what: String) -> String? {
        guard let text = string(value) else { return nil }
        guard text.hasPrefix("/") else {
            error("\(what) '\(text)' must start with '/'", at: value)
            return nil
        }
        guard !text.contains(where: { $0.isWhitespace || $0 == "?" || $0 == "#" }) else {
            error("\(what) '\(text)' must be a plain path, without spaces, query or fragment", at: value)
            return nil
        }
        return text
    }

    func stickiness(_ value: SpecValue) -> Stickiness? {
        guard let f = fields(value, keys: ["header", "cookie"]) else { return nil }
        switch f.exactlyOne(of: ["header", "cookie"], what: "stickiness") {
        case "header": return f.required("header") { string($0) }.map { .header($0.lowercased()) }
        case "cookie": return f.required("cookie") { string($0) }.map { .cookie($0) }
        default: return nil
        }
    }

    private func modelVersion(_ value: SpecValue) -> ModelVersion? {
        guard let f = fields(value, keys: ["name", "endpoints", "healthCheck", "tls", "protocol"], what: "a version with name and endpoints") else { return nil }
        let name = f.required("name") { identifier($0, what: "version name") }
        let endpoints = f.required("endpoints") { list($0, nonEmpty: true, what: "endpoints") { endpoint($0) } }
        if let endpoints, let listValue = f.value("endpoints"), case .sequence(let sequence) = listValue.node {
            var seen: Set<Endpoint> = []
            for (index, endpoint) in endpoints.enumerated() where !seen.insert(endpoint).inserted {
                error("duplicate endpoint '\(endpoint)'", at: sequence[index].mark, listValue.path.appending(index: index))
            }
        }
        let healthCheck = f.optional("healthCheck") { self.healthCheck($0) }
        let tls = f.optional("tls") { self.upstreamTLS($0) }
        if tls != nil, let endpoints, let tlsValue = f.value("tls"), !endpoints.contains(where: { $0.scheme == .https }) {
            error("tls applies to https:// endpoints, and this version has none", at: tlsValue)
        }
        let upstreamProtocol: UpstreamProtocol? = f.optional("protocol") { value in
            guard let text = string(value) else { return nil }
            guard let known = UpstreamProtocol(rawValue: text) else {
                error("protocol '\(text)' is not one of \(UpstreamProtocol.allCases.map(\.rawValue).joined(separator: ", "))", at: value)
                return nil
            }
            return known
        }
        if let upstreamProtocol, upstreamProtocol.isHTTP2, let endpoints, let place = f.value("protocol") {
            let wanted: Endpoint.Scheme = upstreamProtocol == .h2 ? .https : .http
            if let other = endpoints.first(where: { $0.scheme != wanted }) {
                error(upstreamProtocol == .h2 ? "protocol h2 is HTTP/2 over TLS and needs https:// endpoints; '\(other)' is not (h2c is HTTP/2 on plain TCP)"
                                              : "protocol h2c is HTTP/2 on plain TCP and needs http:// endpoints; '\(other)' is not (h2 is HTTP/2 over TLS)", at: place)
            }
            if healthCheck != nil, let check = f.value("healthCheck") {
                error("healthCheck probes speak HTTP/1.1, and this version speaks \(upstreamProtocol.rawValue) only; leave it out (a version that refuses connections is still ejected)", at: check)
            }
        }
        guard let name, let endpoints else { return nil }
        return ModelVersion(name: name, endpoints: endpoints, healthCheck: healthCheck, tls: tls, protocol: upstreamProtocol)
    }

    private func upstreamTLS(_ value: SpecValue) -> UpstreamTLS? {
        guard let f = fields(value, keys: ["caFile", "serverName", "insecureSkipVerify"]) else { return nil }
        let caFile: String? = f.optional("caFile") { value in
            guard let text = string(value) else { return nil }
            guard !text.isEmpty else {
                error("caFile must name a PEM file", at: value)
                return nil
            }
            return text
        }
        let serverName: String? = f.optional("serverName") { value in
            guard let text = string(value) else { return nil }
            guard !text.isEmpty, text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-.".contains($0)) }) else {
                error("serverName '\(text)' is not a host name", at: value)
                return nil
            }
            return text.lowercased()
        }
        let insecure = f.optional("insecureSkipVerify") { bool($0) } ?? false
        if insecure, caFile != nil, let place = f.value("insecureSkipVerify") {
            error("insecureSkipVerify trusts any certificate, so caFile would be ignored: give one or the other", at: place)
        }
        return UpstreamTLS(caFile: caFile, serverName: serverName, insecureSkipVerify: insecure)
    }

    private func healthCheck(_ value: SpecValue) -> HealthCheck? {
        guard let f = fields(value, keys: ["path", "interval", "timeout", "unhealthyThreshold", "healthyThreshold"]) else { return nil }
        let path: String? = f.required("path") { value in
            guard let text = string(value) else { return nil }
            guard text.hasPrefix("/") else {
                error("health check path '\(text)' must start with '/'", at: value)
                return nil
            }
            return text
        }
        let interval = f.optional("interval") { positiveDuration($0) } ?? HealthCheck.defaultInterval
        let timeout = f.optional("timeout") { positiveDuration($0) } ?? HealthCheck.defaultTimeout
        if timeout > interval {
            let blame = f.value("timeout") ?? f.value("interval")!
            error("health check timeout \(timeout.specDescription) is longer than its interval \(interval.specDescription)", at: blame)
        }
        let unhealthy = f.optional("unhealthyThreshold") { int($0, in: 1...100) } ?? HealthCheck.defaultUnhealthyThreshold
        let healthy = f.optional("healthyThreshold") { int($0, in: 1...100) } ?? HealthCheck.defaultHealthyThreshold
        guard let path else { return nil }
        return HealthCheck(path: path, interval: interval, timeout: timeout, unhealthyThreshold: unhealthy, healthyThreshold: healthy)
    }

    func positiveDuration(_ value: SpecValue) -> Duration? {
        guard let duration = duration(value) else { return nil }
        guard duration > .zero else {
            error("duration must be greater than 0", at: value)
            return nil
        }
        return duration
    }

    private func strategyReference(_ value: SpecValue) -> StrategyReference? {
        if case .scalar = value.node, !value.isNull, let name = value.node.scalar?.string {
            // `strategy: progressive-canary` is a natural slip for `strategy: {template: progressive-canary}`.
            error("expected a mapping with template, canary, blueGreen or experiment, found '\(name)'; to use a Strategy by name, write template: \(name)", at: value)
            return nil
        }
        guard let f = fields(value, keys: ["template"] + Self.strategyKinds) else { return nil }
        switch f.exactlyOne(of: ["template"] + Self.strategyKinds, what: "strategy") {
        case "template":
            return f.required("template") { string($0, what: "the name of a Strategy") }.map { .template($0) }
        case .some:
            return strategySpec(f, what: "strategy").map { .inline($0) }
        case nil:
            return nil
        }
    }
}

/// One decoded document with the positions later checks need.
enum ParsedDocument: Sendable {
    case deployment(ModelDeployment, DeploymentOrigin)
    case strategy(StrategyTemplate, Place)
}
