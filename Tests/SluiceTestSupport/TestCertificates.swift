import Foundation

/// A certificate authority and certificates it signed, made by the real `openssl` for a test, in a
/// directory of their own: for HTTPS upstreams whose certificates Sluice must verify.
public final class TestCertificates: Sendable {
    public struct Leaf: Sendable {
        public var certificate: String
        public var key: String
    }

    public let directory: URL
    /// The authority's certificate, PEM: what a version's `tls.caFile` names.
    public var caFile: String { directory.appendingPathComponent("ca.pem").path }

    private init(directory: URL) {
        self.directory = directory
    }

    /// A new authority (`CN=sluice-test-ca`), valid for two days.
    public static func make() async throws -> TestCertificates {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-certs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let made = TestCertificates(directory: directory)
        try await openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                          "-keyout", directory.appendingPathComponent("ca.key").path, "-out", made.caFile, "-subj", "/CN=sluice-test-ca"])
        return made
    }

    /// A certificate for `names` (DNS names and IP addresses), signed by this authority.
    public func leaf(_ file: String, names: [String]) async throws -> Leaf {
        let key = directory.appendingPathComponent("\(file).key").path
        let request = directory.appendingPathComponent("\(file).csr").path
        let certificate = directory.appendingPathComponent("\(file).pem").path
        let extensions = directory.appendingPathComponent("\(file).ext")
        let alternatives = names.map { $0.first?.isNumber == true ? "IP:\($0)" : "DNS:\($0)" }.joined(separator: ",")
        try "subjectAltName=\(alternatives)\n".write(to: extensions, atomically: true, encoding: .utf8)
        try await Self.openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", request,
                          "-subj", "/CN=\(names.first ?? "localhost")"])
        try await Self.openssl(["x509", "-req", "-in", request, "-CA", caFile, "-CAkey", directory.appendingPathComponent("ca.key").path,
                          "-CAcreateserial", "-days", "2", "-out", certificate, "-extfile", extensions.path])
        return Leaf(certificate: certificate, key: key)
    }

    /// A certificate that signs itself: no authority anyone trusts.
    public func selfSigned(_ file: String, names: [String]) async throws -> Leaf {
        let key = directory.appendingPathComponent("\(file).key").path
        let certificate = directory.appendingPathComponent("\(file).pem").path
        let alternatives = names.map { $0.first?.isNumber == true ? "IP:\($0)" : "DNS:\($0)" }.joined(separator: ",")
        try await Self.openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                          "-keyout", key, "-out", certificate, "-subj", "/CN=\(names.first ?? "localhost")", "-addext", "subjectAltName=\(alternatives)"])
        return Leaf(certificate: certificate, key: key)
    }

    /// Copies `leaf`'s files over `certificate` and `key`, each renamed into place (a renewal that
    /// replaces the files a server reads, never leaving half a file).
    public static func install(_ leaf: Leaf, certificate: String, key: String) throws {
        for (from, to) in [(leaf.certificate, certificate), (leaf.key, key)] {
            let temporary = to + ".new"
            try? FileManager.default.removeItem(atPath: temporary)
            try FileManager.default.copyItem(atPath: from, toPath: temporary)
            guard rename(temporary, to) == 0 else { throw ChildProcessError("cannot rename \(temporary) to \(to): \(String(cString: strerror(errno)))") }
        }
    }

    public func remove() {
        try? FileManager.default.removeItem(at: directory)
    }

    static func openssl(_ arguments: [String]) async throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-openssl-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        let process = try ChildProcess("/usr/bin/openssl", arguments, log: log)
        _ = await process.exited(within: .seconds(30))
        process.kill()
        guard process.exitedSuccessfully else { throw ChildProcessError("openssl \(arguments.prefix(2).joined(separator: " ")) failed: \(process.output)") }
    }
}
