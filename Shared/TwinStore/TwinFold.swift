import Contracts
import JSON

/// What the state-updater needs to know about twin models, as functions so that the fold stays
/// independent of how models are loaded.
public struct ModelCatalog: Sendable {
    /// The canonical `id@version` of a reference (`pump`, `pump@2`), or nil for an unknown model.
    public var resolve: @Sendable (String) -> String?
    /// The model id a relationship of `model` must target: nil when the model declares no such
    /// relationship, `"*"` when any target is allowed.
    public var relationshipTarget: @Sendable (_ model: String, _ relationship: String) -> String?
    /// Whether `model` declares the parameter.
    public var hasParameter: @Sendable (_ model: String, _ parameter: String) -> Bool
    /// The unit of a telemetry property of `model`, for the state document.
    public var unit: @Sendable (_ model: String, _ property: String) -> String?
    /// The `required` telemetry of `model`: what a twin lists as `missing` until reported.
    public var requiredTelemetry: @Sendable (_ model: String) -> [String]

    public init(resolve: @escaping @Sendable (String) -> String?,
                relationshipTarget: @escaping @Sendable (String, String) -> String?,
                hasParameter: @escaping @Sendable (String, String) -> Bool,
                unit: @escaping @Sendable (String, String) -> String?,
                requiredTelemetry: @escaping @Sendable (String) -> [String] = { _ in [] }) {
        self.resolve = resolve
        self.relationshipTarget = relationshipTarget
        self.hasParameter = hasParameter
        self.unit = unit
        self.requiredTelemetry = requiredTelemetry
    }

    /// Accepts every model, relationship and parameter: for tests and for running without models.
    public static let permissive = ModelCatalog(resolve: { $0 }, relationshipTarget: { _, _ in "*" },
                                                hasParameter: { _, _ in true }, unit: { _, _ in nil })
}

/// The model id part of `id@version`.
public func modelID(_ ref: String) -> Substring {
    ref.split(separator: "@", maxSplits: 1).first ?? Substring(ref)
}

/// One twin as the state-updater holds it: compact, value-typed, convertible to and from the
/// `TwinState` v1 document it publishes.
public struct TwinRecord: Sendable, Equatable {
    public struct Slot: Sendable, Equatable {
        public var name: String
        public var value: JSON
        public var eventTime: Int64
        public var ingestTime: Int64
        public var eventId: String
    }

    /// Metadata, desired properties, parameters and relationships: absent for most twins, so
    /// boxed out of line to keep the common record small.
    public struct Extras: Sendable, Equatable {
        public var metadata: JSONObject = [:]
        public var desired: JSONObject = [:]
        public var parameters: JSONObject = [:]
        public var relationships: [TwinState.Relationship] = []
        var isEmpty: Bool { metadata.isEmpty && desired.isEmpty && parameters.isEmpty && relationships.isEmpty }
    }

    public var model: String?
    public var version: Int64 = 0
    public var updatedAt: Int64 = 0
    public var created = false
    public var decommissioned = false
    /// Sorted by name.
    public var properties: [Slot] = []
    private var extrasBox: [Extras] = []
    public var telemetryOffset: Int64 = -1
    public var commandOffset: Int64 = -1
    /// FNV-1a hashes of the most recent event and command ids, oldest first.
    public var recent: [UInt64] = []

    public init(model: String?) { self.model = model }

    public var extras: Extras {
        get { extrasBox.first ?? Extras() }
        set { extrasBox = newValue.isEmpty ? [] : [newValue] }
    }

    public func slotIndex(_ name: String) -> (found: Bool, index: Int) {
        var low = 0, high = properties.count
        while low < high {
            let mid = (low + high) / 2
            if properties[mid].name < name { low = mid + 1 } else { high = mid }
        }
        return (low < properties.count && properties[low].name == name, low)
    }

    mutating func remember(_ id: UInt64, window: Int) {
        recent.append(id)
        if recent.count > window { recent.removeFirst(recent.count - window) }
    }

