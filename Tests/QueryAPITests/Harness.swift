import Contracts
import Foundation
import HTTP
import JSON
import Kafka
import Models
import ModelLoading
import TwinStore
import Views
import TwinQuery
import QueryAPI
import ServiceKit
import Simulator
import Synchronization
import XCTest

/// The query API in process, with the state-updater's fold standing in for Kafka: a published
/// command is folded (as the state-updater would) and its state and change fed to the views, so
/// tests see the whole write → read path without a broker. `hold()` delays that, to test waits.
final class Harness: Sendable {
    static let modelsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Schemas/models").path
    static let openAPIPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Schemas/openapi.json").path

    let models: ModelRegistry
    let views: QueryViews
    let api: QueryAPI
    let router: Router
    let publisher: FoldingPublisher
    let simulations: WorkingSimulationPublisher
    /// Keys by name: acme (read, write, admin), acmeReader (read), acmeIngest (ingest),
    /// beta (read, write, admin), ops (admin of an operator tenant).
    let keys: [String: String]

    init(configuration: QueryAPI.Configuration = QueryAPI.Configuration(), limits: QueryViews.Limits = QueryViews.Limits()) throws {
        models = try ModelRegistry(directory: Self.modelsDirectory)
        views = QueryViews(limits: limits, reportingInterval: QueryAPI.reportingInterval(models))
        var keys: [String: String] = [:]
        var entries: [APIKeyEntry] = []
        for (name, tenant, scopes) in [("acme", "acme", [APIScope.read, .write, .admin]), ("acmeReader", "acme", [.read]),
                                       ("acmeIngest", "acme", [.ingest]), ("beta", "beta", [.read, .write, .admin]),
                                       ("ops", "ops", [.admin])] {
            let (key, entry) = APIKeys.generate(tenant: tenant, scopes: Set(scopes), existingIds: Set(entries.map(\.id)))
            keys[name] = key
            entries.append(entry)
        }
        self.keys = keys
        publisher = FoldingPublisher(views: views, catalog: ModelCatalog(registry: models))
        simulations = WorkingSimulationPublisher(views: views, models: models)
        var configuration = configuration
        configuration.operatorTenants = ["ops"]
        // What the service serves: the document built into the binary.
        api = QueryAPI(views: views, models: models, auth: .keys(try APIKeys(entries: entries)), publisher: publisher, simulationPublisher: simulations,
                       configuration: configuration, openAPIDocument: Array(embeddedOpenAPIDocument.utf8), clock: { Harness.now })
        var router = Router()
        api.register(on: &router)
        self.router = router
    }

    /// Sends a request straight through the router (no sockets).
    func request(_ method: HTTPMethod = .get, _ target: String, key: String? = "acme", headers: HTTPHeaders = [:],
                 body: String? = nil) async -> TestResponse {
        var headers = headers
        if let key { headers.set("Authorization", "Bearer \(keys[key] ?? key)") }
        let request = HTTPRequest(method: method, target: target, headers: headers, body: body.map { Array($0.utf8) } ?? [])
        return TestResponse(await router.respond(to: request))
    }

