import Contracts
import Synchronization

/// A twin-id prefix rule from configuration: twins whose id starts with `prefix` use `model`.
public struct ModelPrefixRule: Sendable, Hashable, CustomStringConvertible {
    /// Twin-id prefix (`pump-`).
    public var prefix: String
    /// The model (`pump@1`, or `room` for the latest).
    public var model: ModelRef

    /// A rule from its parts.
    public init(prefix: String, model: ModelRef) {
        self.prefix = prefix
        self.model = model
    }

    /// `prefix=model`.
    public var description: String { "\(prefix)=\(model)" }

    /// Parses `pump-=pump@1,room-=room,bat-=battery@1`: comma-separated `prefix=model[@version]`
    /// entries; spaces around entries are ignored, so are empty entries (a trailing comma).
    /// Throws `ModelError` `.invalidPrefixRules` naming the entry and what is wrong.
    public static func parseList(_ text: String) throws(ModelError) -> [ModelPrefixRule] {
        var rules: [ModelPrefixRule] = []
        for (n, raw) in text.split(separator: ",", omittingEmptySubsequences: false).enumerated() {
            let entry = raw.trimmingSpaces()
            if entry.isEmpty { continue }
            func bad(_ why: String) -> ModelError {
                ModelError(code: .invalidPrefixRules,
                           message: "model prefix rule \(n + 1) \"\(entry)\": \(why); expected prefix=model[@version], e.g. pump-=pump@1")
            }
            let parts = entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2 else { throw bad("missing \"=\"") }
            let prefix = parts[0].trimmingSpaces(), modelText = parts[1].trimmingSpaces()
            guard !prefix.isEmpty else { throw bad("empty prefix") }
            guard !modelText.contains("=") else { throw bad("more than one \"=\"") }
            guard let model = ModelRef.parse(modelText) else { throw bad("\"\(modelText)\" is not a model reference") }
            if rules.contains(where: { $0.prefix == prefix }) { throw bad("prefix \"\(prefix)\" appears twice") }
            rules.append(ModelPrefixRule(prefix: prefix, model: model))
        }
        return rules
    }
}

extension Substring {
    func trimmingSpaces() -> String {
        String(drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed())
    }
}

/// How a twin's model was found.
public enum ModelSource: String, Sendable, Hashable {
    /// An explicit assignment (from a twin-create command).
    case assignment
    /// The reading's `model` field.
    case envelope
    /// A twin-id prefix rule from configuration.
    case prefixRule
}

/// The answer to "which model and version does twin X use".
public enum ModelResolution: Sendable {
    /// Found, and where from.
    case resolved(TwinModel, ModelSource)
    /// Something named a model that cannot be used: a malformed or unknown `model` in the
    /// envelope (`invalid_model_ref` / `unknown_model` at `/model`). Dead-letter with this reason.
    case failed(ContractError)
    /// Nothing names a model for this twin.
    case unknown

    /// The model when resolved.
    public var model: TwinModel? {
        if case .resolved(let m, _) = self { return m }
        return nil
    }
}

/// Decides which model a twin uses, in this order: the twin's explicit assignment, else the
/// envelope's `model` (`pump@1`, or `pump` for the latest), else the longest matching twin-id
/// prefix rule, else none. Thread-safe and `Sendable`: assignments may be set from one task
/// (the state-updater's command handling) while others resolve.
public final class ModelResolver: Sendable {
    /// The models it resolves to.
    public let registry: ModelRegistry
    /// Prefix rules, longest prefix first.
    public let prefixRules: [ModelPrefixRule]
    let ruleModels: [(prefix: [UInt8], model: TwinModel)]
    let assignments = Mutex<[TwinKey: TwinModel]>([:])

