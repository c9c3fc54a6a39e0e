import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceController

/// `--admin` and `--admin-token`, shared by the commands that talk to a running `sluice run`.
struct AdminOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("URL of the admin API of a running sluice run. Default: $SLUICE_ADMIN, else http://127.0.0.1:9900.", valueName: "url"))
    var admin: String?

    @Option(name: .long, help: ArgumentHelp("Bearer token for the admin API. Default: $SLUICE_ADMIN_TOKEN.", valueName: "token"))
    var adminToken: String?

    var baseURL: String {
        var url = admin ?? ProcessInfo.processInfo.environment["SLUICE_ADMIN"] ?? "http://127.0.0.1:9900"
        if !url.contains("://") { url = "http://" + url }
        while url.hasSuffix("/") { url.removeLast() }
        return url
    }

    var token: String? { adminToken ?? ProcessInfo.processInfo.environment["SLUICE_ADMIN_TOKEN"] }
}

/// A JSON client of the admin API, with errors a person can act on.
struct AdminClient {
    let options: AdminOptions

    /// One connection attempt a request: an admin API that is not there is said at once (the shared
    /// client retried a refused connect until the request's 10 s ran out; `--watch` waits on its own).
    /// The process's for its whole life, so never shut down.
    private static let http: HTTPClient = {
        var configuration = HTTPClient.Configuration(timeout: .init(connect: .seconds(5)))
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    struct Failure: Error, CustomStringConvertible {
        var description: String
        /// The HTTP status of the answer; `nil` when the admin API could not be reached.
        var status: Int? = nil

        /// Worth waiting out while a `sluice run` starts: not reachable yet, the deployment not read
        /// yet, or not ready.
        var isTransient: Bool { status == nil || status == 404 || status == 503 }
    }

    func get<T: Decodable>(_ path: String, as type: T.Type) async throws -> T {
        let body = try await send(.GET, path)
        do {
            return try JSONDecoder().decode(T.self, from: Data(body.utf8))
        } catch {
            throw Failure(description: "unexpected answer from \(options.baseURL)\(path): \(error)")
        }
    }

    /// The body of a `GET`, as text (`/metrics`).
    func text(_ path: String) async throws -> String {
        try await send(.GET, path)
    }

    @discardableResult
    func post(_ path: String) async throws -> String {
        try await send(.POST, path)
    }

    private func send(_ method: HTTPMethod, _ path: String) async throws -> String {
        var request = HTTPClientRequest(url: options.baseURL + path)
        request.method = method
        if let token = options.token, !token.isEmpty { request.headers.add(name: "authorization", value: "Bearer \(token)") }
        let response: HTTPClientResponse
        do {
            response = try await Self.http.execute(request, timeout: .seconds(10))
        } catch {
            throw Failure(description: "cannot reach the admin API at \(options.baseURL) (\(plainDescription(error))); is sluice run running? Set --admin or SLUICE_ADMIN")
        }
        let body = String(buffer: try await response.body.collect(upTo: 16 << 20))
        guard (200..<300).contains(response.status.code) else {
            struct APIError: Decodable { var error: String }
            let message = (try? JSONDecoder().decode(APIError.self, from: Data(body.utf8)))?.error ?? body
            throw Failure(description: "\(response.status.code) \(response.status.reasonPhrase): \(message)", status: Int(response.status.code))
        }
        return body
    }
}

/// One GET of a `--watch`: `nil` after a transient failure (`sluice run` still starting, or not having
/// read the manifest yet), said once on stderr and followed by a second's pause, so the caller asks
/// again; any other failure ends the command.
func watchGet<T: Decodable>(_ client: AdminClient, _ path: String, as type: T.Type, waitingSaid: inout Bool) async throws -> T? {
    do {
        return try await client.get(path, as: type)
    } catch let failure as AdminClient.Failure where failure.isTransient {
        if !waitingSaid { printError("waiting: \(failure)") }
        waitingSaid = true
        try await Task.sleep(for: .seconds(1))
        return nil
    } catch let failure as AdminClient.Failure {
        printError("error: \(failure)")
        throw ExitCode(1)
    }
}

/// Runs an admin call and turns its failure into a message and exit status 1.
func withAdmin<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let failure as AdminClient.Failure {
        printError("error: \(failure)")
        throw ExitCode(1)
    }
}

/// A network error as a person reads it: a socket error by its cause ("connection refused"), where
/// NIO's own text reads "connection reset (error set): Connection refused (errno: 111)".
func plainDescription(_ error: any Error) -> String {
    switch error {
    case let error as IOError:
        return String(cString: strerror(error.errnoCode)).lowercased()
    case let error as NIOConnectionError:
        if let first = error.connectionErrors.first { return plainDescription(first.error) }
        if let lookup = error.dnsAError ?? error.dnsAAAAError { return "cannot look up \(error.host): \(plainDescription(lookup))" }
        return "cannot connect to \(error.host):\(error.port)"
    case let error as SocketAddressError.UnknownHost:
        return error.errorDescription.lowercased()
    case let error as HTTPClientError where error == .connectTimeout:
        return "connect timed out"
    case let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout:
        return "no answer in time"
    case let error as HTTPClientError where error == .remoteConnectionClosed:
        return "the connection was closed before the answer"
    default:
        return "\(error)"
    }
}
