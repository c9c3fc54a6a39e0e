/// `spec.versions[].healthCheck`: an active probe of each endpoint.
public struct HealthCheck: Sendable, Hashable {
    public var path: String
    /// Default 5s.
    public var interval: Duration
    /// Default 1s; must not exceed the interval.
    public var timeout: Duration
    /// Consecutive failed probes that mark an endpoint down. Default 3.
    public var unhealthyThreshold: Int
    /// Consecutive good probes that bring it back. Default 2.
    public var healthyThreshold: Int

    public static let defaultInterval: Duration = .seconds(5)
    public static let defaultTimeout: Duration = .seconds(1)
    public static let defaultUnhealthyThreshold = 3
    public static let defaultHealthyThreshold = 2

    public init(
        path: String,
        interval: Duration = HealthCheck.defaultInterval,
        timeout: Duration = HealthCheck.defaultTimeout,
        unhealthyThreshold: Int = HealthCheck.defaultUnhealthyThreshold,
        healthyThreshold: Int = HealthCheck.defaultHealthyThreshold
    ) {
        self.path = path
        self.interval = interval
        self.timeout = timeout
        self.unhealthyThreshold = unhealthyThreshold
        self.healthyThreshold = healthyThreshold
    }
}

/// Durations read and write in the spec's notation (`5s`), as in YAML.
extension HealthCheck: Codable {
    private enum CodingKeys: String, CodingKey {
        case path, interval, timeout, unhealthyThreshold, healthyThreshold
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func duration(_ key: CodingKeys, _ fallback: Duration) throws -> Duration {
            guard let text = try c.decodeIfPresent(String.self, forKey: key) else { return fallback }
            switch Duration.parseSpec(text) {
            case .success(let value): return value
            case .failure(let error): throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: error.message)
            }
        }
        self.init(
            path: try c.decode(String.self, forKey: .path),
            interval: try duration(.interval, HealthCheck.defaultInterval),
            timeout: try duration(.timeout, HealthCheck.defaultTimeout),
            unhealthyThreshold: try c.decodeIfPresent(Int.self, forKey: .unhealthyThreshold) ?? HealthCheck.defaultUnhealthyThreshold,
            healthyThreshold: try c.decodeIfPresent(Int.self, forKey: .healthyThreshold) ?? HealthCheck.defaultHealthyThreshold
        )
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(path, forKey: .path)
        try c.encode(interval.specDescription, forKey: .interval)
        try c.encode(timeout.specDescription, forKey: .timeout)
        try c.encode(unhealthyThreshold, forKey: .unhealthyThreshold)
        try c.encode(healthyThreshold, forKey: .healthyThreshold)
    }
}
