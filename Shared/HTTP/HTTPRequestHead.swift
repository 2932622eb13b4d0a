/// How a request's body is delimited on the wire.
public enum HTTPBodyFraming: Sendable, Equatable {
    /// No body (neither Content-Length nor Transfer-Encoding).
    case none
    /// Exactly this many bytes follow the head.
    case contentLength(Int)
    /// A chunked body follows; its size is known only at the end.
    case chunked
}

/// A parsed request line and header block, available before the body is read so the
/// server can route, pick a body limit and answer `Expect: 100-continue` first.
public struct HTTPRequestHead: Sendable {
    /// The method token.
    public var method: HTTPMethod
    /// The request-target exactly as sent.
    public var target: String
    /// HTTP/1.0 or HTTP/1.1.
    public var version: HTTPVersion
    /// Header fields in order, duplicates preserved.
    public var headers: HTTPHeaders
    /// The target's path, not decoded ("*" for `OPTIONS *`, "" for CONNECT's authority form).
    public var path: String
    /// The raw query after "?", without it; nil when the target has no "?".
    public var query: String?
    /// The path split on "/" and percent-decoded; a trailing empty segment ("/a/") is dropped.
    public var pathSegments: [String]
    /// How the body is delimited.
    public var framing: HTTPBodyFraming
    /// Whether the connection may be reused after this request (version and Connection).
    public var keepAlive: Bool
    /// True when the client sent `Expect: 100-continue` and waits before sending the body.
    public var expectsContinue: Bool
}
