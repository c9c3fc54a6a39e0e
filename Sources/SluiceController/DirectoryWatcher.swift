import Dispatch
import Foundation
import NIOConcurrencyHelpers
#if canImport(Glibc)
import Glibc
#endif

/// Which files in a few directories changed since it was last asked, so the reconciler re-reads only
/// those. On Linux it listens to inotify (file written and closed, moved in or out, created,
/// deleted), and wakes whoever waits as soon as something happens. Where inotify cannot start, or for a
/// directory it cannot watch, it falls back to comparing each file's size, modification time and inode
/// at every ask: no file is read to find out.
///
/// `changes()` answers `nil` when it lost track (the event queue overflowed, a directory was replaced
/// or appeared late): then every file is read again, once.
///
/// `@unchecked Sendable`: the mutable state is behind the lock; the dispatch source is set once in
/// `init` and only cancelled in `deinit`.
final class DirectoryWatcher: @unchecked Sendable {
    private let directories: [String]
    private let state = NIOLockedValueBox(State())
    private let onChange: @Sendable () -> Void
    private let inotify: Int32
    private let source: (any DispatchSourceRead)?
    private let queue = DispatchQueue(label: "sluice.manifest-watcher")

    private struct State {
        var changed: Set<String> = []
        var lostTrack = true
        /// Directory of each inotify watch.
        var watches: [Int32: String] = [:]
        /// The fallback's view: size, modification time and inode of each file, by path.
        var stats: [String: FileStamp] = [:]
    }

    struct FileStamp: Equatable {
        var size: Int64
        var modified: Int64
        var inode: UInt64
    }

    /// - Parameter onChange: called (on the watcher's queue) whenever inotify reports a change.
    init(directories: [String], useInotify: Bool = true, onChange: @escaping @Sendable () -> Void) {
        self.directories = Array(Set(directories)).sorted()
        self.onChange = onChange
        #if canImport(Glibc)
        inotify = useInotify ? inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC)) : -1
        #else
        inotify = -1
        #endif
        guard inotify >= 0 else {
            source = nil
            return
        }
        let source = DispatchSource.makeReadSource(fileDescriptor: inotify, queue: queue)
        self.source = source
        source.setEventHandler { [weak self] in self?.drainEvents(notify: true) }
        // Closed once the source can no longer read it, never under a handler that is running.
        let descriptor = inotify
        source.setCancelHandler { close(descriptor) }
        source.resume()
        addWatches()
    }

    deinit {
        source?.cancel()
    }

    /// Whether inotify is in use (otherwise every `changes()` compares file stamps).
    var isWatching: Bool { inotify >= 0 }

    /// Paths changed since the last call, or `nil` when everything must be read again. An empty set
    /// means nothing changed.
    func changes() -> Set<String>? {
        if inotify >= 0 {
            // Events of writes that returned before this call are queued already: take them now, so a
            // caller that writes a file and then asks sees it.
            queue.sync { drainEvents(notify: false) }
            addWatches() // a directory that did not exist yet, or was replaced
            return state.withLockedValue { state in
                defer {
                    state.changed = []
                    state.lostTrack = false
                }
                return state.lostTrack ? nil : state.changed
            }
        }
        return scanStamps()
    }

    // MARK: inotify

    private func addWatches() {
        #if canImport(Glibc)
        let mask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ATTRIB)
        let watched = state.withLockedValue { Set($0.watches.values) }
        for directory in directories where !watched.contains(directory) {
            let descriptor = inotify_add_watch(inotify, directory, mask)
            guard descriptor >= 0 else { continue } // not there yet: tried again at the next ask
            state.withLockedValue { state in
                state.watches[descriptor] = directory
                state.lostTrack = true // files may have appeared before the watch did
            }
        }
        #endif
    }

    private func drainEvents(notify: Bool) {
        #if canImport(Glibc)
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var any = false
        while true {
            let count = buffer.withUnsafeMutableBytes { read(inotify, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            any = true
            state.withLockedValue { state in
                var offset = 0
                while offset + 16 <= count {
                    let (descriptor, mask, length) = buffer.withUnsafeBytes { bytes in
                        (bytes.loadUnaligned(fromByteOffset: offset, as: Int32.self),
                         bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self),
                         Int(bytes.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self)))
                    }
                    let nameBytes = buffer[(offset + 16)..<min(count, offset + 16 + length)].prefix { $0 != 0 }
                    offset += 16 + length
                    if mask & UInt32(IN_Q_OVERFLOW) != 0 {
                        state.lostTrack = true
                        continue
                    }
                    if mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED) != 0 {
                        // The directory itself went away: watch it again when it is back, and re-read.
                        state.watches[descriptor] = nil
                        state.lostTrack = true
                        continue
                    }
                    guard let directory = state.watches[descriptor], !nameBytes.isEmpty else { continue }
                    state.changed.insert(directory + "/" + String(decoding: nameBytes, as: UTF8.self))
                }
            }
        }
        if any && notify { onChange() }
        #endif
    }

    // MARK: The fallback

    private func scanStamps() -> Set<String>? {
        var now: [String: FileStamp] = [:]
        for directory in directories {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { continue }
            for name in names {
                let path = directory + "/" + name
                var info = stat()
                guard stat(path, &info) == 0 else { continue }
                now[path] = FileStamp(size: Int64(info.st_size), modified: Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec),
                                      inode: UInt64(info.st_ino))
            }
        }
        return state.withLockedValue { state in
            defer {
                state.stats = now
                state.lostTrack = false
            }
            if state.lostTrack { return nil }
            var changed = Set(now.filter { state.stats[$0.key] != $0.value }.keys)
            changed.formUnion(state.stats.keys.filter { now[$0] == nil })
            return changed
        }
    }
}
