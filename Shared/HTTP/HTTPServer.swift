import Durations
import Sockets

/// An HTTP/1.1 server on POSIX sockets and one epoll event loop thread.
///
/// The loop accepts, parses and writes; each complete request runs its handler in a Swift
/// task and the response is handed back to the loop, so handlers may `await` freely while
/// the loop never blocks and never runs on the cooperative pool.
///
/// ```swift
/// var router = Router()
/// router.get("/healthz") { _ in .text("ok") }
/// let server = HTTPServer(configuration: .init(host: "127.0.0.1", port: 0), router: router)
/// let port = try server.start()
/// // ...
/// await server.shutdown(gracePeriod: .seconds(5))
/// ```
///
/// Lifecycle: `start()` once, then `shutdown(gracePeriod:)` (or cancel the task running
/// `run()`); a stopped server cannot be restarted.
///
/// Limits and what clients see: malformed input 400, long lines 414/431, too many headers
/// 431, large bodies 413, unsupported codings 501, other versions 505, slow heads or bodies
/// 408; each is a problem+json answer followed by a close. Over `maxConnections` a new
/// connection is answered 503 with `Retry-After` and closed. Memory per connection stays
/// near `2 × maxBodySize` plus 1 MiB of pending output (reading pauses beyond that).
/// Handlers that throw get a 500 with the request id; a handler that traps (force unwrap,
/// `fatalError`) still ends the process, as everywhere in Swift.
public final class HTTPServer: Sendable {
    private enum Lifecycle {
        case idle
        case running(ServerCore)
        case stopping(ServerCore)
        case stopped
    }

    private struct State {
        var lifecycle = Lifecycle.idle
        var boundAddress: SocketAddress?
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    /// The configuration the server was created with.
    public let configuration: Configuration
    private let router: Router
    private let state = Locked(State())
    private let counters = Locked(Statistics())

    /// Creates a server answering requests through `router`. Nothing is bound until `start()`.
    public init(configuration: Configuration = Configuration(), router: Router) {
        self.configuration = configuration
        self.router = router
    }

    /// Creates a server that sends every request to `handler` (no routing).
    public convenience init(configuration: Configuration = Configuration(), handler: @escaping Router.Handler) {
        var router = Router()
        router.notFoundHandler = handler
        self.init(configuration: configuration, router: router)
    }

    /// Binds, starts the event loop and returns the bound port (the real one for port 0).
    /// Throws `HTTPError` with code `.serverStart` if binding fails or it was started before.
    @discardableResult
    public func start() throws(HTTPError) -> Int {
        let alreadyStarted = state.withLock { state -> Bool in
            if case .idle = state.lifecycle { return false }
            return true
        }
        if alreadyStarted {
            throw HTTPError(.serverStart, status: .internalServerError, detail: "server already started")
        }
        guard let port = UInt16(exactly: configuration.port) else {
            throw HTTPError(.serverStart, status: .internalServerError, detail: "invalid port \(configuration.port)")
        }
        let listener: TCPListener
        let loop: EventLoop
        do {
            listener = try TCPListener.bind(host: configuration.host, port: port, backlog: configuration.backlog)
        } catch {
            throw HTTPError(.serverStart, status: .internalServerError, detail: "\(error)")
        }
        do {
            loop = try EventLoop(name: "http-\(listener.port)")
        } catch {
            listener.close()
            throw HTTPError(.serverStart, status: .internalServerError, detail: "\(error)")
        }
        let core = ServerCore(loop: loop, configuration: configuration, router: router,
                              statistics: counters) { [weak self] in self?.markStopped() }
        let raced = state.withLock { state -> Bool in
            guard case .idle = state.lifecycle else { return true }
            state.lifecycle = .running(core)
            state.boundAddress = listener.localAddress
            return false
        }
        if raced {
            listener.close()
            throw HTTPError(.serverStart, status: .internalServerError, detail: "server already started")
        }
        loop.start()
        loop.execute { core.start(listener: listener) }
        return Int(listener.port)
    }

    /// The bound port once started, else nil.
    public var port: Int? {
        state.withLock { $0.boundAddress.map { Int($0.port) } }
    }

    /// The bound address ("127.0.0.1:8080") once started, else nil.
    public var localAddress: String? {
        state.withLock { $0.boundAddress?.description }
    }

    /// A snapshot of the server's counters.
    public var statistics: Statistics {
        counters.withLock { $0 }
    }

    /// Stops accepting (new connections are refused), closes idle connections, lets
    /// requests already being read or handled finish and be answered with
    /// `Connection: close`, ends event streams, and returns when every connection is closed
    /// or `gracePeriod` has passed (then the rest are closed and their handler tasks
    /// cancelled). Safe to call more than once and from several tasks.
    public func shutdown(gracePeriod: Duration = .seconds(10)) async {
        let core = state.withLock { state -> ServerCore? in
            switch state.lifecycle {
            case .idle:
                state.lifecycle = .stopped
                return nil
            case .running(let core):
                state.lifecycle = .stopping(core)
                return core
            case .stopping, .stopped:
                return nil
            }
        }
        if let core {
            let deadline = EventLoop.now() &+ gracePeriod.nonNegativeNanoseconds
            core.loop.execute { core.beginShutdown(deadline: deadline) }
        }
        await waitUntilStopped()
    }

    /// Suspends until the server has stopped (returns at once if it never started).
    public func waitUntilStopped() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state -> Bool in
                switch state.lifecycle {
                case .stopped, .idle: return true
                default:
                    state.waiters.append(continuation)
                    return false
                }
            }
            if done { continuation.resume() }
        }
    }

    /// Starts the server if needed and suspends until it stops: the `Service.run()` shape.
    /// Cancelling the calling task shuts down gracefully within
    /// `configuration.shutdownGracePeriod`.
    public func run() async throws {
        let idle = state.withLock { state -> Bool in
            if case .idle = state.lifecycle { return true }
            return false
        }
        if idle { try start() }
        await withTaskCancellationHandler {
            await waitUntilStopped()
        } onCancel: {
            Task { await self.shutdown(gracePeriod: self.configuration.shutdownGracePeriod) }
        }
    }

    private func markStopped() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.lifecycle = .stopped
            defer { state.waiters = [] }
            return state.waiters
        }
        waiters.forEach { $0.resume() }
    }
}
