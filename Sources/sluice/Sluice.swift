import ArgumentParser
import Foundation

@main
struct Sluice: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "Progressive delivery for ML model versions: canary, blue-green, A/B/n experiments, shadow comparison and automatic rollback.",
        discussion: """
            Sluice reads declarative YAML specs (ModelDeployment, Strategy) from a directory, splits live \
            traffic between model versions in its own reverse proxy, and promotes or rolls back each new \
            version by what the traffic shows. One box keeps its state in SQLite; several share it through \
            etcd (sluice run --etcd).
            """,
        version: "0.1.0",
        subcommands: [
            DemoCommand.self, ValidateCommand.self, RunCommand.self, StatusCommand.self, PromoteCommand.self, AbortCommand.self,
            RetryCommand.self, HistoryCommand.self, ExperimentCommand.self, ModelServerCommand.self, ProxyCommand.self, LoadCommand.self, SimulateCommand.self,
        ]
    )

    /// Usage errors exit 2, as the CLI contract says, not ArgumentParser's default 64.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            if exitCode(for: error) == .validationFailure {
                printError(fullMessage(for: error))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}