    /// The published document; `required` is the model's required telemetry (those without a
    /// value are the document's `missing`).
    public func state(tenant: String, twinId: String, required: [String] = []) -> TwinState {
        let x = extras
        return TwinState(tenant: tenant, twinId: twinId, model: model, version: version, updatedAt: updatedAt, created: created,
                         decommissioned: decommissioned,
                         properties: properties.map { ($0.name, TwinState.Property(value: $0.value, eventTime: $0.eventTime, ingestTime: $0.ingestTime, eventId: $0.eventId)) },
                         missing: decommissioned ? [] : required.filter { !slotIndex($0).found },
                         metadata: x.metadata, desired: x.desired, parameters: x.parameters, relationships: x.relationships,
                         sync: .init(telemetryOffset: telemetryOffset, commandOffset: commandOffset, recent: recent))
    }

    /// Writes the published document, the bytes `state(tenant:twinId:required:).write(to:unit:)`
    /// gives, without building the `TwinState` first (one per reading at full load).
    public func write(to w: inout JSONWriter, tenant: String, twinId: String, required: [String] = [], unit: (String) -> String? = { _ in nil }) {
        write(to: &w, tenant: tenant, twinId: twinId, required: required) { i in unit(properties[i].name) }
    }

    /// `write(to:tenant:twinId:required:unit:)` with the units of the properties by position
    /// (`units[i]` is that of `properties[i]`), for a caller that looked them up once for many twins.
    public func write(to w: inout JSONWriter, tenant: String, twinId: String, required: [String], units: [String?]) {
        write(to: &w, tenant: tenant, twinId: twinId, required: required) { i in units[i] }
    }

    private func write(to w: inout JSONWriter, tenant: String, twinId: String, required: [String], unitAt unit: (Int) -> String?) {
        let x = extras
        TwinState.write(to: &w, tenant: tenant, twinId: twinId, model: model, version: version, updatedAt: updatedAt, created: created,
                        decommissioned: decommissioned, propertyCount: properties.count, property: { i in
                            let slot = properties[i]
                            return (slot.name, slot.value, unit(i), slot.eventTime, slot.ingestTime, slot.eventId)
                        }, missing: decommissioned || required.isEmpty ? [] : required.filter { !slotIndex($0).found },
                        metadata: x.metadata, desired: x.desired, parameters: x.parameters, relationships: x.relationships,
                        sync: .init(telemetryOffset: telemetryOffset, commandOffset: commandOffset, recent: recent))
    }

    /// The record a published document (or checkpoint entry) describes.
    public init(_ state: TwinState) {
        model = state.model
        version = state.version
        updatedAt = state.updatedAt
        created = state.created
        decommissioned = state.decommissioned
        properties = state.properties.map { Slot(name: $0.name, value: $0.property.value, eventTime: $0.property.eventTime,
                                                 ingestTime: $0.property.ingestTime, eventId: $0.property.eventId) }
            .sorted { $0.name < $1.name }
        extras = Extras(metadata: state.metadata, desired: state.desired, parameters: state.parameters, relationships: state.relationships)
        telemetryOffset = state.sync.telemetryOffset
        commandOffset = state.sync.commandOffset
        recent = state.sync.recent
    }

    /// Rough bytes held for this record, for the state-size metric.
    public var estimatedBytes: Int {
        var bytes = MemoryLayout<TwinRecord>.stride + 64 + recent.count * 8
        for slot in properties {
            bytes += MemoryLayout<Slot>.stride
            if slot.name.utf8.count > 15 { bytes += 32 + slot.name.utf8.count }
        }
        // One event id is usually shared by every property a reading set.
        bytes += 64 * Set(properties.map(\.eventId)).count
        if !extrasBox.isEmpty { bytes += 256 }
        return bytes
    }
}

/// The stable 64-bit id hash kept in the de-duplication window (FNV-1a; the same in every process).
public func idHash(_ id: String) -> UInt64 { fnv1a(id.utf8) }

