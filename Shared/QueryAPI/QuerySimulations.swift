import Contracts
import Foundation
import HTTP
import JSON
import Kafka
import Models
import Simulator
import TwinQuery
import Views
import ServiceKit

/// Where the query API sends simulation requests and cancels. Both return once the broker has
/// the message, so a 202 means a worker will see it.
public protocol SimulationPublisher: Sendable {
    func publish(_ request: SimulationRequest, traceparent: String?) async throws(CommandPublishError)
    func publish(_ control: SimulationControl, traceparent: String?) async throws(CommandPublishError)
}

/// Publishes requests on `simulation.requests.v1` (keyed `tenant/twinId`) and cancels on
/// `simulation.control.v1` (keyed by simulation id).
public struct KafkaSimulationPublisher: SimulationPublisher {
    let producer: KafkaProducer

    public init(producer: KafkaProducer) { self.producer = producer }

    public func publish(_ request: SimulationRequest, traceparent: String?) async throws(CommandPublishError) {
        try await producer.sendDurably(topic: Topic.simulationRequests.name, key: request.key, value: request.encoded(),
                                       contract: SimulationRequest.contract, tenant: request.tenant, traceparent: traceparent)
    }

    public func publish(_ control: SimulationControl, traceparent: String?) async throws(CommandPublishError) {
        try await producer.sendDurably(topic: Topic.simulationControl.name, key: control.simulationId, value: control.encoded(),
                                       contract: SimulationControl.contract, tenant: control.tenant, traceparent: traceparent)
    }
}

extension QueryAPI {
    /// The simulation routes (called from `register(on:)`).
    func registerSimulations(on router: inout Router) {
        router.post("/v1/twins/{id}/simulations", maxBodySize: configuration.maxBodyBytes) { [self] in try await submitSimulation($0) }
        router.get("/v1/twins/{id}/simulations") { [self] in try await listSimulations($0) }
        router.get("/v1/simulations/{simulationId}") { [self] in try await getSimulation($0) }
        router.delete("/v1/simulations/{simulationId}") { [self] in try await cancelSimulation($0) }
    }

    // MARK: POST /v1/twins/{id}/simulations

    func submitSimulation(_ request: HTTPRequest) async throws -> HTTPResponse {
        let principal = try authorize(request, .simulate)
        let twin = try pathTwin(request, principal)
        let body = try Self.jsonObject(request, allowed: SimulationSpec.members)
        var spec: SimulationSpec
        do {
            spec = try SimulationSpec(object: body, strict: true)
        } catch {
            throw Self.specProblem(error)
        }
        guard let model = twin.model.flatMap({ models.model(referencedBy: $0) }) else {
            throw Self.unprocessable("unknownModel", "the twin's model \(twin.model ?? "(none)") is not loaded")
        }
        let now = nowMs
        var start = now
        var historyPoints: Int?
        if spec.kind == .calibrate && spec.history == nil {
            let (history, first, count) = retainedHistory(twin: twin, tenant: principal.tenant, spec: spec, model: model)
            spec.history = history
            start = first ?? now
            historyPoints = count
        } else if spec.kind == .calibrate {
            historyPoints = spec.history?.values.reduce(0) { $0 + $1.count }
        }
        let state = twin.state
        var values: [String: Double] = [:]
        for (name, p) in state.properties { if let x = p.value.doubleValue, x.isFinite { values[name] = x } }
        var parameters: [String: Double] = [:]
        for (name, v) in state.parameters { if let x = v.doubleValue { parameters[name] = x } }
        let simulation = SimulationRequest(simulationId: "sim-" + UUID().uuidString.lowercased(), tenant: principal.tenant, twinId: twin.twinId,
                                           requestedAt: now, requestedBy: principal.keyId, deadline: spec.timeoutMs.map { now + $0 }, start: start,
                                           twin: .init(model: model.ref.description, version: state.version, values: values, parameters: parameters),
                                           spec: spec)
        // The worker's own checks, here first: a bad request is a 422 now, not a refusal later.
        do {
            _ = try SimulationPlan(simulation, model: model, limits: configuration.simulation, now: now)
        } catch {
            var problem = HTTPError(.unprocessableContent, code: .init(Self.camelCase(error.code)), detail: "\(error.pointer): \(error.message)")
            problem.extensions = [("pointer", .string(error.pointer)), ("reason", .string(error.code))]
            throw problem
        }
        guard let publisher = simulationPublisher else {
            throw HTTPError(HTTPStatus(code: 503), code: .init("simulationsUnavailable"), detail: "this API instance publishes no simulation requests")
        }
        do {
            try await publisher.publish(simulation, traceparent: request.headers.first(MessageHeader.traceparent))
        } catch {
            throw Self.publishProblem(error, "simulation request")
        }
        views.simulations.pending(simulation)
        let location = "/v1/simulations/\(simulation.simulationId)"
        var w = JSONWriter(capacity: 256)
        w.beginObject()
        w.field("simulationId", simulation.simulationId)
        w.field("twinId", twin.twinId)
        w.field("kind", spec.kind.rawValue)
        w.field("status", "pending")
        w.field("location", location)
        if let historyPoints { w.field("historyPoints", historyPoints) }
        w.endObject()
        return .json(w.bytes, status: .accepted, headers: ["Location": location])
    }

