import Foundation
import Hummingbird
import Logging
import NIOCore
import SluiceAnalysis
import SluiceProxy
import SluiceRollout

/// The admin API (README, "A real rollout, by hand"), as a Hummingbird application: JSON over HTTP, loopback by default,
/// a bearer token on everything but the health checks when one is configured.
public enum AdminAPI {
    public static func buildApplication(
        reconciler: Reconciler, exporter: PrometheusExporter, host: String, port: Int, token: String?, feedbackToken: String? = nil,
        fleet: (@Sendable () async throws -> any Encodable & Sendable)? = nil, fleetCounts: (@Sendable () async throws -> any Encodable & Sendable)? = nil,
        readinessNote: (@Sendable () -> String?)? = nil,
        logger: Logger = Logger(label: "sluice.admin"), onRunning: @escaping @Sendable (Int) -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router()
        router.add(middleware: ErrorMiddleware())
        // Health first, so a token never stands between a load balancer and the health checks.
        router.get("/healthz") { _, _ in "ok\n" }
        router.get("/readyz") { _, _ -> Response in
            let (ready, reason) = await reconciler.readiness
            // A note (a fleet member serving the last routing table while etcd is away) leaves it ready:
            // traffic goes on, and a load balancer must not take every member out at once.
            let note = readinessNote?().map { " (\($0))" } ?? ""
            return ready ? plain(.ok, "ready\(note)\n") : plain(.serviceUnavailable, "not ready: \(reason)\(note)\n")
        }
        // Feedback takes the admin token or its own, which is good for this endpoint only: applications
        // that report outcomes never hold the admin token.
        let tokens = [token, feedbackToken].compactMap { $0?.isEmpty == false ? $0 : nil }
        let feedback = router.group("/api/v1/feedback")
        if !tokens.isEmpty { feedback.add(middleware: BearerTokenMiddleware(tokens: tokens)) }
        feedback.post { request, _ -> Response in
            let body = try await request.body.collect(upTo: maxFeedbackBytes)
            let items: [FeedbackItem]
            do {
                items = try FeedbackParser.parse(body.readableBytesView)
            } catch let error as FeedbackError {
                switch error {
                case .malformed(let reason): throw APIError(.badRequest, reason)
                case .invalid(let reason): throw APIError(.unprocessableContent, reason)
                }
            }
            do {
                return try json(.accepted, try await reconciler.feedback(items))
            } catch let error as FeedbackRefusal {
                switch error {
                case .invalid(let reason): throw APIError(.unprocessableContent, reason)
                case .unavailable(let reason): throw APIError(.serviceUnavailable, "\(reason); nothing was recorded, send it again")
                }
            }
        }
        let api = router.group()
        if let token, !token.isEmpty { api.add(middleware: BearerTokenMiddleware(tokens: [token])) }
        api.get("/metrics") { _, _ -> Response in
            plain(.ok, try await exporter.render(), contentType: "text/plain; version=0.0.4")
        }
        api.get("/api/v1/fleet") { _, _ -> Response in
            guard let fleet else { throw APIError(.notFound, "this Sluice runs on one box, not in a fleet: start it with --etcd") }
            do {
                return try json(.ok, try await fleet())
            } catch let error as APIError {
                throw error
            } catch {
                throw APIError(.serviceUnavailable, "cannot read the fleet from etcd: \(error)")
            }
        }
        // A fleet member's own counts and tripped wires, which the leader fetches to judge the fleet's traffic.
        api.get("/api/v1/fleet/counts") { _, _ -> Response in
            guard let fleetCounts else { throw APIError(.notFound, "this Sluice runs on one box, not in a fleet: start it with --etcd") }
            return try json(.ok, try await fleetCounts())
        }
        api.get("/api/v1/deployments") { _, _ -> Response in
            try json(.ok, await reconciler.views())
        }
        api.get("/api/v1/deployments/:name") { _, context -> Response in
            let name = try context.parameters.require("name")
            guard let view = await reconciler.view(of: name) else { throw APIError(.notFound, "no deployment named \(name)") }
            return try json(.ok, view)
        }
        api.get("/api/v1/deployments/:name/experiment") { _, context -> Response in
            let name = try context.parameters.require("name")
            guard await reconciler.view(of: name) != nil else { throw APIError(.notFound, "no deployment named \(name)") }
            guard let view = await reconciler.experimentView(of: name) else {
                throw APIError(.notFound, "\(name) has no experiment: its strategy has not run one")
            }
            return try json(.ok, view)
        }
        for (path, command) in [("promote", Command.promote), ("abort", .abort), ("retry", .retry)] {
            api.post("/api/v1/deployments/:name/\(path)") { request, context -> Response in
                let name = try context.parameters.require("name")
                let full = request.uri.queryParameters.get("full").map { $0 == "true" || $0 == "1" } ?? false
                let effective = command == .promote && full ? Command.promoteFull : command
                let pass: UInt64
                do {
                    pass = try await reconciler.submit(effective, for: name)
                } catch Reconciler.ReconcilerError.unknownDeployment {
                    throw APIError(.notFound, "no deployment named \(name)")
                } catch Reconciler.ReconcilerError.refused(let reason) {
                    throw APIError(.conflict, reason)
                }
                // Answer once the pass that takes the command is done (within a few seconds at most),
                // so the next read shows its effect.
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { await reconciler.waitForPass(pass) }
                    group.addTask { try? await Task.sleep(for: .seconds(10)) }
                    await group.next()
                    group.cancelAll()
                }
                return try json(.accepted, ["accepted": effective.rawValue, "deployment": name])
            }
        }
        api.get("/api/v1/deployments/:name/revisions") { request, context -> Response in
            let name = try context.parameters.require("name")
            let limit = request.uri.queryParameters.get("limit").flatMap(Int.init).map { min(max($0, 1), 10_000) } ?? 100
            let revisions = try await reconciler.revisions(deployment: name, limit: limit)
            let known = await reconciler.view(of: name) != nil
            guard known || !revisions.isEmpty else { throw APIError(.notFound, "no deployment named \(name)") }
            return try json(.ok, revisions)
        }
        api.get("/api/v1/events") { request, _ -> Response in
            let deployment = request.uri.queryParameters.get("deployment")
            let limit = request.uri.queryParameters.get("limit").flatMap(Int.init).map { min(max($0, 1), 10_000) } ?? 200
            return try json(.ok, try await reconciler.events(deployment: deployment, limit: limit))
        }
        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "sluice"),
            onServerRunning: { channel in onRunning(channel.localAddress?.port ?? port) },
            logger: logger
        )
    }

    /// The largest feedback body: 1,000 items of a few hundred bytes each.
    static let maxFeedbackBytes = 1 << 20

    static func plain(_ status: HTTPResponse.Status, _ body: String, contentType: String = "text/plain; charset=utf-8") -> Response {
        Response(status: status, headers: [.contentType: contentType], body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    static func json(_ status: HTTPResponse.Status, _ value: some Encodable) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        let data = try encoder.encode(value)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// An error the API answers as `{"error": "...", "status": N}`.
    struct APIError: Error {
        var status: HTTPResponse.Status
        var message: String
        init(_ status: HTTPResponse.Status, _ message: String) {
            self.status = status
            self.message = message
        }
    }

    struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
        func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
            do {
                return try await next(request, context)
            } catch let error as APIError {
                return (try? json(error.status, ["error": error.message, "status": "\(error.status.code)"])) ?? plain(error.status, error.message)
            } catch let error as HTTPError {
                return (try? json(error.status, ["error": error.body ?? error.status.reasonPhrase, "status": "\(error.status.code)"])) ?? plain(error.status, "\(error)")
            }
        }
    }

    /// Lets a request through when it carries one of `tokens`.
    struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
        let tokens: [String]

        func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
            let presented = request.headers[.authorization].flatMap { value -> Substring? in
                value.hasPrefix("Bearer ") ? value.dropFirst(7) : nil
            }
            // Every token is compared, whichever matches, so timing says nothing about which one was tried.
            var matches = false
            if let presented {
                for token in tokens where constantTimeEqual(Array(presented.utf8), Array(token.utf8)) { matches = true }
            }
            guard matches else {
                var response = (try? json(.unauthorized, ["error": "missing or wrong bearer token", "status": "401"])) ?? plain(.unauthorized, "unauthorized")
                response.headers[.wwwAuthenticate] = "Bearer"
                return response
            }
            return try await next(request, context)
        }

        /// Compares without an early exit, so timing does not reveal how much of a token was right.
        func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
            var difference = UInt8(a.count == b.count ? 0 : 1)
            for index in 0..<max(a.count, b.count) {
                difference |= (index < a.count ? a[index] : 0) ^ (index < b.count ? b[index] : 0)
            }
            return difference == 0
        }
    }
}
