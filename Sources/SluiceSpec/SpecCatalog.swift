import Yams

/// The text of one spec file. Reading it from disk is the caller's job; the core never touches files.
public struct SourceFile: Sendable, Hashable {
    public var path: String
    public var text: String

    public init(path: String, text: String) {
        self.path = path
        self.text = text
    }
}

/// A deployment whose strategy template has been looked up.
public struct ResolvedDeployment: Sendable, Hashable, Codable {
    public var deployment: ModelDeployment
    public var strategy: StrategySpec
    /// The file it was read from.
    public var file: String

    public init(deployment: ModelDeployment, strategy: StrategySpec, file: String) {
        self.deployment = deployment
        self.strategy = strategy
        self.file = file
    }

    public var name: String { deployment.name }
}

/// One file, parsed and checked on its own: the costly part of reading a catalog, which a watcher
/// redoes only for the files that changed. It keeps the decoded documents and the positions the
/// cross-file checks need, not the YAML.
public struct ParsedFile: Sendable {
    public let file: SourceFile
    let documents: [ParsedDocument]
    let errors: [Diagnostic]

    public init(_ file: SourceFile) {
        self.file = file
        (documents, errors) = SpecCatalog.parse(file)
    }
}

/// Everything a set of spec files says, checked within and across files.
///
/// A file with any error contributes nothing: the controller keeps that file's last good specs running
/// (docs/spec.md), and `sluice validate` prints the diagnostics.
public struct SpecCatalog: Sendable {
    /// Valid deployments, by name.
    public private(set) var deployments: [String: ResolvedDeployment] = [:]
    /// Valid strategy templates, by name.
    public private(set) var templates: [String: StrategyTemplate] = [:]
    /// Every problem, in file, line and column order.
    public private(set) var diagnostics: [Diagnostic] = []

    /// The files with at least one error.
    public var invalidFiles: Set<String> { Set(diagnostics.map(\.location.file)) }

    public var isValid: Bool { diagnostics.isEmpty }

    /// Reads `strategies` (Strategy documents only) and `manifests` (any kind), in path order.
    ///
    /// Templates resolve by name from both sets. When two documents claim the same deployment name,
    /// template name or route, the later one in path order is the one reported.
    public init(manifests: [SourceFile], strategies: [SourceFile] = []) {
        self.init(parsedManifests: manifests.map(ParsedFile.init), parsedStrategies: strategies.map(ParsedFile.init))
    }

    /// The same from files parsed already (`ParsedFile`), so that only changed files are parsed again.
    public init(parsedManifests: [ParsedFile], parsedStrategies: [ParsedFile] = []) {
        var parsed: [(file: SourceFile, documents: [ParsedDocument], errors: [Diagnostic])] = []
        for entry in parsedStrategies.sorted(by: { $0.file.path < $1.file.path }) {
            var (documents, errors) = (entry.documents, entry.errors)
            for case .deployment(let deployment, let origin) in documents {
                errors.append(Self.diagnostic(
                    "a strategies directory holds only Strategy documents; move ModelDeployment '\(deployment.name)' to the manifests directory",
                    origin.name))
            }
            documents.removeAll { if case .deployment = $0 { true } else { false } }
            parsed.append((entry.file, documents, errors))
        }
        for entry in parsedManifests.sorted(by: { $0.file.path < $1.file.path }) {
            parsed.append((entry.file, entry.documents, entry.errors))
        }

        // Templates first: deployments in any file may refer to templates in any other.
        var templateOrigin: [String: SourceLocation] = [:]
        for entry in parsed {
            for case .strategy(let template, let namePlace) in entry.documents {
                let here = namePlace.location
                if let first = templateOrigin[template.name] {
                    diagnostics.append(Self.diagnostic("duplicate Strategy '\(template.name)'; first defined at \(first)", namePlace))
                    continue
                }
                templateOrigin[template.name] = here
                templates[template.name] = template
            }
        }

        var nameOrigin: [String: SourceLocation] = [:]
        var routeOrigin: [String: (name: String, location: SourceLocation)] = [:]
        var candidates: [String: [ResolvedDeployment]] = [:]
        for entry in parsed {
            diagnostics += entry.errors
            for case .deployment(let deployment, let origin) in entry.documents {
                let path = entry.file.path
                if let first = nameOrigin[deployment.name] {
                    diagnostics.append(Self.diagnostic("duplicate ModelDeployment '\(deployment.name)'; first defined at \(first)", origin.name))
                    continue
                }
                nameOrigin[deployment.name] = origin.name.location
                let route = deployment.route
                if let first = routeOrigin[route.conflictKey] {
                    let hostText = route.host.map { " and host '\($0)'" } ?? ""
                    diagnostics.append(Self.diagnostic(
                        "route pathPrefix '\(route.pathPrefix)'\(hostText) is already claimed by deployment '\(first.name)' at \(first.location)",
                        origin.pathPrefix))
                    continue
                }
                routeOrigin[route.conflictKey] = (deployment.name, origin.pathPrefix.location)
                guard let strategy = resolve(deployment, origin, path) else { continue }
                candidates[path, default: []].append(ResolvedDeployment(deployment: deployment, strategy: strategy, file: path))
            }
        }
        // Only files without errors contribute, so a half-broken file never half-applies.
        let invalid = invalidFiles
        for (file, resolved) in candidates where !invalid.contains(file) {
            for deployment in resolved { deployments[deployment.name] = deployment }
        }
        templates = templates.filter { name, _ in
            guard let origin = templateOrigin[name] else { return false }
            return !invalid.contains(origin.file)
        }
        diagnostics.sort { ($0.location.file, $0.location.line, $0.location.column) < ($1.location.file, $1.location.line, $1.location.column) }
    }

