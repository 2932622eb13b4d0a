import Contracts
import JSON
import Kafka

/// Header on dead-letters naming the first reason code, so operators can filter without decoding.
public let deadLetterReasonHeader = "reason"
/// Header on dead-letters listing every distinct reason code, comma-separated (for metrics).
public let deadLetterReasonsHeader = "reasons"

/// The one builder of dead-letter messages, used by every stage and by HTTP ingest, so that every
/// path writes the same document, the same headers (`reason`, `reasons`, `model`, trace, tenant)
/// and the same bounds.
public enum DeadLetters {
    /// Most reasons a dead-letter lists; a last `more_errors` reason counts the rest (the
    /// original holds them all).
    public static let maxReasons = 1_000

    /// The dead-letter of a message read from Kafka: its coordinates are the origin and its trace
    /// continues.
    public static func message(stage: String, input: KafkaMessage, tenant: String, twinId: String? = nil, model: String? = nil,
                               reasons: [DeadLetter.Reason], original: [UInt8]? = nil, now: Int64) -> OutgoingMessage {
        message(stage: stage, tenant: tenant, twinId: twinId, model: model,
                origin: .init(topic: input.topic, partition: input.partition, offset: input.offset), source: nil,
                traceparent: TraceContext.continuing(input.headers.string(MessageHeader.traceparent)).description,
                reasons: reasons, original: original ?? input.value, now: now)
    }

    /// A dead-letter from its parts: `origin` for input read from Kafka, `source` for input that
    /// arrived another way (HTTP: the request id). Reasons are capped at `maxReasons` with a
    /// `more_errors` count, and their free-text parts are cut to a few hundred bytes (they may
    /// quote the input, which the original already holds).
    public static func message(stage: String, tenant: String, twinId: String?, model: String?, origin: DeadLetter.Origin?,
                               source: TelemetryEnvelope.Source?, traceparent: String, reasons: [DeadLetter.Reason],
                               original: [UInt8], now: Int64, maxReasons: Int = maxReasons) -> OutgoingMessage {
        var listed = reasons.prefix(maxReasons).map(bounded)
        if reasons.count > maxReasons {
            listed.append(ContractError(code: "more_errors", pointer: "",
                                        message: "\(reasons.count - maxReasons) further reasons are not listed; the original holds them all"))
        }
        let letter = DeadLetter(stage: stage, tenant: tenant, twinId: twinId, model: model, origin: origin, source: source,
                                deadLetteredAt: now, reasons: listed, original: original)
        var headers = [KafkaHeader(MessageHeader.contract, DeadLetter.contract), KafkaHeader(MessageHeader.tenant, tenant),
                       KafkaHeader(MessageHeader.traceparent, traceparent),
                       KafkaHeader(deadLetterReasonHeader, listed.first?.code ?? "unknown")]
        if let model { headers.append(KafkaHeader(MessageHeader.model, model)) }
        var codes: [String] = []
        for reason in listed where !codes.contains(reason.code) { codes.append(reason.code) }
        headers.append(KafkaHeader(deadLetterReasonsHeader, codes.joined(separator: ",")))
        return OutgoingMessage(topic: Topic.telemetryDeadLetter.name, key: letter.key, value: letter.encoded(), headers: headers)
    }

    /// A reason with its free-text parts cut to a few hundred bytes (they may quote the input).
    public static func bounded(_ reason: ContractError) -> ContractError {
        func cut(_ text: String, _ limit: Int) -> String {
            guard text.utf8.count > limit else { return text }
            var end = text.utf8.index(text.utf8.startIndex, offsetBy: limit)
            while end > text.utf8.startIndex && !text.unicodeScalars.indices.contains(end) { end = text.utf8.index(before: end) }
            return String(text[..<end]) + "…"
        }
        var copy = reason
        copy.pointer = cut(copy.pointer, 512)
        copy.message = cut(copy.message, 256)
        copy.expected = copy.expected.map { cut($0, 256) }
        copy.actual = copy.actual.map { cut($0, 256) }
        return copy
    }

    /// The distinct reason codes a dead-letter message carries (its `reasons` header; the
    /// `reason` header for messages written before it existed).
    public static func codes(of message: OutgoingMessage) -> [Substring] {
        let codes = message.headers.string(deadLetterReasonsHeader) ?? message.headers.string(deadLetterReasonHeader) ?? "unknown"
        return codes.split(separator: ",")
    }
}

/// Headers for a message derived from `input`: the trace continues, contract and tenant are set.
/// `tenantValue`, the tenant's bytes when the caller keeps them, spares making them per message.
/// Inlinable: the ingestor and validator call it for every message from their own modules.
@inlinable
public func derivedHeaders(from input: KafkaMessage, contract: String, tenant: String, tenantValue known: [UInt8]? = nil,
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
@usableFromInline
let contractHeaderValues: [(name: String, value: [UInt8])] =
    [TelemetryEnvelope.contract, TwinChange.contract, TwinState.contract, TwinCommand.contract, DeadLetter.contract]
        .map { ($0, Array($0.utf8)) }
