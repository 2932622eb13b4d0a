import Sockets

/// One client connection, confined to the event loop: reads and parses requests, starts a
/// handler task per request, writes responses in request order, enforces the timeouts, and
/// streams server-sent events.
///
/// A connection has one timer. Its deadline is recomputed after every state change; a later
/// deadline only moves a field (the timer re-arms itself when it fires early), an earlier one
/// reschedules it, so the timer heap sees O(1) work per request.
final class HTTPConnection {
    private struct Slot {
        let sequence: UInt64
        var response: HTTPResponse?
        var task: Task<Void, Never>?
        let method: HTTPMethod
        let version: HTTPVersion
        let keepAlive: Bool
        let requestID: String
        let route: String?
        let startedAt: UInt64
        let requestBodyBytes: Int
        /// An error answer from the server itself; never dispatched, always closes.
        let isError: Bool
    }

    private enum Mode {
        case active
        case streaming
        case lingering
        case closed
    }

    let id: UInt64
    let socket: TCPSocket
    let peer: String?
    private let core: ServerCore
    private var parser: HTTPRequestParser
    private var mode = Mode.active

    private var slots: [Slot] = []
    /// Bodies of requests handed to handlers and not answered yet: with pipelining this is
    /// what bounds a connection's memory, so no new request is read past maxBodySize of it.
    private var queuedBodyBytes = 0
    private var nextSequence: UInt64 = 0
    private var pendingHead: HTTPRequestHead?
    private var pendingMatch: Router.Match?
    private var pendingContinue = false
    private var requestStartedAt: UInt64 = 0
    private var bodyStartedAt: UInt64 = 0
    private var lastActivity: UInt64
    private var requestsSeen = 0
    /// False once no further request will be read (Connection: close, error, shutdown).
    private var acceptingRequests = true
    /// Shutdown arrived mid-request: finish this one, then stop.
    private var stopAfterCurrent = false
    /// Close (after a lingering drain) as soon as the output is written.
    private var closing = false
    private var peerClosed = false

    private var output: [UInt8] = []
    private var outputOffset = 0
    private var writeBlockedSince: UInt64 = 0
    private var interest: IOEvents = [.readable, .readHangup]
    private var timer: TimerID?
    private var timerDeadline: UInt64 = 0
    private var lingerDeadline: UInt64 = 0

    private var streamWriter: SSEWriter?
    private var streamTask: Task<Void, Never>?
    private var heartbeatTimer: TimerID?
    private var heartbeatInterval: Duration?

    init(id: UInt64, socket: TCPSocket, peer: String?, core: ServerCore) {
        self.id = id
        self.socket = socket
        self.peer = peer
        self.core = core
        self.parser = HTTPRequestParser(limits: core.limits)
        self.lastActivity = EventLoop.now()
    }

    private var pendingOutput: Int { output.count - outputOffset }

    func start() {
        updateTimer()
    }

    // MARK: Readiness

    func handle(_ events: IOEvents) {
        if mode == .closed { return }
        if events.contains(.error) {
            close()
            return
        }
        if mode == .lingering {
            drainWhileLingering()
            return
        }
        if !events.isDisjoint(with: [.readable, .readHangup, .hangup]) { readAvailable() }
        if mode == .closed { return }
        if events.contains(.writable) { flush() }
        if mode != .closed && events.contains(.hangup) { close() }
    }

    private var wantsToRead: Bool {
        switch mode {
        case .active:
            return acceptingRequests && !peerClosed && canStartAnotherRequest && pendingOutput < core.maxPendingOutput
        case .streaming:
            return !peerClosed
        case .lingering:
            return true
        case .closed:
            return false
        }
    }

    private var canStartAnotherRequest: Bool {
        slots.isEmpty || (slots.count < core.configuration.maxPipelinedRequests
            && queuedBodyBytes < core.configuration.maxBodySize)
    }

