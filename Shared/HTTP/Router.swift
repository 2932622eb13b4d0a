/// Method + path-pattern routing, built at start-up and immutable once handed to the server.
///
/// Patterns are literal segments and `{name}` parameters: `/v1/twins/{id}`,
/// `/v1/twins/{id}/relationships/{rel}/{target}`. Literal segments win over parameters at
/// the same position; a trailing slash is ignored. No match is a 404, a path match with
/// the wrong method is a 405 with `Allow`; HEAD falls back to GET and OPTIONS is answered
/// with `Allow` unless a route handles it.
///
/// ```swift
/// var router = Router()
/// router.get("/v1/twins/{id}") { request in
///     .json(#"{"id":"\#(request.parameter("id")!)"}"#)
/// }
/// router.post("/v1/telemetry", maxBodySize: 8 << 20) { request in .empty(.accepted) }
/// ```
public struct Router: Sendable {
    /// A route handler. Throw `HTTPError` for a specific status; anything else is a 500.
    public typealias Handler = @Sendable (HTTPRequest) async throws -> HTTPResponse
    /// Wraps every request (including 404/405 answers); call `next` to continue.
    public typealias Middleware = @Sendable (HTTPRequest, _ next: Handler) async throws -> HTTPResponse

    private struct Route: Sendable {
        var method: HTTPMethod
        var pattern: String
        var parameterNames: [String]
        var maxBodySize: Int?
        var handler: Handler
    }

    private enum Segment {
        case literal(String)
        case parameter(String)
    }

    private struct Node: Sendable {
        var literals: [String: Node] = [:]
        var parameter: [Node] = []  // zero or one child; an array makes the struct recursive
        var routes: [HTTPMethod: Route] = [:]
    }

    /// The outcome of matching a method and path, decided before the body is read.
    public struct Match: Sendable {
        /// The matched pattern, or nil for 404/405/OPTIONS answers.
        public let pattern: String?
        /// Captured `{name}` values, decoded.
        public let parameters: [String: String]
        /// The route's own body limit, if it set one.
        public let maxBodySize: Int?
        let handler: Handler
    }

    private var root = Node()
    private var middlewares: [Middleware] = []
    private var patterns: [String] = []

    /// Answers requests no route matches, instead of the default 404 problem.
    public var notFoundHandler: Handler?

    /// An empty router: every request is a 404.
    public init() {}

    /// Every registered "METHOD pattern", in registration order.
    public var routes: [String] { patterns }

    /// Registers `handler` for `method` and `pattern`. `maxBodySize` overrides the server's
    /// body limit for this route only. Registering the same method and pattern twice, or a
    /// malformed pattern, is a programming error and traps at start-up.
    public mutating func add(_ method: HTTPMethod, _ pattern: String, maxBodySize: Int? = nil,
                             _ handler: @escaping Handler) {
        precondition(pattern.hasPrefix("/"), "route pattern must start with /: \(pattern)")
        var segments: [Segment] = []
        var names: [String] = []
        var pieces = pattern.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if pieces.last == "" { pieces.removeLast() }
        for piece in pieces {
            if piece.hasPrefix("{") && piece.hasSuffix("}") && piece.count > 2 {
                let name = String(piece.dropFirst().dropLast())
                precondition(!name.contains("{") && !name.contains("}") && !names.contains(name),
                             "bad or repeated parameter in route pattern \(pattern)")
                names.append(name)
                segments.append(.parameter(name))
            } else {
                precondition(!piece.contains("{") && !piece.contains("}"), "malformed route pattern \(pattern)")
                segments.append(.literal(piece))
            }
        }
        let route = Route(method: method, pattern: pattern, parameterNames: names,
                          maxBodySize: maxBodySize, handler: handler)
        Router.insert(route, segments: segments[...], into: &root)
        patterns.append("\(method) \(pattern)")
    }

    private static func insert(_ route: Route, segments: ArraySlice<Segment>, into node: inout Node) {
        guard let first = segments.first else {
            precondition(node.routes[route.method] == nil, "route registered twice: \(route.method) \(route.pattern)")
            node.routes[route.method] = route
            return
        }
        switch first {
        case .literal(let text):
            insert(route, segments: segments.dropFirst(), into: &node.literals[text, default: Node()])
        case .parameter:
            if node.parameter.isEmpty { node.parameter.append(Node()) }
            insert(route, segments: segments.dropFirst(), into: &node.parameter[0])
        }
    }

