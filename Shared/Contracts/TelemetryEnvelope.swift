import JSON

/// `TelemetryEnvelope` v1: one reading of one twin, as the ingestor accepted it.
/// Schema: `Schemas/contracts/telemetry-envelope/v1.json`. Carried on `telemetry.ingested.v1`
/// and (values in model units) `telemetry.valid.v1`, keyed `tenant/twinId`.
public struct TelemetryEnvelope: ContractDocument, Sendable, Equatable {
    public static let contract = ContractName.telemetryEnvelopeV1

    /// Where the ingestor got the reading.
    public struct Source: Sendable, Equatable {
        /// `kafka` or `http`.
        public var kind: String
        /// `topic/partition/offset` for Kafka, the request id for HTTP.
        public var ref: String {
            get {
                switch storedRef {
                case .text(let text): text
                case .record(let topic, let partition, let offset): "\(topic)/\(partition)/\(offset)"
                }
            }
            set { storedRef = .text(newValue) }
        }
        private var storedRef: Ref

        /// A Kafka record's reference is kept as its parts and written into the envelope from
        /// them: the ingestor makes no string of it per reading.
        private enum Ref: Sendable {
            case text(String)
            case record(topic: String, partition: Int32, offset: Int64)
        }

        public init(kind: String, ref: String) {
            self.kind = kind
            storedRef = .text(ref)
        }

        /// The source of a reading read from Kafka: kind `kafka`, ref `topic/partition/offset`.
        public static func kafka(topic: String, partition: Int32, offset: Int64) -> Source {
            var source = Source(kind: "kafka", ref: "")
            source.storedRef = .record(topic: topic, partition: partition, offset: offset)
            return source
        }

        public static func == (a: Source, b: Source) -> Bool { a.kind == b.kind && a.ref == b.ref }

        /// Upper bound of the reference's encoded length, quotes included (escapes aside).
        var refCapacity: Int {
            switch storedRef {
            case .text(let text): text.utf8.count + 2
            case .record(let topic, _, _): topic.utf8.count + 34
            }
        }

        /// Writes the reference as a JSON string.
        func writeRef(to w: inout JSONWriter) {
            switch storedRef {
            case .text(let text):
                w.value(text)
            case .record(let topic, let partition, let offset):
                w.rawValue { bytes in
                    JSON.appendQuoted(topic, to: &bytes)
                    bytes[bytes.count - 1] = UInt8(ascii: "/")  // the closing quote comes after the numbers
                    JSONNumber.withDigits(of: Int64(partition)) { bytes.append(contentsOf: $0) }
                    bytes.append(UInt8(ascii: "/"))
                    JSONNumber.withDigits(of: offset) { bytes.append(contentsOf: $0) }
                    bytes.append(UInt8(ascii: "\""))
                }
            }
        }
    }

    /// Producer-given or derived (see `deterministicEventId`): equal ids are the same reading.
    public var eventId: String
    public var tenant: String
    public var twinId: String
    /// The model and version the producer claims, e.g. `pump@1`.
    public var model: String?
    /// When the reading was taken, ms since the epoch.
    public var eventTime: Int64
    /// When the ingestor accepted it, ms since the epoch.
    public var ingestTime: Int64
    public var source: Source
    /// Property name → scalar value (number, boolean or string).
    public var values: JSONObject
    /// Property name → unit the producer used, when not the model's.
    public var units: [String: String]

    public init(eventId: String, tenant: String, twinId: String, model: String? = nil, eventTime: Int64,
                ingestTime: Int64, source: Source, values: JSONObject, units: [String: String] = [:]) {
        self.eventId = eventId
        self.tenant = tenant
        self.twinId = twinId
        self.model = model
        self.eventTime = eventTime
        self.ingestTime = ingestTime
        self.source = source
        self.values = values
        self.units = units
    }

    /// The Kafka key: `tenant/twinId`.
    public var key: String { TwinKey(tenant: tenant, twinId: twinId).description }