    /// Creates a twin through the API and returns once the view has it.
    @discardableResult
    func create(_ id: String, model: String = "pump@1", key: String = "acme", metadata: String = "{}",
                file: StaticString = #filePath, line: UInt = #line) async -> TestResponse {
        let response = await request(.post, "/v1/twins", key: key, body: #"{"twinId":"\#(id)","model":"\#(model)","metadata":\#(metadata)}"#)
        XCTAssertEqual(response.status, 202, "create \(id): \(response.text)", file: file, line: line)
        return response
    }

    /// Feeds a reading through the fold into the views, as the state-updater and its topics would.
    func reading(_ twinId: String, tenant: String = "acme", at eventTime: Int64, _ values: JSONObject, id: String? = nil) {
        let envelope = TelemetryEnvelope(eventId: id ?? "\(twinId)-\(eventTime)-\(values.count)", tenant: tenant, twinId: twinId,
                                         eventTime: eventTime, ingestTime: eventTime + 3, source: .init(kind: "test", ref: "harness"),
                                         values: values)
        publisher.fold(reading: envelope)
    }

    /// Feeds a dead-letter into the views.
    func deadLetter(tenant: String, reason: String, twinId: String? = nil, requestId: String? = nil, offset: Int64) {
        let letter = DeadLetter(stage: "validator", tenant: tenant, twinId: twinId, model: "pump@1",
                                source: requestId.map { .init(kind: "http", ref: $0) }, deadLetteredAt: 1_000 + offset,
                                reasons: [ContractError(code: reason, pointer: "/values/flow", message: "bad flow")],
                                original: Array(#"{"twinId":"x"}"#.utf8))
        views.apply(KafkaMessage(topic: Topic.telemetryDeadLetter.name, partition: 0, offset: offset, key: nil,
                                 value: letter.encoded(), headers: []))
    }
}

/// Folds published commands like the state-updater and feeds the views. Change events get ids
/// `c-0-<n>` in publication order, as offsets of one partition would.
final class FoldingPublisher: CommandPublisher {
    private struct State {
        var fold: TwinFold
        var offset: Int64 = 0
        var held: [TwinCommand]? = nil
        var published: [TwinCommand] = []
        var failure: CommandPublishError?
    }
    private let state: Mutex<State>
    let views: QueryViews

    init(views: QueryViews, catalog: ModelCatalog) {
        self.views = views
        state = Mutex(State(fold: TwinFold(options: .init(autoCreate: false, catalog: catalog))))
    }

    var published: [TwinCommand] { state.withLock { $0.published } }

    /// Makes the next publish fail with `error` (nil: succeed again).
    func failNext(_ error: CommandPublishError?) { state.withLock { $0.failure = error } }

    /// Commands are accepted (202) but not applied until `release()`.
    func hold() { state.withLock { $0.held = $0.held ?? [] } }

    func release() {
        let held = state.withLock { s -> [TwinCommand] in
            defer { s.held = nil }
            return s.held ?? []
        }
        for command in held { apply(command) }
    }

    func publish(_ command: TwinCommand, traceparent: String?) async throws(CommandPublishError) {
        let (failure, hold): (CommandPublishError?, Bool) = state.withLock { s in
            if let failure = s.failure {
                s.failure = nil
                return (failure, false)
            }
            s.published.append(command)
            if s.held != nil {
                s.held!.append(command)
                return (nil, true)
            }
            return (nil, false)
        }
        if let failure { throw failure }
        if !hold { apply(command) }
    }

    private func apply(_ command: TwinCommand) {
        views.apply(KafkaMessage(topic: Topic.twinCommands.name, partition: 0, offset: 0, key: Array(command.key.utf8),
                                 value: command.encoded(), headers: []))
        let targetModel = command.relationship?.targetModel
        emit { s in s.fold.apply(command: command, offset: s.offset, targetModel: targetModel) }
    }

    func fold(reading: TelemetryEnvelope) {
        emit { s in s.fold.apply(reading: reading, offset: s.offset) }
    }

    private func emit(_ step: (inout State) -> TwinFold.Outcome) {
        let (outcome, state, id): (TwinFold.Outcome, TwinState?, String) = self.state.withLock { s in
            let outcome = step(&s)
            s.offset += 1
            var state: TwinState?
            if case .change(let change) = outcome, change.kind != .rejected {
                state = s.fold.state(tenant: change.tenant, twinId: change.twinId)
            }
            return (outcome, state, "c-0-\(s.offset)")
        }
        guard case .change(let change) = outcome else { return }
        if let state {
            if state.decommissioned {
                views.apply(KafkaMessage(topic: Topic.twinState.name, partition: 0, offset: 0, key: Array(state.key.utf8), value: [], headers: []))
            } else {
                views.twins.apply(state)
            }
        }
        views.applyChange(change, id: id)
    }
}

/// Stands in for Kafka and a simulator-worker: a published request is run at once (or, after
/// `hold()`, stays pending until `release()`) and its results fed to the views, as the worker and
/// the results topic would; a cancel of a pending request is answered `cancelled`.
final class WorkingSimulationPublisher: SimulationPublisher {
    private struct State {
        var held: [SimulationRequest]? = nil
        var requests: [SimulationRequest] = []
        var controls: [SimulationControl] = []
        var offset: Int64 = 0
    }
    private let state = Mutex(State())
    let views: QueryViews
    let models: ModelRegistry

    init(views: QueryViews, models: ModelRegistry) {
        self.views = views
        self.models = models
    }

    var requests: [SimulationRequest] { state.withLock { $0.requests } }
    var controls: [SimulationControl] { state.withLock { $0.controls } }

    func hold() { state.withLock { $0.held = $0.held ?? [] } }

    func release() {
        let held = state.withLock { s -> [SimulationRequest] in
            defer { s.held = nil }
            return s.held ?? []
        }
        for request in held { run(request) }
    }

    func publish(_ request: SimulationRequest, traceparent: String?) async throws(CommandPublishError) {
        let hold = state.withLock { s -> Bool in
            s.requests.append(request)
            if s.held != nil { s.held!.append(request); return true }
            return false
        }
        if !hold { run(request) }
    }

    func publish(_ control: SimulationControl, traceparent: String?) async throws(CommandPublishError) {
        let request = state.withLock { s -> SimulationRequest? in
            s.controls.append(control)
            guard let i = s.held?.firstIndex(where: { $0.simulationId == control.simulationId && $0.tenant == control.tenant }) else { return nil }
            return s.held!.remove(at: i)
        }
        guard let request else { return }
        feed(SimulationRunner.result(request, status: .cancelled))
    }

    private func run(_ request: SimulationRequest) {
        feed(SimulationRunner.result(request, status: .accepted))
        var result: SimulationResult
        do {
            let plan = try SimulationPlan(request, model: models.model(referencedBy: request.twin.model), limits: SimulatorLimits(), now: request.requestedAt)
            switch SimulationRunner.run(plan) {
            case .success(let r): result = r
            case .failure(let e):
                result = SimulationRunner.result(request, status: .failed)
                result.reason = SimulationRunner.reason(e)
            }
        } catch {
            result = SimulationRunner.result(request, status: .refused)
            result.reason = error.reason
        }
        result.timings = .init(requestedAt: request.requestedAt, acceptedAt: request.requestedAt, finishedAt: request.requestedAt + 1, runSeconds: 0.001)
        feed(result)
    }

    private func feed(_ result: SimulationResult) {
        let offset = state.withLock { s -> Int64 in s.offset += 1; return s.offset }
        views.applySimulation(result, id: "s-0-\(offset)")
    }
}

/// A response with its body decoded where that helps assertions.
struct TestResponse {
    let response: HTTPResponse
    init(_ response: HTTPResponse) { self.response = response }
    var status: Int { response.status.code }
    var text: String { String(decoding: response.bodyBytes, as: UTF8.self) }
    var json: JSON { (try? JSON(parsing: response.bodyBytes)) ?? .null }
    var headers: HTTPHeaders { response.headers }
    /// The problem document's `code`.
    var code: String? { json["code"]?.stringValue }
}
