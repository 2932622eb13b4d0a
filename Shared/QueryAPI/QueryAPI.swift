import Contracts
import Foundation
import HTTP
import JSON
import Models
import Simulator
import Views
import TwinQuery
import ServiceKit

/// The query API: the platform's front door for reading twins (from `QueryViews`) and changing
/// them (commands on `twin.commands.v1`). Every route authenticates by API key and is scoped to
/// the key's tenant: another tenant's twin answers exactly like a missing one (404).
///
/// ```swift
/// let api = QueryAPI(views: views, models: registry, auth: auth, publisher: publisher)
/// api.register(on: &router)
/// ```
public final class QueryAPI: Sendable {
    public struct Configuration: Sendable {
        /// Body limit of the write routes.
        public var maxBodyBytes = 1 << 20
        public var filterLimits = TwinFilter.Limits()
        /// Requests per second per key (0: unlimited) and the burst above it.
        public var ratePerKey: Double = 1_000
        public var burstPerKey: Double = 2_000
        public var sseConnectionsPerKey = 16
        public var sseConnections = 1_000
        public var sseHeartbeat: Duration = .seconds(15)
        /// Default and longest `?minVersion=` wait.
        public var defaultWait: Duration = .seconds(5)
        public var maxWait: Duration = .seconds(30)
        /// Tenants whose admin keys may read every tenant's dead-letters.
        public var operatorTenants: Set<String> = []
        /// Graph walk limits.
        public var maxGraphDepth = 5
        public var maxGraphNodes = 1_000
        /// Limits a simulation request is checked against before it is published.
        public var simulation = SimulatorLimits()
        /// The least RMS gain a calibration must show to be applied (`RECALIBRATE_MIN_GAIN`, the drift monitor's rule).
        public var recalibrateMinGain = 0.2
        public init() {}

        public static func fromEnvironment(_ env: EnvironmentReader) throws -> Configuration {
            var c = Configuration()
            c.maxBodyBytes = try env.int("MAX_BODY_BYTES", default: c.maxBodyBytes, range: 1_024...(64 << 20), doc: "Largest request body of the write routes (413 past it).")
            c.filterLimits.maxLength = try env.int("FILTER_MAX_LENGTH", default: c.filterLimits.maxLength, range: 16...100_000, doc: "Longest filter expression, in characters.")
            c.filterLimits.maxDepth = try env.int("FILTER_MAX_DEPTH", default: c.filterLimits.maxDepth, range: 1...256, doc: "Deepest nesting of a filter (each ( and not is one level).")
            c.filterLimits.maxTerms = try env.int("FILTER_MAX_TERMS", default: c.filterLimits.maxTerms, range: 1...10_000, doc: "Most comparisons in one filter.")
            c.ratePerKey = Double(try env.int("RATE_LIMIT_PER_KEY", default: Int(c.ratePerKey), range: 0...10_000_000, doc: "Requests per second per API key (token bucket; 0 = unlimited); past it 429 with Retry-After."))
            c.burstPerKey = Double(try env.int("RATE_LIMIT_BURST", default: Int(c.burstPerKey), range: 1...10_000_000, doc: "Burst of requests per API key above the steady rate."))
            c.sseConnectionsPerKey = try env.int("SSE_MAX_PER_KEY", default: c.sseConnectionsPerKey, range: 1...100_000, doc: "Open event streams per API key; more are answered 429.")
            c.sseConnections = try env.int("SSE_MAX_CONNECTIONS", default: c.sseConnections, range: 1...1_000_000, doc: "Open event streams in all.")
            c.defaultWait = try env.duration("MIN_VERSION_WAIT", default: c.defaultWait, doc: "How long GET /v1/twins/{id}?minVersion= waits by default.")
            c.maxWait = try env.duration("MIN_VERSION_MAX_WAIT", default: c.maxWait, doc: "Longest ?wait= a client may ask for.")
            let operators = env.string("OPERATOR_TENANTS", default: "", doc: "Comma-separated tenants whose admin keys read every tenant's dead-letters.")
            c.operatorTenants = Set(operators.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
            c.simulation = try SimulatorLimits.fromEnvironment(env)
            c.recalibrateMinGain = try CalibrationVerdict.minGain(env)
            return c
        }
    }

