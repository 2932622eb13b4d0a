import JSON

/// `DriftState` v1 on the compacted `drift.state.v1` (key `tenant/twinId`): the drift monitor's
/// whole state of one twin, so the monitor's deployment stays stateless (it restores its partitions
/// from here on every assignment) and the query API can show what the monitor sees
/// (`GET /v1/twins/{id}/drift`). A tombstone (empty value) means the monitor forgot the twin
/// (decommissioned). Schema: `Schemas/contracts/drift-state/v1.json`.
///
/// The public part (`properties`, `openAlerts`, freshness) is stable; `monitor` is the monitor's
/// internal state (detectors, scales, windows, input history), versioned by `monitorFormat`, for
/// the monitor alone to restore.
public struct DriftState: ContractDocument, Sendable, Equatable {
    public static let contract = ContractName.driftStateV1

    /// The residual watch of one property.
    public struct Residual: Sendable, Equatable {
        /// `adwin`, `cusum` or `pageHinkley`.
        public var detector: String
        /// The detector's statistic and the threshold it alarms past (ADWIN: the best cut's margin over ε, threshold 0).
        public var statistic: Double
        public var threshold: Double
        /// Values in the detector's window (ADWIN) or since its last restart.
        public var window: Int
        /// Residuals fed since the last reset.
        public var residuals: Int
        /// Residuals the scale is estimated from, and how many are needed (`DRIFT_WARMUP`).
        public var warmup: Int
        public var warmupNeeded: Int
        /// Mean and standard deviation of the warm-up residuals (in the property's unit), frozen
        /// until the next reset; absent while warming up.
        public var center: Double?
        public var scale: Double?
        /// Detector alarms since the last reset (alarms during an open episode included).
        public var detections: Int

        public init(detector: String, statistic: Double, threshold: Double, window: Int, residuals: Int, warmup: Int, warmupNeeded: Int,
                    center: Double? = nil, scale: Double? = nil, detections: Int = 0) {
            self.detector = detector
            self.statistic = statistic
            self.threshold = threshold
            self.window = window
            self.residuals = residuals
            self.warmup = warmup
            self.warmupNeeded = warmupNeeded
            self.center = center
            self.scale = scale
            self.detections = detections
        }
    }

    /// The data-drift watch of one property: summaries of the windows and the latest verdict.
    public struct Data: Sendable, Equatable {
        /// `count`, `mean`, `standardDeviation`, `min`, `max`, `p05`…`p95` of each window.
        public var reference: JSONObject
        public var current: JSONObject
        /// The latest evaluation, when there was one.
        public var method: String?
        public var statistic: Double?
        public var threshold: Double?
        public var evaluatedAt: Int64?

        public init(reference: JSONObject, current: JSONObject, method: String? = nil, statistic: Double? = nil, threshold: Double? = nil,
                    evaluatedAt: Int64? = nil) {
            self.reference = reference
            self.current = current
            self.method = method
            self.statistic = statistic
            self.threshold = threshold
            self.evaluatedAt = evaluatedAt
        }
    }

    /// What is watched on one property.
    public struct Property: Sendable, Equatable {
        public var residual: Residual?
        public var data: Data?
        public init(residual: Residual? = nil, data: Data? = nil) {
            self.residual = residual
            self.data = data
        }
    }

    public var tenant: String
    public var twinId: String
    public var model: String?
    /// Wall-clock time the document was written.
    public var updatedAt: Int64
    /// Event time of the newest reading processed.
    public var lastEventTime: Int64?
    /// Whether a stale alert is open.
    public var stale: Bool
    /// By property name, sorted.
    public var properties: [(name: String, property: Property)]
    /// The latest message (raised or updated) of every open episode.
    public var openAlerts: [DriftAlert]
    /// Version of the `monitor` object's layout.
    public var monitorFormat: Int
    /// The monitor's internal state: JSON object text.
    public var monitor: [UInt8]

    public init(tenant: String, twinId: String, model: String? = nil, updatedAt: Int64, lastEventTime: Int64? = nil, stale: Bool = false,
                properties: [(name: String, property: Property)] = [], openAlerts: [DriftAlert] = [], monitorFormat: Int = 1, monitor: [UInt8] = Array("{}".utf8)) {
        self.tenant = tenant
        self.twinId = twinId
        self.model = model
        self.updatedAt = updatedAt
        self.lastEventTime = lastEventTime
        self.stale = stale
        self.properties = properties
        self.openAlerts = openAlerts
        self.monitorFormat = monitorFormat
        self.monitor = monitor
    }

