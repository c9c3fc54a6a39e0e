/// Identifies one version of one route in metrics.
public struct MetricKey: Hashable, Sendable, CustomStringConvertible {
    public var route: String
    public var version: String

    public init(route: String, version: String) {
        self.route = route
        self.version = version
    }

    public var description: String { "\(route)/\(version)" }
}