    public let views: QueryViews
    public let models: ModelRegistry
    public let auth: APIAuth
    public let publisher: any CommandPublisher
    /// Where simulation requests and cancels go (nil: the simulation routes answer 503).
    public let simulationPublisher: (any SimulationPublisher)?
    public let configuration: Configuration
    let rateLimiter: RateLimiter
    let streams: ConnectionLimiter
    let openAPIDocument: [UInt8]?
    /// The views' freshness rule (`STALE_FACTOR`, the drift monitor's too).
    var freshness: Freshness { views.freshness }

    public init(views: QueryViews, models: ModelRegistry, auth: APIAuth, publisher: any CommandPublisher,
                simulationPublisher: (any SimulationPublisher)? = nil, configuration: Configuration = Configuration(), openAPIDocument: [UInt8]? = nil,
                clock: @escaping @Sendable () -> Int64 = { Timestamp.now }) {
        self.clock = clock
        self.views = views
        self.models = models
        self.auth = auth
        self.publisher = publisher
        self.simulationPublisher = simulationPublisher
        self.configuration = configuration
        self.openAPIDocument = openAPIDocument
        rateLimiter = RateLimiter(rate: configuration.ratePerKey, burst: configuration.burstPerKey)
        streams = ConnectionLimiter(perKey: configuration.sseConnectionsPerKey, total: configuration.sseConnections)
    }

    /// The reporting interval of a model reference (`id@version`), for freshness.
    public static func reportingInterval(_ models: ModelRegistry) -> @Sendable (String?) -> Int64? {
        { ref in ref.flatMap { models.model(referencedBy: $0) }.map { Int64($0.reportingIntervalMs) } }
    }

    // MARK: Routes

    public func register(on router: inout Router) {
        router.get("/openapi.json") { [openAPIDocument] _ in
            guard let openAPIDocument else { throw HTTPError(.notFound, code: .init("noDocument"), detail: "the OpenAPI document was not loaded") }
            return .json(openAPIDocument)
        }
        router.get("/v1/twins") { [self] in try await listTwins($0) }
        router.post("/v1/twins", maxBodySize: configuration.maxBodyBytes) { [self] in try await createTwin($0) }
        router.get("/v1/twins/{id}") { [self] in try await getTwin($0) }
        router.patch("/v1/twins/{id}", maxBodySize: configuration.maxBodyBytes) { [self] in try await patchTwin($0) }
        router.delete("/v1/twins/{id}") { [self] in try await deleteTwin($0) }
        router.get("/v1/twins/{id}/history") { [self] in try await history($0) }
        router.get("/v1/twins/{id}/relationships") { [self] in try await relationships($0) }
        router.put("/v1/twins/{id}/relationships/{rel}/{target}", maxBodySize: configuration.maxBodyBytes) { [self] in try await relate($0) }
        router.delete("/v1/twins/{id}/relationships/{rel}/{target}") { [self] in try await unrelate($0) }
        router.get("/v1/twins/{id}/graph") { [self] in try await graph($0) }
        router.get("/v1/twins/{id}/events") { [self] in try await twinEvents($0) }
        router.get("/v1/events") { [self] in try await tenantEvents($0) }
        router.get("/v1/commands/{commandId}") { [self] in try await command($0) }
        router.get("/v1/models") { [self] in try await listModels($0) }
        router.get("/v1/models/{id}") { [self] in try await getModel($0) }
        router.get("/v1/deadletters") { [self] in try await deadLetters($0) }
        registerSimulations(on: &router)
        registerDriftRoutes(on: &router)
        registerRecalibrations(on: &router)
    }

    /// Authenticates, checks the scope, then the key's request rate.
    func authorize(_ request: HTTPRequest, _ scope: APIScope) throws(HTTPError) -> APIPrincipal {
        try rateLimited(auth.authorize(request, requiring: scope))
    }

    /// Authenticates a key holding any of `scopes`, then checks its request rate.
    func authorize(_ request: HTTPRequest, anyOf scopes: [APIScope]) throws(HTTPError) -> APIPrincipal {
        var refusal: APIAuthentication?
        for scope in scopes {
            let outcome = auth.authenticate(request.headers, requiring: scope)
            guard case .forbidden = outcome else {
                if case .authenticated(let principal) = outcome { return try rateLimited(principal) }
                throw APIAuth.error(for: outcome)!
            }
            refusal = outcome
        }
        var error = APIAuth.error(for: refusal!)!
        error.detail = "the API key lacks the \(scopes.map { "'\($0.rawValue)'" }.joined(separator: " or ")) scope: use a key that has one "
            + "(`twinctl keys add --scopes \(scopes[0].rawValue)`)"
        throw error
    }

