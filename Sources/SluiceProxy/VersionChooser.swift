import SluiceSpec

/// What the choice of a version may read of a request: a header (by lower-cased name) and a cookie.
/// An HTTP/1.1 head answers from its bytes; nothing is looked up unless a route's rules ask.
protocol RequestAttributes {
    func header(_ name: String) -> Substring?
    func cookie(_ name: String) -> Substring?
}

/// A request's attributes as two lookups (HTTP/2 streams, tests).
struct AttributeLookups: RequestAttributes {
    let headerLookup: (String) -> Substring?
    let cookieLookup: (String) -> Substring?

    func header(_ name: String) -> Substring? { headerLookup(name) }
    func cookie(_ name: String) -> Substring? { cookieLookup(name) }
}

/// Picks the version for one request, in the order docs/proxy.md documents: an explicit header rule, then
/// a sticky bucket, then a weighted random draw. Pure: the request's attributes and the random number
/// generator are parameters.
enum VersionChooser {
    /// Sticky keys hash into this many buckets, so weights resolve to 0.01%.
    static let bucketCount: UInt64 = 10_000

    /// The backend index for a request. `header` looks up a request header by lower-cased name;
    /// `cookie` looks up a cookie by name.
    static func choose(
        _ route: RouteRule,
        header: @escaping (String) -> Substring?,
        cookie: @escaping (String) -> Substring?,
        using rng: inout some RandomNumberGenerator
    ) -> Int {
        choose(route, request: AttributeLookups(headerLookup: header, cookieLookup: cookie), using: &rng)
    }

    /// The same, reading the request through `RequestAttributes`; a route without header rules or
    /// stickiness reads nothing of it.
    static func choose(_ route: RouteRule, request: some RequestAttributes, using rng: inout some RandomNumberGenerator) -> Int {
        for rule in route.headerRules {
            if let value = request.header(rule.header.name), value == rule.header.value, let index = route.backendIndex(of: rule.version) {
                return index
            }
        }
        if let stickiness = route.stickiness {
            let key: Substring? = switch stickiness {
            case .header(let name): request.header(name)
            case .cookie(let name): request.cookie(name)
            }
            if let key, !key.isEmpty {
                return backend(route, forBucket: bucket(of: key, salt: route.experiment?.id))
            }
        }
        return backend(route, forBucket: rng.next(upperBound: bucketCount))
    }

    /// Buckets are handed out in backend order: backend 0 owns [0, w0×100), backend 1 the next
    /// w1×100, and so on. A backend with weight 0 owns none.
    static func backend(_ route: RouteRule, forBucket bucket: UInt64) -> Int {
        var upper: UInt64 = 0
        // By index: a `Backend` is not copied (and its strings retained) to read its weight.
        for index in route.backends.indices {
            upper += UInt64(route.backends[index].weight) * (bucketCount / 100)
            if bucket < upper { return index }
        }
        return route.backends.lastIndex { $0.weight > 0 } ?? 0
    }

    /// FNV-1a: stable across processes and restarts, unlike `Hasher`, so a user keeps their version.
    /// An experiment's id salts it, so each experiment splits users independently of the others.
    static func bucket(of key: Substring, salt: String? = nil) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in (salt.map { $0 + "\u{0}" } ?? "").utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        for byte in key.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return hash % bucketCount
    }

    /// Whether this request is also copied to the mirror version.
    static func shouldMirror(_ mirror: MirrorRule?, using rng: inout some RandomNumberGenerator) -> Bool {
        guard let mirror, mirror.percent > 0 else { return false }
        return rng.next(upperBound: UInt64(100)) < UInt64(mirror.percent)
    }
}
