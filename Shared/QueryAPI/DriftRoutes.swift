import Contracts
import HTTP
import JSON
import Views

/// The drift monitor's findings: alert episodes (`GET /v1/alerts`) and what it watches on one
/// twin (`GET /v1/twins/{id}/drift`). Alerts also reach the twin's and the tenant's event streams
/// as `alert` events (`QueryViews` appends them).
extension QueryAPI {
    func registerDriftRoutes(on router: inout Router) {
        router.get("/v1/alerts") { [self] in try await listAlerts($0) }
        router.get("/v1/twins/{id}/drift") { [self] in try await twinDrift($0) }
    }

    // MARK: GET /v1/alerts

    func listAlerts(_ request: HTTPRequest) async throws -> HTTPResponse {
        let principal = try authorize(request, .read)
        let q = request.queryParameters
        let known = ["kind", "twinId", "status", "from", "to", "cursor", "limit"]
        for (name, _) in q where !known.contains(name) {
            throw Self.invalidParameter(name, "unknown parameter; known: " + known.joined(separator: ", "))
        }
        var query = AlertEpisodes.Query(tenant: principal.tenant)
        if let text = q["kind"] {
            guard let kind = DriftAlert.Kind(rawValue: text) else { throw Self.invalidParameter("kind", "expected residual, data or stale") }
            query.kind = kind
        }
        if let text = q["twinId"] {
            guard TwinID.isValid(text) else { throw Self.invalidParameter("twinId", "twin ids are 1-128 characters of letters, digits and . _ - :") }
            query.twinId = text
        }
        if let text = q["status"] {
            guard text == "open" || text == "resolved" else { throw Self.invalidParameter("status", "expected open or resolved") }
            query.open = text == "open"
        }
        query.from = try q["from"].map { (text) throws(HTTPError) in try Self.time(text, parameter: "from") }
        query.to = try q["to"].map { (text) throws(HTTPError) in try Self.time(text, parameter: "to") }
        // from after to is an empty range: no episode is in it.
        if let text = q["limit"] {
            guard let n = Int(text), (1...1_000).contains(n) else { throw Self.invalidParameter("limit", "expected 1 to 1000") }
            query.limit = n
        }
        if let text = q["cursor"] {
            guard let cursor = Self.alertCursor(text) else { throw Self.invalidParameter("cursor", "not a cursor this API gave out; start again without one") }
            query.after = cursor
        }
        let page = views.alerts.list(query)
        var w = JSONWriter(capacity: 256 + page.items.reduce(0) { $0 + $1.bytes.count + 16 })
        w.beginObject()
        w.key("items"); w.beginArray()
        for episode in page.items { w.raw(episode.bytes) }
        w.endArray()
        w.key("total"); w.value(page.total)
        w.key("limit"); w.value(query.limit)
        if let next = page.next { w.field("nextCursor", "\(next.raisedAt)~\(next.alertId)") }
        w.endObject()
        return .json(w.bytes)
    }

    /// `<raisedAt>~<alertId>`, as `listAlerts` writes it.
    static func alertCursor(_ text: String) -> (raisedAt: Int64, alertId: String)? {
        guard let tilde = text.firstIndex(of: "~"), let raisedAt = Int64(text[..<tilde]) else { return nil }
        let id = String(text[text.index(after: tilde)...])
        return id.isEmpty || id.utf8.count > 128 ? nil : (raisedAt, id)
    }

    // MARK: GET /v1/twins/{id}/drift

    func twinDrift(_ request: HTTPRequest) async throws -> HTTPResponse {
        let principal = try authorize(request, .read)
        let twin = try pathTwin(request, principal)
        let key = TwinKey(tenant: principal.tenant, twinId: twin.twinId).description
        var w = JSONWriter(capacity: 2048)
        guard let bytes = views.driftStates.document(key: key), case .object(var document)? = try? JSON(parsing: bytes) else {
            // Watched from its next reading on (or its model has nothing to watch).
            w.beginObject()
            w.field("twinId", twin.twinId)
            if let model = twin.model { w.field("model", model) }
            w.field("monitored", false)
            w.key("properties"); w.beginObject(); w.endObject()
            w.key("openAlerts"); w.beginArray(); w.endArray()
            w.endObject()
            return .json(w.bytes)
        }
        for name in ["tenant", "monitor", "monitorFormat"] { _ = document.removeValue(forKey: name) }
        document["monitored"] = .bool(true)
        w.value(.object(document))
        return .json(w.bytes)
    }
}
