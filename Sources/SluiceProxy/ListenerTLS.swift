import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL

/// The proxy listener's certificate and key (`--tls-cert`, `--tls-key`): TLS 1.2 or later, with ALPN.
///
/// Each new connection takes the context in force when it arrives; `reload()` replaces it for the
/// connections after, so a renewed certificate needs no restart and drops no connection. A reload that
/// fails (a missing file, a key that does not match) keeps the context in force and says why.
public final class ListenerTLS: Sendable {
    public let certificatePath: String
    public let keyPath: String
    /// Offered in ALPN, in order of preference.
    public let applicationProtocols: [String]
    private let state: NIOLockedValueBox<Loaded>

    struct Loaded: Sendable {
        var context: NIOSSLContext
        var stamp: FileStamp
        var summary: String
        /// The files as they were when they last failed to load.
        var failed: FileStamp?
    }

    /// What identifies a version of the two files without reading them: a renewal that replaces them
    /// (a new inode, a new time, a new size) changes it.
    struct FileStamp: Equatable, Sendable {
        var files: [String]

        init(_ paths: [String]) {
            files = paths.map { path in
                let attributes = (try? FileManager.default.attributesOfItem(atPath: path)) ?? [:]
                let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? -1
                return "\(modified) \(attributes[.size] ?? -1) \(attributes[.systemFileNumber] ?? -1)"
            }
        }
    }

    public init(certificatePath: String, keyPath: String, applicationProtocols: [String] = ["h2", "http/1.1"]) throws(ListenerTLSError) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        self.applicationProtocols = applicationProtocols
        state = NIOLockedValueBox(try Self.load(certificatePath: certificatePath, keyPath: keyPath, applicationProtocols: applicationProtocols))
    }

    /// The context for a connection that arrives now.
    var context: NIOSSLContext { state.withLockedValue { $0.context } }

    /// The certificate in force, for logs: its subject and its end of validity.
    public var summary: String { state.withLockedValue { $0.summary } }

    /// Reads both files again and puts them in force for new connections. Returns `false` when they
    /// have not changed since the last load or the last failed one (nothing is rebuilt, so a bad pair
    /// is reported once); throws, keeping the certificate in force, when they cannot be used.
    @discardableResult
    public func reload(force: Bool = false) throws(ListenerTLSError) -> Bool {
        let stamp = FileStamp([certificatePath, keyPath])
        if !force, state.withLockedValue({ $0.stamp == stamp || $0.failed == stamp }) { return false }
        do {
            let loaded = try Self.load(certificatePath: certificatePath, keyPath: keyPath, applicationProtocols: applicationProtocols)
            state.withLockedValue { $0 = loaded }
            return true
        } catch {
            state.withLockedValue { $0.failed = stamp }
            throw error
        }
    }

    /// Reloads whenever the files change, checking every `interval` of `clock`, until cancelled.
    /// `report` hears each reload and each failure.
    public func watch<C: Clock>(every interval: C.Duration, clock: C, report: @Sendable (Result<Void, ListenerTLSError>) -> Void) async {
        while (try? await clock.sleep(for: interval)) != nil {
            do {
                if try reload() { report(.success(())) }
            } catch {
                report(.failure(error))
            }
        }
    }

    /// Adds the server side of TLS to an accepted connection, before any other handler.
    func secure(_ channel: any Channel) throws {
        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context), position: .first)
    }

    private static func load(certificatePath: String, keyPath: String, applicationProtocols: [String]) throws(ListenerTLSError) -> Loaded {
        let stamp = FileStamp([certificatePath, keyPath])
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificatePath)
        } catch {
            throw ListenerTLSError(path: certificatePath, reason: FileManager.default.isReadableFile(atPath: certificatePath)
                ? "not a PEM certificate (\(error))" : "cannot read the file")
        }
        guard let leaf = chain.first else { throw ListenerTLSError(path: certificatePath, reason: "holds no PEM certificate") }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        } catch {
            throw ListenerTLSError(path: keyPath, reason: FileManager.default.isReadableFile(atPath: keyPath)
                ? "not a PEM private key (\(error))" : "cannot read the file")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = applicationProtocols
        let context: NIOSSLContext
        do {
            context = try NIOSSLContext(configuration: configuration)
        } catch NIOSSLError.failedToLoadPrivateKey {
            throw ListenerTLSError(path: keyPath, reason: "is not the private key of the certificate in \(certificatePath)")
        } catch {
            throw ListenerTLSError(path: certificatePath, reason: "cannot be used with \(keyPath): \(error)")
        }
        let expiry = Date(timeIntervalSince1970: TimeInterval(leaf.notValidAfter))
        return Loaded(context: context, stamp: stamp, summary: "\(leaf.description), valid until \(expiry.ISO8601Format())")
    }
}

/// Why a listener certificate or key cannot be used, naming the file.
public struct ListenerTLSError: Error, CustomStringConvertible, Sendable, Equatable {
    public var path: String
    public var reason: String

    public var description: String { "\(path): \(reason)" }
}
