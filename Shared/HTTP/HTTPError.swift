/// The one error type of the HTTP module. It carries the HTTP status to answer with, so a
/// handler can `throw HTTPError(.notFound, detail: "no twin pump-17")` and the client gets a
/// problem+json 404; parser failures are HTTPErrors too (400, 408, 413, 431, 501, 505…).
/// Client-side failures (connect, timeout, bad response) use `status` 502/504 for symmetry.
public struct HTTPError: Error, Sendable, CustomStringConvertible {
    /// Machine-readable cause; stable names suitable for logs and metrics labels.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The code's name.
        public let name: String
        /// Creates a code; prefer the predefined ones.
        public init(_ name: String) { self.name = name }
        /// Prints the name.
        public var description: String { name }

        /// The request line is not `method SP target SP HTTP/x.y`.
        public static let malformedRequestLine = Code("malformedRequestLine")
        /// The request-target is not a valid origin/absolute/asterisk form or has bad escapes.
        public static let malformedTarget = Code("malformedTarget")
        /// A header line is not `name: value`, uses obs-fold, or contains forbidden bytes.
        public static let malformedHeader = Code("malformedHeader")
        /// The line ending is not CRLF (bare CR or LF).
        public static let malformedLineEnding = Code("malformedLineEnding")
        /// Missing or duplicated Host in HTTP/1.1.
        public static let invalidHost = Code("invalidHost")
        /// Content-Length is not a single decimal number.
        public static let invalidContentLength = Code("invalidContentLength")
        /// Both Content-Length and Transfer-Encoding, or a bad Transfer-Encoding list.
        public static let ambiguousFraming = Code("ambiguousFraming")
        /// A transfer coding other than chunked.
        public static let unsupportedTransferEncoding = Code("unsupportedTransferEncoding")
        /// The chunked body is malformed.
        public static let malformedChunk = Code("malformedChunk")
        /// The HTTP version is not 1.0 or 1.1.
        public static let unsupportedVersion = Code("unsupportedVersion")
        /// The request line is longer than the configured line limit.
        public static let requestLineTooLong = Code("requestLineTooLong")
        /// A header line is longer than the configured line limit.
        public static let headerLineTooLong = Code("headerLineTooLong")
        /// More header lines (or a larger head) than allowed.
        public static let tooManyHeaders = Code("tooManyHeaders")
        /// The body exceeds the configured limit.
        public static let bodyTooLarge = Code("bodyTooLarge")
        /// An Expect value other than 100-continue.
        public static let unsupportedExpectation = Code("unsupportedExpectation")
        /// The request head or body did not arrive in time.
        public static let requestTimeout = Code("requestTimeout")
        /// The connection closed in the middle of a request.
        public static let truncatedRequest = Code("truncatedRequest")
        /// No route matches the path.
        public static let notFound = Code("notFound")
        /// A route matches the path but not the method.
        public static let methodNotAllowed = Code("methodNotAllowed")
        /// The server is at its connection limit or shutting down.
        public static let serviceUnavailable = Code("serviceUnavailable")
        /// A handler threw something that is not an HTTPError.
        public static let internalError = Code("internalError")
        /// Raised by application code with an explicit status.
        public static let application = Code("application")
        /// Client: could not connect or the connection failed.
        public static let connectionFailed = Code("connectionFailed")
        /// Client: no answer within the timeout.
        public static let timeout = Code("timeout")
        /// Client: the server's response could not be parsed.
        public static let invalidResponse = Code("invalidResponse")
        /// The server could not start (bind failed, already started).
        public static let serverStart = Code("serverStart")
    }

    /// What went wrong.
    public var code: Code
    /// The status the server answers with.
    public var status: HTTPStatus
    /// Human-readable detail for the problem document; never a stack trace.
    public var detail: String
    /// Extra response headers (e.g. `Allow` for 405, `Retry-After` for 503).
    public var headers: HTTPHeaders
    /// Extra members of the problem document (e.g. the offending parameter and token).
    public var extensions: [(String, ProblemValue)] = []
    /// Where it was raised (logs only).
    public var file: String
    /// Line where it was raised (logs only).
    public var line: Int

    /// Creates an error answered with `status`; the code defaults to `.application`.
    public init(_ status: HTTPStatus, code: Code = .application, detail: String = "",
                headers: HTTPHeaders = [:], file: String = #fileID, line: Int = #line) {
        self.code = code
        self.status = status
        self.detail = detail
        self.headers = headers
        self.file = file
        self.line = line
    }

    /// Creates an error with a specific code.
    public init(_ code: Code, status: HTTPStatus, detail: String,
                file: String = #fileID, line: Int = #line) {
        self.init(status, code: code, detail: detail, file: file, line: line)
    }

    /// `status code: detail at file:line`.
    public var description: String {
        "\(status.code) \(code): \(detail) at \(file):\(line)"
    }
}