/// The state semantics of a set of twins, as a deterministic fold: the same input sequence gives
/// the same records and the same change events, byte for byte, in every process.
///
/// - Readings: per-property event-time last-writer-wins, ties broken by event id; an older reading
///   is recorded as a late change but never overwrites. A reading whose event id was seen (in the
///   bounded window, or on a current property) or whose offset is at or below the twin's last
///   applied telemetry offset changes nothing.
/// - Commands: create, patch (JSON Merge Patch), setParameters, relate/unrelate, decommission,
///   with `ifVersion`; duplicates by command id or offset change nothing; a command that cannot
///   apply yields a `rejected` change.
/// - Every change event increases `version` by one; a rejection does not.
public struct TwinFold: Sendable {
    public struct Options: Sendable {
        public var autoCreate: Bool
        /// Ids remembered per twin for de-duplication.
        public var dedupWindow: Int
        public var catalog: ModelCatalog

        /// Ids remembered per twin unless `DEDUP_WINDOW` says otherwise.
        public static let defaultDedupWindow = 16

        public init(autoCreate: Bool, dedupWindow: Int = Options.defaultDedupWindow, catalog: ModelCatalog = .permissive) {
            self.autoCreate = autoCreate
            self.dedupWindow = dedupWindow
            self.catalog = catalog
        }
    }

    public enum Outcome: Sendable {
        /// Seen before: nothing changes, nothing is emitted.
        case duplicate
        /// A change event (a reading recorded, or a command applied or rejected).
        case change(TwinChange)
        /// The input cannot apply to any twin (`unknown_twin`): dead-letter it.
        case deadLetter(ContractError)
    }

    public var options: Options
    /// `tenant/twinId` → record.
    public var twins: [String: TwinRecord] = [:]
    /// Readings that were older than a stored value of at least one property.
    public private(set) var lateReadings = 0
    public private(set) var duplicates = 0

    public init(options: Options) { self.options = options }

    /// The `TwinState` document of the twin `tenant/twinId`, `missing` from the catalog's model.
    public func state(tenant: String, twinId: String) -> TwinState? {
        guard let record = twins[TwinKey(tenant: tenant, twinId: twinId).description] else { return nil }
        return record.state(tenant: tenant, twinId: twinId, required: record.model.map(options.catalog.requiredTelemetry) ?? [])
    }

    // MARK: Readings

    /// Applies a reading read at `offset` of the twin's telemetry partition. `modelHint` is the
    /// model the validator resolved (used when the reading creates the twin).
    public mutating func apply(reading e: TelemetryEnvelope, offset: Int64, modelHint: String? = nil) -> Outcome {
        let key = e.key
        if twins[key] == nil {
            guard options.autoCreate else {
                return .deadLetter(ContractError(code: "unknown_twin", pointer: "/twinId",
                                                 message: "twin '\(e.twinId)' does not exist and AUTO_CREATE_TWINS is false", actual: e.twinId))
            }
            // A new twin always takes its first reading (nothing to be a duplicate of).
            twins[key] = TwinRecord(model: (modelHint ?? e.model).map { options.catalog.resolve($0) ?? $0 })
        }
        // The record is changed in place: a copy taken out and stored back shared its property
        // array with the dictionary's, so the first change copied that array, for every reading.
        let (outcome, duplicate, late) = Self.apply(reading: e, offset: offset, to: &twins[key]!, dedupWindow: options.dedupWindow)
        if duplicate { duplicates += 1 }
        if late { lateReadings += 1 }
        return outcome
    }

