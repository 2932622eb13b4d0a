import Durations
import Sockets

/// The server's loop-confined state: listener, connections, shared read buffer, encoder.
///
/// `@unchecked Sendable` because handler tasks must be able to hold a reference to post
/// results back; every mutable member is touched only on the loop thread, and other threads
/// reach it only through `loop.execute`. Counters shared with other threads are `Locked`.
final class ServerCore: @unchecked Sendable {
    let loop: EventLoop
    let configuration: HTTPServer.Configuration
    let router: Router
    let limits: HTTPRequestParser.Limits
    private let statistics: Locked<HTTPServer.Statistics>
    private let onStopped: @Sendable () -> Void

    let headerTimeout: UInt64
    let bodyTimeout: UInt64
    let idleTimeout: UInt64
    let firstRequestTimeout: UInt64
    let writeTimeout: UInt64
    let lingerTimeout: UInt64
    let maxPendingOutput = 1024 * 1024

    /// Reports handler failures from handler tasks (any thread).
    let handlerErrorReporter: @Sendable (any Error, HTTPRequest) -> Void

    private var listener: TCPListener?
    private var connections: [UInt64: HTTPConnection] = [:]
    private var nextConnectionID: UInt64 = 0
    private var rejected: [Int32: RejectedConnection] = [:]
    private(set) var isShuttingDown = false
    private var shutdownTimer: TimerID?
    private var stopped = false
    private let rejectResponse: [UInt8]

    /// One read buffer for every connection: reads are copied into the parser right away.
    var readBuffer = [UInt8](repeating: 0, count: 64 * 1024)
    var encoder = ResponseEncoder()
    var requestIDs = RequestIDGenerator()

    init(loop: EventLoop, configuration: HTTPServer.Configuration, router: Router,
         statistics: Locked<HTTPServer.Statistics>, onStopped: @escaping @Sendable () -> Void) {
        self.loop = loop
        self.configuration = configuration
        self.router = router
        self.limits = configuration.parserLimits
        self.statistics = statistics
        self.onStopped = onStopped
        headerTimeout = configuration.headerReadTimeout.nonNegativeNanoseconds
        bodyTimeout = configuration.bodyReadTimeout.nonNegativeNanoseconds
        idleTimeout = configuration.idleTimeout.nonNegativeNanoseconds
        firstRequestTimeout = min(headerTimeout, idleTimeout)
        writeTimeout = configuration.writeTimeout.nonNegativeNanoseconds
        lingerTimeout = configuration.lingerTimeout.nonNegativeNanoseconds
        let logger = configuration.logger
        handlerErrorReporter = { [statistics] error, request in
            statistics.withLock { $0.handlerErrors += 1 }
            logger(.error, "handler failed", ["requestId": request.requestID, "method": request.method.rawValue,
                                              "route": request.route ?? request.path, "error": "\(error)"])
        }
        let problem = ProblemDetails(status: .serviceUnavailable, detail: "connection limit reached; retry later")
            .jsonBytes()
        rejectResponse = Array(("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"
            + "Retry-After: \(configuration.retryAfterSeconds)\r\nConnection: close\r\n"
            + "Content-Length: \(problem.count)\r\n\r\n").utf8) + problem
    }

    // MARK: Accepting

    func start(listener: TCPListener) {
        if isShuttingDown {
            listener.close()
            return
        }
        self.listener = listener
        do {
            try loop.register(listener.fileDescriptor, interest: .readable) { [self] _ in acceptConnections() }
        } catch {
            configuration.logger(.error, "cannot watch the listening socket", ["error": "\(error)"])
            listener.close()
            self.listener = nil
            beginShutdown(deadline: EventLoop.now())
        }
    }

    private func acceptConnections() {
        // Bounded per wake-up so a connection storm cannot starve existing connections.
        for _ in 0..<128 {
            guard let listener else { return }
            let accepted: (socket: TCPSocket, peer: SocketAddress?)?
            do {
                accepted = try listener.accept()
            } catch {
                // Out of descriptors or memory: the listener stays readable, so stop watching
                // it briefly instead of spinning; queued clients wait in the backlog.
                configuration.logger(.warning, "accept failed; pausing accepts for 100 ms", ["error": "\(error)"])
                try? loop.setInterest(listener.fileDescriptor, [])
                loop.schedule(after: .milliseconds(100)) { [self] in
                    if let listener = self.listener { try? loop.setInterest(listener.fileDescriptor, .readable) }
                }
                return
            }
            guard let (socket, peer) = accepted else { return }
            if connections.count >= configuration.maxConnections {
                reject(socket)
                continue
            }
            socket.setNoDelay()
            if let size = configuration.socketSendBufferSize { socket.setSendBufferSize(size) }
            nextConnectionID += 1
            let connection = HTTPConnection(id: nextConnectionID, socket: socket, peer: peer?.description, core: self)
            do {
                try loop.register(socket.fileDescriptor, interest: [.readable, .readHangup]) { events in
                    connection.handle(events)
                }
            } catch {
                socket.close()
                continue
            }
            connections[connection.id] = connection
            let open = statistics.withLock { stats -> Int in
                stats.openConnections += 1
                stats.acceptedConnections += 1
                return stats.openConnections
            }
            configuration.onConnectionCountChange?(open)
            connection.start()
        }
    }

