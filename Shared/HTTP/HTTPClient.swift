import Durations
import Dispatch
import Foundation
import Sockets

/// A minimal HTTP/1.1 client for tests and the operator CLI: one connection per request,
/// Content-Length and chunked responses, and server-sent event streams read line by line.
///
/// Socket I/O is blocking but runs on Dispatch worker threads (streams on their own
/// thread), never on Swift's cooperative pool; the async API just waits for it.
///
/// ```swift
/// let client = HTTPClient(host: "127.0.0.1", port: port)
/// let response = try await client.get("/v1/twins/pump-17")
/// for try await event in client.events("/v1/changes") { print(event.data) }
/// ```
public struct HTTPClient: Sendable {
    /// A received response.
    public struct Response: Sendable {
        /// The status.
        public var status: HTTPStatus
        /// The headers in order.
        public var headers: HTTPHeaders
        /// The body (chunked transfer coding removed).
        public var body: [UInt8]
        /// The body as UTF-8 text.
        public var text: String { String(decoding: body, as: UTF8.self) }
    }

    /// Server host name or address.
    public var host: String
    /// Server port.
    public var port: Int
    /// Time allowed for connecting, sending and receiving one whole response.
    public var timeout: Duration
    /// Largest response body accepted.
    public var maxResponseSize: Int
    /// Headers sent with every request (request headers with the same name win).
    public var defaultHeaders: HTTPHeaders

    /// Creates a client for `host:port`.
    public init(host: String = "127.0.0.1", port: Int, timeout: Duration = .seconds(10),
                maxResponseSize: Int = 16 * 1024 * 1024, defaultHeaders: HTTPHeaders = [:]) {
        self.host = host
        self.port = port
        self.timeout = timeout
        self.maxResponseSize = maxResponseSize
        self.defaultHeaders = defaultHeaders
    }

    /// Sends a GET.
    public func get(_ target: String, headers: HTTPHeaders = [:]) async throws -> Response {
        try await send(.get, target, headers: headers)
    }

    /// Sends a POST with `body`.
    public func post(_ target: String, headers: HTTPHeaders = [:], body: [UInt8]) async throws -> Response {
        try await send(.post, target, headers: headers, body: body)
    }

