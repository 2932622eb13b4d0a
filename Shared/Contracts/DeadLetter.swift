import Foundation
import JSON

/// `DeadLetter` v1 on `telemetry.deadletter.v1`: a message a stage could not process, with its
/// original bytes and every reason. Schema: `Schemas/contracts/dead-letter/v1.json`.
public struct DeadLetter: ContractDocument, Sendable, Equatable {
    public static let contract = ContractName.deadLetterV1

    /// One machine-readable reason: the same code, pointer, expected and actual a contract check
    /// reports, so a decoding failure becomes a reason without conversion.
    public typealias Reason = ContractError

    /// Where the original message was read.
    public struct Origin: Sendable, Equatable {
        public var topic: String
        public var partition: Int32
        public var offset: Int64
        public init(topic: String, partition: Int32, offset: Int64) {
            self.topic = topic
            self.partition = partition
            self.offset = offset
        }
    }

    /// `ingestor` or `validator`.
    public var stage: String
    public var tenant: String
    public var twinId: String?
    public var model: String?
    public var origin: Origin?
    /// How the input arrived when it was not read from Kafka: `http` with the request id as `ref`
    /// (the id the client got back in its 202 answer). Added in v1.1; readers ignore it if unknown.
    public var source: TelemetryEnvelope.Source?
    public var deadLetteredAt: Int64
    public var reasons: [Reason]
    /// The bytes exactly as received (for a reading of a batch, that reading's bytes), or, when
    /// `truncation` is set, their first bytes only.
    public var original: [UInt8]
    /// Set when the original did not fit the dead-letter topic's limit: `original` is a prefix and
    /// this says what the whole was (its size and SHA-256); the whole is still on `origin`'s topic
    /// for that topic's retention. Added in v1.2; readers ignore it if unknown.
    public var truncation: Truncation?

    /// What a truncated original was.
    public struct Truncation: Sendable, Equatable {
        /// The whole original's size in bytes.
        public var size: Int
        /// SHA-256 of the whole original, lowercase hex.
        public var sha256: String
        public init(size: Int, sha256: String) {
            self.size = size
            self.sha256 = sha256
        }
    }

    public init(stage: String, tenant: String, twinId: String? = nil, model: String? = nil, origin: Origin? = nil,
                source: TelemetryEnvelope.Source? = nil, deadLetteredAt: Int64, reasons: [Reason], original: [UInt8],
                truncation: Truncation? = nil) {
        self.stage = stage
        self.tenant = tenant
        self.twinId = twinId
        self.model = model
        self.origin = origin
        self.source = source
        self.deadLetteredAt = deadLetteredAt
        self.reasons = reasons
        self.original = original
        self.truncation = truncation
    }

    /// The Kafka key: `tenant/twinId` when the twin is known, else none.
    public var key: String? { twinId.map { TwinKey(tenant: tenant, twinId: $0).description } }

    public func encoded() -> [UInt8] {
        var w = JSONWriter(capacity: 256 + original.count)
        w.beginObject()
        w.field("stage", stage)
        w.field("tenant", tenant)
        if let twinId { w.field("twinId", twinId) }
        if let model { w.field("model", model) }
        if let origin {
            w.key("origin"); w.beginObject()
            w.field("topic", origin.topic); w.field("partition", Int(origin.partition)); w.key("offset"); w.value(origin.offset)
            w.endObject()
        }
        if let source {
            w.key("source"); w.beginObject(); w.field("kind", source.kind); w.field("ref", source.ref); w.endObject()
        }
        w.field("deadLetteredAt", time: deadLetteredAt)
        w.key("reasons"); w.beginArray()
        for r in reasons { r.write(to: &w) }
        w.endArray()
        w.key("original"); w.beginObject()
        if let text = String(validating: original, as: UTF8.self) {
            w.field("encoding", "utf8"); w.field("data", text)
        } else {
            w.field("encoding", "base64"); w.field("data", Data(original).base64EncodedString())
        }
        if let truncation {
            w.knownKey("truncated"); w.value(true)
            w.field("size", truncation.size)
            w.field("sha256", truncation.sha256)
        }
        w.endObject()
        w.endObject()
        return w.bytes
    }

    public init(json: JSON) throws(ContractError) {
        let f = try Fields(json)
        stage = try f.string("stage")
        tenant = try f.string("tenant")
        twinId = try f.optionalString("twinId")
        model = try f.optionalString("model")
        if let o = try f.optionalObject("origin") {
            let of = try Fields(.object(o), pointer: "/origin")
            origin = Origin(topic: try of.string("topic"), partition: Int32(clamping: try of.int("partition")), offset: try of.int("offset"))
        } else {
            origin = nil
        }
        if let o = try f.optionalObject("source") {
            let sf = try Fields(.object(o), pointer: "/source")
            source = TelemetryEnvelope.Source(kind: try sf.string("kind"), ref: try sf.string("ref"))
        } else {
            source = nil
        }
        deadLetteredAt = try f.time("deadLetteredAt")
        guard case .array(let items)? = f.object["reasons"] else {
            throw .missing("/reasons", "reasons")
        }
        reasons = try items.enumerated().map { (i, item) throws(ContractError) in try Reason(json: item, pointer: "/reasons/\(i)") }
        let of = try Fields(.object(try f.object("original")), pointer: "/original")
        let encoding = try of.string("encoding")
        let data = try of.string("data")
        switch encoding {
        case "utf8": original = Array(data.utf8)
        case "base64":
            guard let decoded = Data(base64Encoded: data) else {
                throw ContractError(code: "invalid_value", pointer: "/original/data", message: "not base64")
            }
            original = Array(decoded)
        default:
            throw ContractError(code: "invalid_value", pointer: "/original/encoding", message: "unknown encoding", expected: "utf8 or base64", actual: encoding)
        }
        if of.object["truncated"]?.boolValue == true {
            truncation = Truncation(size: Int(try of.int("size")), sha256: try of.string("sha256"))
        } else {
            truncation = nil
        }
    }
}
