import JSON

/// `SimulationRequest` v1 on `simulation.requests.v1` (key `tenant/twinId`): one simulation of a
/// twin, with everything a worker needs to run it — the twin's model reference, its observed
/// values and parameters at the time of the request (`twin`), and the client's `SimulationSpec`
/// (whose members sit at the top level of the document). Workers keep no state: a request is
/// self-contained. Schema: `Schemas/contracts/simulation-request/v1.json`.
public struct SimulationRequest: ContractDocument, Sendable, Equatable {
    public static let contract = "simulation-request/1"

    /// The twin as the API saw it when the request was made.
    public struct TwinSnapshot: Sendable, Equatable {
        /// Model reference `id@version`.
        public var model: String
        /// The twin's state version (ETag) the values come from.
        public var version: Int64?
        /// Latest observed numeric values by property name.
        public var values: [String: Double]
        /// The twin's parameters (the model's defaults apply to the others).
        public var parameters: [String: Double]

        public init(model: String, version: Int64? = nil, values: [String: Double] = [:], parameters: [String: Double] = [:]) {
            self.model = model
            self.version = version
            self.values = values
            self.parameters = parameters
        }
    }

    /// Unique per request; results carry it.
    public var simulationId: String
    public var tenant: String
    public var twinId: String
    public var requestedAt: Int64
    /// API key id or service that asked.
    public var requestedBy: String?
    /// Absolute time (epoch ms) after which the result is no longer wanted: a worker refuses the
    /// request, or stops the run and reports it failed (`deadline_exceeded`).
    public var deadline: Int64?
    /// Absolute time (epoch ms) of t = 0: the request time for forecasts, a history's first point
    /// for calibrations. Result times are seconds from it.
    public var start: Int64
    public var twin: TwinSnapshot
    public var spec: SimulationSpec

    public init(simulationId: String, tenant: String, twinId: String, requestedAt: Int64, requestedBy: String? = nil, deadline: Int64? = nil,
                start: Int64, twin: TwinSnapshot, spec: SimulationSpec) {
        self.simulationId = simulationId
        self.tenant = tenant
        self.twinId = twinId
        self.requestedAt = requestedAt
        self.requestedBy = requestedBy
        self.deadline = deadline
        self.start = start
        self.twin = twin
        self.spec = spec
    }

    /// `tenant/twinId`.
    public var key: String { TwinKey(tenant: tenant, twinId: twinId).description }

    public func encoded() -> [UInt8] {
        var w = JSONWriter(capacity: 512)
        w.beginObject()
        w.field("simulationId", simulationId)
        w.field("tenant", tenant)
        w.field("twinId", twinId)
        w.field("requestedAt", time: requestedAt)
        if let requestedBy { w.field("requestedBy", requestedBy) }
        if let deadline { w.field("deadline", time: deadline) }
        w.field("start", time: start)
        w.key("twin"); w.beginObject()
        w.field("model", twin.model)
        if let version = twin.version { w.key("version"); w.value(version) }
        w.key("values"); SimulationSpec.write(twin.values, to: &w)
        w.key("parameters"); SimulationSpec.write(twin.parameters, to: &w)
        w.endObject()
        spec.writeMembers(to: &w)
        w.endObject()
        return w.bytes
    }

    public init(json: JSON) throws(ContractError) {
        let f = try Fields(json)
        simulationId = try f.string("simulationId")
        tenant = try f.string("tenant")
        twinId = try f.string("twinId")
        requestedAt = try f.time("requestedAt")
        requestedBy = try f.optionalString("requestedBy")
        deadline = try f.object["deadline"].map { _ throws(ContractError) in try f.time("deadline") }
        start = try f.time("start")
        let t = try Fields(.object(try f.object("twin")), pointer: "/twin")
        twin = TwinSnapshot(model: try t.string("model"), version: try t.optionalInt("version"),
                            values: try t.numberMap("values"), parameters: try t.numberMap("parameters"))
        spec = try SimulationSpec(object: f.object, strict: false)
        try SimulationIDs.check(simulationId, pointer: "/simulationId")
        guard TwinID.isValid(twinId) else {
            throw ContractError(code: "invalid_value", pointer: "/twinId", message: "twinId must be 1-128 letters, digits, '.', '_', '-' or ':'", actual: twinId)
        }
    }
}

/// `SimulationControl` v1 on `simulation.control.v1` (key: the simulation id): a cancel. Every
/// worker reads the topic whole, so the one running (or about to take) the simulation sees it.
/// Schema: `Schemas/contracts/simulation-control/v1.json`.
public struct SimulationControl: ContractDocument, Sendable, Equatable {
    public static let contract = "simulation-control/1"

    public enum Action: String, Sendable, CaseIterable { case cancel }

    public var simulationId: String
    public var tenant: String
    public var action: Action
    public var issuedAt: Int64
    public var issuedBy: String?

    public init(simulationId: String, tenant: String, action: Action = .cancel, issuedAt: Int64, issuedBy: String? = nil) {
        self.simulationId = simulationId
        self.tenant = tenant
        self.action = action
        self.issuedAt = issuedAt
        self.issuedBy = issuedBy
    }

    public func encoded() -> [UInt8] {
        var w = JSONWriter(capacity: 160)
        w.beginObject()
        w.field("simulationId", simulationId)
        w.field("tenant", tenant)
        w.field("action", action.rawValue)
        w.field("issuedAt", time: issuedAt)
        if let issuedBy { w.field("issuedBy", issuedBy) }
        w.endObject()
        return w.bytes
    }

    public init(json: JSON) throws(ContractError) {
        let f = try Fields(json)
        simulationId = try f.string("simulationId")
        tenant = try f.string("tenant")
        let text = try f.string("action")
        guard let action = Action(rawValue: text) else {
            throw ContractError(code: "invalid_value", pointer: "/action", message: "unknown action '\(text)'", expected: "cancel", actual: text)
        }
        self.action = action
        issuedAt = try f.time("issuedAt")
        issuedBy = try f.optionalString("issuedBy")
        try SimulationIDs.check(simulationId, pointer: "/simulationId")
    }
}

/// The rule for simulation ids: 1–128 letters, digits, `.`, `_`, `-` or `:` (they appear in
/// URLs and Kafka keys).
public enum SimulationIDs {
    public static func isValid(_ id: String) -> Bool { TwinID.isValid(id) }

    static func check(_ id: String, pointer: String) throws(ContractError) {
        guard isValid(id) else {
            throw ContractError(code: "invalid_value", pointer: pointer, message: "simulationId must be 1-128 letters, digits, '.', '_', '-' or ':'", actual: id)
        }
    }
}