    /// `apply(reading:offset:modelHint:)` on a twin that exists: the outcome, and whether the
    /// reading was a duplicate or late.
    static func apply(reading e: TelemetryEnvelope, offset: Int64, to record: inout TwinRecord, dedupWindow: Int)
        -> (outcome: Outcome, duplicate: Bool, late: Bool) {
        if offset <= record.telemetryOffset { return (.duplicate, true, false) }
        if record.decommissioned {
            return (.deadLetter(ContractError(code: "unknown_twin", pointer: "/twinId", message: "twin '\(e.twinId)' was decommissioned", actual: e.twinId)), false, false)
        }
        let hash = idHash(e.eventId)
        if record.recent.contains(hash) || record.properties.contains(where: { $0.eventId == e.eventId }) {
            record.telemetryOffset = offset
            return (.duplicate, true, false)
        }
        var entries: [TwinChange.Entry] = []
        entries.reserveCapacity(e.values.count)
        var late = false
        for (name, value) in e.values.sorted(by: { $0.key < $1.key }) {
            let (found, index) = record.slotIndex(name)
            let incoming = TwinRecord.Slot(name: name, value: value, eventTime: e.eventTime, ingestTime: e.ingestTime, eventId: e.eventId)
            if found {
                let current = record.properties[index]
                if (e.eventTime, e.eventId) > (current.eventTime, current.eventId) {
                    record.properties[index] = incoming
                    entries.append(.init(path: "/properties/" + name, old: current.value, new: value, oldTime: current.eventTime, newTime: e.eventTime))
                } else {
                    late = true
                    entries.append(.init(path: "/properties/" + name, old: current.value, new: value, oldTime: current.eventTime, newTime: e.eventTime, late: true))
                }
            } else {
                record.properties.insert(incoming, at: index)
                entries.append(.init(path: "/properties/" + name, old: nil, new: value, newTime: e.eventTime))
            }
        }
        record.version += 1
        record.updatedAt = e.ingestTime
        record.telemetryOffset = offset
        record.remember(hash, window: dedupWindow)
        return (.change(TwinChange(tenant: e.tenant, twinId: e.twinId, model: record.model, version: record.version, kind: .telemetry,
                                   at: e.ingestTime, eventId: e.eventId, eventTime: e.eventTime, changes: entries)), false, late)
    }

    // MARK: Commands

    /// Applies a command read at `offset` of the twin's command partition. `targetModel` is the
    /// model of a `relate` command's target when the caller knows it.
    public mutating func apply(command c: TwinCommand, offset: Int64, targetModel: String? = nil) -> Outcome {
        let key = c.key
        var record = twins[key]
        if let r = record {
            if offset <= r.commandOffset { duplicates += 1; return .duplicate }
            if r.recent.contains(idHash(c.commandId)) {
                record!.commandOffset = offset
                twins[key] = record
                duplicates += 1
                return .duplicate
            }
        }
        let exists = record.map { !$0.decommissioned } ?? false
        let currentVersion = record?.version ?? 0
        let applied: Applied
        if let expected = c.ifVersion, expected != currentVersion || (!exists && c.kind != .create) {
            applied = .failure(ContractError(code: "version_conflict", pointer: "/ifVersion", message: "the twin is at version \(currentVersion), not \(expected)",
                                             expected: String(expected), actual: String(currentVersion)))
        } else if c.kind == .create {
            applied = create(c, over: record)
        } else if exists, let existing = record {
            switch c.kind {
            case .patch: applied = patch(c, existing)
            case .setParameters: applied = setParameters(c, existing)
            case .relate: applied = relate(c, existing, targetModel: targetModel)
            case .unrelate: applied = unrelate(c, existing)
            case .decommission: applied = decommission(existing)
            case .create: preconditionFailure("handled above")
            }
        } else {
            applied = .failure(ContractError(code: "unknown_twin", pointer: "/twinId", message: "twin '\(c.twinId)' does not exist", actual: c.twinId))
        }
        switch applied {
        case .failure(let reason):
            // A rejection changes no state but is remembered, so a retried command is a duplicate.
            if var r = record {
                r.commandOffset = offset
                r.remember(idHash(c.commandId), window: options.dedupWindow)
                twins[key] = r
            }
            return .change(TwinChange(tenant: c.tenant, twinId: c.twinId, model: record?.model, version: currentVersion, kind: .rejected,
                                      at: c.issuedAt, commandId: c.commandId, commandType: c.kind.rawValue, cause: c.cause, reason: reason))
        case .success(var (r, entries)):
            r.version = currentVersion + 1
            r.updatedAt = c.issuedAt
            r.commandOffset = offset
            r.remember(idHash(c.commandId), window: options.dedupWindow)
            twins[key] = r
            return .change(TwinChange(tenant: c.tenant, twinId: c.twinId, model: r.model, version: r.version, kind: .command, at: c.issuedAt,
                                      commandId: c.commandId, commandType: c.kind.rawValue, cause: c.cause, changes: entries))
        }
    }