    public var key: String { TwinKey(tenant: tenant, twinId: twinId).description }

    public static func == (a: DriftState, b: DriftState) -> Bool {
        a.tenant == b.tenant && a.twinId == b.twinId && a.model == b.model && a.updatedAt == b.updatedAt && a.lastEventTime == b.lastEventTime
            && a.stale == b.stale && a.properties.map(\.name) == b.properties.map(\.name)
            && a.properties.map(\.property) == b.properties.map(\.property) && a.openAlerts == b.openAlerts
            && a.monitorFormat == b.monitorFormat && a.monitor == b.monitor
    }

    public func encoded() -> [UInt8] {
        var w = JSONWriter(capacity: 512 + monitor.count + properties.count * 400 + openAlerts.count * 600)
        w.beginObject()
        w.field("tenant", tenant)
        w.field("twinId", twinId)
        if let model { w.field("model", model) }
        w.field("updatedAt", time: updatedAt)
        if let lastEventTime { w.field("lastEventTime", time: lastEventTime) }
        w.field("stale", stale)
        w.key("properties"); w.beginObject()
        for (name, p) in properties {
            w.key(name); w.beginObject()
            if let r = p.residual {
                w.key("residual"); w.beginObject()
                w.field("detector", r.detector)
                w.field("statistic", r.statistic.isFinite ? r.statistic : 0)
                w.field("threshold", r.threshold)
                w.field("window", r.window)
                w.field("residuals", r.residuals)
                w.field("warmup", r.warmup)
                w.field("warmupNeeded", r.warmupNeeded)
                if let c = r.center { w.field("center", c) }
                if let s = r.scale { w.field("scale", s) }
                w.field("detections", r.detections)
                w.endObject()
            }
            if let d = p.data {
                w.key("data"); w.beginObject()
                w.key("reference"); w.value(.object(d.reference))
                w.key("current"); w.value(.object(d.current))
                if let m = d.method { w.field("method", m) }
                if let s = d.statistic, s.isFinite { w.field("statistic", s) }
                if let t = d.threshold { w.field("threshold", t) }
                if let e = d.evaluatedAt { w.field("evaluatedAt", time: e) }
                w.endObject()
            }
            w.endObject()
        }
        w.endObject()
        w.key("openAlerts"); w.beginArray()
        for alert in openAlerts { alert.write(to: &w) }
        w.endArray()
        w.field("monitorFormat", monitorFormat)
        w.key("monitor"); w.raw(monitor)
        w.endObject()
        return w.bytes
    }

    public init(json: JSON) throws(ContractError) {
        let f = try Fields(json)
        tenant = try f.string("tenant")
        twinId = try f.string("twinId")
        model = try f.optionalString("model")
        updatedAt = try f.time("updatedAt")
        lastEventTime = try f.optionalTime("lastEventTime")
        stale = try f.bool("stale")
        var properties: [(name: String, property: Property)] = []
        for (name, value) in try f.object("properties") {
            let pf = try Fields(value, pointer: f.path("properties") + "/" + JSONPointer.escape(name))
            var property = Property()
            if let r = try pf.optionalObject("residual") {
                let rf = try Fields(.object(r), pointer: pf.path("residual"))
                property.residual = Residual(detector: try rf.string("detector"), statistic: try rf.double("statistic"), threshold: try rf.double("threshold"),
                                             window: Int(try rf.int("window")), residuals: Int(try rf.int("residuals")), warmup: Int(try rf.int("warmup")),
                                             warmupNeeded: Int(try rf.int("warmupNeeded")), center: try rf.optionalDouble("center"),
                                             scale: try rf.optionalDouble("scale"), detections: Int(try rf.int("detections")))
            }
            if let d = try pf.optionalObject("data") {
                let df = try Fields(.object(d), pointer: pf.path("data"))
                property.data = Data(reference: try df.object("reference"), current: try df.object("current"), method: try df.optionalString("method"),
                                     statistic: try df.optionalDouble("statistic"), threshold: try df.optionalDouble("threshold"),
                                     evaluatedAt: try df.optionalTime("evaluatedAt"))
            }
            properties.append((name, property))
        }
        self.properties = properties.sorted { $0.name < $1.name }
        guard case .array(let alerts)? = f.object["openAlerts"] else { throw .missing("/openAlerts", "openAlerts") }
        openAlerts = try alerts.enumerated().map { (i, a) throws(ContractError) in try DriftAlert(json: a, pointer: "/openAlerts/\(i)") }
        monitorFormat = Int(try f.int("monitorFormat"))
        monitor = Array(JSON.object(try f.object("monitor")).serialized())
    }
}