    /// `principal`, unless its key is over its request rate (429 with Retry-After).
    func rateLimited(_ principal: APIPrincipal) throws(HTTPError) -> APIPrincipal {
        if let wait = rateLimiter.acquire(principal.keyId) {
            throw HTTPError(.tooManyRequests, code: .init("rateLimited"),
                            detail: "more than \(Int(configuration.ratePerKey)) requests per second for this API key",
                            headers: ["Retry-After": String(wait)])
        }
        return principal
    }

    /// The twin named by the path, in the caller's tenant; 404 otherwise (also for another
    /// tenant's twin: the answer must not reveal that it exists).
    func pathTwin(_ request: HTTPRequest, _ principal: APIPrincipal) throws(HTTPError) -> QueryTwin {
        let id = try pathTwinId(request)
        guard let twin = views.twins.twin(tenant: principal.tenant, id: id) else { throw Self.twinNotFound(id) }
        return twin
    }

    func pathTwinId(_ request: HTTPRequest, _ name: String = "id") throws(HTTPError) -> String {
        let id = request.parameter(name) ?? ""
        guard TwinID.isValid(id) else {
            throw HTTPError(.badRequest, code: .init("invalidTwinId"), detail: "twin ids are 1-128 characters of letters, digits and . _ - :")
        }
        return id
    }

    static func twinNotFound(_ id: String) -> HTTPError {
        HTTPError(.notFound, code: .init("twinNotFound"), detail: "no twin '\(id)'")
    }

    static func invalidParameter(_ name: String, _ detail: String) -> HTTPError {
        HTTPError(.badRequest, code: .init("invalidParameter"), detail: "\(name): \(detail)")
    }

    /// Wall-clock time in epoch ms (freshness, commands' `issuedAt`); tests pass a fixed one.
    let clock: @Sendable () -> Int64
    var nowMs: Int64 { clock() }

    // MARK: GET /v1/twins/{id}

    func getTwin(_ request: HTTPRequest) async throws -> HTTPResponse {
        let principal = try authorize(request, .read)
        let id = try pathTwinId(request)
        let query = request.queryParameters
        var twin: QueryTwin?
        if let text = query["minVersion"] {
            guard let minVersion = Int64(text), minVersion >= 0 else { throw Self.invalidParameter("minVersion", "expected a version number, got '\(text)'") }
            var wait = configuration.defaultWait
            if let w = query["wait"] {
                guard let ms = Int(w), ms >= 0, Duration.milliseconds(ms) <= configuration.maxWait else {
                    throw Self.invalidParameter("wait", "expected milliseconds between 0 and \(configuration.maxWait.components.seconds * 1000)")
                }
                wait = .milliseconds(ms)
            }
            twin = await views.twins.twin(tenant: principal.tenant, id: id, minVersion: minVersion, timeout: wait)
            if (twin?.version ?? -1) < minVersion {
                var error = HTTPError(HTTPStatus(code: 503), code: .init("versionNotVisible"),
                                      detail: twin.map { "the view holds version \($0.version) of '\(id)', not yet \(minVersion)" }
                                          ?? "the view does not hold '\(id)' yet (asked for version \(minVersion))")
                error.headers.set("Retry-After", "1")
                throw error
            }
        } else {
            // `wait` without minVersion has nothing to wait for: ignored.
            twin = views.twins.twin(tenant: principal.tenant, id: id)
        }
        guard let twin else { throw Self.twinNotFound(id) }
        var w = JSONWriter(capacity: 1024)
        writeTwin(twin, now: nowMs, to: &w)
        return .json(w.bytes, headers: ["ETag": "\"\(twin.version)\""])
    }

