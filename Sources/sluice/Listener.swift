import Foundation
import NIOCore
import ServiceLifecycle

/// Runs a service that listens on an address, and turns a failure to bind into a sentence that names
/// the listener and the address (`cannot listen on 127.0.0.1:8080 for the proxy: address already in
/// use`), instead of NIO's `bind(descriptor:ptr:bytes:): Address already in use`.
struct Listener<Wrapped: Service>: Service {
    /// What listens, for the message: "the proxy", "the admin API".
    let what: String
    let address: ListenAddress
    let service: Wrapped

    func run() async throws {
        do {
            try await service.run()
        } catch let error as IOError where Self.bindErrors.contains(error.errnoCode) {
            throw ListenError(what: what, address: address, reason: String(cString: strerror(error.errnoCode)).lowercased())
        } catch let error as SocketAddressError {
            throw ListenError(what: what, address: address, reason: "cannot resolve the host (\(error))")
        }
    }

    static var bindErrors: Set<Int32> { [EADDRINUSE, EADDRNOTAVAIL, EACCES] }
}

struct ListenError: Error, CustomStringConvertible {
    var what: String
    var address: ListenAddress
    var reason: String

    var description: String { "cannot listen on \(address) for \(what): \(reason)" }
}

extension ListenAddress {
    init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
}