    private func readAvailable() {
        var reads = 0
        while wantsToRead && reads < 4 {
            reads += 1
            let result: TCPSocket.ReadResult
            do {
                result = try socket.read(into: &core.readBuffer)
            } catch {
                close()
                return
            }
            guard case .bytes(let count) = result else {
                if result == .endOfFile { peerClosed = true }
                break
            }
            if mode == .streaming { continue }  // clients have nothing to say on an event stream
            let now = EventLoop.now()
            lastActivity = now
            if parser.phase == .idle && pendingHead == nil { requestStartedAt = now }
            parser.append(core.readBuffer[0..<count])
            processRequests()
            if mode != .active || count < core.readBuffer.count { break }
        }
        if mode == .closed { return }
        if peerClosed {
            handlePeerClosed()
        } else {
            updateInterest()
            updateTimer()
        }
    }

    private func handlePeerClosed() {
        switch mode {
        case .streaming:
            close()  // the client went away: cancel the producer
        case .active:
            if acceptingRequests && (pendingHead != nil || parser.phase == .head || parser.phase == .body) {
                fail(HTTPError(.truncatedRequest, status: .badRequest,
                               detail: "connection closed before the request was complete"), isTimeout: false)
                return
            }
            if slots.isEmpty && pendingOutput == 0 {
                close()
                return
            }
            // Half-closed after sending requests: answer them, then close.
            acceptingRequests = false
            if slots.isEmpty { closing = true }
            updateInterest()
            updateTimer()
        case .lingering, .closed:
            break
        }
    }

    // MARK: Requests

    private func processRequests() {
        while mode == .active && acceptingRequests && (canStartAnotherRequest || pendingHead != nil) {
            let event: HTTPRequestParser.Event?
            do {
                event = try parser.next()
            } catch {
                fail(error, isTimeout: false)
                return
            }
            guard let event else { break }
            switch event {
            case .head(let head):
                let match = core.router.match(method: head.method, segments: head.pathSegments)
                parser.bodyLimit = match.maxBodySize ?? core.configuration.maxBodySize
                pendingHead = head
                pendingMatch = match
                bodyStartedAt = EventLoop.now()
                if head.expectsContinue && parser.bufferedByteCount == 0 {
                    var fits = true
                    if case .contentLength(let length) = head.framing { fits = length <= parser.bodyLimit && length > 0 }
                    if head.framing == .none { fits = false }
                    if fits {
                        // The client waits for this before sending the body; it must not
                        // overtake earlier responses, so it may have to wait for them.
                        if slots.isEmpty && pendingOutput == 0 {
                            output.append(contentsOf: ResponseEncoder.continueResponse)
                        } else {
                            pendingContinue = true
                        }
                    }
                }
            case .complete(let body):
                guard let head = pendingHead, let match = pendingMatch else { continue }
                pendingHead = nil
                pendingMatch = nil
                pendingContinue = false
                dispatch(head: head, match: match, body: body)
            }
        }
        if pendingOutput > 0 { flush() }
    }

    private func dispatch(head: HTTPRequestHead, match: Router.Match, body: [UInt8]) {
        requestsSeen += 1
        let requestID = RequestIDGenerator.sanitize(head.headers["X-Request-Id"]) ?? core.requestIDs.next()
        let sequence = nextSequence
        nextSequence += 1
        if !head.keepAlive || stopAfterCurrent { acceptingRequests = false }
        let request = HTTPRequest(head: head, body: body, requestID: requestID, remoteAddress: peer)
        var slot = Slot(sequence: sequence, response: nil, task: nil, method: head.method, version: head.version,
                        keepAlive: head.keepAlive, requestID: requestID, route: match.pattern,
                        startedAt: requestStartedAt == 0 ? EventLoop.now() : requestStartedAt,
                        requestBodyBytes: body.count, isError: false)
        core.requestDispatched()
        queuedBodyBytes += body.count
        let core = self.core
        let connectionID = id
        slot.task = Task {
            let response = await core.router.execute(match, request: request, onError: core.handlerErrorReporter)
            core.loop.execute { core.deliver(connectionID: connectionID, sequence: sequence, response: response) }
        }
        slots.append(slot)
        // Pipelined bytes already buffered belong to the next request: its clock starts now.
        requestStartedAt = parser.bufferedByteCount > 0 ? EventLoop.now() : 0
    }