    /// The API representation of a twin: the state without restore bookkeeping, with units from
    /// the model and per-property age and staleness.
    func writeTwin(_ twin: QueryTwin, now: Int64, to w: inout JSONWriter) {
        let state = twin.state
        let model = state.model.flatMap { models.model(referencedBy: $0) }
        let interval = twin.reportingIntervalMs
        w.beginObject()
        w.field("twinId", state.twinId)
        if let ref = state.model { w.field("model", ref) }
        w.key("version"); w.value(state.version)
        w.field("updatedAt", time: state.updatedAt)
        w.key("created"); w.value(state.created)
        w.key("properties"); w.beginObject()
        for (name, p) in state.properties {
            w.key(name); w.beginObject()
            w.key("value"); w.value(p.value)
            if let unit = p.unit ?? model?.telemetry(named: name)?.unit { w.field("unit", unit) }
            w.field("eventTime", time: p.eventTime)
            w.field("ingestTime", time: p.ingestTime)
            w.field("eventId", p.eventId)
            w.key("ageMs"); w.value(max(0, now - p.eventTime))
            w.key("stale"); w.value(freshness.isStale(latestEventTime: p.eventTime, reportingIntervalMs: interval, now: now))
            w.endObject()
        }
        w.endObject()
        w.key("missing"); w.beginArray()
        for name in state.missing { w.value(name) }
        w.endArray()
        w.key("freshness"); w.beginObject()
        w.key("stale"); w.value(twin.isStale(now: now))
        if let latest = twin.latestEventTime { w.field("latestEventTime", time: latest) }
        if let interval {
            w.key("reportingIntervalMs"); w.value(interval)
            if let latest = twin.latestEventTime {
                w.field("staleAfter", time: freshness.staleAfter(latestEventTime: latest, reportingIntervalMs: interval))
            }
        }
        w.endObject()
        w.key("metadata"); w.value(.object(state.metadata))
        w.key("desired"); w.value(.object(state.desired))
        w.key("parameters"); w.value(.object(state.parameters))
        w.key("relationships"); w.beginArray()
        for r in state.relationships {
            w.beginObject(); w.field("name", r.name); w.field("target", r.target); w.endObject()
        }
        w.endArray()
        w.endObject()
    }

    // MARK: GET /v1/twins

    func listTwins(_ request: HTTPRequest) async throws -> HTTPResponse {
        let principal = try authorize(request, .read)
        let q = request.queryParameters
        for (name, _) in q where !["filter", "model", "stale", "relatedTo", "rel", "sort", "cursor", "limit"].contains(name) {
            throw Self.invalidParameter(name, "unknown parameter; known: filter, model, stale, relatedTo, rel, sort, cursor, limit")
        }
        var limit: Int?
        if let text = q["limit"] {
            guard let n = Int(text) else { throw Self.queryProblem(QueryError(.invalidLimit, "limit must be a whole number", parameter: "limit", token: text)) }
            limit = n
        }
        let query: TwinListQuery
        do {
            query = try TwinListQuery(filter: q["filter"], relatedTo: q["relatedTo"], rel: q["rel"], sort: q["sort"],
                                  cursor: q["cursor"], limit: limit, filterLimits: configuration.filterLimits)
        } catch {
            throw Self.queryProblem(error)
        }
        let model = q["model"]
        var stale: Bool?
        if let text = q["stale"] {
            guard let b = Bool(text) else { throw Self.invalidParameter("stale", "expected true or false") }
            stale = b
        }
        let now = nowMs
        var twins = views.twins.snapshot(tenant: principal.tenant)
        if model != nil || stale != nil {
            twins = twins.filter { twin in
                if let model, !Self.model(twin.model, matches: model) { return false }
                if let stale, twin.isStale(now: now) != stale { return false }
                return true
            }
        }
        let page = query.run(over: twins, now: now)
        var w = JSONWriter(capacity: 512 + page.items.count * 700)
        w.beginObject()
        w.key("items"); w.beginArray()
        for twin in page.items { writeTwin(twin, now: now, to: &w) }
        w.endArray()
        w.key("total"); w.value(page.total)
        w.key("limit"); w.value(query.limit)
        if let next = page.nextCursor { w.field("nextCursor", next) }
        w.endObject()
        return .json(w.bytes)
    }

    /// `pump` matches every version of pump, `pump@2` only that one.
    static func model(_ ref: String?, matches wanted: String) -> Bool {
        guard let ref else { return false }
        if wanted.contains("@") { return ref == wanted }
        return ref == wanted || ref.hasPrefix(wanted + "@")
    }