    /// Sends any request; throws `HTTPError` (`.connectionFailed`, `.timeout`,
    /// `.invalidResponse`) when no well-formed response arrives. Non-2xx statuses are
    /// returned, not thrown.
    public func send(_ method: HTTPMethod, _ target: String, headers: HTTPHeaders = [:],
                     body: [UInt8] = []) async throws -> Response {
        let request = encodeRequest(method, target, headers: headers, body: body, keepOpen: false)
        let connection = ClientConnection(host: host, port: port)
        let timeout = self.timeout
        let limit = maxResponseSize
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Response, any Error>) in
                DispatchQueue.global().async {
                    continuation.resume(with: Result {
                        try connection.exchange(request, isHead: method == .head, timeout: timeout, limit: limit)
                    })
                }
            }
        } onCancel: {
            connection.cancel()
        }
    }

    /// Opens an event stream and yields its raw lines (without line terminators) after a 2xx
    /// head; a non-2xx status throws an `HTTPError` carrying it. Ends when the server closes;
    /// stopping iteration (or cancelling the task) closes the connection. There is no overall
    /// timeout; `timeout` applies to connecting and to the response head.
    public func lines(_ target: String, headers: HTTPHeaders = [:]) -> AsyncThrowingStream<String, any Error> {
        var headers = headers
        if !headers.contains("Accept") { headers.set("Accept", "text/event-stream") }
        let request = encodeRequest(.get, target, headers: headers, body: [], keepOpen: true)
        let connection = ClientConnection(host: host, port: port)
        let timeout = self.timeout
        return AsyncThrowingStream { continuation in
            continuation.onTermination = { _ in connection.cancel() }
            Thread.detachNewThread {
                do {
                    try connection.streamLines(request, timeout: timeout) { line in
                        if case .terminated = continuation.yield(line) { return false }
                        return true
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
        }
    }

    /// Opens an event stream and yields parsed events (comments and heartbeats skipped).
    public func events(_ target: String, headers: HTTPHeaders = [:]) -> AsyncThrowingStream<ServerSentEvent, any Error> {
        let lines = self.lines(target, headers: headers)
        return AsyncThrowingStream { continuation in
            let task = Task {
                var parser = ServerSentEventParser()
                do {
                    for try await line in lines {
                        if let event = parser.consume(line: line) { continuation.yield(event) }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    private func encodeRequest(_ method: HTTPMethod, _ target: String, headers: HTTPHeaders, body: [UInt8],
                               keepOpen: Bool) -> [UInt8] {
        var merged = defaultHeaders
        for field in headers { merged.set(field.name, field.value) }
        if !merged.contains("Host") {
            let authority = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            merged.set("Host", authority)
        }
        merged.remove("Content-Length")
        merged.remove("Transfer-Encoding")
        if !body.isEmpty || method == .post || method == .put || method == .patch {
            merged.set("Content-Length", String(body.count))
        }
        if !keepOpen { merged.set("Connection", "close") }
        // Spaces and control characters in a caller-supplied target would break the request
        // line (or smuggle a second request): they are percent-encoded.
        var output = Array("\(method.rawValue) ".utf8)
        for byte in target.utf8 {
            if byte <= 0x20 || byte == 0x7F {
                output.append(contentsOf: Array("%".utf8) + Array(String(byte >> 4, radix: 16).uppercased().utf8)
                    + Array(String(byte & 0x0F, radix: 16).uppercased().utf8))
            } else {
                output.append(byte)
            }
        }
        output.append(contentsOf: Array(" HTTP/1.1\r\n".utf8))
        for field in merged where HTTPSyntax.isToken(field.name) {
            output.append(contentsOf: field.name.utf8)
            output.append(contentsOf: [0x3A, 0x20])
            output.append(contentsOf: field.value.utf8.map { $0 == 0x0D || $0 == 0x0A ? 0x20 : $0 })
            output.append(contentsOf: [0x0D, 0x0A])
        }
        output.append(contentsOf: [0x0D, 0x0A])
        output.append(contentsOf: body)
        return output
    }
}

/// One blocking client connection; `cancel()` from another thread unblocks it.
final class ClientConnection: Sendable {
    private struct State {
        var socket: TCPSocket?
        var cancelled = false
    }

    private let host: String
    private let port: Int
    private let state = Locked(State())

    init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Shuts the socket down (waking any blocked poll) or prevents it from opening.
    func cancel() {
        state.withLock { state in
            state.cancelled = true
            state.socket?.shutdown(.both)
        }
    }

    private func open(timeout: Duration) throws -> TCPSocket {
        guard let port = UInt16(exactly: port) else {
            throw HTTPError(.connectionFailed, status: .badGateway, detail: "invalid port \(port)")
        }
        let socket: TCPSocket
        do {
            socket = try TCPSocket.connect(host: host, port: port, timeout: timeout)
        } catch {
            let code: HTTPError.Code = error.code == .timeout ? .timeout : .connectionFailed
            throw HTTPError(code, status: code == .timeout ? .gatewayTimeout : .badGateway, detail: "\(error)")
        }
        let cancelled = state.withLock { state -> Bool in
            if state.cancelled { return true }
            state.socket = socket
            return false
        }
        if cancelled {
            socket.close()
            throw CancellationError()
        }
        return socket
    }

    private func closeSocket() {
        state.withLock { state in
            state.socket?.close()
            state.socket = nil
        }
    }

    func exchange(_ request: [UInt8], isHead: Bool, timeout: Duration, limit: Int) throws -> HTTPClient.Response {
        let deadline = EventLoop.now() &+ timeout.nonNegativeNanoseconds
        let socket = try open(timeout: timeout)
        defer { closeSocket() }
        var reader = BlockingReader(socket: socket, deadline: deadline)
        try reader.writeAll(request)
        return try reader.readResponse(isHead: isHead, limit: limit)
    }

    func streamLines(_ request: [UInt8], timeout: Duration, onLine: (String) -> Bool) throws {
        let deadline = EventLoop.now() &+ timeout.nonNegativeNanoseconds
        let socket = try open(timeout: timeout)
        defer { closeSocket() }
        var reader = BlockingReader(socket: socket, deadline: deadline)
        try reader.writeAll(request)
        let (status, headers) = try reader.readHead(isHead: false)
        guard (200..<300).contains(status.code) else {
            let body = (try? reader.readBody(headers: headers, status: status, isHead: false, limit: 64 * 1024)) ?? []
            throw HTTPError(status, code: .invalidResponse, detail: String(decoding: body, as: UTF8.self))
        }
        reader.deadline = nil  // a stream may stay open indefinitely
        let chunked = headers.listValues(for: "Transfer-Encoding").last?.equalsIgnoringCase("chunked") ?? false
        if chunked {
            throw HTTPError(.invalidResponse, status: .badGateway, detail: "chunked event streams are not supported")
        }
        while let line = try reader.readLine(maxLength: 1024 * 1024, allowEOF: true) {
            if !onLine(String(decoding: line, as: UTF8.self)) { return }
        }
    }
}

/// Buffered blocking reads with an optional overall deadline.
struct BlockingReader {
    let socket: TCPSocket
    var deadline: UInt64?
    private var buffer: [UInt8] = []
    private var index = 0
    private var scratch = [UInt8](repeating: 0, count: 16 * 1024)

    init(socket: TCPSocket, deadline: UInt64?) {
        self.socket = socket
        self.deadline = deadline
    }

    private func remaining() throws -> Duration? {
        guard let deadline else { return nil }
        let now = EventLoop.now()
        guard now < deadline else { throw HTTPError(.timeout, status: .gatewayTimeout, detail: "no response in time") }
        return .nanoseconds(Int64(deadline - now))
    }

    /// Waits for the socket; socket failures surface as HTTPError like everything else here.
    private func wait(writable: Bool) throws -> Bool {
        let timeout = try remaining()
        do {
            return writable ? try socket.waitUntilWritable(timeout: timeout) : try socket.waitUntilReadable(timeout: timeout)
        } catch {
            throw HTTPError(.connectionFailed, status: .badGateway, detail: "\(error)")
        }
    }

    mutating func writeAll(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let result: TCPSocket.WriteResult
            do {
                result = try socket.write(bytes, from: offset)
            } catch {
                throw HTTPError(.connectionFailed, status: .badGateway, detail: "\(error)")
            }
            switch result {
            case .written(let count): offset += count
            case .wouldBlock:
                guard try wait(writable: true) else {
                    throw HTTPError(.timeout, status: .gatewayTimeout, detail: "request not sent in time")
                }
            }
        }
    }

    /// Reads more bytes; false at end of file.
    private mutating func fill() throws -> Bool {
        if index > 0 && index == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            index = 0
        }
        while true {
            let result: TCPSocket.ReadResult
            do {
                result = try socket.read(into: &scratch)
            } catch {
                throw HTTPError(.connectionFailed, status: .badGateway, detail: "\(error)")
            }
            switch result {
            case .bytes(let count):
                buffer.append(contentsOf: scratch[0..<count])
                return true
            case .endOfFile:
                return false
            case .wouldBlock:
                guard try wait(writable: false) else {
                    throw HTTPError(.timeout, status: .gatewayTimeout, detail: "no response in time")
                }
            }
        }
    }

    /// A line without its CRLF (or bare LF); nil at a clean end of file if `allowEOF`.
    mutating func readLine(maxLength: Int, allowEOF: Bool = false) throws -> [UInt8]? {
        var searchedPastIndex = 0  // relative, because fill() may compact the buffer
        while true {
            if let newline = buffer[(index + searchedPastIndex)...].firstIndex(of: 0x0A) {
                var end = newline
                if end > index && buffer[end - 1] == 0x0D { end -= 1 }
                let line = Array(buffer[index..<end])
                index = newline + 1
                return line
            }
            searchedPastIndex = buffer.count - index
            if searchedPastIndex > maxLength {
                throw HTTPError(.invalidResponse, status: .badGateway, detail: "response line too long")
            }
            guard try fill() else {
                if allowEOF && index == buffer.count { return nil }
                throw HTTPError(.invalidResponse, status: .badGateway, detail: "connection closed mid-line")
            }
        }
    }

    private mutating func readExactly(_ count: Int, into output: inout [UInt8]) throws {
        var needed = count
        while needed > 0 {
            if index == buffer.count {
                guard try fill() else {
                    throw HTTPError(.invalidResponse, status: .badGateway, detail: "connection closed mid-body")
                }
            }
            let take = min(needed, buffer.count - index)
            output.append(contentsOf: buffer[index..<index + take])
            index += take
            needed -= take
        }
    }

    /// Status line and headers, skipping interim 1xx responses.
    mutating func readHead(isHead: Bool) throws -> (HTTPStatus, HTTPHeaders) {
        while true {
            guard let statusLine = try readLine(maxLength: 16 * 1024) else { continue }
            let text = String(decoding: statusLine, as: UTF8.self)
            let parts = text.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let code = Int(parts[1]), (100...999).contains(code) else {
                throw HTTPError(.invalidResponse, status: .badGateway, detail: "bad status line: \(text.prefix(80))")
            }
            var headers = HTTPHeaders()
            while let line = try readLine(maxLength: 64 * 1024), !line.isEmpty {
                guard let colon = line.firstIndex(of: 0x3A) else {
                    throw HTTPError(.invalidResponse, status: .badGateway, detail: "bad header line")
                }
                let name = String(decoding: line[..<colon], as: UTF8.self)
                let value = String(decoding: line[(colon + 1)...], as: UTF8.self).trimmingHTTPWhitespace()
                headers.add(name, value)
            }
            if code >= 100 && code < 200 { continue }  // 100 Continue and friends
            let phrase = parts.count > 2 ? String(parts[2]) : ""
            return (HTTPStatus(code: code, reasonPhrase: phrase), headers)
        }
    }

    mutating func readBody(headers: HTTPHeaders, status: HTTPStatus, isHead: Bool, limit: Int) throws -> [UInt8] {
        if isHead || !status.allowsBody { return [] }
        var body: [UInt8] = []
        if headers.listValues(for: "Transfer-Encoding").last?.equalsIgnoringCase("chunked") == true {
            while true {
                guard let line = try readLine(maxLength: 1024) else { break }
                let digits = line.prefix { PercentDecoding.hexValue($0) != nil }
                guard !digits.isEmpty, digits.count <= 15 else {
                    throw HTTPError(.invalidResponse, status: .badGateway, detail: "bad chunk size")
                }
                let size = digits.reduce(0) { $0 << 4 | Int(PercentDecoding.hexValue($1)!) }
                if size == 0 {
                    while let trailer = try readLine(maxLength: 64 * 1024), !trailer.isEmpty {}
                    return body
                }
                guard body.count + size <= limit else {
                    throw HTTPError(.invalidResponse, status: .badGateway, detail: "response larger than \(limit) bytes")
                }
                try readExactly(size, into: &body)
                guard let empty = try readLine(maxLength: 2), empty.isEmpty else {
                    throw HTTPError(.invalidResponse, status: .badGateway, detail: "chunk not followed by CRLF")
                }
            }
            return body
        }
        if let lengthText = headers["Content-Length"] {
            guard let length = Int(lengthText), length >= 0 else {
                throw HTTPError(.invalidResponse, status: .badGateway, detail: "bad Content-Length")
            }
            guard length <= limit else {
                throw HTTPError(.invalidResponse, status: .badGateway, detail: "response larger than \(limit) bytes")
            }
            try readExactly(length, into: &body)
            return body
        }
        // No framing: the body runs to the end of the connection.
        while true {
            body.append(contentsOf: buffer[index...])
            index = buffer.count
            guard body.count <= limit else {
                throw HTTPError(.invalidResponse, status: .badGateway, detail: "response larger than \(limit) bytes")
            }
            guard try fill() else { return body }
        }
    }

    mutating func readResponse(isHead: Bool, limit: Int) throws -> HTTPClient.Response {
        let (status, headers) = try readHead(isHead: isHead)
        let body = try readBody(headers: headers, status: status, isHead: isHead, limit: limit)
        return HTTPClient.Response(status: status, headers: headers, body: body)
    }
}
