import JSON

/// `DriftAlert` v1 on `drift.alerts.v1` (key `tenant/twinId`): a twin stopped telling the truth
/// (`residual`: its model no longer predicts its readings; `data`: its readings no longer look like
/// its reference window) or stopped talking (`stale`). Schema: `Schemas/contracts/drift-alert/v1.json`.
///
/// One episode per twin, property and kind is one `raised` and one `resolved` message with the same
/// `alertId`; the `resolved` message repeats the episode's fields and carries the whole `story`, so
/// a reader that keeps the latest message per `alertId` has the episode. While an episode is open,
/// `updated` messages repeat it with a longer story (recalibration steps). Delivery is
/// at-least-once: de-duplicate on `(alertId, status, story.count)`.
public struct DriftAlert: ContractDocument, Sendable, Equatable {
    public static let contract = ContractName.driftAlertV1

    /// Where the episode is.
    public enum Status: String, Sendable, CaseIterable {
        case raised
        /// Still open; the story grew (a recalibration was requested, its result came, ...).
        case updated
        case resolved

        /// Whether the episode is still open.
        public var isOpen: Bool { self != .resolved }
    }

    /// What went wrong.
    public enum Kind: String, Sendable, CaseIterable {
        /// The observation and the model's prediction parted (a detector on the standardised residual).
        case residual
        /// The property's recent values no longer look like its reference window.
        case data
        /// No reading for longer than `STALE_FACTOR` reporting intervals.
        case stale
    }

    /// One step of an episode's story: what happened, when (event time), in a sentence, with the
    /// figures behind it. `step` is an open vocabulary so later stages add their own steps
    /// (`detected`, `resolved`, `reset` here; recalibration adds `requested`, `result`, `applied`, `notApplied`).
    public struct Step: Sendable, Equatable {
        /// Lower camel case name of the step.
        public var step: String
        /// When it happened (ms since the epoch).
        public var at: Int64
        /// What happened, for a person.
        public var message: String
        /// Figures behind the step (detector, cut, statistic, simulation id, parameters, ...).
        public var details: JSONObject

        public init(step: String, at: Int64, message: String, details: JSONObject = [:]) {
            self.step = step
            self.at = at
            self.message = message
            self.details = details
        }
    }

    /// Where a residual episode's recalibration stands: the latest of its story's recalibration
    /// steps, in one place, so an operator sees the proposal (`suggest` mode) without reading the story.
    public struct Recalibration: Sendable, Equatable {
        /// `auto` (applied when better) or `suggest` (proposed; an operator applies it).
        public var mode: String
        /// `collecting`, `requested`, `applied`, `suggested`, `notApplied` or `failed`.
        public var state: String
        /// The calibration's simulation id (from `requested` on): what the apply call names.
        public var simulationId: String?
        /// Observations sent as the calibration's history.
        public var points: Int?
        /// The fitted parameters and their standard errors.
        public var parameters: [String: Double]?
        public var standardErrors: [String: Double]?
        /// Residual RMS of the drifting property before and after the fit, in its unit.
        public var rmsBefore: Double?
        public var rmsAfter: Double?
        /// `applied`: the `setParameters` command's id.
        public var commandId: String?
        /// `notApplied` / `failed`: machine-readable why (`not_improved`, `not_converged`, `out_of_range`, a simulation reason code).
        public var reason: String?

        public init(mode: String, state: String, simulationId: String? = nil, points: Int? = nil, parameters: [String: Double]? = nil,
                    standardErrors: [String: Double]? = nil, rmsBefore: Double? = nil, rmsAfter: Double? = nil, commandId: String? = nil,
                    reason: String? = nil) {
            self.mode = mode
            self.state = state
            self.simulationId = simulationId
            self.points = points
            self.parameters = parameters
            self.standardErrors = standardErrors
            self.rmsBefore = rmsBefore
            self.rmsAfter = rmsAfter
            self.commandId = commandId
            self.reason = reason
        }
    }

