import SluiceProxy
import SluiceRollout
import SluiceSpec

/// Turns each deployment's routing into the proxy's routing table. The policy is all in the routing the
/// planner chose; this only looks up endpoints and orders backends, and knows no strategy.
public enum RoutingTableBuilder {
    /// The table for `deployments`. One whose route cannot be built keeps its route in `lastGood` (if
    /// it ever had one), and is named in `unroutable` with the reason: never dropped without a word.
    public static func table(revision: UInt64, _ deployments: [RoutedDeployment],
                             lastGood: [String: RouteRule] = [:]) -> (table: RoutingTable, unroutable: [String: String]) {
        var routes: [RouteRule] = []
        var unroutable: [String: String] = [:]
        for deployment in deployments.sorted(by: { $0.spec.name < $1.spec.name }) {
            do {
                routes.append(try rule(deployment.spec, deployment.routing))
            } catch {
                unroutable[deployment.spec.name] = "\(error)"
                if let previous = lastGood[deployment.spec.name] { routes.append(previous) }
            }
        }
        return (RoutingTable(revision: revision, routes: routes), unroutable)
    }

    /// One deployment's route. The candidate comes first, so sticky users only move toward it.
    static func rule(_ spec: ResolvedDeployment, _ routing: Routing) throws -> RouteRule {
        var versions = routing.weights.keys.sorted()
        for extra in [routing.preview?.version, routing.standby, routing.mirror?.version].compactMap({ $0 }) where !versions.contains(extra) {
            versions.append(extra)
        }
        // The versions being rolled out come first (sticky users only move toward them) and are the
        // ones the tripwire watches.
        let watched = (routing.candidate.map { [$0] } ?? []) + routing.challengers
        versions = watched.filter(versions.contains) + versions.filter { !watched.contains($0) }
        let backends: [Backend] = versions.compactMap { name in
            guard let version = spec.deployment.version(named: name) else { return nil }
            let tripwire = watched.contains(name) ? routing.tripwire : nil
            return Backend(version: name, weight: routing.weights[name] ?? 0, endpoints: version.endpoints, healthCheck: version.healthCheck, tripwire: tripwire,
                           tls: version.tls, protocol: version.protocol)
        }
        return try RouteRule(
            name: spec.name, host: spec.deployment.route.host, pathPrefix: spec.deployment.route.pathPrefix,
            backends: backends, headerRules: routing.preview.map { [HeaderRule(header: $0.header, version: $0.version)] } ?? [],
            stickiness: routing.experiment?.assignment ?? spec.deployment.route.stickiness,
            mirror: routing.mirror.map { MirrorRule(version: $0.version, percent: $0.percent, compare: !spec.strategy.shadowComparisons.isEmpty) },
            replacePrefix: spec.deployment.route.replacePrefix,
            experiment: routing.experiment.map { ExperimentRule(id: $0.id, windowMilliseconds: $0.window.milliseconds) }
        )
    }
}
