/// A person's command, from the CLI or the admin API.
public enum Command: String, Sendable, Hashable, Codable {
    case promote
    case promoteFull
    case abort
    case retry
}