    /// Answers a request the server refuses (parse error, timeout, truncation) and closes.
    private func fail(_ error: HTTPError, isTimeout: Bool) {
        guard mode == .active else { return }
        core.protocolError(error, peer: peer, isTimeout: isTimeout)
        let requestID = core.requestIDs.next()
        let response = HTTPResponse.from(error: error, requestID: requestID)
        let method = pendingHead?.method ?? .get
        acceptingRequests = false
        pendingHead = nil
        pendingMatch = nil
        pendingContinue = false
        let sequence = nextSequence
        nextSequence += 1
        slots.append(Slot(sequence: sequence, response: response, task: nil, method: method, version: .http1_1,
                          keepAlive: false, requestID: requestID, route: nil,
                          startedAt: requestStartedAt == 0 ? EventLoop.now() : requestStartedAt,
                          requestBodyBytes: 0, isError: true))
        writeResponses()
    }

    func deliver(sequence: UInt64, response: HTTPResponse) {
        guard mode == .active, let index = slots.firstIndex(where: { $0.sequence == sequence }) else { return }
        slots[index].response = response
        slots[index].task = nil
        writeResponses()
    }

    /// Writes every response at the head of the queue that is ready, in request order.
    private func writeResponses() {
        while mode == .active && !closing, let slot = slots.first, var response = slot.response {
            slots.removeFirst()
            queuedBodyBytes -= slot.requestBodyBytes
            if !(200...999).contains(response.status.code) {
                // Interim (1xx) or out-of-range codes cannot end a request: answer 500 instead.
                response = HTTPResponse.from(error: HTTPError(.internalError, status: .internalServerError,
                                                              detail: "handler returned status \(response.status.code)"),
                                             requestID: slot.requestID)
            }
            let wantsClose = response.headers.listValues(for: "Connection").contains { $0.equalsIgnoringCase("close") }
            let closeAfter = !slot.keepAlive || slot.isError || wantsClose || (slots.isEmpty && !acceptingRequests)

            if case .eventStream(let stream) = response.body, (200..<300).contains(response.status.code) {
                core.responseWritten(method: slot.method, route: slot.route, status: response.status.code,
                                     startedAt: slot.startedAt, requestBodyBytes: slot.requestBodyBytes,
                                     responseBodyBytes: 0, requestID: slot.requestID, wasDispatched: !slot.isError)
                abandonQueuedRequests()
                core.encoder.appendHead(status: response.status, headers: response.headers, contentLength: nil,
                                        connection: .close, requestID: slot.requestID, to: &output)
                if slot.method == .head {
                    closing = true
                } else {
                    startStream(stream)
                }
                break
            }

            let body = response.bodyBytes
            let allowsBody = response.status.allowsBody
            let sendBody = allowsBody && slot.method != .head
            let connectionHeader: ResponseEncoder.ConnectionHeader =
                closeAfter ? .close : (slot.version == .http1_0 ? .keepAlive : .none)
            core.encoder.appendHead(status: response.status, headers: response.headers,
                                    contentLength: allowsBody ? body.count : nil, connection: connectionHeader,
                                    requestID: slot.requestID, to: &output)
            if sendBody { output.append(contentsOf: body) }
            core.responseWritten(method: slot.method, route: slot.route, status: response.status.code,
                                 startedAt: slot.startedAt, requestBodyBytes: slot.requestBodyBytes,
                                 responseBodyBytes: sendBody ? body.count : 0, requestID: slot.requestID,
                                 wasDispatched: !slot.isError)
            if closeAfter {
                closing = true
                abandonQueuedRequests()
            }
        }
        if mode == .active && !closing && slots.isEmpty {
            if pendingContinue && pendingHead != nil {
                output.append(contentsOf: ResponseEncoder.continueResponse)
                pendingContinue = false
            }
            // Reading resumes: the clock of a request that waited behind others starts now.
            let now = EventLoop.now()
            if pendingHead != nil { bodyStartedAt = now } else if parser.phase == .head { requestStartedAt = now }
        }
        flush()
        if mode == .active && !closing {
            processRequests()
            if mode == .active {
                updateInterest()
                updateTimer()
            }
        }
    }

