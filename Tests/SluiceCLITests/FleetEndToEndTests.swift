import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SluiceFleet
import SluiceTestSupport
import Testing

extension HeavyEndToEnd {
    /// Beyond one box, through the real binary: a real 3-member etcd cluster, two `sluice run --etcd`
    /// members on the same manifests, and a `sluice proxy --etcd` replica.
    @Suite("End to end: a fleet on etcd", .serialized)
    struct FleetEndToEndTests {
        final class Fleet: Sendable {
            let etcd: EtcdCluster
            let group: MultiThreadedEventLoopGroup
            let upstreams: [TestUpstream]
            let work: URL
            let members: [String: RunningSluice]
            let proxyPorts: [String: Int]
            let adminPorts: [String: Int]

            init(etcd: EtcdCluster, group: MultiThreadedEventLoopGroup, upstreams: [TestUpstream], work: URL, members: [String: RunningSluice],
                 proxyPorts: [String: Int], adminPorts: [String: Int]) {
                self.etcd = etcd
                self.group = group
                self.upstreams = upstreams
                self.work = work
                self.members = members
                self.proxyPorts = proxyPorts
                self.adminPorts = adminPorts
            }

            var manifest: URL { work.appendingPathComponent("manifests/scorer.yaml") }

            func write(version: String) throws {
                try FleetEndToEndTests.manifest(version: version, v1: upstreams[0].port, v2: upstreams[1].port)
                    .write(to: manifest, atomically: true, encoding: .utf8)
            }

            /// `GET path` on member `node`'s admin API, as JSON.
            func admin(_ node: String, _ path: String) async throws -> Any {
                let client = try await TestClient.connect(port: adminPorts[node]!, group: group)
                let response = try await client.request(.GET, path)
                await client.close()
                return try JSONSerialization.jsonObject(with: Data(response.body.utf8))
            }

            /// `GET path` on member `node`'s admin API, as it answered.
            func raw(_ node: String, _ path: String) async throws -> TestClient.Response {
                let client = try await TestClient.connect(port: adminPorts[node]!, group: group)
                let response = try await client.request(.GET, path)
                await client.close()
                return response
            }

            func fleet(via node: String) async throws -> [String: Any] {
                try await admin(node, "/api/v1/fleet") as? [String: Any] ?? [:]
            }

            func leader(via node: String) async throws -> String? {
                (try await fleet(via: node)["leader"] as? [String: Any])?["node"] as? String
            }

            func view(via node: String) async throws -> [String: Any] {
                try await admin(node, "/api/v1/deployments/scorer") as? [String: Any] ?? [:]
            }

            func stop() async {
                for member in members.values { _ = try? await member.stop() }
                for upstream in upstreams { await upstream.stop() }
                etcd.stop()
                try? await group.shutdownGracefully()
                try? FileManager.default.removeItem(at: work)
            }
        }

        static func manifest(version: String, v1: Int, v2: Int) -> String {
            AnalysisHarness.canary(version: version, ports: ["v1": v1, "v2": v2], steps: """
                - setWeight: 20
                - pause: {duration: 1s}
                - setWeight: 60
                - pause: {duration: 20s}
                """)
        }