    /// Over the connection limit: answer 503 + Retry-After at once, then drain and close
    /// (a bare close could reset the connection before the client reads the answer).
    private func reject(_ socket: TCPSocket) {
        statistics.withLock { $0.rejectedConnections += 1 }
        guard rejected.count < 64 else {
            socket.close()
            return
        }
        _ = try? socket.write(rejectResponse)
        socket.shutdown(.write)
        let entry = RejectedConnection(socket: socket)
        do {
            try loop.register(socket.fileDescriptor, interest: [.readable, .readHangup]) { [self] events in
                if entry.drain(into: &readBuffer) { finishRejected(entry) }
            }
        } catch {
            socket.close()
            return
        }
        rejected[socket.fileDescriptor] = entry
        entry.timer = loop.schedule(after: .seconds(1)) { [self] in finishRejected(entry) }
    }

    private func finishRejected(_ entry: RejectedConnection) {
        guard rejected.removeValue(forKey: entry.socket.fileDescriptor) != nil else { return }
        if let timer = entry.timer { loop.cancel(timer) }
        loop.deregister(entry.socket.fileDescriptor)
        entry.socket.close()
    }

    // MARK: Events from handler tasks

    func deliver(connectionID: UInt64, sequence: UInt64, response: HTTPResponse) {
        connections[connectionID]?.deliver(sequence: sequence, response: response)
    }

    func flushStream(connectionID: UInt64) {
        connections[connectionID]?.flushStream()
    }

    func streamFinished(connectionID: UInt64) {
        connections[connectionID]?.streamFinished()
    }

    // MARK: Bookkeeping

    func connectionClosed(_ connection: HTTPConnection) {
        guard connections.removeValue(forKey: connection.id) != nil else { return }
        let open = statistics.withLock { stats -> Int in
            stats.openConnections -= 1
            return stats.openConnections
        }
        configuration.onConnectionCountChange?(open)
        checkShutdownComplete()
    }

    func requestDispatched() {
        statistics.withLock { $0.requestsInFlight += 1 }
    }

    func requestsAbandoned(_ count: Int) {
        if count > 0 { statistics.withLock { $0.requestsInFlight -= count } }
    }

    func responseWritten(method: HTTPMethod, route: String?, status: Int, startedAt: UInt64,
                         requestBodyBytes: Int, responseBodyBytes: Int, requestID: String, wasDispatched: Bool) {
        statistics.withLock { stats in
            stats.responses += 1
            if wasDispatched { stats.requestsInFlight -= 1 }
        }
        guard let onRequest = configuration.onRequest else { return }
        let elapsed = EventLoop.now() &- startedAt
        onRequest(HTTPServer.RequestMetrics(
            method: method, route: route, status: status,
            duration: .nanoseconds(Int64(clamping: elapsed)),
            requestBodyBytes: requestBodyBytes, responseBodyBytes: responseBodyBytes, requestID: requestID))
    }

    func protocolError(_ error: HTTPError, peer: String?, isTimeout: Bool) {
        statistics.withLock { stats in
            if isTimeout { stats.timeouts += 1 } else { stats.protocolErrors += 1 }
        }
        configuration.logger(.info, "rejected request", ["status": String(error.status.code),
                                                         "code": error.code.name, "peer": peer ?? "?"])
    }

    func slowClientDropped(peer: String?) {
        statistics.withLock { $0.slowClientDrops += 1 }
        configuration.logger(.warning, "dropped a client that does not read", ["peer": peer ?? "?"])
    }

    func eventStreamCountChanged(by delta: Int) {
        statistics.withLock { $0.openEventStreams += delta }
    }

    // MARK: Shutdown

    func beginShutdown(deadline: UInt64) {
        guard !isShuttingDown else { return }
        isShuttingDown = true
        if let listener {
            loop.deregister(listener.fileDescriptor)
            listener.close()
            self.listener = nil
        }
        shutdownTimer = loop.schedule(at: deadline) { [self] in
            shutdownTimer = nil
            for connection in Array(connections.values) { connection.close() }
            checkShutdownComplete()
        }
        for connection in Array(connections.values) { connection.beginShutdown() }
        checkShutdownComplete()
    }

    private func checkShutdownComplete() {
        guard isShuttingDown, connections.isEmpty, !stopped else { return }
        stopped = true
        if let shutdownTimer { loop.cancel(shutdownTimer) }
        for entry in Array(rejected.values) { finishRejected(entry) }
        loop.stop()
        onStopped()
    }
}

/// A connection refused with 503, drained until the client closes or a second passes.
final class RejectedConnection {
    let socket: TCPSocket
    var timer: TimerID?

    init(socket: TCPSocket) {
        self.socket = socket
    }

    /// Reads and discards; true when the connection is finished (EOF or error).
    func drain(into buffer: inout [UInt8]) -> Bool {
        for _ in 0..<4 {
            switch try? socket.read(into: &buffer) {
            case .bytes: continue
            case .wouldBlock: return false
            case .endOfFile, nil: return true
            }
        }
        return false
    }
}