    /// A 400 problem that points at the offending parameter and token.
    static func queryProblem(_ error: QueryError) -> HTTPError {
        var e = HTTPError(.badRequest, code: .init(error.parameter == "filter" ? "invalidFilter" : "invalidParameter"), detail: error.description)
        e.extensions = [("parameter", .string(error.parameter)), ("reason", .string(error.code.rawValue))]
        if let position = error.position { e.extensions.append(("position", .int(position))) }
        if let token = error.token { e.extensions.append(("token", .string(token))) }
        return e
    }

    // MARK: GET /v1/twins/{id}/history

    func history(_ request: HTTPRequest) async throws -> HTTPResponse {
        let principal = try authorize(request, .read)
        let twin = try pathTwin(request, principal)
        let q = request.queryParameters
        guard let property = q["property"], !property.isEmpty else {
            throw Self.invalidParameter("property", "required: the property whose history to read")
        }
        let from = try q["from"].map { (text) throws(HTTPError) in try Self.time(text, parameter: "from") }
        let to = try q["to"].map { (text) throws(HTTPError) in try Self.time(text, parameter: "to") }
        let step = try q["step"].map { (text) throws(HTTPError) in try Self.duration(text, parameter: "step") }
        // An empty range holds nothing: an empty answer, not an error.
        let empty = from.flatMap { f in to.map { f >= $0 } } ?? false
        let history = views.history.history(tenant: principal.tenant, twinId: twin.twinId, property: property)
            ?? PropertyHistory(retention: views.history.retention)
        let unit = twin.state[property: property]?.unit
            ?? twin.model.flatMap { models.model(referencedBy: $0)?.telemetry(named: property)?.unit }
        var w = JSONWriter(capacity: 1024)
        w.beginObject()
        w.field("twinId", twin.twinId)
        w.field("property", property)
        if let unit { w.field("unit", unit) }
        if let step {
            let start = from ?? history.oldest ?? 0
            let end = to ?? ((history.newest ?? start) + 1)
            let buckets: [HistoryBucket]
            do {
                buckets = empty || (history.count == 0 && from == nil) ? [] : try history.aggregate(from: start, to: max(end, start + 1), step: step)
            } catch {
                throw Self.queryProblem(error)
            }
            w.field("from", time: start)
            w.field("to", time: end)
            w.key("step"); w.value(step)
            w.key("buckets"); w.beginArray()
            for b in buckets {
                w.beginObject()
                w.field("start", time: b.start)
                w.field("end", time: b.end)
                w.key("count"); w.value(b.count)
                if let v = b.min { w.key("min"); w.value(v) }
                if let v = b.max { w.key("max"); w.value(v) }
                if let v = b.mean { w.key("mean"); w.value(v) }
                w.key("last"); w.value(b.last)
                w.field("lastTime", time: b.lastTime)
                w.endObject()
            }
            w.endArray()
        } else {
            let points = empty ? [] : history.points(from: from, to: to)
            // Without points or bounds: the window an answer would cover now.
            let now = nowMs
            w.field("from", time: from ?? history.oldest ?? (now - views.history.retention.maxAgeMs))
            w.field("to", time: to ?? history.newest ?? now)
            w.key("points"); w.beginArray()
            for p in points {
                w.beginObject()
                w.field("time", time: p.eventTime)
                w.key("value"); w.value(p.value)
                w.key("late"); w.value(p.late)
                w.endObject()
            }
            w.endArray()
        }
        let info = history.retentionInfo
        w.key("retention"); w.beginObject()
        w.key("maxPoints"); w.value(info.retention.maxPoints)
        w.key("maxAgeMs"); w.value(info.retention.maxAgeMs)
        if let oldest = info.oldest { w.field("oldest", time: oldest) }
        if let newest = info.newest { w.field("newest", time: newest) }
        w.key("evicted"); w.value(info.evicted)
        w.endObject()
        w.endObject()
        return .json(w.bytes)
    }

    /// RFC 3339 or epoch milliseconds.
    static func time(_ text: String, parameter: String) throws(HTTPError) -> Int64 {
        if let ms = Int64(text) { return ms }
        if let ms = Timestamp.parse(text) { return ms }
        throw invalidParameter(parameter, "expected an RFC 3339 time or epoch milliseconds, got '\(text)'")
    }

