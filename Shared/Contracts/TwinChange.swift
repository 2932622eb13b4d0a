import JSON

/// `TwinChange` v1 on `twin.changes.v1` (key `tenant/twinId`): what one reading or command did to
/// a twin. One per accepted reading or command, in the twin's order; `(twinId, version)` is unique
/// for `telemetry` and `command` changes, so at-least-once delivery de-duplicates on it. A
/// `rejected` change carries the twin's unchanged version and the command id: de-duplicate those
/// on `commandId`. Schema: `Schemas/contracts/twin-change/v1.json`.
public struct TwinChange: ContractDocument, Sendable, Equatable {
    public static let contract = ContractName.twinChangeV1

    public enum Kind: String, Sendable {
        /// A reading was recorded (some properties may be late, see `Entry.late`).
        case telemetry
        /// A command was applied.
        case command
        /// A command was rejected; `reason` says why and the state is unchanged.
        case rejected
    }

    /// One changed path: `/properties/<name>`, `/metadata/<key>`, `/desired/<key>`,
    /// `/parameters/<name>`, `/relationships/<name>/<target>`, `/model` or `/lifecycle`.
    public struct Entry: Sendable, Equatable {
        public var path: String
        /// The value before (absent when there was none).
        public var old: JSON?
        /// The value after (absent when removed). For a late reading: the late value, which was
        /// recorded in history but did not replace `old`.
        public var new: JSON?
        /// Event times of the old and new property values (properties only).
        public var oldTime: Int64?
        public var newTime: Int64?
        /// The reading is older than the stored value: kept in history, not applied.
        public var late: Bool

        public init(path: String, old: JSON?, new: JSON?, oldTime: Int64? = nil, newTime: Int64? = nil, late: Bool = false) {
            self.path = path
            self.old = old
            self.new = new
            self.oldTime = oldTime
            self.newTime = newTime
            self.late = late
        }
    }

    public var tenant: String
    public var twinId: String
    public var model: String?
    public var version: Int64
    public var kind: Kind
    /// When the cause entered the platform: the reading's ingest time or the command's issue time.
    public var at: Int64
    /// The reading's event id and event time (`telemetry`).
    public var eventId: String?
    public var eventTime: Int64?
    /// The command's id and type (`command`, `rejected`).
    public var commandId: String?
    public var commandType: String?
    /// The command's `cause` (e.g. the simulation id of a recalibration): why the twin changed.
    public var cause: String?
    public var changes: [Entry]
    /// Why a command was rejected.
    public var reason: ContractError?

    public init(tenant: String, twinId: String, model: String?, version: Int64, kind: Kind, at: Int64, eventId: String? = nil,
                eventTime: Int64? = nil, commandId: String? = nil, commandType: String? = nil, cause: String? = nil, changes: [Entry] = [],
                reason: ContractError? = nil) {
        self.tenant = tenant
        self.twinId = twinId
        self.model = model
        self.version = version
        self.kind = kind
        self.at = at
        self.eventId = eventId
        self.eventTime = eventTime
        self.commandId = commandId
        self.commandType = commandType
        self.cause = cause
        self.changes = changes
        self.reason = reason
    }

    public var key: String { TwinKey(tenant: tenant, twinId: twinId).description }
    /// Whether any entry is late.
    public var late: Bool { changes.contains { $0.late } }

    public func encoded() -> [UInt8] {
        // Keys spelled here, times through a memo (a reading's event time is every entry's
        // `newTime`, the previous one most entries' `oldTime`): one change event per reading.
        var w = JSONWriter(capacity: 192 + changes.count * 128)
        var times = TimeTextMemo()
        w.beginObject()
        w.knownField("tenant", tenant)
        w.knownField("twinId", twinId)
        if let model { w.knownField("model", model) }
        w.knownKey("version"); w.value(version)
        w.knownField("kind", kind.rawValue)
        w.knownKey("at"); w.time(at, memo: &times)
        if let eventId { w.knownField("eventId", eventId) }
        if let eventTime { w.knownKey("eventTime"); w.time(eventTime, memo: &times) }
        if let commandId { w.knownField("commandId", commandId) }
        if let commandType { w.knownField("commandType", commandType) }
        if let cause { w.knownField("cause", cause) }
        w.knownKey("late"); w.value(late)
        w.knownKey("changes"); w.beginArray()
        for c in changes {
            w.beginObject()
            w.knownField("path", c.path)
            if let old = c.old { w.knownKey("old"); w.value(old) }
            if let new = c.new { w.knownKey("new"); w.value(new) }
            if let t = c.oldTime { w.knownKey("oldTime"); w.time(t, memo: &times) }
            if let t = c.newTime { w.knownKey("newTime"); w.time(t, memo: &times) }
            w.knownKey("late"); w.value(c.late)
            w.endObject()
        }
        w.endArray()
        if let reason { w.knownKey("reason"); reason.write(to: &w) }
        w.endObject()
        return w.bytes
    }

    public init(json: JSON) throws(ContractError) {
        let f = try Fields(json)
        tenant = try f.string("tenant")
        twinId = try f.string("twinId")
        model = try f.optionalString("model")
        version = try f.int("version")
        guard version >= 0 else {
            throw ContractError(code: "invalid_value", pointer: "/version", message: "version must be at least 0", expected: ">= 0", actual: String(version))
        }
        let kindText = try f.string("kind")
        guard let kind = Kind(rawValue: kindText) else {
            throw ContractError(code: "invalid_value", pointer: "/kind", message: "unknown change kind", expected: "telemetry|command|rejected", actual: kindText)
        }
        self.kind = kind
        at = try f.time("at")
        eventId = try f.optionalString("eventId")
        eventTime = try f.object["eventTime"] == nil ? nil : f.time("eventTime")
        commandId = try f.optionalString("commandId")
        commandType = try f.optionalString("commandType")
        cause = try f.optionalString("cause")
        _ = try f.bool("late")  // derived from the entries; required so readers need not derive it
        guard case .array(let items)? = f.object["changes"] else { throw .missing("/changes", "changes") }
        changes = try items.enumerated().map { (i, item) throws(ContractError) in
            let cf = try Fields(item, pointer: "/changes/\(i)")
            let path = try cf.string("path")
            guard path.hasPrefix("/") else {
                throw ContractError(code: "invalid_value", pointer: cf.path("path"), message: "a change path is a JSON pointer", expected: "/…", actual: path)
            }
            return Entry(path: path, old: cf.object["old"], new: cf.object["new"],
                         oldTime: try cf.object["oldTime"] == nil ? nil : cf.time("oldTime"),
                         newTime: try cf.object["newTime"] == nil ? nil : cf.time("newTime"),
                         late: try cf.bool("late"))
        }
        reason = try f.object["reason"].map { (r) throws(ContractError) in try ContractError(json: r, pointer: "/reason") }
        switch kind {
        case .telemetry where eventId == nil: throw .missing("/eventId", "eventId")
        case .telemetry where eventTime == nil: throw .missing("/eventTime", "eventTime")
        case .rejected where reason == nil: throw .missing("/reason", "reason")
        case .rejected where commandId == nil: throw .missing("/commandId", "commandId")
        default: break
        }
    }
}
