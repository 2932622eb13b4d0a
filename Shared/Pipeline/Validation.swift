import Contracts
import Kafka

/// The validator's logic (first cut): a well-formed `TelemetryEnvelope` is forwarded to
/// `telemetry.valid.v1` with its bytes unchanged; anything else is dead-lettered with the reason.
/// Model-based validation and unit conversion deepen this in the ingestion/validation issue.
public struct ValidateProcessor: MessageProcessor, Sendable {
    public static let stage = "validator"
    public var defaultTenant: String

    public init(defaultTenant: String) { self.defaultTenant = defaultTenant }

    public mutating func process(_ message: KafkaMessage, now: Int64) -> [OutgoingMessage] {
        let tenant = message.headers.string(MessageHeader.tenant) ?? defaultTenant
        if let contract = message.headers.string(MessageHeader.contract), contract != TelemetryEnvelope.contract {
            return [deadLetterMessage(stage: Self.stage, input: message, tenant: tenant,
                                      reasons: [.init(code: "unsupported_contract", pointer: "", message: "this stage reads \(TelemetryEnvelope.contract)",
                                                      expected: TelemetryEnvelope.contract, actual: contract)], now: now)]
        }
        do {
            let envelope = try TelemetryEnvelope(bytes: message.value)
            // Forward the payload bytes unchanged: decoding is for checking, not re-encoding.
            return [OutgoingMessage(topic: Topic.telemetryValid.name, key: envelope.key, value: message.value,
                                    headers: derivedHeaders(from: message, contract: TelemetryEnvelope.contract, tenant: envelope.tenant))]
        } catch {
            return [deadLetterMessage(stage: Self.stage, input: message, tenant: tenant, reasons: [error], now: now)]
        }
    }
}
