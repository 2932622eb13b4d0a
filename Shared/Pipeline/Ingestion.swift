import Contracts
import JSON
import Kafka

/// The ingestor's logic for `telemetry.raw.v1`: wraps each reading of a message (one reading or an
/// array) into a `TelemetryEnvelope` on `telemetry.ingested.v1`; everything that is not telemetry
/// goes to `telemetry.deadletter.v1` with every reason — one dead-letter per input message, so a
/// message with many bad readings cannot multiply its size on the dead-letter topic.
public struct IngestProcessor: MessageProcessor, Sendable {
    public static let stage = "ingestor"
    /// Each message stands alone: batches are processed on every core.
    public var processesMessagesIndependently: Bool { true }
    public var defaultTenant: String
    /// Readings further than this in the future (ms) are dead-lettered as `future_timestamp`.
    public var maxFutureSkewMs: Int64

    public init(defaultTenant: String, maxFutureSkewMs: Int64 = 300_000) {
        self.defaultTenant = defaultTenant
        self.maxFutureSkewMs = maxFutureSkewMs
    }

    public mutating func process(_ message: KafkaMessage, now: Int64) -> [OutgoingMessage] {
        let tenant = message.headers.string(MessageHeader.tenant) ?? defaultTenant
        guard isValidTenant(tenant) else {
            return [deadLetterMessage(stage: Self.stage, input: message, tenant: defaultTenant,
                                      reasons: [.init(code: "invalid_tenant", pointer: "", message: "tenant header must be 1-64 letters, digits, _ or -",
                                                      expected: "[A-Za-z0-9_-]{1,64}", actual: tenant)], now: now)]
        }
        let json: JSON
        do {
            json = try parseDocument(message.value)
        } catch {
            return [deadLetterMessage(stage: Self.stage, input: message, tenant: tenant, reasons: [error], now: now)]
        }
        let source = TelemetryEnvelope.Source(kind: "kafka", ref: Self.sourceRef(message))
        let (readings, failures) = Self.envelopes(from: json, tenant: tenant, now: now, maxFutureSkewMs: maxFutureSkewMs, source: source)
        var out: [OutgoingMessage] = []
        out.reserveCapacity(readings.count + (failures.isEmpty ? 0 : 1))
        if !readings.isEmpty {
            let headers = derivedHeaders(from: message, contract: TelemetryEnvelope.contract, tenant: tenant)
            for reading in readings {
                out.append(OutgoingMessage(topic: Topic.telemetryIngested.name, key: reading.key, value: reading.value, headers: headers))
            }
        }
        if !failures.isEmpty {
            let twins = Set(failures.compactMap(\.twinId))
            out.append(deadLetterMessage(stage: Self.stage, input: message, tenant: tenant, twinId: twins.count == 1 ? twins.first : nil,
                                         reasons: failures.map(\.error), now: now))
        }
        return out
    }

    /// A reading that was rejected, with the twin it named when that much was readable.
    public struct Rejection: Sendable {
        public var error: ContractError
        public var twinId: String?
    }

    /// Splits a parsed body into encoded envelopes (Kafka key and value) and rejections; shared by
    /// the Kafka and HTTP sources.
    public static func envelopes(from json: JSON, tenant: String, now: Int64, maxFutureSkewMs: Int64,
                                 source: TelemetryEnvelope.Source) -> ([(key: [UInt8], value: [UInt8])], [Rejection]) {
        var envelopes: [(key: [UInt8], value: [UInt8])] = []
        var rejections: [Rejection] = []
        for (index, result) in RawReading.decodeBatch(json).enumerated() {
            switch result {
            case .success(let reading):
                if reading.eventTime > now + maxFutureSkewMs {
                    let pointer = (json.arrayValue != nil ? "/\(index)" : "") + "/ts"
                    rejections.append(Rejection(error: ContractError(
                        code: "future_timestamp", pointer: pointer,
                        message: "event time is more than \(maxFutureSkewMs / 1000) s ahead of the ingestor's clock",
                        expected: "at most \(Timestamp.format(now + maxFutureSkewMs))", actual: Timestamp.format(reading.eventTime)),
                        twinId: reading.twinId))
                    continue
                }
                envelopes.append(reading.encodedEnvelope(tenant: tenant, ingestTime: now, source: source))
            case .failure(let error):
                let element = json.arrayValue.map { $0[index] } ?? json
                rejections.append(Rejection(error: error, twinId: element["twinId"]?.stringValue))
            }
        }
        return (envelopes, rejections)
    }

    /// `topic/partition/offset`, the envelope's source reference for a Kafka message.
    static func sourceRef(_ message: KafkaMessage) -> String {
        var ref: [UInt8] = []
        ref.reserveCapacity(message.topic.utf8.count + 24)
        ref.append(contentsOf: message.topic.utf8)
        ref.append(UInt8(ascii: "/"))
        JSONNumber.appendInteger(Int64(message.partition), to: &ref)
        ref.append(UInt8(ascii: "/"))
        JSONNumber.appendInteger(message.offset, to: &ref)
        return String(decoding: ref, as: UTF8.self)
    }
}