    /// A resolver over `registry` with `prefixRules`. Throws `.unknownModel` when a rule names a
    /// model the registry does not hold (a configuration error worth failing start-up for).
    public init(registry: ModelRegistry, prefixRules: [ModelPrefixRule] = []) throws(ModelError) {
        self.registry = registry
        let sorted = prefixRules.enumerated().sorted {
            $0.element.prefix.utf8.count != $1.element.prefix.utf8.count
                ? $0.element.prefix.utf8.count > $1.element.prefix.utf8.count : $0.offset < $1.offset
        }.map(\.element)
        var resolved: [(prefix: [UInt8], model: TwinModel)] = []
        for rule in sorted {
            guard let model = registry.model(rule.model) else {
                throw ModelError(code: .unknownModel, message: "model prefix rule \(rule) names \(rule.model), which is not loaded"
                                 + " (loaded: \(registry.models.map(\.description).joined(separator: ", ")))")
            }
            resolved.append((Array(rule.prefix.utf8), model))
        }
        self.prefixRules = sorted
        self.ruleModels = resolved
    }

    /// A resolver with rules parsed from configuration text (`pump-=pump@1,room-=room`).
    public convenience init(registry: ModelRegistry, prefixRules text: String) throws(ModelError) {
        try self.init(registry: registry, prefixRules: ModelPrefixRule.parseList(text))
    }

    /// Assigns a model to a twin (replacing any earlier assignment) and returns it. Throws
    /// `.unknownModel` when the registry does not hold it. `ModelRef(id:)` without a version pins
    /// the latest version loaded now.
    @discardableResult
    public func assign(tenant: String, twinId: String, model ref: ModelRef) throws(ModelError) -> TwinModel {
        guard let model = registry.model(ref) else {
            throw ModelError(code: .unknownModel, message: "model \(ref) is not loaded")
        }
        assignments.withLock { $0[TwinKey(tenant: tenant, twinId: twinId)] = model }
        return model
    }

    /// Removes a twin's assignment (twin deleted).
    public func unassign(tenant: String, twinId: String) {
        _ = assignments.withLock { $0.removeValue(forKey: TwinKey(tenant: tenant, twinId: twinId)) }
    }

    /// The model explicitly assigned to a twin, if any.
    public func assignment(tenant: String, twinId: String) -> TwinModel? {
        assignments.withLock { $0[TwinKey(tenant: tenant, twinId: twinId)] }
    }

    /// How many twins have an assignment (for metrics).
    public var assignmentCount: Int { assignments.withLock { $0.count } }

    /// Resolves a twin's model: assignment, else `envelopeModel`, else a prefix rule.
    public func resolve(tenant: String, twinId: String, envelopeModel: String?) -> ModelResolution {
        if let model = assignment(tenant: tenant, twinId: twinId) { return .resolved(model, .assignment) }
        if let text = envelopeModel {
            if let model = registry.model(referencedBy: text) { return .resolved(model, .envelope) }
            guard let ref = ModelRef.parse(text) else {
                return .failed(ContractError(code: "invalid_model_ref", pointer: "/model",
                                             message: "\"\(text)\" is not a model reference", expected: "id or id@version, e.g. pump@1",
                                             actual: text))
            }
            let loaded = registry.versions(id: ref.id)
            return .failed(ContractError(code: "unknown_model", pointer: "/model",
                                         message: "model \(ref) is not loaded",
                                         expected: loaded.isEmpty ? "one of \(registry.ids.joined(separator: ", "))"
                                             : loaded.map(\.description).joined(separator: ", "),
                                         actual: text))
        }
        if let model = prefixRuleModel(twinId) { return .resolved(model, .prefixRule) }
        return .unknown
    }

    /// The model for a twin, or nil when it is unknown or the envelope's reference is unusable.
    public func model(tenant: String, twinId: String, envelopeModel: String?) -> TwinModel? {
        resolve(tenant: tenant, twinId: twinId, envelopeModel: envelopeModel).model
    }

    func prefixRuleModel(_ twinId: String) -> TwinModel? {
        guard !ruleModels.isEmpty else { return nil }
        var id = twinId
        return id.withUTF8 { bytes -> TwinModel? in
            for rule in ruleModels where rule.prefix.count <= bytes.count {
                if rule.prefix.withUnsafeBufferPointer({ p in p.elementsEqual(bytes.prefix(p.count)) }) { return rule.model }
            }
            return nil
        }
    }
}
