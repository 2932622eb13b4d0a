import Contracts
import JSON
import Kafka

/// A pipeline stage's logic: one input message in, the messages to produce out. It never throws:
/// input it cannot process becomes a dead-letter among its outputs. Tests drive it without Kafka.
public protocol MessageProcessor {
    /// Processes one message read at wall-clock time `now` (ms since the epoch), appending what
    /// to produce to `outputs` (the batch's list: no array per message).
    mutating func process(_ message: KafkaMessage, now: Int64, into outputs: inout [OutgoingMessage])

    /// Called after the last message of a batch: outputs that summarise the batch (for example
    /// one state document per twin the batch touched).
    mutating func finishBatch(now: Int64) -> [OutgoingMessage]

    /// Called once the batch's outputs are acknowledged by the broker, before its offsets are
    /// stored: the point where effects of the batch may be made durable elsewhere (checkpoints).
    mutating func batchDelivered(_ reports: [DeliveryReport], now: Int64)

    /// True when `process` keeps nothing from one message to the next, so a batch may be split
    /// across cores, each part processed by its own copy of the processor (outputs keep input
    /// order). Default false.
    var processesMessagesIndependently: Bool { get }
}

extension MessageProcessor {
    /// The outputs of one message on their own (tests and tools).
    public mutating func process(_ message: KafkaMessage, now: Int64) -> [OutgoingMessage] {
        var outputs: [OutgoingMessage] = []
        process(message, now: now, into: &outputs)
        return outputs
    }

    public var processesMessagesIndependently: Bool { false }
    public mutating func finishBatch(now: Int64) -> [OutgoingMessage] { [] }
    public mutating func batchDelivered(_ reports: [DeliveryReport], now: Int64) {}
}

/// Header on dead-letters naming the first reason code, so operators can filter without decoding.
public let deadLetterReasonHeader = "reason"
/// Header on dead-letters listing every distinct reason code, comma-separated (for metrics).
public let deadLetterReasonsHeader = "reasons"

/// Builds the dead-letter message for `input`.
public func deadLetterMessage(stage: String, input: KafkaMessage, tenant: String, twinId: String? = nil, model: String? = nil,
                              reasons: [DeadLetter.Reason], original: [UInt8]? = nil, now: Int64) -> OutgoingMessage {
    let letter = DeadLetter(stage: stage, tenant: tenant, twinId: twinId, model: model,
                            origin: .init(topic: input.topic, partition: input.partition, offset: input.offset),
                            deadLetteredAt: now, reasons: reasons, original: original ?? input.value)
    var headers = [KafkaHeader(MessageHeader.contract, DeadLetter.contract), KafkaHeader(MessageHeader.tenant, tenant),
                   KafkaHeader(MessageHeader.traceparent, TraceContext.continuing(input.headers.string(MessageHeader.traceparent)).description)]
    headers.append(KafkaHeader(deadLetterReasonHeader, reasons.first?.code ?? "unknown"))
    if let model { headers.append(KafkaHeader(modelHeader, model)) }
    var codes: [String] = []
    for reason in reasons where !codes.contains(reason.code) { codes.append(reason.code) }
    headers.append(KafkaHeader(deadLetterReasonsHeader, codes.joined(separator: ",")))
    return OutgoingMessage(topic: Topic.telemetryDeadLetter.name, key: letter.key, value: letter.encoded(), headers: headers)
}

/// Headers for a message derived from `input`: the trace continues, contract and tenant are set.
/// `tenantValue`, the tenant's bytes when the caller keeps them, spares making them per message.
func derivedHeaders(from input: KafkaMessage, contract: String, tenant: String, tenantValue known: [UInt8]? = nil,
                    extra: KafkaHeader? = nil) -> [KafkaHeader] {
    // Header values shared instead of re-encoded per message: the contract's bytes are made
    // once, and the input's tenant header is reused when it names the same tenant.
    let tenantValue = input.headers.last { $0.name == MessageHeader.tenant }.flatMap { JSON.utf8Equal($0.value, tenant) ? $0.value : nil }
    var headers: [KafkaHeader] = []
    headers.reserveCapacity(extra == nil ? 3 : 4)
    headers.append(KafkaHeader(MessageHeader.traceparent, TraceContext.childHeader(of: input.headers.last { $0.name == MessageHeader.traceparent }?.value)))
    headers.append(KafkaHeader(MessageHeader.contract, contractHeaderValues.first { $0.name == contract }?.value ?? Array(contract.utf8)))
    headers.append(KafkaHeader(MessageHeader.tenant, tenantValue ?? known ?? Array(tenant.utf8)))
    if let extra { headers.append(extra) }
    return headers
}

/// A list, not a dictionary: hashing the name cost more than comparing it with five names
/// (equal names are the same constant, so the first comparison usually decides).
private let contractHeaderValues: [(name: String, value: [UInt8])] =
    [TelemetryEnvelope.contract, TwinChange.contract, TwinState.contract, TwinCommand.contract, DeadLetter.contract]
        .map { ($0, Array($0.utf8)) }

/// Tenant names: 1-64 characters of letters, digits, `_` and `-` (they appear in keys and labels).
public func isValidTenant(_ tenant: String) -> Bool { TenantID.isValid(tenant) }