    private mutating func resolve(_ deployment: ModelDeployment, _ origin: DeploymentOrigin, _ path: String) -> StrategySpec? {
        let spec: StrategySpec
        switch deployment.strategy {
        case .inline(let inline):
            spec = inline
        case .template(let name):
            guard let template = templates[name] else {
                reportUnknownTemplate(name, origin)
                return nil
            }
            spec = template.spec
        }
        if case .experiment(let experiment) = spec {
            let known = deployment.versions.map(\.name)
            // An inline experiment is blamed at the entry; a template's at the deployment's reference to it.
            func place(_ index: Int) -> Place {
                origin.template ?? (index < origin.challengers.count ? origin.challengers[index] : origin.strategy)
            }
            for (index, challenger) in experiment.challengers.enumerated() where !known.contains(challenger) {
                diagnostics.append(Self.diagnostic("experiment challenger '\(challenger)' is not in spec.versions (\(known.joined(separator: ", ")))", place(index)))
                return nil
            }
            if let index = experiment.challengers.firstIndex(of: deployment.version) {
                diagnostics.append(Self.diagnostic("experiment challenger '\(deployment.version)' is spec.version, which is a challenger already", place(index)))
                return nil
            }
        }
        if deployment.route.haproxy != nil {
            let refusals = HAProxyRoute.refusals(route: deployment.route, strategy: spec)
            if !refusals.isEmpty {
                diagnostics.append(Self.diagnostic("route.haproxy: HAProxy's runtime API sets weights only, so it cannot do \(refusals.joined(separator: "; "))",
                                                   origin.template ?? origin.strategy))
                return nil
            }
        }
        return spec
    }

    private mutating func reportUnknownTemplate(_ name: String, _ origin: DeploymentOrigin) {
        let known = templates.keys.sorted()
        let hint = Suggestion.hint(for: name, in: known)
        let list = known.isEmpty ? "; no Strategy documents were loaded (pass --strategies DIR)" : "; known: \(known.joined(separator: ", "))"
        diagnostics.append(Self.diagnostic("unknown strategy template '\(name)'\(hint.isEmpty ? list : hint)", origin.template ?? origin.strategy))
    }

    // MARK: Parsing one file

    static func parse(_ file: SourceFile) -> (documents: [ParsedDocument], errors: [Diagnostic]) {
        let reader = SpecReader(file: file.path)
        var documents: [ParsedDocument] = []
        do {
            let parser = try Parser(yaml: file.text)
            while let root = try parser.nextRoot() {
                if let document = reader.document(root) { documents.append(document) }
            }
        } catch let error as YamlError {
            // libyaml cannot go on after a syntax error, so this is the file's last diagnostic.
            return (documents, reader.diagnostics + [yamlDiagnostic(error, file: file)])
        } catch {
            return (documents, reader.diagnostics + [Diagnostic(location: .init(file: file.path, line: 1, column: 1), message: "cannot read YAML: \(error)")])
        }
        return (documents, reader.diagnostics)
    }

    static func yamlDiagnostic(_ error: YamlError, file: SourceFile) -> Diagnostic {
        func at(_ mark: Mark?, _ message: String) -> Diagnostic {
            Diagnostic(location: SourceLocation(file: file.path, line: mark?.line ?? 1, column: mark?.column ?? 1), message: message)
        }
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            var message = "invalid YAML: \(problem)"
            var blame = mark
            if let context {
                message += " (\(context.text) at line \(context.mark.line), column \(context.mark.column))"
                // An unclosed [ or { is noticed lines later; the opening bracket is what needs fixing.
                if context.text.contains("flow") { blame = context.mark }
            }
            if character(at: mark, in: file.text) == "\t" {
                message += "; YAML is indented with spaces, never tabs"
            }
            if problem.contains("block scalar") || context?.text.contains("block scalar") == true {
                message += "; a value that starts with '>' or '|' must be quoted, as in successCondition: \">= 0.99\""
            }
            return at(blame, message)
        case .duplicatedKeysInMapping(let duplicates, let context):
            let key = duplicates.first ?? ""
            var diagnostic = at(context.mark, "duplicate key '\(key)' (first at line \(context.mark.line)); each key may appear once in a mapping")
            if let second = secondOccurrence(of: key, after: context.mark, in: file.text) {
                (diagnostic.location.line, diagnostic.location.column) = (second.line, second.column)
            }
            return diagnostic
        case .reader(let problem, _, _, _):
            return at(nil, "cannot read the file as UTF-8 text: \(problem)")
        default:
            return at(nil, "invalid YAML: \(error)")
        }
    }

    static func character(at mark: Mark, in text: String) -> Character? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard mark.line >= 1, mark.line <= lines.count else { return nil }
        let line = lines[mark.line - 1].unicodeScalars
        guard mark.column >= 1, mark.column <= line.count else { return nil }
        return Character(line[line.index(line.startIndex, offsetBy: mark.column - 1)])
    }

    /// libyaml reports a duplicate key at its first occurrence; people need the second, which is the
    /// one to delete. It is the next line that starts `key:` at the same column.
    static func secondOccurrence(of key: String, after mark: Mark, in text: String) -> SourceLocation? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard mark.line >= 1, mark.line <= lines.count else { return nil }
        for index in mark.line..<lines.count {
            let line = lines[index]
            let indent = line.prefix { $0 == " " || $0 == "-" }.count
            let rest = line.dropFirst(indent)
            if indent + 1 == mark.column, rest.hasPrefix(key), rest.dropFirst(key.count).trimmingSpaces.hasPrefix(":") {
                return SourceLocation(file: "", line: index + 1, column: mark.column)
            }
        }
        return nil
    }

    private static func diagnostic(_ message: String, _ place: Place) -> Diagnostic {
        Diagnostic(location: place.location, message: message, path: place.path)
    }
}
