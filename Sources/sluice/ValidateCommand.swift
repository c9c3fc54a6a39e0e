import ArgumentParser
import Foundation
import SluiceSpec

struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check spec files and report every error with its file, line and column.",
        discussion: """
            Each PATH is a YAML file, a directory, or - for standard input; a directory contributes the \
            *.yaml and *.yml files directly inside it (not its subdirectories). Strategy templates resolve by name from the \
            strategies directory and from the files given.

            Errors are printed as FILE:LINE:COLUMN: error: MESSAGE (at YAML.PATH), one per line.

            Exit status: 0 when every file is valid, 1 when any has an error, 2 for usage errors \
            (such as a path that does not exist).
            """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case text
        case json
    }

    @Argument(help: "Spec files or directories to check.")
    var paths: [String]

    @Option(name: .long, help: ArgumentHelp(
        "Directory of Strategy templates.",
        discussion: "Default: $SLUICE_STRATEGIES, else ./strategies when it exists.",
        valueName: "dir"))
    var strategies: String?

    @Option(name: [.customShort("o"), .customLong("output")], help: ArgumentHelp("Output format.", valueName: "text|json"))
    var format: Format = .text

    func validate() throws {
        guard !paths.isEmpty else { throw ValidationError("give at least one file or directory to validate") }
        for path in paths + [strategies].compactMap({ $0 }) where path != "-" && !FileManager.default.fileExists(atPath: path) {
            throw ValidationError("no such file or directory: \(path)")
        }
    }

    func run() throws {
        let manifestPaths = try paths.flatMap(SpecFiles.files(at:))
        let given = Set(manifestPaths.map(SpecFiles.canonical))
        let strategyPaths = try (strategies ?? SpecFiles.defaultStrategiesDirectory())
            .map(SpecFiles.files(at:))?
            .filter { !given.contains(SpecFiles.canonical($0)) } ?? []
        let manifests: [SourceFile], strategyFiles: [SourceFile]
        do {
            manifests = try SpecFiles.read(manifestPaths)
            strategyFiles = try SpecFiles.read(strategyPaths)
        } catch let error as SpecFiles.Unreadable {
            printError("error: \(error)")
            throw ExitCode(2)
        }
        let catalog = SpecCatalog(manifests: manifests, strategies: strategyFiles)

        switch format {
        case .text:
            for diagnostic in catalog.diagnostics { print(diagnostic) }
            if catalog.isValid {
                print("ok: \(manifestPaths.count) file(s), \(catalog.deployments.count) deployment(s), \(catalog.templates.count) strategy template(s)")
            } else {
                let files = catalog.invalidFiles.count
                printError("\(catalog.diagnostics.count) error(s) in \(files) file(s)")
            }
        case .json:
            let report = Report(valid: catalog.isValid, files: manifestPaths, diagnostics: catalog.diagnostics.map(Report.Entry.init))
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        }
        if !catalog.isValid { throw ExitCode(1) }
    }

    struct Report: Encodable {
        struct Entry: Encodable {
            var file: String
            var line: Int
            var column: Int
            var path: String
            var message: String
            init(_ d: Diagnostic) {
                (file, line, column, path, message) = (d.location.file, d.location.line, d.location.column, d.path, d.message)
            }
        }
        var valid: Bool
        var files: [String]
        var diagnostics: [Entry]
    }
}

func printError(_ message: String) {
    fflush(nil) // Keep stdout's lines before this one when both go to one terminal.
    FileHandle.standardError.write(Data((message + "\n").utf8))
}
