import JSON

/// `TwinState` v1 on `twin.state.v1` (compacted, key `tenant/twinId`): the full current state of
/// one twin. An empty value (tombstone) means the twin was decommissioned.
/// Schema: `Schemas/contracts/twin-state/v1.json`.
///
/// The document also carries `sync`, the state-updater's restore bookkeeping (input offsets and
/// recent event ids), so that a twin restored from this topic de-duplicates exactly like the
/// instance that wrote it. Readers ignore it.
public struct TwinState: ContractDocument, Sendable, Equatable {
    public static let contract = ContractName.twinStateV1

    /// The latest value of one property and where it came from.
    public struct Property: Sendable, Equatable {
        public var value: JSON
        public var unit: String?
        public var eventTime: Int64
        public var ingestTime: Int64
        public var eventId: String

        public init(value: JSON, unit: String? = nil, eventTime: Int64, ingestTime: Int64, eventId: String) {
            self.value = value
            self.unit = unit
            self.eventTime = eventTime
            self.ingestTime = ingestTime
            self.eventId = eventId
        }
    }

    /// A typed link to another twin of the same tenant.
    public struct Relationship: Sendable, Hashable, Comparable {
        public var name: String
        public var target: String
        public init(name: String, target: String) {
            self.name = name
            self.target = target
        }
        public static func < (a: Self, b: Self) -> Bool { (a.name, a.target) < (b.name, b.target) }
    }

    /// Restore bookkeeping: the last applied offsets of the twin's input partitions
    /// (`-1` for none) and the 64-bit hashes of its most recent event and command ids.
    public struct Sync: Sendable, Equatable {
        public var telemetryOffset: Int64
        public var commandOffset: Int64
        public var recent: [UInt64]
        public init(telemetryOffset: Int64 = -1, commandOffset: Int64 = -1, recent: [UInt64] = []) {
            self.telemetryOffset = telemetryOffset
            self.commandOffset = commandOffset
            self.recent = recent
        }
    }

    public var tenant: String
    public var twinId: String
    public var model: String?
    /// Increases by one with every change event (see `TwinChange`): the ETag readers see.
    public var version: Int64
    /// The ingest or issue time of the last change's cause (deterministic, not a wall clock).
    public var updatedAt: Int64
    /// Whether a `create` command made the twin (else its first reading did).
    public var created: Bool
    /// Only in checkpoints: the twin was decommissioned (on the topic that is a tombstone).
    public var decommissioned: Bool
    /// Property name → latest value, sorted by name.
    public var properties: [(name: String, property: Property)]
    /// The model's `required` telemetry the twin has never reported, in the model's order: the twin
    /// is incomplete while this is not empty. Written only when not empty.
    public var missing: [String]
    public var metadata: JSONObject
    public var desired: JSONObject
    /// Parameter values set for this twin (the model's defaults apply to the others).
    public var parameters: JSONObject
    /// Sorted by name, then target.
    public var relationships: [Relationship]
    public var sync: Sync

    public init(tenant: String, twinId: String, model: String? = nil, version: Int64 = 0, updatedAt: Int64 = 0,
                created: Bool = false, decommissioned: Bool = false, properties: [(name: String, property: Property)] = [],
                missing: [String] = [], metadata: JSONObject = [:], desired: JSONObject = [:], parameters: JSONObject = [:],
                relationships: [Relationship] = [], sync: Sync = Sync()) {
        self.tenant = tenant
        self.twinId = twinId
        self.model = model
        self.version = version
        self.updatedAt = updatedAt
        self.created = created
        self.decommissioned = decommissioned
        self.properties = properties
        self.missing = missing
        self.metadata = metadata
        self.desired = desired
        self.parameters = parameters
        self.relationships = relationships
        self.sync = sync
    }

    public var key: String { TwinKey(tenant: tenant, twinId: twinId).description }

    public subscript(property name: String) -> Property? {
        properties.first { $0.name == name }?.property
    }

