import JSON

/// What producers send to `telemetry.raw.v1` and `POST /v1/telemetry`: lenient on purpose.
/// `{"twinId": "pump-17", "ts": "2026-11-21T08:00:00.250Z" | 1763712000250, "values": {...}}`,
/// optionally `eventId`, `model` (`pump@1`) and `units` (`{"temperature": "degF"}`).
public struct RawReading: Sendable, Equatable {
    public var twinId: String
    public var eventTime: Int64
    public var values: JSONObject
    public var eventId: String?
    public var model: String?
    public var units: [String: String]

    public init(twinId: String, eventTime: Int64, values: JSONObject, eventId: String? = nil, model: String? = nil, units: [String: String] = [:]) {
        self.twinId = twinId
        self.eventTime = eventTime
        self.values = values
        self.eventId = eventId
        self.model = model
        self.units = units
    }

    /// Reads one reading from a JSON value; `pointer` locates it inside its message (e.g. `/3`
    /// for the fourth element of an array) so every reason points at the right place.
    public init(json: JSON, pointer: String = "") throws(ContractError) {
        let f = try Fields(json, pointer: pointer)
        twinId = try f.string("twinId")
        guard TwinID.isValid(twinId) else {
            throw ContractError(code: "invalid_twin_id", pointer: f.path("twinId"),
                                message: "twin ids are 1-128 characters of letters, digits and . _ - :",
                                expected: "[A-Za-z0-9._:-]{1,128}", actual: twinId)
        }
        guard let ts = f.object["ts"], !ts.isNull else { throw .missing(f.path("ts"), "ts") }
        switch ts {
        case .string(let text):
            guard let ms = Timestamp.parse(text) else {
                throw ContractError(code: "invalid_timestamp", pointer: f.path("ts"), message: "'\(text)' is not an RFC 3339 date-time",
                                    expected: "RFC 3339 date-time or epoch milliseconds", actual: text)
            }
            eventTime = ms
        case .number(let n):
            guard let ms = n.int64Value, ms >= 0, ms < 253_402_300_800_000 else {
                throw ContractError(code: "invalid_timestamp", pointer: f.path("ts"), message: "epoch milliseconds must be a non-negative integer before year 10000",
                                    expected: "epoch milliseconds", actual: n.description)
            }
            eventTime = ms
        default:
            throw .wrongType(f.path("ts"), expected: "RFC 3339 string or epoch milliseconds", actual: ts)
        }
        values = try f.object("values")
        guard !values.isEmpty else {
            throw ContractError(code: "invalid_value", pointer: f.path("values"), message: "a reading needs at least one value", expected: "non-empty object")
        }
        for (name, value) in values {
            switch value {
            case .number, .bool, .string: continue
            default: throw .wrongType(f.path("values") + "/" + name, expected: "number, boolean or string", actual: value)
            }
        }
        eventId = try f.optionalString("eventId")
        if let id = eventId, id.isEmpty || id.utf8.count > 128 {
            throw ContractError(code: "invalid_value", pointer: f.path("eventId"), message: "eventId must be 1-128 characters", actual: id)
        }
        model = try f.optionalString("model")
        var units: [String: String] = [:]
        for (name, unit) in try f.optionalObject("units") ?? [:] {
            guard case .string(let u) = unit else { throw .wrongType(f.path("units") + "/" + name, expected: "string", actual: unit) }
            units[name] = u
        }
        self.units = units
    }

    /// The reading in `bytes` (one JSON object) when it is well-formed, else nil — then
    /// `init(json:)` on the parsed tree says what is wrong. Read member by member, without a
    /// JSON tree or a string for the time, and accepting exactly what `init(json:)` accepts.
    public static func readDirectly(_ bytes: [UInt8]) -> RawReading? {
        try? JSONMemberReader.read(bytes) { r in
            var twinId: String?, eventTime: Int64?, values: JSONObject?, eventId: String?, model: String?, units: [String: String] = [:]
            try r.beginObject()
            while let key = try r.nextKey() {
                if key == "twinId" { twinId = try r.requireString() }
                else if key == "values" { values = try r.requireObject() }
                else if key == "eventId" { eventId = try r.requireOptionalString() }
                else if key == "model" { model = try r.requireOptionalString() }
                else if key == "units" { units = try r.requireStringMap(nullable: true) }
                else if key == "ts" {
                    if r.nextValueIsString() {
                        eventTime = try r.requireTime()
                    } else {
                        guard case .number(let n) = try r.readValue(), let ms = n.int64Value, ms >= 0, ms < 253_402_300_800_000 else {
                            throw NotDirectlyReadable()
                        }
                        eventTime = ms
                    }
                } else {
                    try r.skipValue()
                }
            }
            try r.finish()
            guard let twinId, TwinID.isValid(twinId), let eventTime, let values, !values.isEmpty, areScalars(values) else { throw NotDirectlyReadable() }
            if let eventId, eventId.isEmpty || eventId.utf8.count > 128 { throw NotDirectlyReadable() }
            return RawReading(twinId: twinId, eventTime: eventTime, values: values, eventId: eventId, model: model, units: units)
        }
    }

    /// The envelope's Kafka key and bytes. The values are serialized once: the same bytes make
    /// the deterministic event id and the envelope's `values`.
    public func encodedEnvelope(tenant: String, ingestTime: Int64, source: TelemetryEnvelope.Source) -> (key: [UInt8], value: [UInt8]) {
        (TwinKey(tenant: tenant, twinId: twinId).bytes,
         TelemetryEnvelope.encode(eventId: eventId, tenant: tenant, twinId: twinId, model: model, eventTime: eventTime, ingestTime: ingestTime,
                                  source: source, values: values, units: units))
    }
}