    /// Registers a GET route (also answers HEAD).
    public mutating func get(_ pattern: String, _ handler: @escaping Handler) { add(.get, pattern, handler) }
    /// Registers a POST route.
    public mutating func post(_ pattern: String, maxBodySize: Int? = nil, _ handler: @escaping Handler) {
        add(.post, pattern, maxBodySize: maxBodySize, handler)
    }
    /// Registers a PUT route.
    public mutating func put(_ pattern: String, maxBodySize: Int? = nil, _ handler: @escaping Handler) {
        add(.put, pattern, maxBodySize: maxBodySize, handler)
    }
    /// Registers a PATCH route.
    public mutating func patch(_ pattern: String, maxBodySize: Int? = nil, _ handler: @escaping Handler) {
        add(.patch, pattern, maxBodySize: maxBodySize, handler)
    }
    /// Registers a DELETE route.
    public mutating func delete(_ pattern: String, _ handler: @escaping Handler) { add(.delete, pattern, handler) }

    /// Adds a middleware; the first added is the outermost.
    public mutating func use(_ middleware: @escaping Middleware) {
        middlewares.append(middleware)
    }

    // MARK: Matching

    /// Finds the handler for `method` and decoded path `segments`. Cheap and synchronous:
    /// the server calls it on its event loop as soon as a head is parsed.
    public func match(method: HTTPMethod, segments: [String]) -> Match {
        var captured: [String] = []
        var allowed = Set<HTTPMethod>()
        if let (route, values) = Router.search(root, segments[...], method: method, captured: &captured, allowed: &allowed) {
            var parameters: [String: String] = [:]
            for (name, value) in zip(route.parameterNames, values) { parameters[name] = value }
            return Match(pattern: route.pattern, parameters: parameters, maxBodySize: route.maxBodySize, handler: route.handler)
        }
        if allowed.isEmpty {
            if let notFoundHandler {
                return Match(pattern: nil, parameters: [:], maxBodySize: nil, handler: notFoundHandler)
            }
            return Match(pattern: nil, parameters: [:], maxBodySize: nil) { request in
                throw HTTPError(.notFound, status: .notFound, detail: "no route for \(request.path)")
            }
        }
        if allowed.contains(.get) { allowed.insert(.head) }
        allowed.insert(.options)
        let allow = allowed.map(\.rawValue).sorted().joined(separator: ", ")
        if method == .options {
            return Match(pattern: nil, parameters: [:], maxBodySize: nil) { _ in
                .empty(.noContent, headers: ["Allow": allow])
            }
        }
        return Match(pattern: nil, parameters: [:], maxBodySize: nil) { request in
            var error = HTTPError(.methodNotAllowed, status: .methodNotAllowed,
                                  detail: "\(request.method) is not allowed here; allowed: \(allow)")
            error.headers.set("Allow", allow)
            throw error
        }
    }

    /// Depth-first, literal before parameter; the first node with a handler for the method
    /// wins. Nodes that match the path but not the method add their methods to `allowed`.
    private static func search(_ node: Node, _ segments: ArraySlice<String>, method: HTTPMethod,
                               captured: inout [String], allowed: inout Set<HTTPMethod>) -> (Route, [String])? {
        guard let first = segments.first else {
            if let route = node.routes[method] ?? (method == .head ? node.routes[.get] : nil) {
                return (route, captured)
            }
            allowed.formUnion(node.routes.keys)
            return nil
        }
        let rest = segments.dropFirst()
        if let child = node.literals[first],
           let found = search(child, rest, method: method, captured: &captured, allowed: &allowed) {
            return found
        }
        if let child = node.parameter.first {
            captured.append(first)
            if let found = search(child, rest, method: method, captured: &captured, allowed: &allowed) { return found }
            captured.removeLast()
        }
        return nil
    }

    // MARK: Running

    /// Runs a matched handler through the middlewares and turns thrown errors into problem
    /// responses. `onError` sees errors that are not `HTTPError` (for the log).
    public func execute(_ match: Match, request: HTTPRequest,
                        onError: (@Sendable (any Error, HTTPRequest) -> Void)? = nil) async -> HTTPResponse {
        var request = request
        request.pathParameters = match.parameters
        request.route = match.pattern
        var handler = match.handler
        for middleware in middlewares.reversed() {
            let next = handler
            handler = { request in try await middleware(request, next) }
        }
        do {
            return try await handler(request)
        } catch {
            if !(error is HTTPError) { onError?(error, request) }
            return HTTPResponse.from(error: error, requestID: request.requestID)
        }
    }

    /// Matches and runs a request in one step (tests, or serving without `HTTPServer`).
    public func respond(to request: HTTPRequest) async -> HTTPResponse {
        await execute(match(method: request.method, segments: request.pathSegments), request: request)
    }
}