    public func encoded() -> [UInt8] {
        var w = JSONWriter(capacity: 256 + properties.count * 140)
        write(to: &w)
        return w.bytes
    }

    /// Writes the document; `unit` supplies units the properties do not carry (from the model).
    public func write(to w: inout JSONWriter, unit: (String) -> String? = { _ in nil }) {
        Self.write(to: &w, tenant: tenant, twinId: twinId, model: model, version: version, updatedAt: updatedAt, created: created,
                   decommissioned: decommissioned, propertyCount: properties.count, property: { i in
                       let (name, p) = properties[i]
                       return (name, p.value, p.unit ?? unit(name), p.eventTime, p.ingestTime, p.eventId)
                   }, missing: missing, metadata: metadata, desired: desired, parameters: parameters, relationships: relationships,
                   sync: sync)
    }

    /// Writes a document from its parts, so that a holder of the same data in another shape (the
    /// state-updater's records) writes the same bytes without building a `TwinState` first.
    /// `property(i)` is the i-th property, in name order.
    @inlinable
    public static func write(to w: inout JSONWriter, tenant: String, twinId: String, model: String?, version: Int64, updatedAt: Int64,
                             created: Bool, decommissioned: Bool, propertyCount: Int,
                             property: (Int) -> (name: String, value: JSON, unit: String?, eventTime: Int64, ingestTime: Int64, eventId: String),
                             missing: [String], metadata: JSONObject, desired: JSONObject, parameters: JSONObject,
                             relationships: [Relationship], sync: Sync) {
        w.beginObject()
        w.knownField("tenant", tenant)
        w.knownField("twinId", twinId)
        if let model { w.knownField("model", model) }
        w.knownKey("version"); w.value(version)
        var times = TimeTextMemo()  // a reading's two times repeat in every property it set
        w.knownKey("updatedAt"); w.time(updatedAt, memo: &times)
        w.knownKey("created"); w.value(created)
        if decommissioned { w.knownKey("decommissioned"); w.value(true) }
        w.knownKey("properties"); w.beginObject()
        for i in 0..<propertyCount {
            let p = property(i)
            w.key(p.name); w.beginObject()
            w.knownKey("value"); w.value(p.value)
            if let unit = p.unit { w.knownField("unit", unit) }
            w.knownKey("eventTime"); w.time(p.eventTime, memo: &times)
            w.knownKey("ingestTime"); w.time(p.ingestTime, memo: &times)
            w.knownField("eventId", p.eventId)
            w.endObject()
        }
        w.endObject()
        if !missing.isEmpty {
            w.knownKey("missing"); w.beginArray()
            for name in missing { w.value(name) }
            w.endArray()
        }
        if !metadata.isEmpty { w.knownKey("metadata"); w.value(.object(metadata)) }
        if !desired.isEmpty { w.knownKey("desired"); w.value(.object(desired)) }
        if !parameters.isEmpty { w.knownKey("parameters"); w.value(.object(parameters)) }
        if !relationships.isEmpty {
            w.knownKey("relationships"); w.beginArray()
            for r in relationships {
                w.beginObject(); w.knownField("name", r.name); w.knownField("target", r.target); w.endObject()
            }
            w.endArray()
        }
        w.knownKey("sync"); w.beginObject()
        w.knownKey("telemetryOffset"); w.value(sync.telemetryOffset)
        w.knownKey("commandOffset"); w.value(sync.commandOffset)
        w.knownKey("recent"); w.beginArray()
        // Sixteen hex digits straight into the buffer: a String per id was a tenth of a document.
        for id in sync.recent { w.rawValue { appendQuotedHex16(id, to: &$0) } }
        w.endArray()
        w.endObject()
        w.endObject()
    }

