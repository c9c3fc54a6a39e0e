import NIOCore

/// Limits and timeouts of the proxy. Every size and every wait has a bound (docs/proxy.md).
public struct ProxyConfiguration: Sendable {
    public var host: String = "127.0.0.1"
    /// 0 picks a free port; `ProxyServer.localPort` tells which.
    public var port: Int = 8080
    /// Event loops serving clients; each has its own upstream pools and counters.
    public var eventLoops: Int = System.coreCount
    /// The scheduler time slice each event loop thread asks for (Linux 6.12 and later; elsewhere
    /// nothing changes). An event loop works in short bursts between waits; with a slice shorter than
    /// other threads' it preempts them when it wakes, instead of waiting for the running thread's slice
    /// to end (the kernel's default is 0.7 ms times 1 + log2 of the cores up to 8: 1.4 ms on 2): the shadow
    /// comparison, or a model server sharing the cores. Its share of the CPU does not change. `nil`
    /// leaves the kernel's default. Only for the event loops the server creates itself.
    public var eventLoopSlice: TimeAmount? = .microseconds(100)
    /// Serve TLS on the listener with this certificate (reloadable); plain HTTP when `nil`.
    public var tls: ListenerTLS?

    /// Most bytes of request headers (names and values together).
    public var maxHeaderBytes: Int = 32 * 1024
    public var maxHeaderCount: Int = 100
    public var maxURILength: Int = 8 * 1024
    /// Streams an HTTP/2 client may have open at once on one connection (advertised in its SETTINGS).
    public var http2MaxConcurrentStreams: Int = 256
    /// Largest request body; bigger ones get 413. It streams, so this bounds transfer, not memory.
    public var maxBodyBytes: Int64 = 1 << 30
    /// Time from the first byte of a request to its last header byte (slowloris).
    public var requestHeaderTimeout: TimeAmount = .seconds(10)
    /// A keep-alive client connection idle this long is closed.
    public var clientIdleTimeout: TimeAmount = .seconds(60)

    public var upstreamConnectTimeout: TimeAmount = .seconds(2)
    /// Time from sending a request to receiving the response head; then 504.
    public var upstreamResponseTimeout: TimeAmount = .seconds(30)
    /// A pooled upstream connection idle this long is closed.
    public var upstreamIdleTimeout: TimeAmount = .seconds(60)
    /// Connections per endpoint per event loop, busy and idle; further requests wait for one.
    public var maxConnectionsPerEndpoint: Int = 512
    /// Requests waiting for a connection per endpoint per event loop; beyond this they get 503.
    public var maxWaitingPerEndpoint: Int = 4096

    /// Mirrored requests in flight per event loop; more are dropped, never queued.
    public var maxMirrorsInFlight: Int = 64
    /// Consecutive connect failures that eject an endpoint until a probe succeeds.
    public var ejectAfterConnectFailures: Int = 5
    /// How often an ejected endpoint without a health check is probed with a TCP connect.
    public var ejectedProbeInterval: TimeAmount = .seconds(2)

    /// Exposures each event loop remembers for experiment feedback (about 70 bytes each, more for a client's own request id or a unit); when full,
    /// the oldest go first and are counted if their window was still open.
    public var exposureCapacity: Int = 100_000

    /// Body bytes kept per answer of a compared mirror (stable's and the shadow's); a bigger answer is
    /// counted as not compared, never buffered beyond this.
    public var shadowBodyLimit: Int = 64 * 1024
    /// Every n-th compared mirror also goes to a second endpoint of the version serving the request,
    /// when it has one: the stable-versus-stable noise floor.
    public var shadowNoiseEvery: Int = 10
    /// Bytes of finished pairs each event loop holds until the controller takes them; past this, pairs
    /// are dropped and counted.
    public var shadowLogBytes: Int = 8 << 20

    /// Seed for the weighted random draw; `nil` seeds from the system. Tests pass one to be repeatable.
    public var randomSeed: UInt64?

    public init() {}
}
