import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The API keys of a keys file, reloaded without a restart: when the file changes (checked every
/// `interval`: its modification time, size, inode or device — a Kubernetes Secret update swaps a
/// symlink, an atomic `twinctl keys add` renames a new file in) and on SIGHUP. A request reads the
/// keys once, when it is authorised, so requests in flight finish with the keys they started with.
/// A file that does not load is refused: the previous keys stay in force, the error is logged and
/// counted (`twinstream_api_keys_reload_failures_total`).
public final class APIKeysWatcher: Service, Sendable {
    /// The keys file.
    public let path: String
    private let interval: Duration
    private let logger: Logger
    private let state: Mutex<(keys: APIKeys, identity: FileIdentity?)>
    private let hangups: SignalListener
    private let reloads: Counter?
    private let failures: Counter?

    /// Loads `path` (throwing if it does not load: a service does not start with a bad keys file)
    /// and listens for SIGHUP from now on, so a SIGHUP sent while the service starts is not lost.
    public init(path: String, interval: Duration, logger: Logger, metrics: MetricsRegistry? = nil) throws(APIKeysError) {
        self.path = path
        self.interval = interval
        self.logger = logger
        let identity = FileIdentity(path: path)
        state = Mutex((try APIKeys.load(path: path), identity))
        hangups = SignalListener([.hangup])
        reloads = metrics?.counter("twinstream_api_keys_reloads_total", help: "Keys file reloads that took effect (changed file or SIGHUP).")
        failures = metrics?.counter("twinstream_api_keys_reload_failures_total", help: "Keys file reloads refused (the file did not load; the previous keys stay in force).")
        if let metrics {
            metrics.gauge("twinstream_api_keys", help: "API keys in force.") { [weak self] in Double(self?.keys.entries.count ?? 0) }
        }
    }

    /// The keys in force now.
    public var keys: APIKeys { state.withLock { $0.keys } }

    /// Reloads the file if it changed since the last look (or always, with `force`). Returns
    /// true when new keys took effect; a file that does not load leaves the keys as they were.
    @discardableResult
    public func reload(force: Bool = false) -> Bool {
        let identity = FileIdentity(path: path)
        let changed = state.withLock { current -> Bool in
            guard force || current.identity != identity else { return false }
            current.identity = identity  // a bad file is reported once, not on every tick
            return true
        }
        guard changed else { return false }
        do {
            let loaded = try APIKeys.load(path: path)
            let before = state.withLock { current -> Int in
                defer { current.keys = loaded }
                return current.keys.entries.count
            }
            reloads?.inc()
            logger.info("API keys reloaded", ["file": .string(path), "keys": .int(loaded.entries.count), "before": .int(before)])
            return true
        } catch {
            failures?.inc()
            logger.error("API keys file not reloaded, the previous keys stay in force: \(error)", ["file": .string(path)])
            return false
        }
    }

    /// Checks the file every `interval` and reloads it on SIGHUP, until cancelled.
    public func run() async throws {
        defer { hangups.stop() }
        let signals = hangups.signals
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [self] in
                for await _ in signals {
                    logger.info("SIGHUP: reloading API keys", ["file": .string(path)])
                    reload(force: true)
                }
            }
            group.addTask { [self] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    if !Task.isCancelled { reload() }
                }
            }
            await group.next()
            group.cancelAll()
        }
    }
}

/// What identifies a file's content without reading it (nil when it cannot be stat'ed).
struct FileIdentity: Equatable, Sendable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modified: Int64  // nanoseconds

    init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        modified = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
    }
}