        /// Starts etcd, two upstreams, members `a` then `b` (so `a` leads) with a 3 s lease and a 3 s lag
        /// timeout, and a proxy replica `p` with a 30 s lease (so it stays in the fleet while stopped).
        static func start() async throws -> Fleet {
            let etcd = try await EtcdCluster.start()
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let upstreams = [try await TestUpstream.start(name: "v1", group: group), try await TestUpstream.start(name: "v2", group: group)]
            let work = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-fleet-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: work.appendingPathComponent("manifests"), withIntermediateDirectories: true)
            try manifest(version: "v1", v1: upstreams[0].port, v2: upstreams[1].port)
                .write(to: work.appendingPathComponent("manifests/scorer.yaml"), atomically: true, encoding: .utf8)
            var members: [String: RunningSluice] = [:]
            var proxyPorts: [String: Int] = [:]
            var adminPorts: [String: Int] = [:]
            for node in ["a", "b", "p"] where node != "p" {
                let member = try RunningSluice(["run", "--manifests", work.appendingPathComponent("manifests").path, "--etcd", etcd.clientURLs.joined(separator: ","),
                                                "--node-id", node, "--lease-ttl", "3", "--lag-timeout", "3", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--event-loops", "1"],
                                               in: work)
                members[node] = member
                proxyPorts[node] = try await member.port(after: "proxy on")
                adminPorts[node] = try await member.port(after: "admin API on")
                if node == "a" {
                    _ = try await member.line(containing: "leading")
                }
            }
            // A data-plane replica.
            let replica = try RunningSluice(["proxy", "--etcd", etcd.clientURLs.joined(separator: ","), "--node-id", "p", "--lease-ttl", "30", "--listen", "127.0.0.1:0",
                                             "--metrics-listen", "127.0.0.1:0", "--event-loops", "1"],
                                            in: work)
            members["p"] = replica
            proxyPorts["p"] = try await replica.port(after: "serving the fleet's routing on")
            // A replica has no admin API: its /readyz, /metrics and /fleet/counts are on --metrics-listen.
            adminPorts["p"] = try await replica.port(after: "sluice proxy: metrics on")
            return Fleet(etcd: etcd, group: group, upstreams: upstreams, work: work, members: members, proxyPorts: proxyPorts, adminPorts: adminPorts)
        }

        @Test("kill -9 the leader at a 60% pause: the standby carries on at the same step and weight with the pause's original start, no step skipped or repeated, and traffic through it never fails")
        func leaderKilled() async throws {
            try await Self.withFleet { fleet, trafficTask in
                // Both members serve v1 from the fleet's routing table, and the fleet names its leader.
                #expect(try await eventually(timeout: .seconds(60)) {
                    let view = try await fleet.fleet(via: "b")
                    let replicas = view["replicas"] as? [[String: Any]] ?? []
                    let revision = view["routingRevision"] as? UInt64 ?? (view["routingRevision"] as? Int).map(UInt64.init)
                    return replicas.count == 3 && revision != nil && replicas.allSatisfy { ($0["applied"] as? Int).map(UInt64.init) == revision }
                })
                #expect(try await fleet.leader(via: "b") == "a")
                let roles = (try await fleet.fleet(via: "a")["replicas"] as? [[String: Any]] ?? []).map { "\($0["node"] ?? ""):\($0["role"] ?? "")" }
                #expect(roles == ["a:member", "b:member", "p:proxy"])
                #expect(try await eventually { try await RunCommandTests.share("v1", port: fleet.proxyPorts["p"]!, group: fleet.group, count: 20) == 1 })
                // Operators see the fleet: sluice status on any member, and /metrics.
                let status = try await SluiceBinary.run(["status", "--admin", "127.0.0.1:\(fleet.adminPorts["b"]!)"])
                #expect(status.stdout.contains("fleet: leader a (term "), "\(status.stdout)")
                #expect(status.stdout.contains("REPLICA") && status.stdout.contains("proxy") && !status.stdout.contains("(behind)"), "\(status.stdout)")
                let metricsA = try await fleet.raw("a", "/metrics").body, metricsB = try await fleet.raw("b", "/metrics").body
                #expect(metricsA.contains(#"sluice_fleet_leader{node="a"} 1"#) && metricsB.contains(#"sluice_fleet_leader{node="b"} 0"#), "\(metricsA)")
                #expect(metricsB.contains(#"sluice_fleet_etcd_reachable{node="b"} 1"#) && metricsB.contains(#"sluice_fleet_routing_revision{node="b"}"#))
                #expect(try await eventually { try await RunCommandTests.share("v1", port: fleet.proxyPorts["b"]!, group: fleet.group, count: 20) == 1 })

