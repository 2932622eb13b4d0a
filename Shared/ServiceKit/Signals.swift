import Dispatch
import Glibc
import Synchronization

// Unix signals as an AsyncStream. The listener is created before the service starts and is
// fully registered when its initialiser returns, so a SIGTERM that arrives during start-up
// is delivered instead of killing the process or being lost.

/// The signals a service reacts to.
public enum UnixSignal: Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// SIGTERM: the orchestrator asks for a graceful stop.
    case terminate
    /// SIGINT: Ctrl-C; treated like SIGTERM.
    case interrupt
    /// SIGHUP: conventionally "reload"; services may ignore it.
    case hangup

    /// The signal number.
    public var number: Int32 {
        switch self {
        case .terminate: SIGTERM
        case .interrupt: SIGINT
        case .hangup: SIGHUP
        }
    }

    /// Whether this signal asks the service to stop (SIGTERM, SIGINT).
    public var requestsShutdown: Bool { self != .hangup }

    /// The conventional name, e.g. `SIGTERM`.
    public var description: String {
        switch self {
        case .terminate: "SIGTERM"
        case .interrupt: "SIGINT"
        case .hangup: "SIGHUP"
        }
    }
}

/// Delivers Unix signals as an `AsyncStream`, every delivery included, so the caller can
/// start a graceful shutdown on the first SIGTERM/SIGINT and force an exit on the second:
///
/// ```swift
/// let listener = SignalListener()          // before anything else starts
/// for await signal in listener.signals where signal.requestsShutdown {
///     if listener.shutdownRequestCount > 1 { exit(1) }   // asked twice: stop waiting
///     service.beginShutdown()
/// }
/// ```
///
/// The default (terminating) disposition of each signal is replaced by "ignore" first, then
/// a `DispatchSource` is registered; the initialiser blocks (briefly, at most one second)
/// until libdispatch confirms the registration, because registration is otherwise
/// asynchronous and a signal sent right after creation would be dropped. After `stop()` the
/// signals stay ignored rather than becoming fatal again, since libdispatch may still hold
/// them; a process that must die on a later signal calls `signal(sig, SIG_DFL)` itself.
public final class SignalListener: Sendable {
    /// Every delivery of the listened signals, in order; the buffer keeps the newest
    /// `bufferLimit` when nobody is reading. Single consumer, as any `AsyncStream`.
    public let signals: AsyncStream<UnixSignal>

    private let continuation: AsyncStream<UnixSignal>.Continuation
    private let sources: Mutex<[DispatchSourceSignal]>
    private let shutdownRequests = SignalCount()

    /// Listens to `signals` (by default SIGTERM and SIGINT) from now on.
    public init(_ signals: [UnixSignal] = [.terminate, .interrupt], bufferLimit: Int = 16) {
        let (stream, continuation) = AsyncStream.makeStream(of: UnixSignal.self, bufferingPolicy: .bufferingNewest(max(1, bufferLimit)))
        self.signals = stream
        self.continuation = continuation
        let queue = DispatchQueue(label: "twinstream.signals")
        let registered = DispatchSemaphore(value: 0)
        let requests = shutdownRequests
        var unique: [UnixSignal] = []
        for signal in signals where !unique.contains(signal) { unique.append(signal) }
        var made: [DispatchSourceSignal] = []
        for signal in unique {
            SignalListener.ignoreIfDefault(signal.number)
            let source = DispatchSource.makeSignalSource(signal: signal.number, queue: queue)
            // The handler retains its source; `stop()` cancels it, which releases the handler.
            source.setEventHandler {
                // Deliveries between two handler runs are coalesced into `data`.
                let deliveries = Int(min(source.data, 64))
                for _ in 0..<max(1, deliveries) {
                    if signal.requestsShutdown { requests.value.add(1, ordering: .relaxed) }
                    continuation.yield(signal)
                }
            }
            source.setRegistrationHandler { registered.signal() }
            source.resume()
            made.append(source)
        }
        for _ in made {
            _ = registered.wait(timeout: .now() + .seconds(1))
        }
        sources = Mutex(made)
    }

    /// How many SIGTERM/SIGINT deliveries were seen so far; above one means "asked again
    /// while shutting down".
    public var shutdownRequestCount: Int {
        shutdownRequests.value.load(ordering: .relaxed)
    }

    /// Stops listening and finishes the stream. Idempotent.
    public func stop() {
        let stopped = sources.withLock { sources -> [DispatchSourceSignal] in
            defer { sources = [] }
            return sources
        }
        for source in stopped { source.cancel() }
        continuation.finish()
    }

    deinit {
        stop()
    }

    /// Serialises disposition changes so two listeners created at once agree.
    private static let dispositionLock = Mutex<Void>(())

    /// Replaces the default disposition with SIG_IGN, and nothing else: a handler already
    /// installed (libdispatch's, for an earlier listener) must stay, or that listener would
    /// stop hearing the signal.
    private static func ignoreIfDefault(_ number: Int32) {
        dispositionLock.withLock { _ in
            var current = sigaction()
            guard sigaction(number, nil, &current) == 0 else { return }
            if current.__sigaction_handler.sa_handler == nil {
                _ = Glibc.signal(number, SIG_IGN)
            }
        }
    }
}

/// A shared count the dispatch handlers can capture (an `Atomic` itself cannot be copied).
private final class SignalCount: Sendable {
    let value = Atomic<Int>(0)
}

/// Ignores SIGPIPE for the whole process, so that writing to a socket or pipe whose reader
/// went away returns EPIPE instead of killing the service. Call once at start-up.
public func ignoreSIGPIPE() {
    _ = signal(SIGPIPE, SIG_IGN)
}