    /// Milliseconds, or a number with a unit: `500ms`, `30s`, `5m`, `1h`, `1d`.
    static func duration(_ text: String, parameter: String) throws(HTTPError) -> Int64 {
        let units: [(String, Int64)] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        var number = Substring(text), factor: Int64 = 1
        for (suffix, f) in units where text.hasSuffix(suffix) {
            number = text.dropLast(suffix.count)
            factor = f
            break
        }
        guard let n = Int64(number), n > 0, n <= Int64.max / factor else {
            throw invalidParameter(parameter, "expected a positive duration like 60000, 30s, 5m or 1h, got '\(text)'")
        }
        return n * factor
    }

    // MARK: Relationships and graph

    func relationships(_ request: HTTPRequest) async throws -> HTTPResponse {
        let principal = try authorize(request, .read)
        let twin = try pathTwin(request, principal)
        let tenant = principal.tenant
        var w = JSONWriter(capacity: 512)
        w.beginObject()
        w.field("twinId", twin.twinId)
        // One edge per entry: its name, the twin at the other end and that twin's model.
        func edges(_ key: String, _ end: String, _ list: [(name: String, other: String)]) {
            w.key(key); w.beginArray()
            for (name, other) in list {
                w.beginObject()
                w.field("name", name)
                w.field(end, other)
                if let model = views.twins.twin(tenant: tenant, id: other)?.model { w.field(end + "Model", model) }
                w.endObject()
            }
            w.endArray()
        }
        edges("outgoing", "target", twin.relationships.map { ($0.name, $0.target) })
        edges("incoming", "source", views.twins.incoming(tenant: tenant, target: twin.twinId).map { ($0.name, $0.source) })
        w.endObject()
        return .json(w.bytes)
    }

    func graph(_ request: HTTPRequest) async throws -> HTTPResponse {
        let principal = try authorize(request, .read)
        let root = try pathTwin(request, principal)
        let q = request.queryParameters
        var depth = 1
        if let text = q["depth"] {
            guard let d = Int(text), (0...configuration.maxGraphDepth).contains(d) else {
                throw Self.invalidParameter("depth", "expected 0 to \(configuration.maxGraphDepth)")
            }
            depth = d
        }
        let direction = q["direction"] ?? "both"
        guard ["out", "in", "both"].contains(direction) else { throw Self.invalidParameter("direction", "expected out, in or both") }
        let tenant = principal.tenant
        var seen: [String: Int] = [root.twinId: 0]
        var nodes: [(String, String?, Int)] = [(root.twinId, root.model, 0)]
        var edges: [(String, String, String)] = []
        var edgeSet = Set<String>()
        var frontier = [root.twinId]
        var truncated = false
        func addEdge(_ source: String, _ name: String, _ target: String) {
            if edgeSet.insert("\(source)\u{0}\(name)\u{0}\(target)").inserted { edges.append((source, name, target)) }
        }
        var level = 0
        while level < depth && !frontier.isEmpty && !truncated {
            level += 1
            var next: [String] = []
            for id in frontier {
                var neighbours: [(String, String, String, String)] = []  // (neighbour, source, name, target)
                if direction != "in", let twin = views.twins.twin(tenant: tenant, id: id) {
                    neighbours += twin.relationships.map { ($0.target, id, $0.name, $0.target) }
                }
                if direction != "out" {
                    neighbours += views.twins.incoming(tenant: tenant, target: id).map { ($0.source, $0.source, $0.name, id) }
                }
                for (neighbour, source, name, target) in neighbours {
                    if seen[neighbour] == nil {
                        guard nodes.count < configuration.maxGraphNodes else { truncated = true; break }
                        seen[neighbour] = level
                        // A target not (yet) in the view is still a node, without a model.
                        nodes.append((neighbour, views.twins.twin(tenant: tenant, id: neighbour)?.model, level))
                        next.append(neighbour)
                    }
                    addEdge(source, name, target)
                }
                if truncated { break }
            }
            frontier = next
        }
        var w = JSONWriter(capacity: 256 + nodes.count * 80)
        w.beginObject()
        w.field("root", root.twinId)
        w.key("depth"); w.value(depth)
        w.field("direction", direction)
        w.key("nodes"); w.beginArray()
        for (id, model, d) in nodes {
            w.beginObject(); w.field("twinId", id); if let model { w.field("model", model) }; w.key("depth"); w.value(d); w.endObject()
        }
        w.endArray()
        w.key("edges"); w.beginArray()
        for (source, name, target) in edges {
            w.beginObject(); w.field("source", source); w.field("name", name); w.field("target", target); w.endObject()
        }
        w.endArray()
        w.key("truncated"); w.value(truncated)
        w.endObject()
        return .json(w.bytes)
    }

