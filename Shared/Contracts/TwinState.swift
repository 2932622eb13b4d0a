import JSON

/// `TwinState` v1 on `twin.state.v1` (compacted, key `tenant/twinId`): the full current state of
/// one twin. An empty value (tombstone) means the twin was decommissioned.
/// Schema: `Schemas/contracts/twin-state/v1.json`.
public struct TwinState: Sendable, Equatable {
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

    public var tenant: String
    public var twinId: String
    public var model: String?
    /// Increases by one with every applied change: the ETag readers see.
    public var version: Int64
    public var updatedAt: Int64
    /// Property name → latest value, in first-seen order.
    public var properties: [(name: String, property: Property)]

    public init(tenant: String, twinId: String, model: String? = nil, version: Int64 = 0, updatedAt: Int64 = 0,
                properties: [(name: String, property: Property)] = []) {
        self.tenant = tenant
        self.twinId = twinId
        self.model = model
        self.version = version
        self.updatedAt = updatedAt
        self.properties = properties
    }

    public var key: String { twinKey(tenant: tenant, twinId: twinId) }

    public subscript(property name: String) -> Property? {
        properties.first { $0.name == name }?.property
    }

    public func encoded() -> [UInt8] {
        var w = JSONWriter(capacity: 128 + properties.count * 128)
        w.beginObject()
        w.field("tenant", tenant)
        w.field("twinId", twinId)
        if let model { w.field("model", model) }
        w.key("version"); w.value(version)
        w.field("updatedAt", Timestamp.format(updatedAt))
        w.key("properties"); w.beginObject()
        for (name, p) in properties {
            w.key(name); w.beginObject()
            w.key("value"); w.value(p.value)
            if let unit = p.unit { w.field("unit", unit) }
            w.field("eventTime", Timestamp.format(p.eventTime))
            w.field("ingestTime", Timestamp.format(p.ingestTime))
            w.field("eventId", p.eventId)
            w.endObject()
        }
        w.endObject()
        w.endObject()
        return w.bytes
    }

    public init(bytes: [UInt8]) throws(ContractError) {
        try self.init(json: parseDocument(bytes))
    }

    public init(json: JSON) throws(ContractError) {
        let f = try Fields(json)
        tenant = try f.string("tenant")
        twinId = try f.string("twinId")
        model = try f.optionalString("model")
        version = try f.int("version")
        updatedAt = try f.time("updatedAt")
        var properties: [(name: String, property: Property)] = []
        for (name, value) in try f.object("properties") {
            let pf = try Fields(value, pointer: f.path("properties") + "/" + name)
            guard let v = pf.object["value"] else { throw .missing(pf.path("value"), "value") }
            properties.append((name, Property(value: v, unit: try pf.optionalString("unit"), eventTime: try pf.time("eventTime"),
                                              ingestTime: try pf.time("ingestTime"), eventId: try pf.string("eventId"))))
        }
        self.properties = properties
    }

    public static func == (a: TwinState, b: TwinState) -> Bool {
        a.tenant == b.tenant && a.twinId == b.twinId && a.model == b.model && a.version == b.version
            && a.updatedAt == b.updatedAt && a.properties.elementsEqual(b.properties) { $0.name == $1.name && $0.property == $1.property }
    }
}
