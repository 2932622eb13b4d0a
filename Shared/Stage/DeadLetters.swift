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

    /// Largest dead-letter value written: the topic's limit less room for headers and framing.
    public static let maxValueBytes = Topic.deadLetterMaxMessageBytes - 65_536

    /// Settings of every producer that writes dead-letters (every stage, HTTP ingest): it takes
    /// what the dead-letter topic takes, so a dead-letter that fits the topic is never refused
    /// locally.
    public static let producerProperties = ["message.max.bytes": String(Topic.deadLetterMaxMessageBytes + 65_536)]

    /// Why `message` is refused when its `contract` header names another contract than `expected`
    /// (a producer of another major version writing to this topic: its document would be read
    /// with the wrong meaning); nil when the header is `expected` or absent (older producers set
    /// none). Compared as bytes: the header is on every message.
    public static func contractMismatch(_ message: KafkaMessage, expected: String, stage: String) -> DeadLetter.Reason? {
        guard let header = message.headers.last(where: { $0.name == MessageHeader.contract }), !JSON.utf8Equal(header.value, expected) else { return nil }
        return .init(code: "unsupported_contract", pointer: "", message: "the \(stage) reads \(expected) from \(message.topic)",
                     expected: expected, actual: header.stringValue ?? "(not UTF-8)")
    }

    /// The dead-letter of a message read from Kafka: its coordinates are the origin and its trace
    /// continues. `source` is the reading's own source when it came over HTTP (the request id), so
    /// the client that posted it finds it by request id (`GET /v1/deadletters?requestId=`).
    public static func message(stage: String, input: KafkaMessage, tenant: String, twinId: String? = nil, model: String? = nil,
                               source: TelemetryEnvelope.Source? = nil, reasons: [DeadLetter.Reason], original: [UInt8]? = nil,
                               now: Int64) -> OutgoingMessage {
        message(stage: stage, tenant: tenant, twinId: twinId, model: model,
                origin: .init(topic: input.topic, partition: input.partition, offset: input.offset), source: source,
                traceparent: TraceContext.continuing(input.headers.string(MessageHeader.traceparent)).description,
                reasons: reasons, original: original ?? input.value, now: now)
    }

    /// A dead-letter from its parts: `origin` for input read from Kafka, `source` for input that
    /// arrived another way (HTTP: the request id). It always fits the topic: reasons are capped
    /// at `maxReasons` with a `more_errors` count, their free-text parts are cut to a few hundred
    /// bytes (they may quote the input, which the original holds), and an original too large for
    /// `maxBytes` is kept as a prefix with its size and SHA-256 (`truncation`).
    public static func message(stage: String, tenant: String, twinId: String?, model: String?, origin: DeadLetter.Origin?,
                               source: TelemetryEnvelope.Source?, traceparent: String, reasons: [DeadLetter.Reason],
                               original: [UInt8], now: Int64, maxReasons: Int = maxReasons, maxBytes: Int = maxValueBytes) -> OutgoingMessage {
        var listed = reasons.prefix(maxReasons).map(bounded)
        if reasons.count > maxReasons {
            listed.append(ContractError(code: "more_errors", pointer: "",
                                        message: "\(reasons.count - maxReasons) further reasons are not listed; the original holds them all"))
        }
        let letter = DeadLetter(stage: stage, tenant: tenant, twinId: twinId, model: model, origin: origin, source: source,
                                deadLetteredAt: now, reasons: listed, original: original)
        return outgoing(letter, traceparent: traceparent, maxBytes: maxBytes)
    }

    /// What stands in for `output` when the broker refused it for good (`error`), after
    /// `replacements` earlier stand-ins for it were refused too:
    /// - the stage's own output (not a dead-letter) → a dead-letter of its input (`input`, or the
    ///   output itself for an output of the batch as a whole) with reason `output_rejected`;
    /// - a dead-letter, or that stand-in → a dead-letter of coordinates only: the origin, the
    ///   input's size and SHA-256, no original (it stays on its topic for its retention);
    /// - that one too → nil: nothing smaller can be written; the caller logs and counts the loss.
    public static func replacing(_ output: OutgoingMessage, input: KafkaMessage?, stage: String, error: KafkaError, replacements: Int,
                                 defaultTenant: String, now: Int64, maxBytes: Int = maxValueBytes) -> OutgoingMessage? {
        let isDeadLetter = output.topic == Topic.telemetryDeadLetter.name
        let coordinatesOnly: Bool
        switch (replacements, isDeadLetter) {
        case (0, false): coordinatesOnly = false
        case (0, true), (1, _): coordinatesOnly = true
        default: return nil
        }
        let subject = input?.value ?? output.value
        let tenant = output.headers.string(MessageHeader.tenant) ?? input?.headers.string(MessageHeader.tenant) ?? defaultTenant
        let twin = output.key.flatMap { TwinKey(bytes: $0) }
        let what = isDeadLetter ? "its dead-letter (\(output.headers.string(deadLetterReasonsHeader) ?? "unknown"))" : "its output to \(output.topic)"
        let reason = ContractError(code: "output_rejected", pointer: "",
                                   message: "the broker refused \(what): \(error.name): \(error.message); the input is recorded here instead",
                                   expected: "a message \(output.topic) accepts", actual: "\(output.value.count) bytes")
        var letter = DeadLetter(stage: stage, tenant: tenant, twinId: twin?.twinId, model: output.headers.string(MessageHeader.model),
                                origin: input.map { .init(topic: $0.topic, partition: $0.partition, offset: $0.offset) },
                                deadLetteredAt: now, reasons: [reason], original: subject)
        if coordinatesOnly {
            letter.truncation = truncation(of: subject)
            letter.original = []
        }
        let trace = input?.headers.string(MessageHeader.traceparent) ?? output.headers.string(MessageHeader.traceparent)
        return outgoing(letter, traceparent: TraceContext.continuing(trace).description, maxBytes: maxBytes)
    }

    /// The message of `letter`, cut to `maxBytes` if it must be, with the dead-letter headers.
    static func outgoing(_ letter: DeadLetter, traceparent: String, maxBytes: Int) -> OutgoingMessage {
        var letter = letter
        var value = letter.encoded()
        if value.count > maxBytes {
            letter = fitting(letter, into: maxBytes)
            value = letter.encoded()
        }
        var headers = [KafkaHeader(MessageHeader.contract, DeadLetter.contract), KafkaHeader(MessageHeader.tenant, letter.tenant),
                       KafkaHeader(MessageHeader.traceparent, traceparent),
                       KafkaHeader(deadLetterReasonHeader, letter.reasons.first?.code ?? "unknown")]
        if let model = letter.model { headers.append(KafkaHeader(MessageHeader.model, model)) }
        var codes: [String] = []
        for reason in letter.reasons where !codes.contains(reason.code) { codes.append(reason.code) }
        headers.append(KafkaHeader(deadLetterReasonsHeader, codes.joined(separator: ",")))
        return OutgoingMessage(topic: Topic.telemetryDeadLetter.name, key: letter.key, value: value, headers: headers)
    }

    /// `letter` with its original cut to the longest prefix (on a UTF-8 character boundary when
    /// the original is text) that keeps the encoded letter within `maxBytes`, marked truncated.
    static func fitting(_ letter: DeadLetter, into maxBytes: Int) -> DeadLetter {
        let whole = letter.original
        var cut = letter
        cut.truncation = letter.truncation ?? truncation(of: whole)
        cut.original = []
        let overhead = cut.encoded().count
        let isText = String(validating: whole, as: UTF8.self) != nil
        var keep = min(whole.count, max(0, maxBytes - overhead))
        // Escaping (text) or base64 makes the encoded original longer than its bytes: shrink the
        // prefix by the measured ratio until it fits (two or three rounds).
        while true {
            var end = keep
            if isText { while end > 0 && end < whole.count && whole[end] & 0xC0 == 0x80 { end -= 1 } }
            cut.original = Array(whole[..<end])
            let size = cut.encoded().count
            if size <= maxBytes || end == 0 { return cut }
            keep = Int(Double(end) * Double(max(0, maxBytes - overhead)) / Double(size - overhead) * 0.98)
        }
    }

    /// Size and SHA-256 of a whole original.
    static func truncation(of bytes: [UInt8]) -> DeadLetter.Truncation {
        var hash = SHA256()
        hash.update(bytes)
        return DeadLetter.Truncation(size: bytes.count, sha256: hash.finalizeHex())
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