    // MARK: Event streams

    func twinEvents(_ request: HTTPRequest) async throws -> HTTPResponse {
        let principal = try authorize(request, .read)
        let twin = try pathTwin(request, principal)
        return try stream(request, principal, twinId: twin.twinId, filter: nil, model: nil)
    }

    func tenantEvents(_ request: HTTPRequest) async throws -> HTTPResponse {
        let principal = try authorize(request, .read)
        let q = request.queryParameters
        let filter: TwinFilter?
        do {
            filter = try q["filter"].map { (text) throws(QueryError) in try TwinFilter(parsing: text, limits: configuration.filterLimits) }
        } catch {
            throw Self.queryProblem(error)
        }
        return try stream(request, principal, twinId: nil, filter: filter, model: q["model"])
    }

    private func stream(_ request: HTTPRequest, _ principal: APIPrincipal, twinId: String?, filter: TwinFilter?, model: String?) throws(HTTPError) -> HTTPResponse {
        let lastEventId = request.headers.first("Last-Event-ID")
        if let lastEventId, lastEventId.utf8.count > 2048 { throw Self.invalidParameter("Last-Event-ID", "longer than 2048 bytes") }
        let key = principal.keyId
        guard streams.open(key) else {
            throw HTTPError(.tooManyRequests, code: .init("tooManyStreams"),
                            detail: "at most \(configuration.sseConnectionsPerKey) open event streams per API key (\(configuration.sseConnections) in all)",
                            headers: ["Retry-After": "5"])
        }
        // The slot is released when the response is dropped, whether or not the stream ever
        // started (a HEAD request, or a client gone before the head was written).
        let lease = StreamLease(streams, key: key)
        let events = views.events, twins = views.twins, tenant = principal.tenant, clock = self.clock
        let compiled = CompiledFilter<QueryTwin>(filter)
        let needsTwin = filter != nil || model != nil
        return .eventStream(heartbeat: configuration.sseHeartbeat) { writer in
            withExtendedLifetime(lease) {}
            let subscription = events.subscribe(tenant: tenant, twinId: twinId, after: lastEventId)
            do {
                if subscription.resume == .notRetained {
                    try writer.send(ServerSentEvent(event: "reset", data: #"{"reason":"lastEventIdNotRetained","detail":"events after that id are no longer retained; reload the state and continue from here"}"#))
                }
                for await event in subscription.events {
                    if needsTwin {
                        guard let twin = twins.twin(tenant: tenant, id: event.twinId),
                              model.map({ QueryAPI.model(twin.model, matches: $0) }) ?? true,
                              compiled.matches(twin, now: clock()) else { continue }
                    }
                    try writer.send(ServerSentEvent(id: subscription.id(after: event), event: event.kind.rawValue, data: String(decoding: event.data, as: UTF8.self)))
                }
                if subscription.overflowed {
                    try writer.send(ServerSentEvent(event: "reset", data: #"{"reason":"slowConsumer","detail":"the client fell too far behind; reconnect with Last-Event-ID"}"#))
                }
            } catch {
                // The client went away or was too slow to write to: the stream just ends.
            }
        }
    }

    // MARK: Commands, models, dead-letters

    func command(_ request: HTTPRequest) async throws -> HTTPResponse {
        let principal = try authorize(request, .read)
        let id = request.parameter("commandId") ?? ""
        guard let outcome = views.commands.outcome(tenant: principal.tenant, commandId: id) else {
            throw HTTPError(.notFound, code: .init("commandNotFound"), detail: "no command '\(id)' is known (or it is older than the retained window)")
        }
        var w = JSONWriter(capacity: 256)
        outcome.write(to: &w)
        return .json(w.bytes)
    }

    func listModels(_ request: HTTPRequest) async throws -> HTTPResponse {
        _ = try authorize(request, .read)
        var w = JSONWriter(capacity: 1024)
        w.beginObject()
        w.key("items"); w.beginArray()
        for id in models.ids {
            for model in models.versions(id: id) {
                w.beginObject()
                w.field("id", model.id)
                w.key("version"); w.value(model.version)
                w.field("ref", model.ref.description)
                if let name = model.displayName { w.field("displayName", name) }
                if let summary = model.summary { w.field("summary", summary) }
                w.key("reportingIntervalMs"); w.value(model.reportingIntervalMs)
                w.endObject()
            }
        }
        w.endArray()
        w.endObject()
        return .json(w.bytes)
    }

    func getModel(_ request: HTTPRequest) async throws -> HTTPResponse {
        _ = try authorize(request, .read)
        let text = request.parameter("id") ?? ""
        guard let model = resolveModel(text) else {
            throw HTTPError(.notFound, code: .init("modelNotFound"), detail: "no model '\(text)'; GET /v1/models lists them")
        }
        return .json(model.document.serialized(), headers: ["ETag": "\"\(model.ref)\""])
    }

    /// `pump` is the latest loaded version, `pump@1` that version.
    func resolveModel(_ text: String) -> TwinModel? {
        guard let ref = ModelRef.parse(text) else { return nil }
        if let version = ref.version { return models.model(id: ref.id, version: version) }
        return models.latest(id: ref.id)
    }

    /// The stages that dead-letter (the `stage` filter of `GET /v1/deadletters`, as the document lists them).
    static let deadLetterStages = ["ingestor", "validator", "state-updater"]

    /// `GET /v1/deadletters`: an operator's view (scope `admin`), or with `requestId` the fate of
    /// the readings of one HTTP ingest request, readable by the key that posted them (`ingest`)
    /// or any reader of the tenant (`read`).
    func deadLetters(_ request: HTTPRequest) async throws -> HTTPResponse {
        let q = request.queryParameters
        let requestId = q["requestId"]
        if let requestId, !(1...128).contains(requestId.count) {
            throw Self.invalidParameter("requestId", "expected the request id a 202 of POST /v1/telemetry gave (1 to 128 characters)")
        }
        if let stage = q["stage"], !Self.deadLetterStages.contains(stage) {
            throw Self.invalidParameter("stage", "expected one of \(Self.deadLetterStages.joined(separator: ", ")), got '\(stage)'")
        }
        if q["tenant"]?.isEmpty == true { throw Self.invalidParameter("tenant", "expected a tenant name, or leave it out for the key's tenant") }
        let principal = try requestId == nil ? authorize(request, .admin) : authorize(request, anyOf: [.ingest, .read])
        let tenant = q["tenant"] ?? principal.tenant
        if tenant != principal.tenant && !(configuration.operatorTenants.contains(principal.tenant) && principal.has(.admin)) {
            throw HTTPError(.forbidden, code: .init("tenantForbidden"),
                            detail: "this key reads its own tenant's dead-letters only (operator tenants: OPERATOR_TENANTS)")
        }
        var limit = 100
        if let text = q["limit"] {
            guard let n = Int(text), (1...1_000).contains(n) else { throw Self.invalidParameter("limit", "expected 1 to 1000") }
            limit = n
        }
        let (items, total) = views.deadLetters.list(tenant: tenant, reason: q["reason"], stage: q["stage"], twinId: q["twinId"],
                                                    requestId: requestId, limit: limit)
        var w = JSONWriter(capacity: 512 + items.count * 512)
        w.beginObject()
        w.key("items"); w.beginArray()
        for item in items {
            let d = item.deadLetter
            w.beginObject()
            w.field("id", item.id)
            w.field("stage", d.stage)
            w.field("tenant", d.tenant)
            if let twinId = d.twinId { w.field("twinId", twinId) }
            if let model = d.model { w.field("model", model) }
            if let source = d.source {
                w.key("source"); w.beginObject(); w.field("kind", source.kind); w.field("ref", source.ref); w.endObject()
            }
            w.field("deadLetteredAt", time: d.deadLetteredAt)
            w.key("reasons"); w.beginArray()
            for reason in d.reasons { reason.write(to: &w) }
            w.endArray()
            if let text = String(validating: d.original, as: UTF8.self) {
                w.field("original", text)
                w.field("originalEncoding", "utf8")
            } else {
                w.field("original", Data(d.original).base64EncodedString())
                w.field("originalEncoding", "base64")
            }
            if item.originalTruncated { w.key("originalTruncated"); w.value(true) }
            w.endObject()
        }
        w.endArray()
        w.key("total"); w.value(total)
        w.key("retained"); w.beginObject()
        w.key("held"); w.value(views.deadLetters.sizes.held)
        w.key("max"); w.value(views.deadLetters.capacity)
        w.endObject()
        w.endObject()
        return .json(w.bytes)
    }
}