    /// Compact JSON, fields in a fixed order, values in canonical (sorted) key order.
    public func encoded() -> [UInt8] {
        Self.encode(eventId: eventId, tenant: tenant, twinId: twinId, model: model, eventTime: eventTime, ingestTime: ingestTime,
                    source: source, values: values, units: units)
    }

    /// The values object as compact JSON with sorted keys: the bytes both the envelope and the
    /// deterministic event id are made of, so equal readings are equal bytes.
    public static func canonical(_ values: JSONObject) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(values.count * 24 + 2)
        appendCanonical(values, to: &bytes)
        return bytes
    }

    /// Appends `canonical(values)` to `bytes` (the envelope writer puts them in place).
    static func appendCanonical(_ values: JSONObject, to bytes: inout [UInt8]) {
        JSON.object(values).append(to: &bytes, options: .sortedKeys)
    }

    /// Hex digits of a deterministic event id (a 16-byte prefix of the hash).
    static let deterministicIdLength = 32

    /// The envelope's bytes (see `encoded()`). Without an `eventId`, the deterministic one
    /// (`deterministicEventId`) is hashed from the values as they were just written and filled
    /// into the room left for it: the values are written once, and no string is made for the id.
    static func encode(eventId: String?, tenant: String, twinId: String, model: String?, eventTime: Int64, ingestTime: Int64,
                       source: Source, values: JSONObject, units: [String: String]) -> [UInt8] {
        // The fixed text (names, punctuation, two 24-byte times, the source kind) is under 200
        // bytes; too small a guess costs a second allocation and a copy of every envelope.
        var capacity = 200 + (eventId?.utf8.count ?? Self.deterministicIdLength) + tenant.utf8.count + twinId.utf8.count
            + (model?.utf8.count ?? 0) + source.refCapacity + (units.isEmpty ? 0 : 16 + units.count * 24)
        for (name, value) in values {
            capacity += name.utf8.count + 4 + (value.stringValue.map { $0.utf8.count + 2 } ?? 24)
        }
        var w = JSONWriter(capacity: capacity)
        w.beginObject()
        w.knownKey("eventId")
        var idStart: Int?
        if let eventId {
            w.value(eventId)
        } else {
            w.rawValue { bytes in
                bytes.append(UInt8(ascii: "\""))
                idStart = bytes.count
                bytes.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: Self.deterministicIdLength))
                bytes.append(UInt8(ascii: "\""))
            }
        }
        w.knownField("tenant", tenant)
        w.knownField("twinId", twinId)
        if let model { w.knownField("model", model) }
        w.knownKey("eventTime"); w.time(eventTime)
        w.knownKey("ingestTime"); w.time(ingestTime)
        w.knownKey("source"); w.beginObject(); w.knownField("kind", source.kind); w.knownKey("ref"); source.writeRef(to: &w); w.endObject()
        w.knownKey("values")
        var valuesStart = 0
        w.rawValue { bytes in
            valuesStart = bytes.count
            appendCanonical(values, to: &bytes)
        }
        let valuesEnd = w.bytes.count
        if !units.isEmpty {
            w.knownKey("units"); w.beginObject()
            for (name, unit) in units.sorted(by: { $0.key < $1.key }) { w.field(name, unit) }
            w.endObject()
        }
        w.endObject()
        if let idStart {
            w.bytes.withUnsafeMutableBufferPointer { buffer in
                var hasher = idHasher(tenant: tenant, twinId: twinId, eventTime: eventTime)
                hasher.update(UnsafeRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buffer[valuesStart..<valuesEnd])))
                hasher.finalizeHex(prefix: Self.deterministicIdLength / 2,
                                   into: UnsafeMutableBufferPointer(rebasing: buffer[idStart..<(idStart + Self.deterministicIdLength)]))
            }
        }
        return w.bytes
    }

    /// Decodes an envelope from its bytes (syntax errors become `invalid_json`). An envelope as
    /// the ingestor writes it is read member by member, without a JSON tree or a string per
    /// time; anything unusual (a field missing, mistyped or null, invalid JSON) takes the
    /// general path, which accepts exactly the same documents and names what is wrong.
    public init(bytes: [UInt8]) throws(ContractError) {
        if let envelope = Self.readDirectly(bytes) {
            self = envelope
        } else {
            try self.init(json: parseDocument(bytes))
        }
    }

    /// The envelope in `bytes` when it is well-formed, else nil (see `init(bytes:)`).
    static func readDirectly(_ bytes: [UInt8]) -> TelemetryEnvelope? {
        readDirectly(bytes, identity: true).map { f in
            TelemetryEnvelope(eventId: f.eventId, tenant: f.contents.tenant, twinId: f.contents.twinId, model: f.contents.model,
                              eventTime: f.eventTime, ingestTime: f.ingestTime, source: Source(kind: f.kind, ref: f.ref),
                              values: f.contents.values, units: f.contents.units)
        }
    }

    /// What a stage that forwards an envelope's bytes reads of it: whose reading it is and its
    /// values. (The rest is checked, not kept.)
    public struct Contents: Sendable, Equatable {
        public var tenant: String
        public var twinId: String
        public var model: String?
        public var values: JSONObject
        public var units: [String: String]

        public init(tenant: String, twinId: String, model: String?, values: JSONObject, units: [String: String]) {
            self.tenant = tenant
            self.twinId = twinId
            self.model = model
            self.values = values
            self.units = units
        }
    }

    /// The `source` of the envelope in `bytes` when it arrived over HTTP (its ref is the request
    /// id), nil otherwise or when the bytes are not an envelope.
    public static func httpSource(of bytes: [UInt8]) -> Source? {
        guard let envelope = try? TelemetryEnvelope(bytes: bytes), envelope.source.kind == "http" else { return nil }
        return envelope.source
    }

    /// The contents of the envelope in `bytes`, which are checked exactly as `init(bytes:)` checks
    /// them and fail with the same errors; the event id and the source are not copied out.
    public static func contents(of bytes: [UInt8]) throws(ContractError) -> Contents {
        if let fields = readDirectly(bytes, identity: false) { return fields.contents }
        let envelope = try TelemetryEnvelope(json: parseDocument(bytes))
        return Contents(tenant: envelope.tenant, twinId: envelope.twinId, model: envelope.model, values: envelope.values, units: envelope.units)
    }

    /// The direct reader behind `readDirectly` and `contents(of:)`: member by member, nil for
    /// anything unusual. Without `identity`, the event id and source strings are checked in place
    /// (non-empty id, string ref) and left empty here.
    private static func readDirectly(_ bytes: [UInt8], identity: Bool)
        -> (contents: Contents, eventId: String, eventTime: Int64, ingestTime: Int64, kind: String, ref: String)? {
        try? JSONMemberReader.read(bytes) { r in
            var eventId: String?, tenant: String?, twinId: String?, model: String?, kind: String?, ref: String?
            var eventTime: Int64?, ingestTime: Int64?, values: JSONObject?, units: [String: String] = [:]
            /// A string member the caller may not want: "" stands for any string when it does not.
            func identityString() throws -> String {
                if identity { return try r.requireString() }
                guard let bytes = try r.readStringBytes() else { throw NotDirectlyReadable() }
                return bytes.count == 0 ? "" : " "
            }
            try r.beginObject()
            while let key = try r.nextKey() {
                if key == "eventId" { eventId = try identityString() }
                else if key == "tenant" { tenant = try r.requireString() }
                else if key == "twinId" { twinId = try r.requireString() }
                else if key == "model" { model = try r.requireString() }
                else if key == "eventTime" { eventTime = try r.requireTime() }
                else if key == "ingestTime" { ingestTime = try r.requireTime() }
                else if key == "values" { values = try r.requireObject() }
                else if key == "units" { units = try r.requireStringMap(nullable: false) }
                else if key == "source" {
                    (kind, ref) = (nil, nil)  // a repeated member replaces the whole object
                    try r.beginObject()
                    while let key = try r.nextKey() {
                        if key == "kind" { kind = try r.requireString() }
                        else if key == "ref" { ref = try identityString() }
                        else { try r.skipValue() }
                    }
                } else {
                    try r.skipValue()
                }
            }
            try r.finish()
            guard let eventId, let tenant, let twinId, let eventTime, let ingestTime, let kind, let ref, let values,
                  !eventId.isEmpty, !tenant.isEmpty, TwinID.isValid(twinId), areScalars(values) else { throw NotDirectlyReadable() }
            return (Contents(tenant: tenant, twinId: twinId, model: model, values: values, units: units),
                    identity ? eventId : "", eventTime, ingestTime, kind, identity ? ref : "")
        }
    }

    public init(json: JSON) throws(ContractError) {
        let f = try Fields(json)
        eventId = try f.string("eventId")
        tenant = try f.string("tenant")
        twinId = try f.string("twinId")
        model = try f.optionalString("model")
        eventTime = try f.time("eventTime")
        ingestTime = try f.time("ingestTime")
        let s = try Fields(.object(try f.object("source")), pointer: "/source")
        source = Source(kind: try s.string("kind"), ref: try s.string("ref"))
        values = try f.object("values")
        for (name, value) in values {
            switch value {
            case .number, .bool, .string: continue
            default: throw .wrongType(f.path("values") + "/" + name, expected: "number, boolean or string", actual: value)
            }
        }
        var units: [String: String] = [:]
        for (name, unit) in try f.optionalObject("units") ?? [:] {
            guard case .string(let u) = unit else { throw .wrongType("/units/\(name)", expected: "string", actual: unit) }
            units[name] = u
        }
        self.units = units
        guard !eventId.isEmpty, TwinID.isValid(twinId), !tenant.isEmpty else {
            throw ContractError(code: "invalid_value", pointer: "", message: "eventId, tenant and twinId must be non-empty and twinId well-formed")
        }
    }

    /// The id of a reading the producer gave none: the same tenant, twin, time and values always
    /// give the same id, so a producer's retry is recognised downstream.
    /// (The ingestor's envelopes get the same id from `encode`, hashed in place.)
    public static func deterministicEventId(tenant: String, twinId: String, eventTime: Int64, values: JSONObject) -> String {
        var hasher = idHasher(tenant: tenant, twinId: twinId, eventTime: eventTime)
        canonical(values).withUnsafeBytes { hasher.update($0) }
        return hasher.finalizeHex(prefix: Self.deterministicIdLength / 2)
    }

    /// The id's hash up to the values: one hash of tenant NUL twinId NUL eventTime NUL
    /// canonical(values).
    private static func idHasher(tenant: String, twinId: String, eventTime: Int64) -> SHA256 {
        var hasher = SHA256()
        var nul: UInt8 = 0
        withUnsafeBytes(of: &nul) { nul in
            hasher.update(tenant)
            hasher.update(nul)
            hasher.update(twinId)
            hasher.update(nul)
            JSONNumber.withDigits(of: eventTime) { hasher.update($0) }
            hasher.update(nul)
        }
        return hasher
    }
}

