import Contracts
import JSON
import Kafka
import Stage

/// The ingestor's logic for `telemetry.raw.v1`: wraps each reading of a message (one reading or an
/// array) into a `TelemetryEnvelope` on `telemetry.ingested.v1`; everything that is not telemetry
/// goes to `telemetry.deadletter.v1` with every reason — one dead-letter per input message, so a
/// message with many bad readings cannot multiply its size on the dead-letter topic.
public struct IngestProcessor: MessageProcessor, Sendable {
    public static let stage = "ingestor"
    /// Each message stands alone: batches are processed on every core.
    public var processesMessagesIndependently: Bool { true }
    public var defaultTenant: String {
        didSet { defaultTenantValue = Array(defaultTenant.utf8) }
    }
    /// The default tenant's header value, made once rather than for every message without one.
    private var defaultTenantValue: [UInt8]
    /// Readings further than this in the future (ms) are dead-lettered as `future_timestamp`.
    public var maxFutureSkewMs: Int64

    public init(defaultTenant: String, maxFutureSkewMs: Int64 = 300_000) {
        self.defaultTenant = defaultTenant
        defaultTenantValue = Array(defaultTenant.utf8)
        self.maxFutureSkewMs = maxFutureSkewMs
    }

    public mutating func process(_ message: KafkaMessage, now: Int64, into outputs: inout [OutgoingMessage]) {
        let named = message.headers.string(MessageHeader.tenant)
        let tenant = named ?? defaultTenant
        guard TenantID.isValid(tenant) else {
            outputs.append(DeadLetters.message(stage: Self.stage, input: message, tenant: defaultTenant,
                                             reasons: [.init(code: "invalid_tenant", pointer: "", message: "tenant header must be 1-64 letters, digits, _ or -",
                                                             expected: "[A-Za-z0-9_-]{1,64}", actual: tenant)], now: now))
            return
        }
        var headers: [KafkaHeader]?
        func accept(key: [UInt8], value: [UInt8]) {
            // Every envelope of one message continues its trace through one span.
            if headers == nil { headers = derivedHeaders(from: message, contract: TelemetryEnvelope.contract, tenant: tenant,
                                                          tenantValue: named == nil ? defaultTenantValue : nil) }
            outputs.append(OutgoingMessage(topic: Topic.telemetryIngested.name, key: key, value: value, headers: headers!))
        }
        var failures: [Rejection] = []
        // The common message, one well-formed reading, is read without a JSON tree; anything
        // else (arrays, bad readings, bad JSON) through the tree, which names every problem.
        if let reading = RawReading.readDirectly(message.value) {
            Self.admit(reading, pointer: "", tenant: tenant, now: now, maxFutureSkewMs: maxFutureSkewMs,
                       source: Self.source(message), rejections: &failures, accept)
        } else {
            let json: JSON
            do {
                json = try parseDocument(message.value)
            } catch {
                outputs.append(DeadLetters.message(stage: Self.stage, input: message, tenant: tenant, reasons: [error], now: now))
                return
            }
            Self.envelopes(from: json, tenant: tenant, now: now, maxFutureSkewMs: maxFutureSkewMs,
                           source: Self.source(message), rejections: &failures, accept)
        }
        if !failures.isEmpty {
            let twins = Set(failures.compactMap(\.twinId))
            outputs.append(DeadLetters.message(stage: Self.stage, input: message, tenant: tenant, twinId: twins.count == 1 ? twins.first : nil,
                                             reasons: failures.map(\.error), now: now))
        }
    }

    /// A reading that was rejected, with the twin it named when that much was readable.
    public struct Rejection: Sendable {
        public var error: ContractError
        public var twinId: String?
    }

    /// Splits a parsed body (one reading or an array of them) into encoded envelopes, handed to
    /// `accept` as Kafka key and value in input order, and rejections, appended to `rejections`;
    /// shared by the Kafka and HTTP sources. One bad reading never rejects its neighbours.
    public static func envelopes(from json: JSON, tenant: String, now: Int64, maxFutureSkewMs: Int64, source: TelemetryEnvelope.Source,
                                 rejections: inout [Rejection], _ accept: (_ key: [UInt8], _ value: [UInt8]) -> Void) {
        func take(_ element: JSON, pointer: String) {
            let reading: RawReading
            do {
                reading = try RawReading(json: element, pointer: pointer)
            } catch {
                rejections.append(Rejection(error: error, twinId: element["twinId"]?.stringValue))
                return
            }
            admit(reading, pointer: pointer, tenant: tenant, now: now, maxFutureSkewMs: maxFutureSkewMs, source: source, rejections: &rejections, accept)
        }
        switch json {
        case .array(let items):
            for (index, item) in items.enumerated() { take(item, pointer: "/\(index)") }
        case .object:
            take(json, pointer: "")
        default:
            rejections.append(Rejection(error: ContractError(code: "not_telemetry", pointer: "", message: "expected a reading object or an array of readings",
                                                             expected: "object or array", actual: json.typeName), twinId: nil))
        }
    }

    /// A decoded reading becomes an envelope unless it is too far in the future.
    static func admit(_ reading: RawReading, pointer: String, tenant: String, now: Int64, maxFutureSkewMs: Int64, source: TelemetryEnvelope.Source,
                      rejections: inout [Rejection], _ accept: (_ key: [UInt8], _ value: [UInt8]) -> Void) {
        guard reading.eventTime <= now + maxFutureSkewMs else {
            rejections.append(Rejection(error: ContractError(
                code: "future_timestamp", pointer: pointer + "/ts",
                message: "event time is more than \(maxFutureSkewMs / 1000) s ahead of the ingestor's clock",
                expected: "at most \(Timestamp.format(now + maxFutureSkewMs))", actual: Timestamp.format(reading.eventTime)),
                twinId: reading.twinId))
            return
        }
        let (key, value) = reading.encodedEnvelope(tenant: tenant, ingestTime: now, source: source)
        accept(key, value)
    }

    /// The envelope's source for a Kafka message: `kafka`, `topic/partition/offset`.
    static func source(_ message: KafkaMessage) -> TelemetryEnvelope.Source {
        .kafka(topic: message.topic, partition: message.partition, offset: message.offset)
    }
}