    /// Same for the raised and the resolved message of one episode; deterministic, so a message
    /// sent twice is recognisably the same alert.
    public var alertId: String
    public var status: Status
    public var kind: Kind
    public var tenant: String
    public var twinId: String
    /// `id@version` of the twin's model, when it has one.
    public var model: String?
    /// The telemetry concerned (none for `stale`).
    public var property: String?
    /// `adwin`, `cusum`, `pageHinkley` (residual); `kolmogorovSmirnov`, `wasserstein`,
    /// `populationStabilityIndex`, `jensenShannon` (data); `freshness` (stale).
    public var detector: String
    /// The deciding statistic when the message was made (residual: the standardised residual's
    /// mean since the change, in σ; data: the data-drift statistic; stale: milliseconds without a reading).
    public var statistic: Double
    /// What `statistic` is compared with.
    public var threshold: Double
    /// How many values the decision looked at (residual: the detector's window; data: the current
    /// window; stale: the reporting interval in ms).
    public var window: Int
    /// Where the change began: ADWIN's cut as an event time (residual), the reading the twin went
    /// silent after (stale).
    public var changeStartedAt: Int64?
    /// Event time of the reading (or, for stale, the monitor's clock) that raised or resolved it.
    public var eventTime: Int64
    /// A sentence a person can act on.
    public var message: String
    /// Residual alerts: the residual's standard deviation while the model was right, in the property's unit.
    public var scale: Double?
    /// The episode's steps, oldest first.
    public var story: [Step]
    /// Residual episodes the monitor recalibrates: where that stands.
    public var recalibration: Recalibration?

    public init(alertId: String, status: Status, kind: Kind, tenant: String, twinId: String, model: String? = nil, property: String? = nil,
                detector: String, statistic: Double, threshold: Double, window: Int, changeStartedAt: Int64? = nil, eventTime: Int64,
                message: String, scale: Double? = nil, story: [Step] = [], recalibration: Recalibration? = nil) {
        self.alertId = alertId
        self.status = status
        self.kind = kind
        self.tenant = tenant
        self.twinId = twinId
        self.model = model
        self.property = property
        self.detector = detector
        self.statistic = statistic
        self.threshold = threshold
        self.window = window
        self.changeStartedAt = changeStartedAt
        self.eventTime = eventTime
        self.message = message
        self.scale = scale
        self.story = story
        self.recalibration = recalibration
    }

    public var key: String { TwinKey(tenant: tenant, twinId: twinId).description }

    /// The deterministic id of the episode of `kind` on `property` of a twin raised at `eventTime`.
    public static func id(tenant: String, twinId: String, kind: Kind, property: String?, raisedAt eventTime: Int64) -> String {
        let text = "\(tenant)\u{0}\(twinId)\u{0}\(kind.rawValue)\u{0}\(property ?? "")\u{0}\(eventTime)"
        return "da-" + SHA256.hex(text).prefix(24)
    }

    public func encoded() -> [UInt8] {
        var w = JSONWriter(capacity: 512 + story.count * 256)
        write(to: &w)
        return w.bytes
    }

    /// Writes the alert as one JSON object (also embedded in `drift.state.v1` documents).
    public func write(to w: inout JSONWriter) {
        w.beginObject()
        w.field("alertId", alertId)
        w.field("status", status.rawValue)
        w.field("kind", kind.rawValue)
        w.field("tenant", tenant)
        w.field("twinId", twinId)
        if let model { w.field("model", model) }
        if let property { w.field("property", property) }
        w.field("detector", detector)
        w.field("statistic", statistic.isFinite ? statistic : 0)
        w.field("threshold", threshold.isFinite ? threshold : 0)
        w.field("window", window)
        if let changeStartedAt { w.field("changeStartedAt", time: changeStartedAt) }
        w.field("eventTime", time: eventTime)
        w.field("message", message)
        if let scale, scale.isFinite { w.field("scale", scale) }
        w.key("story"); w.beginArray()
        for s in story {
            w.beginObject()
            w.field("step", s.step)
            w.field("at", time: s.at)
            w.field("message", s.message)
            if !s.details.isEmpty { w.key("details"); w.value(.object(s.details)) }
            w.endObject()
        }
        w.endArray()
        if let r = recalibration {
            w.key("recalibration"); w.beginObject()
            w.field("mode", r.mode)
            w.field("state", r.state)
            if let id = r.simulationId { w.field("simulationId", id) }
            if let n = r.points { w.field("points", n) }
            if let p = r.parameters { w.key("parameters"); SimulationSpec.write(p, to: &w) }
            if let e = r.standardErrors { w.key("standardErrors"); SimulationSpec.write(e, to: &w) }
            if let x = r.rmsBefore, x.isFinite { w.field("rmsBefore", x) }
            if let x = r.rmsAfter, x.isFinite { w.field("rmsAfter", x) }
            if let id = r.commandId { w.field("commandId", id) }
            if let reason = r.reason { w.field("reason", reason) }
            w.endObject()
        }
        w.endObject()
    }