/// The rule for twin ids: 1–128 characters of letters, digits and `. _ - :`. No `/`, because the
/// Kafka key is `tenant/twinId`, and nothing that needs escaping in a URL path.
public enum TwinID {
    public static func isValid(_ id: String) -> Bool {
        isName(id, maxLength: 128) { $0 == 46 || $0 == 95 || $0 == 45 || $0 == 58 }  // . _ - :
    }
}

/// The rule for tenant names: 1–64 characters of letters, digits, `_` and `-`. Tenants appear in
/// Kafka keys (`tenant/twinId`), metric labels and API key files, so nothing that needs escaping.
public enum TenantID {
    public static func isValid(_ tenant: String) -> Bool {
        isName(tenant, maxLength: 64) { $0 == 95 || $0 == 45 }  // _ -
    }
}

/// True when `name` has 1...`maxLength` bytes, each an ASCII letter or digit or one `also`
/// allows. Over the string's bytes in memory: it runs for every reading.
@inline(__always)
private func isName(_ name: String, maxLength: Int, also: (UInt8) -> Bool) -> Bool {
    var name = name
    return name.withUTF8 { utf8 in
        guard (1...maxLength).contains(utf8.count) else { return false }
        return utf8.allSatisfy { c in (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || also(c) }
    }
}
