/// A response: status, headers and either bytes or an event stream.
///
/// The server adds `Content-Length`, `Date`, `Connection` and `X-Request-Id`; any
/// `Content-Length`, `Transfer-Encoding` or `Connection` set here is replaced (a
/// `Connection: close` set here is honoured).
public struct HTTPResponse: Sendable {
    /// What follows the head.
    public enum Body: Sendable {
        /// A fixed body sent with Content-Length.
        case bytes([UInt8])
        /// A `text/event-stream` body produced until the producer returns or the client leaves.
        case eventStream(EventStream)
    }

    /// An event-stream body: the producer runs in its own task once the head is sent.
    public struct EventStream: Sendable {
        /// How often a comment heartbeat is written while the stream is open; nil for none.
        public var heartbeat: Duration?
        /// Writes events; returning ends the response and closes the connection.
        public var producer: @Sendable (SSEWriter) async -> Void

        /// Creates a stream body.
        public init(heartbeat: Duration?, producer: @escaping @Sendable (SSEWriter) async -> Void) {
            self.heartbeat = heartbeat
            self.producer = producer
        }
    }

    /// The status.
    public var status: HTTPStatus
    /// Response headers.
    public var headers: HTTPHeaders
    /// The body.
    public var body: Body

    /// Creates a response with a byte body.
    public init(status: HTTPStatus = .ok, headers: HTTPHeaders = [:], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = .bytes(body)
    }

    /// The body bytes (empty for event streams).
    public var bodyBytes: [UInt8] {
        if case .bytes(let bytes) = body { return bytes }
        return []
    }

    /// A JSON response from already-serialized bytes (the platform's JSON module encodes).
    public static func json(_ bytes: [UInt8], status: HTTPStatus = .ok, headers: HTTPHeaders = [:]) -> HTTPResponse {
        var headers = headers
        headers.set("Content-Type", "application/json")
        return HTTPResponse(status: status, headers: headers, body: bytes)
    }

    /// A JSON response from an already-serialized JSON string.
    public static func json(_ text: String, status: HTTPStatus = .ok, headers: HTTPHeaders = [:]) -> HTTPResponse {
        json(Array(text.utf8), status: status, headers: headers)
    }

    /// A `text/plain; charset=utf-8` response.
    public static func text(_ text: String, status: HTTPStatus = .ok, headers: HTTPHeaders = [:]) -> HTTPResponse {
        var headers = headers
        headers.set("Content-Type", "text/plain; charset=utf-8")
        return HTTPResponse(status: status, headers: headers, body: Array(text.utf8))
    }

    /// An empty response with the given status (204 by default).
    public static func empty(_ status: HTTPStatus = .noContent, headers: HTTPHeaders = [:]) -> HTTPResponse {
        HTTPResponse(status: status, headers: headers)
    }

    /// An `application/problem+json` response (RFC 9457); the status comes from the problem.
    public static func problem(_ problem: ProblemDetails, headers: HTTPHeaders = [:]) -> HTTPResponse {
        var headers = headers
        headers.set("Content-Type", "application/problem+json")
        return HTTPResponse(status: problem.status, headers: headers, body: problem.jsonBytes())
    }

    /// An `application/problem+json` response built from its members.
    public static func problem(_ status: HTTPStatus, title: String? = nil, detail: String? = nil,
                               type: String = "about:blank", instance: String? = nil,
                               extensions: [(String, ProblemValue)] = [], headers: HTTPHeaders = [:]) -> HTTPResponse {
        problem(ProblemDetails(status: status, title: title, detail: detail, type: type,
                               instance: instance, extensions: extensions), headers: headers)
    }

    /// An event stream fed by an async sequence (e.g. an `AsyncStream`). The sequence is
    /// iterated in a task the server cancels when the client disconnects or is too slow, so
    /// an `AsyncStream`'s `onTermination` tells the producer to stop.
    public static func eventStream<Events: AsyncSequence & Sendable>(
        _ events: Events, heartbeat: Duration? = .seconds(15), headers: HTTPHeaders = [:]
    ) -> HTTPResponse where Events.Element == ServerSentEvent {
        eventStream(heartbeat: heartbeat, headers: headers) { writer in
            do {
                for try await event in events {
                    try writer.send(event)
                }
            } catch {
                // The client left, was too slow, or the sequence failed: the stream just ends.
            }
        }
    }

    /// An event stream written by `producer`, which runs until it returns (ending the
    /// response) or is cancelled because the client went away.
    public static func eventStream(heartbeat: Duration? = .seconds(15), headers: HTTPHeaders = [:],
                                   _ producer: @escaping @Sendable (SSEWriter) async -> Void) -> HTTPResponse {
        var headers = headers
        headers.set("Content-Type", "text/event-stream")
        if !headers.contains("Cache-Control") { headers.set("Cache-Control", "no-store") }
        // Reverse proxies such as nginx buffer responses unless told not to.
        headers.set("X-Accel-Buffering", "no")
        var response = HTTPResponse(status: .ok, headers: headers)
        response.body = .eventStream(EventStream(heartbeat: heartbeat, producer: producer))
        return response
    }

    /// The problem response for an error thrown by a handler or raised by the server.
    /// Non-HTTPError errors become a 500 whose only detail is the request id: the error's
    /// text goes to the log, never to the client.
    public static func from(error: any Error, requestID: String?, instance: String? = nil) -> HTTPResponse {
        var extensions: [(String, ProblemValue)] = []
        if let requestID { extensions.append(("requestId", .string(requestID))) }
        if let error = error as? HTTPError {
            var extra = extensions
            if error.status.code >= 400 && error.code != .application {
                extra.append(("code", .string(error.code.name)))
            }
            extra += error.extensions
            return problem(error.status, detail: error.detail.isEmpty ? nil : error.detail,
                           instance: instance, extensions: extra, headers: error.headers)
        }
        return problem(.internalServerError,
                       detail: "The server failed to handle this request; quote the request id when reporting it.",
                       instance: instance, extensions: extensions)
    }
}
