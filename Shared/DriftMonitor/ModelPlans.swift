import Contracts
import JSON
import Models
import ServiceKit
import Synchronization

/// Every loaded model's `ModelPlan`, made once at start-up.
public final class ModelPlans: Sendable {
    private let byRef: [String: ModelPlan]
    private let latest: [String: ModelPlan]

    public init(registry: ModelRegistry, settings: DriftSettings) {
        var byRef: [String: ModelPlan] = [:], latest: [String: ModelPlan] = [:]
        for model in registry.models {
            let plan = ModelPlan(model: model, settings: settings)
            byRef[plan.ref] = plan
            if (latest[model.id]?.model.version ?? Int.min) < model.version { latest[model.id] = plan }
        }
        self.byRef = byRef
        self.latest = latest
    }

    /// Refuses a `DRIFT_DATA_PROPERTIES` that names a model no file defines, or a telemetry that is
    /// numeric in no version of its model (a typo would silently watch nothing).
    public func checkDataProperties(_ settings: DriftSettings) throws {
        for (id, scope) in settings.dataProperties.sorted(by: { $0.key < $1.key }) {
            let versions = byRef.values.filter { $0.model.id == id }
            var unknown: [String] = []
            if case .named(let names) = scope {
                unknown = names.filter { name in !versions.contains { $0.numeric.contains(name) } }.sorted()
            }
            guard versions.isEmpty || !unknown.isEmpty else { continue }
            let what = versions.isEmpty ? "no loaded model has the id \(id)" : "model \(id) has no numeric telemetry \(unknown.joined(separator: ", "))"
            throw ConfigurationError(code: .invalidValue, variable: "DRIFT_DATA_PROPERTIES", value: "\(id)=…",
                                     expected: "model ids and numeric telemetry names of the loaded models (\(what))")
        }
    }

    /// The plan of `id@version`, or of the latest version for a bare `id`.
    public func plan(_ ref: String?) -> ModelPlan? {
        guard let ref else { return nil }
        return byRef[ref] ?? latest[ref]
    }
}

/// What the monitor knows of a twin from `twin.state.v1`: its model, its current parameters and
/// whether it was decommissioned.
public struct TwinInfo: Sendable, Equatable {
    public var model: String?
    /// Parameter values the twin sets (the model's defaults apply to the rest).
    public var parameters: [String: Double]
    /// `parameters` over the defaults, in the plan's order (made when the document arrives, not per reading).
    public var vector: [Double]?
    public var decommissioned: Bool

    public init(model: String?, parameters: [String: Double] = [:], vector: [Double]? = nil, decommissioned: Bool = false) {
        self.model = model
        self.parameters = parameters
        self.vector = vector
        self.decommissioned = decommissioned
    }

    /// The info a `twin.state.v1` document gives.
    public init(_ state: TwinState, plans: ModelPlans) {
        var values: [String: Double] = [:]
        for (name, value) in state.parameters { if let x = value.doubleValue { values[name] = x } }
        self.init(model: state.model, parameters: values, vector: plans.plan(state.model)?.parameters(values), decommissioned: false)
    }
}

/// The twins of `twin.state.v1` as the monitor needs them, followed from every partition (a
/// reading's twin may have been created on any replica's watch). Decommissioned twins stay as a
/// marker, and are queued for the stage to forget (close their episodes, tombstone their state).
public final class TwinDirectory: Sendable {
    private struct State {
        var twins: [String: TwinInfo] = [:]
        var forgotten: [String] = []
        var droppedForgets = 0
    }
    private let state = Mutex(State())
    public let plans: ModelPlans
    /// Most decommissions queued between two ticks of the stage.
    public let maxQueued: Int

    public init(plans: ModelPlans, maxQueued: Int = 100_000) {
        self.plans = plans
        self.maxQueued = maxQueued
    }

    /// Applies one `twin.state.v1` document (empty: decommissioned). False when undecodable.
    public func apply(key: String, value: [UInt8]) -> Bool {
        if value.isEmpty {
            state.withLock { s in
                let model = s.twins[key]?.model
                s.twins[key] = TwinInfo(model: model, decommissioned: true)
                if s.forgotten.count < maxQueued { s.forgotten.append(key) } else { s.droppedForgets += 1 }
            }
            return true
        }
        guard let (model, parameters) = Self.modelAndParameters(value) else { return false }
        // The usual document (one per reading) repeats the twin's model and parameters: nothing to do.
        let unchanged = state.withLock { s in
            s.twins[key].map { !$0.decommissioned && $0.model == model && $0.parameters == parameters } ?? false
        }
        if unchanged { return true }
        let info = TwinInfo(model: model, parameters: parameters, vector: model.flatMap { plans.plan($0)?.parameters(parameters) })
        state.withLock { $0.twins[key] = info }
        return true
    }

    /// The `model` and numeric `parameters` of a `twin.state.v1` document, read member by member
    /// with the rest skipped (its properties are most of its bytes): what `TwinInfo(TwinState)`
    /// takes from a fully decoded document, at a fraction of the cost. Nil when it is not a JSON object.
    static func modelAndParameters(_ bytes: [UInt8]) -> (model: String?, parameters: [String: Double])? {
        try? JSONMemberReader.read(bytes) { r in
            var model: String?
            var parameters: [String: Double] = [:]
            try r.beginObject()
            while let key = try r.nextKey() {
                if key == "model" {
                    model = try r.readString()
                } else if key == "parameters", let object = try r.readObject() {
                    for (name, value) in object { if let x = value.doubleValue { parameters[name] = x } }
                } else {
                    try r.skipValue()
                }
            }
            try r.finish()
            return (model, parameters)
        }
    }

    /// Sets a twin directly (tests).
    public func set(_ key: String, _ info: TwinInfo) { state.withLock { $0.twins[key] = info } }

    public func info(_ key: String) -> TwinInfo? { state.withLock { $0.twins[key] } }

    /// Decommissioned twins since the last call.
    public func takeForgotten() -> [String] {
        state.withLock { s in
            defer { s.forgotten = [] }
            return s.forgotten
        }
    }

    public var count: Int { state.withLock { $0.twins.count } }
}