    /// The view's retained history of the calibrated properties (and of telemetry bound to
    /// inputs, which drives them), as seconds from its first point; that point's time; the count.
    func retainedHistory(twin: QueryTwin, tenant: String, spec: SimulationSpec, model: TwinModel) -> ([String: [SimulationSpec.Point]], Int64?, Int) {
        let behaviour = model.behaviour
        var names = spec.properties ?? (behaviour?.states.map(\.name).filter { model.telemetry(named: $0) != nil } ?? [])
        names += behaviour?.inputs.compactMap(\.telemetry) ?? []
        var raw: [String: [(Int64, Double)]] = [:]
        for name in Set(names) {
            let points = views.history.history(tenant: tenant, twinId: twin.twinId, property: name)?.points() ?? []
            let numeric = points.filter { !$0.late }.compactMap { p in p.value.doubleValue.map { (p.eventTime, $0) } }
            if !numeric.isEmpty { raw[name] = numeric }
        }
        let first = raw.values.compactMap { $0.first?.0 }.min()
        var history: [String: [SimulationSpec.Point]] = [:]
        var count = 0
        for (name, points) in raw {
            history[name] = points.map { .init(Double($0.0 - (first ?? 0)) / 1000, $0.1) }
            count += points.count
        }
        return (history, first, count)
    }

    /// A spec's shape error: 400 for the wrong type or a missing or unknown member, 422 for a
    /// value the contract does not accept; both point at it.
    static func specProblem(_ error: ContractError) -> HTTPError {
        let status: HTTPStatus = ["wrong_type", "missing_field", "unknown_member", "invalid_json"].contains(error.code) ? .badRequest : .unprocessableContent
        var problem = HTTPError(status, code: .init(status == .badRequest ? "invalidBody" : camelCase(error.code)), detail: "\(error.pointer): \(error.message)")
        problem.extensions = [("pointer", .string(error.pointer)), ("reason", .string(error.code))]
        return problem
    }

    /// `unknown_name` → `unknownName`, as the API's problem codes are spelled.
    static func camelCase(_ code: String) -> String {
        let parts = code.split(separator: "_")
        return parts.enumerated().map { $0.offset == 0 ? String($0.element) : $0.element.prefix(1).uppercased() + $0.element.dropFirst() }.joined()
    }

    // MARK: GET /v1/simulations/{simulationId}

    func getSimulation(_ request: HTTPRequest) async throws -> HTTPResponse {
        let principal = try authorize(request, .read)
        let entry = try pathSimulation(request, principal)
        if let document = entry.document { return .json(document) }
        var w = JSONWriter(capacity: 256)
        w.beginObject()
        w.field("simulationId", entry.simulationId)
        w.field("tenant", entry.tenant)
        w.field("twinId", entry.twinId)
        if let kind = entry.kind { w.field("kind", kind) }
        w.field("status", entry.status)
        w.key("timings"); w.beginObject()
        if let t = entry.requestedAt { w.field("requestedAt", time: t) }
        w.endObject()
        w.endObject()
        return .json(w.bytes)
    }