                // Traffic through the member that survives, all along.
                let failures = NIOLockedValueBox<[Int]>([])
                let served = NIOLockedValueBox(0)
                let traffic = Task {
                    while !Task.isCancelled {
                        guard let client = try? await TestClient.connect(port: fleet.proxyPorts["b"]!, group: fleet.group) else {
                            failures.withLockedValue { $0.append(-1) }
                            continue
                        }
                        while !Task.isCancelled {
                            guard let response = try? await client.request(.POST, "/v2/models/scorer/infer") else {
                                failures.withLockedValue { $0.append(-1) }
                                break
                            }
                            if response.status != 200 { failures.withLockedValue { $0.append(response.status) } }
                            served.withLockedValue { $0 += 1 }
                            try? await Task.sleep(for: .milliseconds(5))
                        }
                        await client.close()
                    }
                }
                trafficTask.withLockedValue { $0 = traffic }

                try fleet.write(version: "v2")
                let atSixty = try await Self.waitFor(fleet, via: "a", "the pause at 60%") {
                    ($0["weights"] as? [String: Int])?["v2"] == 60 && $0["candidate"] as? String == "v2" && $0["stepStartedAt"] as? String != nil
                }
                let step = atSixty["step"] as? Int
                let pauseStarted = try #require(atSixty["stepStartedAt"] as? String)

                fleet.members["a"]!.signal(SIGKILL)
                let clock = ContinuousClock()
                let killed = clock.now
                #expect(try await eventually(timeout: .seconds(60)) { try await fleet.leader(via: "b") == "b" })
                let tookOver = clock.now - killed
                let continued = try await Self.waitFor(fleet, via: "b", "the standby's first view") { $0["phase"] as? String != nil }
                #expect(continued["step"] as? Int == step, "same step: \(continued)")
                #expect((continued["weights"] as? [String: Int])?["v2"] == 60, "same weight: \(continued)")
                #expect(continued["stepStartedAt"] as? String == pauseStarted, "the pause keeps its start: \(continued)")
                let share = try await RunCommandTests.share("v2", port: fleet.proxyPorts["b"]!, group: fleet.group, count: 200)
                #expect(share > 0.45, "v2 share \(share) through b after the takeover")

                // The pause ends 15 s after it began, not after the takeover, and v2 is promoted.
                let done = try await Self.waitFor(fleet, via: "b", "the promotion", timeout: .seconds(90)) { $0["stableVersion"] as? String == "v2" }
                #expect(done["phase"] as? String == "Healthy")
                #expect(try await eventually { try await RunCommandTests.share("v2", port: fleet.proxyPorts["p"]!, group: fleet.group, count: 20) == 1 },
                        "the proxy replica follows the new leader's tables")
                traffic.cancel()
                await traffic.value
                #expect(failures.withLockedValue { $0 }.isEmpty, "failed requests through b: \(failures.withLockedValue { $0 })")
                #expect(served.withLockedValue { $0 } > 100)

