import Contracts
import JSON
import Kafka
import Stage
import Models

/// The validator's logic: each `TelemetryEnvelope` is checked against its twin's model (the
/// twin's assigned model, else the reading's `model`, else a twin-id prefix rule), its values
/// converted to the model's units and checked for type, range, finiteness and required names.
/// A valid reading goes to `telemetry.valid.v1` — its bytes unchanged when nothing needed
/// converting — with the model in the `model` header; an invalid one is dead-lettered with every
/// reason.
public struct ValidateProcessor: MessageProcessor, Sendable {
    public static let stage = "validator"
    /// Each message stands alone: batches are processed on every core.
    public var processesMessagesIndependently: Bool { true }
    public var defaultTenant: String
    public let resolver: ModelResolver

    public init(defaultTenant: String, resolver: ModelResolver) {
        self.defaultTenant = defaultTenant
        self.resolver = resolver
    }

    public mutating func process(_ message: KafkaMessage, now: Int64, into outputs: inout [OutgoingMessage]) {
        outputs.append(validate(message, now: now))
    }

    /// The one message a reading becomes: on `telemetry.valid.v1`, or a dead-letter.
    func validate(_ message: KafkaMessage, now: Int64) -> OutgoingMessage {
        // The header's tenant names a dead-letter whose envelope cannot be read; a valid reading
        // uses the envelope's, so no String of the header is made for it.
        var tenant: String { message.headers.string(MessageHeader.tenant) ?? defaultTenant }
        if let mismatch = DeadLetters.contractMismatch(message, expected: TelemetryEnvelope.contract, stage: Self.stage) {
            return DeadLetters.message(stage: Self.stage, input: message, tenant: tenant, reasons: [mismatch], now: now)
        }
        // Only what validation needs is read; the id and source stay in the bytes, forwarded as they are.
        let envelope: TelemetryEnvelope.Contents
        do {
            envelope = try TelemetryEnvelope.contents(of: message.value)
        } catch {
            return DeadLetters.message(stage: Self.stage, input: message, tenant: tenant, reasons: [error], now: now)
        }
        // The reading's HTTP request, for its dead-letter (rare path: only then is the whole envelope read).
        var source: TelemetryEnvelope.Source? { TelemetryEnvelope.httpSource(of: message.value) }
        let model: TwinModel
        switch resolver.resolve(tenant: envelope.tenant, twinId: envelope.twinId, envelopeModel: envelope.model) {
        case .resolved(let resolved, _):
            model = resolved
        case .failed(let reason):
            return DeadLetters.message(stage: Self.stage, input: message, tenant: envelope.tenant, twinId: envelope.twinId, model: envelope.model,
                                     source: source, reasons: [reason], now: now)
        case .unknown:
            let reason = ContractError(code: "unknown_model", pointer: "/model",
                                       message: "no model for twin '\(envelope.twinId)': name one in the reading's model field, create the twin with a model, or configure MODEL_PREFIX_RULES",
                                       expected: "id@version", actual: nil)
            return DeadLetters.message(stage: Self.stage, input: message, tenant: envelope.tenant, twinId: envelope.twinId, source: source,
                                     reasons: [reason], now: now)
        }
        let result = model.check(values: envelope.values, units: envelope.units)
        guard result.isValid else {
            return DeadLetters.message(stage: Self.stage, input: message, tenant: envelope.tenant, twinId: envelope.twinId, model: model.description,
                                     source: source, reasons: result.errors, now: now)
        }
        let headers = derivedHeaders(from: message, contract: TelemetryEnvelope.contract, tenant: envelope.tenant,
                                     extra: KafkaHeader(MessageHeader.model, model.headerValue))
        var value = message.value
        if result.converted {
            // Re-encoded with the values in model units: only now is the whole envelope read.
            do {
                var converted = try TelemetryEnvelope(bytes: message.value)
                converted.values = result.values
                converted.units = [:]
                value = converted.encoded()
            } catch {
                return DeadLetters.message(stage: Self.stage, input: message, tenant: envelope.tenant, reasons: [error], now: now)
            }
        }
        // The ingestor keyed it `tenant/twinId` already: the input's key is reused when it is that.
        let key = message.key.flatMap { Self.isKey($0, tenant: envelope.tenant, twinId: envelope.twinId) ? $0 : nil }
            ?? TwinKey(tenant: envelope.tenant, twinId: envelope.twinId).bytes
        return OutgoingMessage(topic: Topic.telemetryValid.name, key: key, value: value, headers: headers)
    }

    /// True when `key` is exactly `tenant/twinId`.
    static func isKey(_ key: [UInt8], tenant: String, twinId: String) -> Bool {
        let t = tenant.utf8.count
        guard key.count == t + 1 + twinId.utf8.count, key[t] == UInt8(ascii: "/") else { return false }
        return JSON.utf8Equal(key[..<t], tenant) && JSON.utf8Equal(key[(t + 1)...], twinId)
    }
}

/// Applies one `twin.state.v1` message to the validator's model assignments: a twin's model is
/// the one its state names; a tombstone forgets it. Returns false for an undecodable message or
/// a model that is not loaded.
public func followModelAssignment(_ message: KafkaMessage, resolver: ModelResolver) -> Bool {
    guard let key = message.key.flatMap(TwinKey.init(bytes:)) else { return false }
    let (tenant, twinId) = (key.tenant, key.twinId)
    if message.value.isEmpty {
        resolver.unassign(tenant: tenant, twinId: twinId)
        return true
    }
    // The usual document (one per reading): its twin already has the model its header names,
    // compared as bytes with the model's own header value rather than decoded into a string.
    let header = message.headers.last { $0.name == MessageHeader.model }
    if let header, let current = resolver.assignment(tenant: tenant, twinId: twinId), current.headerValue == header.value { return true }
    let named: String?
    if let header = header?.stringValue {
        named = header
    } else {
        guard let state = try? TwinState(bytes: message.value) else { return false }
        named = state.model
    }
    guard let model = named else { return true }
    if let current = resolver.assignment(tenant: tenant, twinId: twinId), current.description == model { return true }
    guard let ref = ModelRef.parse(model) else { return false }
    return (try? resolver.assign(tenant: tenant, twinId: twinId, model: ref)) != nil
}