    /// Cancels requests queued behind a response that closes the connection.
    private func abandonQueuedRequests() {
        acceptingRequests = false
        var dispatched = 0
        for slot in slots {
            slot.task?.cancel()
            if !slot.isError { dispatched += 1 }
        }
        core.requestsAbandoned(dispatched)
        slots.removeAll()
        queuedBodyBytes = 0
    }

    // MARK: Output

    private func flush() {
        guard mode != .closed else { return }
        while outputOffset < output.count {
            do {
                switch try socket.write(output, from: outputOffset) {
                case .written(let count):
                    outputOffset += count
                case .wouldBlock:
                    if writeBlockedSince == 0 { writeBlockedSince = EventLoop.now() }
                    updateInterest()
                    updateTimer()
                    return
                }
            } catch {
                close()
                return
            }
        }
        if output.capacity > 256 * 1024 {
            output = []
        } else {
            output.removeAll(keepingCapacity: true)
        }
        outputOffset = 0
        writeBlockedSince = 0
        lastActivity = EventLoop.now()
        if closing && slots.isEmpty && mode != .streaming {
            beginLinger()
            return
        }
        updateInterest()
        updateTimer()
    }

    private func updateInterest() {
        guard mode != .closed else { return }
        var desired: IOEvents = wantsToRead ? [.readable, .readHangup] : []
        if pendingOutput > 0 { desired.insert(.writable) }
        if desired != interest {
            do {
                try core.loop.setInterest(socket.fileDescriptor, desired)
                interest = desired
            } catch {
                close()
            }
        }
    }

    // MARK: Timeouts

    private func currentDeadline() -> UInt64? {
        switch mode {
        case .closed:
            return nil
        case .lingering:
            return lingerDeadline
        case .streaming:
            return writeBlockedSince != 0 ? writeBlockedSince &+ core.writeTimeout : nil
        case .active:
            if writeBlockedSince != 0 { return writeBlockedSince &+ core.writeTimeout }
            if !slots.isEmpty || closing { return nil }
            if pendingHead != nil { return bodyStartedAt &+ core.bodyTimeout }
            switch parser.phase {
            case .head: return requestStartedAt &+ core.headerTimeout
            case .body: return bodyStartedAt &+ core.bodyTimeout
            case .idle: return lastActivity &+ (requestsSeen == 0 ? core.firstRequestTimeout : core.idleTimeout)
            case .failed: return nil
            }
        }
    }

    private func updateTimer() {
        guard let deadline = currentDeadline() else { return }
        if let timer {
            if deadline < timerDeadline {
                core.loop.reschedule(timer, at: deadline)
                timerDeadline = deadline
            }
        } else {
            timerDeadline = deadline
            timer = core.loop.schedule(at: deadline) { [self] in timerFired() }
        }
    }

    private func timerFired() {
        timer = nil
        guard mode != .closed, let deadline = currentDeadline() else { return }
        if EventLoop.now() < deadline {
            updateTimer()
            return
        }
        switch mode {
        case .closed:
            return
        case .lingering:
            close()
        case .streaming:
            core.slowClientDropped(peer: peer)
            close()
        case .active:
            if writeBlockedSince != 0 {
                core.slowClientDropped(peer: peer)
                close()
            } else if pendingHead == nil && parser.phase == .idle {
                close()  // idle keep-alive connection: a quiet close is the protocol's way
            } else {
                let what = pendingHead == nil ? "request head" : "request body"
                fail(HTTPError(.requestTimeout, status: .requestTimeout, detail: "\(what) not received in time"),
                     isTimeout: true)
            }
        }
    }

    // MARK: Event streams