                let events = try await fleet.admin("b", "/api/v1/events?deployment=scorer") as? [[String: Any]] ?? []
                let recorded = events.compactMap { $0["event"] as? [String: Any] }
                func count(_ kind: String, weight: Double? = nil) -> Int {
                    recorded.filter { $0["kind"] as? String == kind && (weight == nil || ($0["values"] as? [String: Double])?["weight"] == weight) }.count
                }
                let messages = recorded.map { "\($0["kind"] ?? ""): \($0["message"] ?? "")" }
                #expect(count("stepAdvanced", weight: 60) == 1, "the 60% step once: \(messages)")
                #expect(count("stepAdvanced", weight: 20) == 1, "\(messages)")
                #expect(count("rolloutStarted") == 1 && count("promoted") == 1, "one rollout, one promotion: \(messages)")
                #expect(tookOver < .seconds(30), "took over in \(tookOver)")
            }
        }

        @Test("SIGSTOP the leader past its lease: the standby takes over, and once the old leader wakes it steps down, with no write of its own in the store after the takeover")
        func pausedLeaderFenced() async throws {
            try await Self.withFleet { fleet, _ in
                try fleet.write(version: "v2")
                _ = try await Self.waitFor(fleet, via: "a", "the rollout under a") { ($0["weights"] as? [String: Int])?["v2"] == 20 }
                fleet.members["a"]!.signal(SIGSTOP)
                #expect(try await eventually(timeout: .seconds(60)) { try await fleet.leader(via: "b") == "b" })
                let client = try EtcdClient(endpoints: fleet.etcd.clientURLs)
                let successorTerm = try #require(try await client.get("/sluice/leader")?.createRevision)
                // The successor carries on from the stored status: past the 1 s pause, to 60%.
                _ = try await Self.waitFor(fleet, via: "b", "the next step under b") { ($0["weights"] as? [String: Int])?["v2"] == 60 }

                // The old leader wakes with a plan due (its pause at 20% is long over) and a lease that is gone.
                fleet.members["a"]!.signal(SIGCONT)
                _ = try await fleet.members["a"]!.line(containing: "no longer the leader", timeout: .seconds(60))
                #expect(try await fleet.leader(via: "a") == "b")
                let events = try await client.range(EtcdRange(key: "/sluice/state/events/scorer/", prefix: true))
                let written = events.kvs.compactMap { kv -> (node: String, revision: Int64)? in
                    guard let value = try? JSONSerialization.jsonObject(with: Data(kv.value)) as? [String: Any], let node = value["node"] as? String else { return nil }
                    return (node, kv.createRevision)
                }
                #expect(written.count == events.kvs.count, "every event names its writer")
                #expect(written.contains { $0.node == "a" } && written.contains { $0.node == "b" })
                let late = written.filter { $0.node == "a" && $0.revision > successorTerm }
                #expect(late.isEmpty, "writes of the old leader after the takeover: \(late)")
                // The rollout is b's, at 60%, whatever a had planned.
                let view = try await fleet.view(via: "b")
                #expect((view["weights"] as? [String: Int])?["v2"] == 60 || view["stableVersion"] as? String == "v2", "\(view)")
            }
        }

        @Test("a stopped replica holds the step and shows as behind; past the lag timeout the rollout pauses naming it, and goes on once it applies the table")
        func laggingReplica() async throws {
            try await Self.withFleet { fleet, _ in
                // Every replica serves the table in force first (on a loaded box p may still be applying
                // the leader's first one, and then the rollout would rightly wait for it at step 0).
                #expect(try await eventually(timeout: .seconds(60)) {
                    let view = try await fleet.fleet(via: "a")
                    let replicas = view["replicas"] as? [[String: Any]] ?? []
                    let revision = view["routingRevision"] as? UInt64 ?? (view["routingRevision"] as? Int).map(UInt64.init)
                    return replicas.count == 3 && revision != nil && replicas.allSatisfy { ($0["applied"] as? Int).map(UInt64.init) == revision }
                })
                // p keeps its 30 s lease while stopped: the leader must count it, and cannot hear from it.
                fleet.members["p"]!.signal(SIGSTOP)
                try fleet.write(version: "v2")
                let paused = try await Self.waitFor(fleet, via: "a", "the pause for p", timeout: .seconds(60)) {
                    $0["phase"] as? String == "Paused" && $0["waitingFor"] as? String == "replicas"
                }
                #expect((paused["weights"] as? [String: Int])?["v2"] == 20, "held at the first step, whose 1 s pause is long over: \(paused)")
                #expect((paused["message"] as? String)?.contains("replicas lagging: p (at ") == true, "\(paused)")
                // The standby shows it too, once it has read the leader's status.
                let status = NIOLockedValueBox("")
                #expect(try await eventually(timeout: .seconds(30)) {
                    let text = try await SluiceBinary.run(["status", "--admin", "127.0.0.1:\(fleet.adminPorts["b"]!)"]).stdout
                    status.withLockedValue { $0 = text }
                    return text.contains("replicas lagging: p")
                }, "\(status.withLockedValue { $0 })")
                let text = status.withLockedValue { $0 }
                #expect(text.range(of: #"p +proxy +[0-9]+\.[0-9]+ \(behind\) +127\.0\.0\.1:[1-9]"#, options: .regularExpression) != nil, "\(text)")
                #expect(try await fleet.raw("a", "/metrics").body.contains("sluice_fleet_replicas_behind 1"), "the lag series on the leader")
                let still = try await fleet.view(via: "a")
                #expect((still["weights"] as? [String: Int])?["v2"] == 20, "no step while p is behind: \(still)")

                fleet.members["p"]!.signal(SIGCONT)
                let done = try await Self.waitFor(fleet, via: "a", "the next step once p applied", timeout: .seconds(60)) {
                    ($0["weights"] as? [String: Int])?["v2"] == 60
                }
                #expect(done["waitingFor"] == nil || done["waitingFor"] is NSNull, "\(done)")
                #expect(try await eventually { try await RunCommandTests.share("v2", port: fleet.proxyPorts["p"]!, group: fleet.group, count: 100) > 0.4 })
                let events = try await fleet.admin("a", "/api/v1/events?deployment=scorer") as? [[String: Any]] ?? []
                let kinds = events.compactMap { ($0["event"] as? [String: Any])?["kind"] as? String }
                #expect(kinds.filter { $0 == "paused" }.count == 1 && kinds.contains("replicasCaughtUp"), "\(kinds)")
                if let paused = kinds.firstIndex(of: "paused"), let caughtUp = kinds.firstIndex(of: "replicasCaughtUp") {
                    #expect(paused < caughtUp && kinds[caughtUp...].contains("stepAdvanced"), "\(kinds)")
                }
            }
        }

        @Test("judged across the fleet: a candidate with 30% errors whose traffic all goes through a non-leader replica is rolled back by error-rate analysis as on one box, and a dead one there by the tripwire")
        func judgedAcrossTheFleet() async throws {
            try await Self.withFleet { fleet, trafficTask in
                let failing = try RunningSluice(["model-server", "--name", "scorer", "--model-version", "v2", "--error-rate", "0.3", "--port", "0"])
                defer { failing.signal(SIGKILL) }
                let failingPort = try await failing.port(after: "model-server scorer v2 on")
                let refused = try LoopbackSocket(listening: false)
                defer { refused.close() }
                func manifest(_ version: String, tripwire: Int, analysis: Bool) -> String {
                    AnalysisHarness.canary(version: version, ports: ["v1": fleet.upstreams[0].port, "v2": failingPort, "v3": refused.port], steps: """
                        - setWeight: 50
                        - pause: {duration: 10m}
                        """, analysis: !analysis ? "" : """
                        interval: 1s
                        metrics:
                          - {name: success-rate, builtin: successRate, successCondition: ">= 0.95", minSamples: 20}
                        """, tripwire: tripwire)
                }
                // Traffic through the replica p only: the leader's own proxy serves none of it.
                let served = NIOLockedValueBox(0)
                let traffic = Task {
                    while !Task.isCancelled {
                        guard let client = try? await TestClient.connect(port: fleet.proxyPorts["p"]!, group: fleet.group) else { continue }
                        while !Task.isCancelled, let response = try? await client.request(.POST, "/v2/models/scorer/infer", body: AnalysisHarness.inferBody) {
                            if response.status != 0 { served.withLockedValue { $0 += 1 } }
                            try? await Task.sleep(for: .milliseconds(5))
                        }
                        await client.close()
                    }
                }
                trafficTask.withLockedValue { $0 = traffic }
                #expect(try await fleet.leader(via: "a") == "a")

                // The tripwire is off, so that five errors in a row cannot beat the analysis to it.
                try manifest("v2", tripwire: 0, analysis: true).write(to: fleet.manifest, atomically: true, encoding: .utf8)
                let rolledBack = try await Self.waitFor(fleet, via: "a", "v2's rollback", timeout: .seconds(120)) { $0["phase"] as? String == "Degraded" }
                let message = rolledBack["message"] as? String ?? ""
                #expect(message.hasPrefix("rolled back v2: metric success-rate failed: ") && message.contains("is not >= 0.95"), "\(message)")
                let result = try #require((rolledBack["analysis"] as? [[String: Any]] ?? []).first { $0["metric"] as? String == "success-rate" })
                #expect(((result["values"] as? [String: Double])?["candidate.requests"] ?? 0) >= 20, "judged on p's traffic: \(result)")
                let ownMetrics = try await fleet.raw("a", "/metrics").body
                #expect(!ownMetrics.contains(#"sluice_requests_total{deployment="scorer",version="v2"} "#)
                        || ownMetrics.contains(#"sluice_requests_total{deployment="scorer",version="v2"} 0"#), "the leader's proxy served none of v2's traffic")

                // A dead candidate behind p, with no analysis to beat it: p's tripwire reaches the leader through etcd.
                try manifest("v3", tripwire: 5, analysis: false).write(to: fleet.manifest, atomically: true, encoding: .utf8)
                let tripped = try await Self.waitFor(fleet, via: "a", "v3's rollback", timeout: .seconds(120)) {
                    $0["phase"] as? String == "Degraded" && $0["rejected"] as? String == "v3"
                }
                #expect((tripped["message"] as? String)?.contains("rolled back v3: tripwire: 5 hard failures in a row") == true, "\(tripped)")
                #expect(served.withLockedValue { $0 } > 50)
            }
        }

        @Test("every etcd member down: members and replicas keep serving the last table with no failed request, the rollout freezes with the reason shown, and it finishes once etcd is back")
        func etcdOutage() async throws {
            try await Self.withFleet { fleet, trafficTask in
                try fleet.write(version: "v2")
                // Both members have read the 60% status before etcd goes: each shows the last it read
                // (in CI, b's last read was still the 20% step when etcd was killed).
                for node in ["a", "b"] {
                    _ = try await Self.waitFor(fleet, via: node, "the pause at 60% on \(node)") {
                        ($0["weights"] as? [String: Int])?["v2"] == 60 && $0["stepStartedAt"] as? String != nil
                    }
                }
                #expect(try await eventually { try await RunCommandTests.share("v2", port: fleet.proxyPorts["p"]!, group: fleet.group, count: 100) > 0.4 },
                        "the replica serves the 60% table")
                let failures = NIOLockedValueBox<[String]>([])
                let served = NIOLockedValueBox(0)
                let traffic = Task {
                    while !Task.isCancelled {
                        for node in ["a", "b", "p"] {
                            do {
                                let client = try await TestClient.connect(port: fleet.proxyPorts[node]!, group: fleet.group)
                                let response = try await client.request(.POST, "/v2/models/scorer/infer")
                                await client.close()
                                if response.status != 200 { failures.withLockedValue { $0.append("\(node): \(response.status)") } }
                                served.withLockedValue { $0 += 1 }
                            } catch {
                                failures.withLockedValue { $0.append("\(node): \(error)") }
                            }
                        }
                        try? await Task.sleep(for: .milliseconds(10))
                    }
                }
                trafficTask.withLockedValue { $0 = traffic }

                let servedBefore = served.withLockedValue { $0 }
                fleet.etcd.killAll()
                // With no etcd the leader cannot renew its lease: it steps down, and every member says why
                // nothing moves.
                for node in ["a", "b"] {
                    let frozen = try await Self.waitFor(fleet, via: node, "the reason shown on \(node)", timeout: .seconds(60)) {
                        ($0["fault"] as? String)?.contains("cannot be read") == true
                    }
                    #expect((frozen["weights"] as? [String: Int])?["v2"] == 60, "frozen at 60%: \(frozen)")
                }
                let servedDuringOutage = served.withLockedValue { $0 } - servedBefore
                // Still ready (traffic goes on), and saying why nothing moves.
                let ready = try await fleet.raw("b", "/readyz")
                #expect(ready.status == 200 && ready.body.contains("serving the last routing table applied") && ready.body.contains("etcd unreachable"),
                        "\(ready.status) \(ready.body)")
                #expect(try await fleet.raw("b", "/metrics").body.contains(#"sluice_fleet_etcd_reachable{node="b"} 0"#))
                let replicaReady = try await fleet.raw("p", "/readyz")
                #expect(replicaReady.status == 200 && replicaReady.body.contains("serving the last routing table applied") && replicaReady.body.contains("etcd unreachable"),
                        "the proxy replica says so too: \(replicaReady.status) \(replicaReady.body)")
                #expect(try await fleet.raw("p", "/metrics").body.contains(#"sluice_fleet_etcd_reachable{node="p"} 0"#))

                for index in fleet.etcd.members.indices { try fleet.etcd.restart(member: index) }
                try await fleet.etcd.waitHealthy()
                let done = try await Self.waitFor(fleet, via: "b", "the promotion after etcd is back", timeout: .seconds(120)) {
                    $0["stableVersion"] as? String == "v2"
                }
                #expect(done["fault"] == nil || done["fault"] is NSNull, "\(done)")
                #expect(try await eventually(timeout: .seconds(30)) { try await RunCommandTests.share("v2", port: fleet.proxyPorts["p"]!, group: fleet.group, count: 20) == 1 })
                traffic.cancel()
                await traffic.value
                #expect(servedDuringOutage > 30, "requests served while etcd was down: \(servedDuringOutage)")
                #expect(failures.withLockedValue { $0 }.isEmpty, "failed requests: \(failures.withLockedValue { $0.prefix(10) })")
            }
        }

        @Test("fleet flags are checked before anything starts, with errors that say what to give")
        func flags() async throws {
            let manifests = FileManager.default.temporaryDirectory.path
            let badURL = try await SluiceBinary.run(["run", "--manifests", manifests, "--etcd", "127.0.0.1:2379"])
            #expect(badURL.status == 64 || badURL.status == 2, "\(badURL.stderr)")
            #expect(badURL.stderr.contains("--etcd") && badURL.stderr.contains("http://HOST:PORT"), "\(badURL.stderr)")
            let ttl = try await SluiceBinary.run(["run", "--manifests", manifests, "--etcd", "http://127.0.0.1:2379", "--lease-ttl", "1"])
            #expect(ttl.stderr.contains("--lease-ttl must be from 2 to 60"), "\(ttl.stderr)")
            let neither = try await SluiceBinary.run(["proxy", "--listen", "127.0.0.1:0"])
            #expect(neither.status != 0 && neither.stderr.contains("give --routes FILE or --etcd URLS"), "\(neither.stderr)")
            let noCounts = try await SluiceBinary.run(["proxy", "--listen", "127.0.0.1:0", "--etcd", "http://127.0.0.1:2379"])
            #expect(noCounts.status != 0 && noCounts.stderr.contains("--etcd needs --metrics-listen"), "\(noCounts.stderr)")
            let lag = try await SluiceBinary.run(["run", "--manifests", manifests, "--etcd", "http://127.0.0.1:2379", "--lag-timeout", "0"])
            #expect(lag.stderr.contains("--lag-timeout must be from 1 to 3600"), "\(lag.stderr)")
            let help = try await SluiceBinary.run(["run", "--help"])
            #expect(help.stdout.contains("--etcd") && help.stdout.contains("--lease-ttl") && help.stdout.contains("--node-id"))
        }

        /// Starts a fleet, runs `body` with it and a slot for its traffic task, and tears everything down;
        /// on a failure the traffic stops, a stopped member is continued and every member's output is
        /// printed first.
        static func withFleet(_ body: (Fleet, NIOLockedValueBox<Task<Void, Never>?>) async throws -> Void) async throws {
            let fleet = try await start()
            let traffic = NIOLockedValueBox<Task<Void, Never>?>(nil)
            do {
                try await body(fleet, traffic)
            } catch {
                if let task = traffic.withLockedValue({ $0 }) {
                    task.cancel()
                    await task.value
                }
                for member in fleet.members.values { member.signal(SIGCONT) }
                for (node, member) in fleet.members.sorted(by: { $0.key < $1.key }) { print("--- member \(node):\n\(member.text)") }
                await fleet.stop()
                throw error
            }
            if let task = traffic.withLockedValue({ $0 }) {
                task.cancel()
                await task.value
            }
            await fleet.stop()
        }

        static func waitFor(_ fleet: Fleet, via node: String, _ what: String, timeout: Duration = .seconds(60),
                            _ condition: ([String: Any]) -> Bool) async throws -> [String: Any] {
            let clock = ContinuousClock()
            let deadline = clock.now + timeout
            var view: [String: Any] = [:]
            while clock.now < deadline {
                if let seen = try? await fleet.view(via: node) {
                    view = seen
                    if condition(seen) { return seen }
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            throw RunningSluice.Failure(message: "\(what) did not happen within \(timeout) via \(node); last view: \(view)")
        }
    }
}