    public init(json: JSON) throws(ContractError) {
        try self.init(json: json, pointer: "")
    }

    /// Decodes an alert found at `pointer` of a larger document.
    public init(json: JSON, pointer: String) throws(ContractError) {
        let f = try Fields(json, pointer: pointer)
        alertId = try f.string("alertId")
        guard !alertId.isEmpty else { throw ContractError(code: "invalid_value", pointer: f.path("alertId"), message: "alertId must not be empty") }
        let statusText = try f.string("status")
        guard let status = Status(rawValue: statusText) else {
            throw ContractError(code: "invalid_value", pointer: f.path("status"), message: "unknown alert status", expected: "raised|updated|resolved", actual: statusText)
        }
        self.status = status
        let kindText = try f.string("kind")
        guard let kind = Kind(rawValue: kindText) else {
            throw ContractError(code: "invalid_value", pointer: f.path("kind"), message: "unknown alert kind", expected: "residual|data|stale", actual: kindText)
        }
        self.kind = kind
        tenant = try f.string("tenant")
        twinId = try f.string("twinId")
        model = try f.optionalString("model")
        property = try f.optionalString("property")
        switch (kind, property) {
        case (.stale, .some):
            throw ContractError(code: "invalid_value", pointer: f.path("property"), message: "a stale alert concerns the whole twin, not a property")
        case (.residual, nil), (.data, nil):
            throw .missing(f.path("property"), "property")
        default: break
        }
        detector = try f.string("detector")
        statistic = try f.double("statistic")
        threshold = try f.double("threshold")
        let window = try f.int("window")
        guard window >= 0 else { throw ContractError(code: "invalid_value", pointer: f.path("window"), message: "window must be at least 0", expected: ">= 0", actual: String(window)) }
        self.window = Int(window)
        changeStartedAt = try f.optionalTime("changeStartedAt")
        eventTime = try f.time("eventTime")
        message = try f.string("message")
        scale = try f.optionalDouble("scale")
        guard case .array(let items)? = f.object["story"] else { throw .missing(f.path("story"), "story") }
        story = try items.enumerated().map { (i, item) throws(ContractError) in
            let sf = try Fields(item, pointer: f.path("story") + "/\(i)")
            let name = try sf.string("step")
            guard let first = name.unicodeScalars.first, ("a"..."z").contains(first),
                  name.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) }) else {
                throw ContractError(code: "invalid_value", pointer: sf.path("step"), message: "a step name is lower camel case", expected: "^[a-z][A-Za-z0-9]*$", actual: name)
            }
            return Step(step: name, at: try sf.time("at"), message: try sf.string("message"), details: try sf.optionalObject("details") ?? [:])
        }
        if let r = try f.optionalObject("recalibration") {
            let rf = try Fields(.object(r), pointer: f.path("recalibration"))
            let points = try rf.optionalInt("points")
            recalibration = Recalibration(mode: try rf.string("mode"), state: try rf.string("state"), simulationId: try rf.optionalString("simulationId"),
                                          points: points.map { Int($0) },
                                          parameters: rf.object["parameters"] == nil ? nil : try rf.numberMap("parameters"),
                                          standardErrors: rf.object["standardErrors"] == nil ? nil : try rf.numberMap("standardErrors"),
                                          rmsBefore: try rf.optionalDouble("rmsBefore"), rmsAfter: try rf.optionalDouble("rmsAfter"),
                                          commandId: try rf.optionalString("commandId"), reason: try rf.optionalString("reason"))
        } else {
            recalibration = nil
        }
    }
}