    private func startStream(_ stream: HTTPResponse.EventStream) {
        mode = .streaming
        let core = self.core
        let connectionID = id
        let writer = SSEWriter(maxBufferedBytes: core.configuration.maxEventStreamBufferSize) {
            core.loop.execute { core.flushStream(connectionID: connectionID) }
        }
        streamWriter = writer
        core.eventStreamCountChanged(by: 1)
        let producer = stream.producer
        streamTask = Task {
            await producer(writer)
            core.loop.execute { core.streamFinished(connectionID: connectionID) }
        }
        if let interval = stream.heartbeat, interval > .zero {
            heartbeatInterval = interval
            heartbeatTimer = core.loop.schedule(after: interval) { [self] in heartbeat() }
        }
    }

    func flushStream() {
        guard mode == .streaming, let writer = streamWriter else { return }
        let (bytes, closed) = writer.takePending()
        if closed {
            core.slowClientDropped(peer: peer)
            close()
            return
        }
        output.append(contentsOf: bytes)
        if pendingOutput > core.configuration.maxEventStreamBufferSize {
            core.slowClientDropped(peer: peer)
            close()
            return
        }
        flush()
    }

    func streamFinished() {
        guard mode == .streaming, let writer = streamWriter else { return }
        output.append(contentsOf: writer.takePending().bytes)
        endStream()
        mode = .active
        closing = true
        flush()
    }

    private func heartbeat() {
        heartbeatTimer = nil
        guard mode == .streaming, let interval = heartbeatInterval else { return }
        if pendingOutput == 0 {
            output.append(contentsOf: ServerSentEvent.comment("heartbeat"))
            flush()
        }
        if mode == .streaming {
            heartbeatTimer = core.loop.schedule(after: interval) { [self] in heartbeat() }
        }
    }

    private func endStream() {
        guard let writer = streamWriter else { return }
        writer.close()
        streamTask?.cancel()
        streamTask = nil
        streamWriter = nil
        if let heartbeatTimer { core.loop.cancel(heartbeatTimer) }
        heartbeatTimer = nil
        core.eventStreamCountChanged(by: -1)
    }

    // MARK: Closing

    /// Half-closes and reads what the client still sends until it closes or the linger
    /// timeout passes, so the final answer is not destroyed by a TCP reset.
    private func beginLinger() {
        guard mode != .closed else { return }
        endStream()
        mode = .lingering
        socket.shutdown(.write)
        lingerDeadline = EventLoop.now() &+ core.lingerTimeout
        updateInterest()
        updateTimer()
        if peerClosed { close() }
    }

    private func drainWhileLingering() {
        for _ in 0..<4 {
            switch try? socket.read(into: &core.readBuffer) {
            case .bytes: continue
            case .wouldBlock: return
            case .endOfFile, nil:
                close()
                return
            }
        }
    }

    /// Server shutdown: close if idle, otherwise finish what is in progress first.
    func beginShutdown() {
        switch mode {
        case .closed, .lingering:
            return
        case .streaming:
            close()
        case .active:
            let midRequest = pendingHead != nil || parser.phase == .head || parser.phase == .body
            if slots.isEmpty && !midRequest && pendingOutput == 0 {
                close()
                return
            }
            if midRequest && acceptingRequests {
                stopAfterCurrent = true
            } else {
                acceptingRequests = false
                if slots.isEmpty { closing = true }
            }
            if closing && pendingOutput == 0 && slots.isEmpty {
                beginLinger()
                return
            }
            updateInterest()
            updateTimer()
        }
    }

    /// Closes at once: cancels handler tasks and the stream producer, frees the descriptor.
    func close() {
        guard mode != .closed else { return }
        mode = .closed
        if let timer { core.loop.cancel(timer) }
        timer = nil
        endStream()
        var dispatched = 0
        for slot in slots {
            slot.task?.cancel()
            if !slot.isError { dispatched += 1 }
        }
        core.requestsAbandoned(dispatched)
        slots.removeAll()
        core.loop.deregister(socket.fileDescriptor)
        socket.close()
        output = []
        core.connectionClosed(self)
    }
}
