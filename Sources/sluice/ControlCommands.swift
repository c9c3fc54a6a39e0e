import ArgumentParser
import Foundation
import SluiceController
import SluiceFleet
import SluiceRollout

struct PromoteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "promote",
        abstract: "End the current pause of a rollout (or, with --full, promote the new version to 100% at once)."
    )
    @Argument(help: "Deployment name.") var name: String
    @Flag(name: .long, help: "Skip the remaining steps and analysis: all traffic to the new version now.") var full = false
    @OptionGroup var options: AdminOptions

    func run() async throws {
        try await requestAction("promote\(full ? "?full=true" : "")", of: name, options, said: full ? "full promotion requested" : "promotion requested")
    }
}

struct AbortCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "abort",
        abstract: "Stop a rollout: all traffic back to the stable version; the new version stays rejected."
    )
    @Argument(help: "Deployment name.") var name: String
    @OptionGroup var options: AdminOptions

    func run() async throws {
        try await requestAction("abort", of: name, options, said: "abort requested")
    }
}

struct RetryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry",
        abstract: "Roll out a rejected (rolled back or aborted) version again."
    )
    @Argument(help: "Deployment name.") var name: String
    @OptionGroup var options: AdminOptions

    func run() async throws {
        try await requestAction("retry", of: name, options, said: "retry requested")
    }
}

struct HistoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "List a deployment's revisions and decisions, oldest first, with times and reasons."
    )
    @Argument(help: "Deployment name.") var name: String
    @Option(name: .long, help: "How many of the most recent events.") var limit: Int = 50
    @OptionGroup var options: AdminOptions

    func run() async throws {
        let (revisions, events) = try await withAdmin {
            let client = AdminClient(options: options)
            return (try await client.get("/api/v1/deployments/\(name)/revisions?limit=\(limit)", as: [Revision].self),
                    try await client.get("/api/v1/events?deployment=\(name)&limit=\(limit)", as: [StoredEvent].self))
        }
        let formatter = ISO8601DateFormatter()
        let time = { (instant: Instant) in formatter.string(from: Date(timeIntervalSince1970: Double(instant.milliseconds) / 1000)) }
        if !revisions.isEmpty {
            let rows = [["REVISION", "VERSION", "FROM", "STARTED", "ENDED", "OUTCOME", "REASON"]] + revisions.map { revision in
                ["\(revision.number)", revision.version, revision.from ?? "-", time(revision.startedAt), revision.endedAt.map(time) ?? "-",
                 revision.outcome.rawValue, revision.reason]
            }
            print(StatusRenderer.columns(rows) + "\n")
        }
        for stored in events {
            let time = time(stored.at)
            let values = stored.event.values.isEmpty ? "" : "  " + stored.event.values.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            print("\(time)  \(stored.event.kind.rawValue.padding(toLength: 20, withPad: " ", startingAt: 0))  \(stored.event.message)\(values)")
        }
        if events.isEmpty { print("no events for \(name)") }
    }
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show phase, versions, weights, step and the last analysis of deployments.",
        discussion: """
            With --watch (and a NAME), redraws a live view once a second and exits when there is nothing \
            more to watch: 0 when the rollout ends Healthy or stops to wait for sluice promote, 1 when it \
            is Degraded, 2 after --timeout. While sluice run is still starting (or has not read the \
            deployment yet) it waits for it. CI pipelines can wait on it.
            """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case table, json, yaml
    }

    @Argument(help: "Deployment name; all deployments when omitted.") var name: String?
    @Flag(name: .long, help: "Follow one rollout live until it is Healthy, Degraded, or waits for sluice promote.") var watch = false
    @Option(name: [.customShort("o"), .customLong("output")], help: ArgumentHelp("Output format.", valueName: "table|json|yaml")) var format: Format = .table
    @Option(name: .long, help: ArgumentHelp("With --watch: first wait until sluice run has read this spec.version (an edit just made, or a commit just synced), then follow its rollout.", valueName: "version"))
    var desired: String?
    @Option(name: .long, help: ArgumentHelp("Seconds a --watch may last before it gives up with exit status 2.", valueName: "seconds")) var timeout: Int = 3600
    @OptionGroup var options: AdminOptions

    func validate() throws {
        if watch && name == nil { throw ValidationError("--watch follows one deployment: give its NAME") }
        if desired != nil && !watch { throw ValidationError("--desired goes with --watch") }
    }

    func run() async throws {
        let client = AdminClient(options: options)
        guard watch, let name else {
            let views: [DeploymentView] = try await withAdmin {
                if let name { return [try await client.get("/api/v1/deployments/\(name)", as: DeploymentView.self)] }
                return try await client.get("/api/v1/deployments", as: [DeploymentView].self)
            }
            print(try StatusRenderer.render(views, format: format))
            // A fleet member says who leads and what each replica serves (a single box answers 404).
            if format == .table, let fleet = try? await client.get("/api/v1/fleet", as: FleetView.self) {
                print("\n" + StatusRenderer.fleet(fleet))
            }
            return
        }
        let deadline = ContinuousClock.now + .seconds(timeout)
        var lastLines = 0
        var waitingSaid = false
        while ContinuousClock.now < deadline {
            guard let view = try await watchGet(client, "/api/v1/deployments/\(name)", as: DeploymentView.self, waitingSaid: &waitingSaid) else {
                continue
            }
            if let desired, view.desiredVersion != desired {
                if !waitingSaid { printError("waiting: \(name) has spec.version \(view.desiredVersion); waiting for sluice run to read \(desired)") }
                waitingSaid = true
                try await Task.sleep(for: .milliseconds(250))
                continue
            }
            let text = StatusRenderer.live(view)
            // Redraw in place on a terminal; append otherwise (logs, CI).
            if isatty(STDOUT_FILENO) != 0 && lastLines > 0 { print("\u{1B}[\(lastLines)F\u{1B}[J", terminator: "") }
            print(text)
            fflush(nil)
            lastLines = text.split(separator: "\n", omittingEmptySubsequences: false).count
            if view.candidate == nil && view.desiredVersion == view.stableVersion && view.phase == "Healthy" { return }
            if view.phase == "Degraded" { throw ExitCode(1) }
            if view.waitingFor == "promote" {
                // Nothing more happens on its own: a person decides.
                print("\(name) waits for a person: sluice promote \(name) (or abort)")
                return
            }
            try await Task.sleep(for: .seconds(1))
        }
        printError("error: \(name) still rolling out after \(timeout)s")
        throw ExitCode(2)
    }
}

/// POSTs a manual control to the admin API and says what was asked.
func requestAction(_ action: String, of deployment: String, _ options: AdminOptions, said: String) async throws {
    _ = try await withAdmin { try await AdminClient(options: options).post("/api/v1/deployments/\(deployment)/\(action)") }
    print("\(deployment): \(said)")
}