    /// What one command kind does to a twin's record: the new record and its change entries, or
    /// the reason it is rejected. Version, offsets and the dedup window are the caller's.
    typealias Applied = Result<(record: TwinRecord, entries: [TwinChange.Entry]), ContractError>

    /// `create`: a new twin, a re-created one (its version keeps counting), or one its readings
    /// created (adopted with its properties and history).
    func create(_ c: TwinCommand, over record: TwinRecord?) -> Applied {
        let exists = record.map { !$0.decommissioned } ?? false
        if exists, record!.created {
            return .failure(ContractError(code: "already_exists", pointer: "/twinId", message: "twin '\(c.twinId)' already exists", actual: c.twinId))
        }
        guard let ref = c.model, let model = options.catalog.resolve(ref) else {
            return .failure(ContractError(code: "unknown_model", pointer: "/model", message: "no model '\(c.model ?? "")' is loaded", actual: c.model))
        }
        if let unknown = c.parameters?.keys.first(where: { !options.catalog.hasParameter(model, $0) }) {
            return .failure(Self.unknownParameter(unknown, model))
        }
        var entries: [TwinChange.Entry] = []
        var r: TwinRecord
        if exists {
            r = record!
        } else {
            r = TwinRecord(model: nil)
            r.version = record?.version ?? 0  // a re-created twin keeps counting, so ETags never repeat
            r.telemetryOffset = record?.telemetryOffset ?? -1
            r.recent = record?.recent ?? []
            entries.append(.init(path: "/lifecycle", old: record == nil ? nil : "decommissioned", new: "active"))
        }
        if r.model != model { entries.append(.init(path: "/model", old: r.model.map(JSON.string), new: .string(model))) }
        r.model = model
        r.created = true
        var x = r.extras
        Self.merge(&x.metadata, .object(c.metadata?.objectValue ?? [:]), prefix: "/metadata", into: &entries)
        Self.merge(&x.desired, .object(c.desired?.objectValue ?? [:]), prefix: "/desired", into: &entries)
        Self.merge(&x.parameters, .object(c.parameters ?? [:]), prefix: "/parameters", into: &entries)
        r.extras = x
        return .success((r, entries))
    }

    /// `patch`: JSON Merge Patches of metadata and desired; `model` moves to another version of
    /// the same model (later readings are validated against it).
    func patch(_ c: TwinCommand, _ existing: TwinRecord) -> Applied {
        var r = existing, entries: [TwinChange.Entry] = []
        if let ref = c.model {
            guard let model = options.catalog.resolve(ref) else {
                return .failure(ContractError(code: "unknown_model", pointer: "/model", message: "no model '\(ref)' is loaded", actual: ref))
            }
            guard r.model.map({ modelID($0) == modelID(model) }) ?? true else {
                return .failure(ContractError(code: "model_change", pointer: "/model", message: "a patch may change the model's version, not its id",
                                              expected: r.model.map { String(modelID($0)) }, actual: String(modelID(model))))
            }
            if r.model != model { entries.append(.init(path: "/model", old: r.model.map(JSON.string), new: .string(model))) }
            r.model = model
        }
        var x = r.extras
        if let patch = c.metadata { Self.merge(&x.metadata, patch, prefix: "/metadata", into: &entries) }
        if let patch = c.desired { Self.merge(&x.desired, patch, prefix: "/desired", into: &entries) }
        r.extras = x
        return .success((r, entries))
    }

