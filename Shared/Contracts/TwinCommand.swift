import JSON

/// `TwinCommand` v1 on `twin.commands.v1` (key `tenant/twinId`): a request to change a twin's
/// lifecycle, metadata, desired properties, parameters or relationships. The state-updater applies
/// it or rejects it with a reason; either outcome appears on `twin.changes.v1` with the command id.
/// Schema: `Schemas/contracts/twin-command/v1.json`.
public struct TwinCommand: ContractDocument, Sendable, Equatable {
    public static let contract = ContractName.twinCommandV1

    public enum Kind: String, Sendable, CaseIterable {
        case create, patch, setParameters, relate, unrelate, decommission
    }

    /// A typed link to another twin of the same tenant. `targetModel` is the target's model id
    /// as the sender saw it; the state-updater uses it when it does not hold the target itself.
    public struct Relationship: Sendable, Equatable {
        public var name: String
        public var target: String
        public var targetModel: String?

        public init(name: String, target: String, targetModel: String? = nil) {
            self.name = name
            self.target = target
            self.targetModel = targetModel
        }
    }

    /// Unique per command: a retried command with the same id is applied once.
    public var commandId: String
    public var tenant: String
    public var twinId: String
    public var kind: Kind
    public var issuedAt: Int64
    /// Optimistic concurrency: apply only if the twin's version is exactly this.
    public var ifVersion: Int64?
    /// Who sent it (API key id or service), for audit.
    public var issuedBy: String?
    /// `create`: the model, `id@version` or `id` for its latest version; `patch`: a new version of
    /// the twin's model to migrate to.
    public var model: String?
    /// `create`: initial metadata and desired properties; `patch`: JSON Merge Patches (RFC 7396).
    public var metadata: JSON?
    public var desired: JSON?
    /// `create` and `setParameters`: parameter name → value.
    public var parameters: JSONObject?
    /// `relate` and `unrelate`.
    public var relationship: Relationship?
    /// Why the command was sent, when something decided it (e.g. the simulation id of the
    /// calibration a recalibration applies); carried into the `TwinChange` for the audit trail.
    public var cause: String?

    public init(commandId: String, tenant: String, twinId: String, kind: Kind, issuedAt: Int64, ifVersion: Int64? = nil,
                issuedBy: String? = nil, model: String? = nil, metadata: JSON? = nil, desired: JSON? = nil,
                parameters: JSONObject? = nil, relationship: Relationship? = nil, cause: String? = nil) {
        self.commandId = commandId
        self.tenant = tenant
        self.twinId = twinId
        self.kind = kind
        self.issuedAt = issuedAt
        self.ifVersion = ifVersion
        self.issuedBy = issuedBy
        self.model = model
        self.metadata = metadata
        self.desired = desired
        self.parameters = parameters
        self.relationship = relationship
        self.cause = cause
    }

    public var key: String { TwinKey(tenant: tenant, twinId: twinId).description }

    public func encoded() -> [UInt8] {
        var w = JSONWriter(capacity: 256)
        w.beginObject()
        w.field("commandId", commandId)
        w.field("tenant", tenant)
        w.field("twinId", twinId)
        w.field("type", kind.rawValue)
        w.field("issuedAt", time: issuedAt)
        if let ifVersion { w.key("ifVersion"); w.value(ifVersion) }
        if let issuedBy { w.field("issuedBy", issuedBy) }
        if let model { w.field("model", model) }
        if let metadata { w.key("metadata"); w.value(metadata) }
        if let desired { w.key("desired"); w.value(desired) }
        if let parameters { w.key("parameters"); w.value(.object(parameters)) }
        if let relationship {
            w.key("relationship"); w.beginObject()
            w.field("name", relationship.name)
            w.field("target", relationship.target)
            if let model = relationship.targetModel { w.field("targetModel", model) }
            w.endObject()
        }
        if let cause { w.field("cause", cause) }
        w.endObject()
        return w.bytes
    }

    public init(json: JSON) throws(ContractError) {
        let f = try Fields(json)
        commandId = try f.string("commandId")
        tenant = try f.string("tenant")
        twinId = try f.string("twinId")
        let type = try f.string("type")
        guard let kind = Kind(rawValue: type) else {
            throw ContractError(code: "invalid_value", pointer: "/type", message: "unknown command type '\(type)'",
                                expected: Kind.allCases.map(\.rawValue).joined(separator: "|"), actual: type)
        }
        self.kind = kind
        issuedAt = try f.time("issuedAt")
        ifVersion = try f.optionalInt("ifVersion")
        issuedBy = try f.optionalString("issuedBy")
        model = try f.optionalString("model")
        metadata = f.object["metadata"]
        desired = f.object["desired"]
        parameters = try f.optionalObject("parameters")
        if let r = try f.optionalObject("relationship") {
            let rf = try Fields(.object(r), pointer: "/relationship")
            relationship = Relationship(name: try rf.string("name"), target: try rf.string("target"), targetModel: try rf.optionalString("targetModel"))
        } else {
            relationship = nil
        }
        cause = try f.optionalString("cause")
        if let cause, cause.isEmpty || cause.utf8.count > 256 {
            throw ContractError(code: "invalid_value", pointer: "/cause", message: "cause must be 1-256 characters", actual: cause)
        }
        guard !commandId.isEmpty, commandId.utf8.count <= 128 else {
            throw ContractError(code: "invalid_value", pointer: "/commandId", message: "commandId must be 1-128 characters", actual: commandId)
        }
        guard TwinID.isValid(twinId) else {
            throw ContractError(code: "invalid_value", pointer: "/twinId", message: "twinId must be 1-128 letters, digits, '.', '_', '-' or ':'", actual: twinId)
        }
        if let relationship, !TwinID.isValid(relationship.target) {
            throw ContractError(code: "invalid_value", pointer: "/relationship/target", message: "target must be a well-formed twin id", actual: relationship.target)
        }
        switch kind {
        case .create where model == nil: throw .missing("/model", "model")
        case .relate where relationship == nil, .unrelate where relationship == nil: throw .missing("/relationship", "relationship")
        case .setParameters where parameters == nil: throw .missing("/parameters", "parameters")
        default: break
        }
        for (name, value) in parameters ?? [:] where value.numberValue == nil {
            throw .wrongType("/parameters/\(name)", expected: "number", actual: value)
        }
        for (name, value) in [("metadata", metadata), ("desired", desired)] {
            if let value, value.objectValue == nil { throw .wrongType("/\(name)", expected: "object", actual: value) }
        }
    }
}