    func pathSimulation(_ request: HTTPRequest, _ principal: APIPrincipal) throws(HTTPError) -> SimulationStore.Entry {
        let id = request.parameter("simulationId") ?? ""
        guard SimulationIDs.isValid(id) else {
            throw HTTPError(.badRequest, code: .init("invalidSimulationId"), detail: "simulation ids are 1-128 characters of letters, digits and . _ - :")
        }
        guard let entry = views.simulations.entry(tenant: principal.tenant, simulationId: id) else {
            throw HTTPError(.notFound, code: .init("simulationNotFound"), detail: "no simulation '\(id)' is known (or it is older than the retained window)")
        }
        return entry
    }

    // MARK: GET /v1/twins/{id}/simulations

    func listSimulations(_ request: HTTPRequest) async throws -> HTTPResponse {
        let principal = try authorize(request, .read)
        let twin = try pathTwin(request, principal)
        let q = request.queryParameters
        for (name, _) in q where !["cursor", "limit"].contains(name) {
            throw Self.invalidParameter(name, "unknown parameter; known: cursor, limit")
        }
        var limit = TwinListQuery.defaultLimit
        if let text = q["limit"] {
            guard let n = Int(text), (1...TwinListQuery.maxLimit).contains(n) else {
                throw Self.invalidParameter("limit", "expected 1 to \(TwinListQuery.maxLimit)")
            }
            limit = n
        }
        var before: UInt64?
        if let text = q["cursor"] {
            guard text.hasPrefix("s"), let n = UInt64(text.dropFirst()) else { throw Self.invalidParameter("cursor", "not a cursor from a previous page") }
            before = n
        }
        let page = views.simulations.list(tenant: principal.tenant, twinId: twin.twinId, before: before, limit: limit)
        var w = JSONWriter(capacity: 256 + page.items.count * 200)
        w.beginObject()
        w.key("items"); w.beginArray()
        for e in page.items {
            w.beginObject()
            w.field("simulationId", e.simulationId)
            if let kind = e.kind { w.field("kind", kind) }
            w.field("status", e.status)
            if let p = e.progress { w.field("progress", p) }
            if let t = e.requestedAt { w.field("requestedAt", time: t) }
            if let r = e.reason { w.key("reason"); w.beginObject(); w.field("code", r.code); w.field("message", r.message); w.endObject() }
            w.field("location", "/v1/simulations/\(e.simulationId)")
            w.endObject()
        }
        w.endArray()
        w.key("total"); w.value(page.total)
        w.key("limit"); w.value(limit)
        if let next = page.next { w.field("nextCursor", "s\(next)") }
        w.endObject()
        return .json(w.bytes)
    }

    // MARK: DELETE /v1/simulations/{simulationId}

    func cancelSimulation(_ request: HTTPRequest) async throws -> HTTPResponse {
        let principal = try authorize(request, .simulate)
        let entry = try pathSimulation(request, principal)
        guard !entry.isFinal else {
            throw HTTPError(.conflict, code: .init("simulationFinished"), detail: "simulation '\(entry.simulationId)' already ended: \(entry.status)")
        }
        guard let publisher = simulationPublisher else {
            throw HTTPError(HTTPStatus(code: 503), code: .init("simulationsUnavailable"), detail: "this API instance publishes no simulation requests")
        }
        let control = SimulationControl(simulationId: entry.simulationId, tenant: principal.tenant, issuedAt: nowMs, issuedBy: principal.keyId)
        do {
            try await publisher.publish(control, traceparent: request.headers.first(MessageHeader.traceparent))
        } catch {
            throw Self.publishProblem(error, "cancel")
        }
        let location = "/v1/simulations/\(entry.simulationId)"
        var w = JSONWriter(capacity: 160)
        w.beginObject()
        w.field("simulationId", entry.simulationId)
        w.field("status", "cancelling")
        w.field("location", location)
        w.endObject()
        return .json(w.bytes, status: .accepted, headers: ["Location": location])
    }
}