    /// `setParameters`: merged into the twin's parameters; every name must be the model's.
    func setParameters(_ c: TwinCommand, _ existing: TwinRecord) -> Applied {
        let model = existing.model ?? ""
        if let unknown = c.parameters?.keys.first(where: { !options.catalog.hasParameter(model, $0) }) {
            return .failure(Self.unknownParameter(unknown, model))
        }
        var r = existing, entries: [TwinChange.Entry] = []
        Self.merge(&r.extras.parameters, .object(c.parameters ?? [:]), prefix: "/parameters", into: &entries)
        return .success((r, entries))
    }

    /// `relate`: a relationship the model declares, to a target of the model it requires (known
    /// here, on another partition of this instance as `targetModel`, or named by the command).
    func relate(_ c: TwinCommand, _ existing: TwinRecord, targetModel: String?) -> Applied {
        let rel = c.relationship!
        guard let model = existing.model, let required = options.catalog.relationshipTarget(model, rel.name) else {
            return .failure(ContractError(code: "unknown_relationship", pointer: "/relationship/name",
                                          message: "model \(existing.model ?? "(none)") declares no relationship '\(rel.name)'", actual: rel.name))
        }
        if required != "*" {
            let local = twins[TwinKey(tenant: c.tenant, twinId: rel.target).description].flatMap { $0.decommissioned ? nil : $0.model }
            guard let actual = local ?? targetModel ?? rel.targetModel else {
                return .failure(ContractError(code: "unknown_target", pointer: "/relationship/target",
                                              message: "the model of target '\(rel.target)' is not known", actual: rel.target))
            }
            guard modelID(actual) == required else {
                return .failure(ContractError(code: "wrong_target_model", pointer: "/relationship/target",
                                              message: "relationship '\(rel.name)' must target a \(required), '\(rel.target)' is a \(modelID(actual))",
                                              expected: required, actual: String(modelID(actual))))
            }
        }
        var r = existing, entries: [TwinChange.Entry] = []
        let link = TwinState.Relationship(name: rel.name, target: rel.target)
        let at = r.extras.relationships.firstIndex { !($0 < link) } ?? r.extras.relationships.endIndex
        if at == r.extras.relationships.endIndex || r.extras.relationships[at] != link {
            r.extras.relationships.insert(link, at: at)
            entries.append(.init(path: "/relationships/\(rel.name)/\(rel.target)", old: nil, new: .string(rel.target)))
        }
        return .success((r, entries))
    }

    /// `unrelate`: removes the relationship if present (no error if not: the outcome is the same).
    func unrelate(_ c: TwinCommand, _ existing: TwinRecord) -> Applied {
        let rel = c.relationship!
        var r = existing, entries: [TwinChange.Entry] = []
        if let at = r.extras.relationships.firstIndex(of: TwinState.Relationship(name: rel.name, target: rel.target)) {
            r.extras.relationships.remove(at: at)
            entries.append(.init(path: "/relationships/\(rel.name)/\(rel.target)", old: .string(rel.target), new: nil))
        }
        return .success((r, entries))
    }

    /// `decommission`: the twin keeps only its version and ids (a tombstone on `twin.state.v1`).
    func decommission(_ existing: TwinRecord) -> Applied {
        var r = existing
        r.decommissioned = true
        r.properties = []
        r.extras = .init()
        return .success((r, [.init(path: "/lifecycle", old: "active", new: "decommissioned")]))
    }

    static func unknownParameter(_ name: String, _ model: String) -> ContractError {
        ContractError(code: "unknown_parameter", pointer: "/parameters/\(name)", message: "model \(model) has no parameter '\(name)'", actual: name)
    }

    static func merge(_ object: inout JSONObject, _ patch: JSON, prefix: String, into entries: inout [TwinChange.Entry]) {
        let before = object
        object = JSON.object(before).mergePatched(with: patch).objectValue ?? [:]
        for (key, value) in object where before[key] != value {
            entries.append(.init(path: prefix + "/" + JSONPointer.escape(key), old: before[key], new: value))
        }
        for (key, value) in before where object[key] == nil {
            entries.append(.init(path: prefix + "/" + JSONPointer.escape(key), old: value, new: nil))
        }
    }
}