    public init(json: JSON) throws(ContractError) {
        let f = try Fields(json)
        tenant = try f.string("tenant")
        twinId = try f.string("twinId")
        model = try f.optionalString("model")
        version = try f.int("version")
        updatedAt = try f.time("updatedAt")
        created = f.object["created"]?.boolValue ?? false
        decommissioned = f.object["decommissioned"]?.boolValue ?? false
        var properties: [(name: String, property: Property)] = []
        let propertiesObject = try f.object("properties")
        properties.reserveCapacity(propertiesObject.count)
        let propertiesPath = f.path("properties")
        for (name, value) in propertiesObject {
            let pf = try Fields(value, pointer: propertiesPath + "/" + JSONPointer.escape(name))
            guard let v = pf.object["value"] else { throw .missing(pf.path("value"), "value") }
            properties.append((name, Property(value: v, unit: try pf.optionalString("unit"), eventTime: try pf.time("eventTime"),
                                              ingestTime: try pf.time("ingestTime"), eventId: try pf.string("eventId"))))
        }
        self.properties = properties
        var missing: [String] = []
        if let items = f.object["missing"] {
            guard case .array(let array) = items else { throw .wrongType("/missing", expected: "array", actual: items) }
            for (i, item) in array.enumerated() {
                guard case .string(let name) = item else { throw .wrongType("/missing/\(i)", expected: "string", actual: item) }
                missing.append(name)
            }
        }
        self.missing = missing
        metadata = try f.optionalObject("metadata") ?? [:]
        desired = try f.optionalObject("desired") ?? [:]
        parameters = try f.optionalObject("parameters") ?? [:]
        var relationships: [Relationship] = []
        if let items = f.object["relationships"] {
            guard case .array(let array) = items else { throw .wrongType("/relationships", expected: "array", actual: items) }
            for (i, item) in array.enumerated() {
                let rf = try Fields(item, pointer: "/relationships/\(i)")
                relationships.append(Relationship(name: try rf.string("name"), target: try rf.string("target")))
            }
        }
        self.relationships = relationships
        if let s = try f.optionalObject("sync") {
            let sf = try Fields(.object(s), pointer: "/sync")
            var recent: [UInt64] = []
            for case .string(let text) in s["recent"]?.arrayValue ?? [] {
                guard let id = UInt64(text, radix: 16) else {
                    throw ContractError(code: "invalid_value", pointer: "/sync/recent", message: "ids are 16 hex digits", actual: text)
                }
                recent.append(id)
            }
            sync = Sync(telemetryOffset: try sf.int("telemetryOffset"), commandOffset: try sf.int("commandOffset"), recent: recent)
        } else {
            sync = Sync()
        }
    }

    public static func == (a: TwinState, b: TwinState) -> Bool {
        a.tenant == b.tenant && a.twinId == b.twinId && a.model == b.model && a.version == b.version
            && a.updatedAt == b.updatedAt && a.created == b.created && a.decommissioned == b.decommissioned
            && a.properties.elementsEqual(b.properties) { $0.name == $1.name && $0.property == $1.property } && a.missing == b.missing
            && a.metadata == b.metadata && a.desired == b.desired && a.parameters == b.parameters
            && a.relationships == b.relationships && a.sync == b.sync
    }
}

/// `"` 16 lowercase hex digits `"`, as `hex16` spells them.
@inlinable
public func appendQuotedHex16(_ value: UInt64, to bytes: inout [UInt8]) {
    var text: (UInt64, UInt64, UInt64) = (0, 0, 0)
    withUnsafeMutableBytes(of: &text) { out in
        out[0] = UInt8(ascii: "\"")
        for i in 0..<16 {
            let nibble = UInt8(truncatingIfNeeded: value >> (60 - 4 * UInt64(i))) & 0xF
            out[1 + i] = nibble < 10 ? UInt8(ascii: "0") &+ nibble : UInt8(ascii: "a") &+ (nibble &- 10)
        }
        out[17] = UInt8(ascii: "\"")
    }
    withUnsafeBytes(of: &text) { bytes.append(contentsOf: $0[0..<18]) }
}

/// 16 lowercase hex digits.
func hex16(_ value: UInt64) -> String {
    let text = String(value, radix: 16)
    return String(repeating: "0", count: 16 - text.utf8.count) + text
}
