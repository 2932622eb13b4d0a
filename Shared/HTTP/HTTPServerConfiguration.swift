import Glibc

extension HTTPServer {
    /// Severity of a server log message.
    public enum LogLevel: String, Sendable, Comparable {
        /// Routine events (start, stop).
        case info
        /// Something a client did wrong, or a resource limit was hit.
        case warning
        /// A handler failed or the server itself misbehaved.
        case error

        private var rank: Int { self == .info ? 0 : self == .warning ? 1 : 2 }
        /// Orders by severity.
        public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool { lhs.rank < rhs.rank }
    }

    /// Receives the server's log messages; wire it to the service's logger.
    /// Called on the event-loop thread or a handler task: keep it quick and non-blocking.
    public typealias Logger = @Sendable (_ level: LogLevel, _ message: String, _ metadata: [String: String]) -> Void

    /// One finished request, for metrics (count, duration, status by route).
    public struct RequestMetrics: Sendable {
        /// The request method.
        public var method: HTTPMethod
        /// The route pattern that matched, or nil (404/405, errors): a low-cardinality label.
        public var route: String?
        /// The response status code.
        public var status: Int
        /// From the first byte of the request to its response being queued for writing.
        public var duration: Duration
        /// Request body size in bytes (after chunked decoding).
        public var requestBodyBytes: Int
        /// Response body size in bytes (0 for HEAD and event streams).
        public var responseBodyBytes: Int
        /// The request id.
        public var requestID: String
    }

    /// Counters readable at any time through `HTTPServer.statistics`.
    public struct Statistics: Sendable, Equatable {
        /// Connections open right now.
        public var openConnections = 0
        /// Connections accepted since start (not counting rejected ones).
        public var acceptedConnections = 0
        /// Connections answered 503 (or dropped) because the limit was reached.
        public var rejectedConnections = 0
        /// Requests handed to handlers and not answered yet.
        public var requestsInFlight = 0
        /// Responses written, including error answers.
        public var responses = 0
        /// Requests refused by the parser (400, 413, 414, 417, 431, 501, 505).
        public var protocolErrors = 0
        /// Requests answered 408, or idle connections closed, for taking too long.
        public var timeouts = 0
        /// Connections dropped because the client did not read fast enough.
        public var slowClientDrops = 0
        /// Handlers that threw something other than HTTPError (answered 500).
        public var handlerErrors = 0
        /// Event streams open right now.
        public var openEventStreams = 0
    }

    /// Everything the server can be tuned with. Defaults suit an internal service API.
    public struct Configuration: Sendable, CustomStringConvertible {
        /// Address to bind: "0.0.0.0" (IPv4 any), "::" (IPv6 and IPv4 any), "127.0.0.1",
        /// "::1", or a name such as "localhost".
        public var host: String
        /// Port to bind; 0 picks a free one (read it back from `HTTPServer.port`).
        public var port: Int
        /// listen(2) backlog (the kernel caps it at net.core.somaxconn).
        public var backlog: Int32 = 1024
        /// Most connections open at once. Beyond it a new connection gets a 503 with
        /// `Retry-After` and is closed, so clients back off instead of timing out.
        public var maxConnections = 1024
        /// Longest request line or header line (CRLF excluded): 414 or 431 beyond it.
        public var maxHeaderLineLength = 8 * 1024
        /// Most header fields per request: 431 beyond it.
        public var maxHeaderCount = 100
        /// Largest request head in total: 431 beyond it.
        public var maxHeadSize = 64 * 1024
        /// Default largest request body (routes may override): 413 beyond it.
        public var maxBodySize = 1024 * 1024
        /// Time from a request's first byte until its head is complete: 408 beyond it.
        /// Measured from the first byte, so dribbling bytes (slowloris) does not extend it.
        public var headerReadTimeout: Duration = .seconds(10)
        /// Time from the end of the head until the body is complete: 408 beyond it.
        public var bodyReadTimeout: Duration = .seconds(30)
        /// How long a keep-alive connection may sit between requests before it is closed.
        /// A new connection must start its first request within the smaller of this and
        /// `headerReadTimeout`.
        public var idleTimeout: Duration = .seconds(60)
        /// How long a response may wait on a client that does not read: beyond it the
        /// connection is dropped.
        public var writeTimeout: Duration = .seconds(30)
        /// Most requests of one connection handed to handlers at once (pipelining); further
        /// requests wait in the socket buffer.
        public var maxPipelinedRequests = 16
        /// Most bytes of an event stream waiting for a slow client before it is dropped.
        public var maxEventStreamBufferSize = 256 * 1024
        /// After an error answer, how long to drain what the client still sends before
        /// closing, so the answer is not lost to a TCP reset.
        public var lingerTimeout: Duration = .seconds(2)
        /// `Retry-After` seconds sent with 503 when the connection limit is reached.
        public var retryAfterSeconds = 1
        /// Kernel send buffer per connection; nil keeps the system default.
        public var socketSendBufferSize: Int?
        /// Grace period used by `run()` when its task is cancelled.
        public var shutdownGracePeriod: Duration = .seconds(10)
        /// Called for every response written (on the event-loop thread: keep it quick).
        public var onRequest: (@Sendable (RequestMetrics) -> Void)?
        /// Called with the new number of open connections when it changes (event-loop thread).
        public var onConnectionCountChange: (@Sendable (Int) -> Void)?
        /// Receives log messages; the default writes warnings and errors as JSON lines to stderr.
        public var logger: Logger = Configuration.standardErrorLogger

        /// Creates a configuration for `host:port` with default limits and timeouts.
        public init(host: String = "0.0.0.0", port: Int = 8080) {
            self.host = host
            self.port = port
        }

        /// The parser limits these options imply.
        public var parserLimits: HTTPRequestParser.Limits {
            HTTPRequestParser.Limits(maxHeaderLineLength: maxHeaderLineLength, maxHeaderCount: maxHeaderCount,
                                     maxHeadSize: maxHeadSize, maxBodySize: maxBodySize)
        }

        /// One line listing every option, for the service's first log line.
        public var description: String {
            "host=\(host) port=\(port) maxConnections=\(maxConnections) maxHeaderLineLength=\(maxHeaderLineLength) "
                + "maxHeaderCount=\(maxHeaderCount) maxHeadSize=\(maxHeadSize) maxBodySize=\(maxBodySize) "
                + "headerReadTimeout=\(headerReadTimeout) bodyReadTimeout=\(bodyReadTimeout) idleTimeout=\(idleTimeout) "
                + "writeTimeout=\(writeTimeout) maxPipelinedRequests=\(maxPipelinedRequests) "
                + "maxEventStreamBufferSize=\(maxEventStreamBufferSize)"
        }

        /// Writes warnings and errors to stderr as one JSON object per line.
        public static let standardErrorLogger: Logger = { level, message, metadata in
            guard level >= .warning else { return }
            var line: [UInt8] = Array("{\"level\":".utf8)
            JSONText.appendString(level.rawValue, to: &line)
            line.append(contentsOf: Array(",\"component\":\"http\",\"msg\":".utf8))
            JSONText.appendString(message, to: &line)
            for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
                line.append(0x2C)
                JSONText.appendString(key, to: &line)
                line.append(0x3A)
                JSONText.appendString(value, to: &line)
            }
            line.append(contentsOf: [0x7D, 0x0A])
            _ = line.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
        }

        /// A logger that drops everything (tests).
        public static let silentLogger: Logger = { _, _, _ in }
    }
}
