import Durations
import Contracts
import Foundation
import HTTP
import JSON
import Kafka
import ServiceKit
import Stage
import Synchronization

/// `POST /v1/telemetry` on the ingestor: readings over HTTP become the same `TelemetryEnvelope`s
/// on `telemetry.ingested.v1` as readings from `telemetry.raw.v1` (the rules are
/// `IngestProcessor.envelopes`), and rejected readings go to `telemetry.deadletter.v1` — one
/// dead-letter per request carrying every reason.
///
/// The body is one reading (JSON object), a JSON array of readings, or NDJSON (one reading per
/// line, blank lines ignored). The API key's tenant is the readings' tenant; a reading that names
/// another `tenant` is rejected (`tenant_mismatch`). Answers:
///
/// - `202` `{"requestId","accepted","rejected","errors":[…]}` once the broker acknowledged every
///   message (a bad reading never rejects its good neighbours);
/// - `400` problem when nothing in the body could be a reading (not JSON, wrong top-level type,
///   no JSON object at all); nothing is produced or dead-lettered — the client has it back;
/// - `401`/`403` (API key), `413` (body over `maxBodyBytes`, or more than
///   `maxReadingsPerRequest` readings), `415` (Content-Type or Content-Encoding);
/// - `429` + `Retry-After` when the in-flight bounds or the producer queue are full;
/// - `503` + `Retry-After` when the broker did not acknowledge in time (or the service is
///   stopping). Retrying is safe: event ids are deterministic, so duplicates collapse downstream.
///
/// Pointers: for a JSON array `/3/values` is element 3; for NDJSON `/4/ts` is the reading on
/// line 5 (the body is read as an array of its lines, 0-based, blank lines counted) and each
/// error also carries `line` (1-based).
///
/// As a `Service`, `run()` waits for cancellation, then refuses new requests (503), lets the ones
/// in flight finish, and flushes and closes the producer it was given.
public final class HTTPIngest: Service {
    /// The route.
    public static let path = "/v1/telemetry"
    /// Media types of an NDJSON body (`application/json` and `*/*+json` are JSON).
    public static let ndjsonMediaTypes: Set<String> = ["application/x-ndjson", "application/ndjson"]

    /// Limits and timings; `init(environment:maxFutureSkewMs:)` reads them from the environment.
    public struct Configuration: Sendable {
        /// Largest request body (the route's `maxBodySize`): 413 beyond it.
        public var maxBodyBytes = 1 << 20
        /// Most readings (array elements or non-blank lines) per request: 413 beyond it.
        public var maxReadingsPerRequest = 10_000
        /// Most requests being processed at once: 429 beyond it.
        public var maxInFlightRequests = 64
        /// Most body bytes being processed at once: 429 beyond it.
        public var maxInFlightBytes = 64 << 20
        /// Readings further ahead of the clock than this (ms) are rejected as `future_timestamp`.
        public var maxFutureSkewMs: Int64 = 300_000
        /// The producer's `queue.buffering.max.messages`: a request that would overflow a busy
        /// queue is answered 429 before anything of it is produced.
        public var producerQueueMessages = 100_000
        /// How long a send waits for room when the queue is full anyway (then 429).
        public var queueFullWait: Duration = .milliseconds(250)
        /// The producer's `message.timeout.ms`: how long a request waits for the broker before 503.
        public var deliveryTimeout: Duration = .seconds(10)
        /// `Retry-After` seconds on 429.
        public var retryAfterSeconds = 1
        /// `Retry-After` seconds on 503; for this long after a failed delivery, requests are
        /// answered 503 at once instead of queueing behind an unavailable broker.
        public var unavailableRetryAfterSeconds = 5
        /// Most errors listed in a 202 or 400 answer (the rest are counted in `errorsOmitted`).
        public var maxErrorsListed = 100
        /// Most reasons in the dead-letter (a last `more_errors` reason counts the rest; the
        /// dead-letter's `original` is the whole body, so nothing is lost).
        public var maxDeadLetterReasons = 1_000
        /// Longest wait for in-flight requests when stopping.
        public var drainTimeout: Duration = .seconds(15)
        /// The query API's base URL (`http://host:port`), for the link to a request's dead-letters
        /// in the 202 answer; empty: the link is a path on the query API.
        public var queryAPIURL = ""

        /// Defaults.
        public init() {}

        /// Reads `MAX_BODY_BYTES`, `MAX_READINGS_PER_REQUEST`, `HTTP_MAX_INFLIGHT_REQUESTS`,
        /// `HTTP_MAX_INFLIGHT_BYTES`, `HTTP_DELIVERY_TIMEOUT` and `HTTP_PRODUCER_QUEUE_MESSAGES`.
        public init(environment env: EnvironmentReader, maxFutureSkewMs: Int64) throws {
            self.maxFutureSkewMs = maxFutureSkewMs
            // Body + reasons must fit the dead-letter topic's 8 MiB message limit.
            maxBodyBytes = try env.int("MAX_BODY_BYTES", default: maxBodyBytes, range: 1024...(6 << 20),
                                       doc: "Largest POST /v1/telemetry body in bytes; larger bodies are answered 413.")
            maxReadingsPerRequest = try env.int("MAX_READINGS_PER_REQUEST", default: maxReadingsPerRequest, range: 1...1_000_000,
                                                doc: "Most readings (array elements or NDJSON lines) in one POST /v1/telemetry; more are answered 413.")
            maxInFlightRequests = try env.int("HTTP_MAX_INFLIGHT_REQUESTS", default: maxInFlightRequests, range: 1...100_000,
                                              doc: "Most telemetry requests processed at once; more are answered 429 with Retry-After.")
            maxInFlightBytes = try env.int("HTTP_MAX_INFLIGHT_BYTES", default: maxInFlightBytes, range: 1024...(1 << 40),
                                           doc: "Most telemetry body bytes processed at once; more are answered 429 with Retry-After.")
            deliveryTimeout = try env.duration("HTTP_DELIVERY_TIMEOUT", default: deliveryTimeout, range: .milliseconds(100)...(.seconds(300)),
                                               doc: "How long a telemetry request waits for the broker's acknowledgement before 503 (producer message.timeout.ms).")
            producerQueueMessages = try env.int("HTTP_PRODUCER_QUEUE_MESSAGES", default: producerQueueMessages, range: 1...10_000_000,
                                                doc: "Queue of the HTTP ingest producer (queue.buffering.max.messages); a request that does not fit is answered 429.")
            queryAPIURL = env.string("QUERY_API_URL", default: "",
                                     doc: "Base URL of the query API (http://host:port) for the 202's link to the request's dead-letters; empty: a path on the query API.")
            while queryAPIURL.hasSuffix("/") { queryAPIURL.removeLast() }
        }

        /// librdkafka settings for the producer this ingest is given (on top of the service's own).
        public var producerProperties: [String: String] {
            // A dead-letter carries the whole body plus reasons.
            DeadLetters.producerProperties.merging([
                "message.timeout.ms": String(max(deliveryTimeout.milliseconds, 10)),
                "queue.buffering.max.messages": String(producerQueueMessages),
            ]) { _, new in new }
        }
    }

    /// How the body is framed.
    public enum BodyFormat: Sendable, Equatable {
        /// One reading object or an array of them.
        case json
        /// One reading per line.
        case ndjson
    }

    /// One rejected reading: where it was and why.
    public struct ItemError: Sendable, Equatable {
        /// Array element index (JSON arrays), nil otherwise.
        public var index: Int?
        /// 1-based line (NDJSON), nil otherwise.
        public var line: Int?
        /// Code, pointer into the body, message, expected and actual.
        public var reason: ContractError
        /// The twin the reading named, when readable.
        public var twinId: String?

        public init(index: Int?, line: Int?, reason: ContractError, twinId: String? = nil) {
            self.index = index
            self.line = line
            self.reason = reason
            self.twinId = twinId
        }
    }

    /// A body turned into messages: envelopes in body order, then the dead-letter if any.
    public struct Prepared: Sendable {
        /// Everything to produce.
        public var messages: [OutgoingMessage]
        /// Readings that became envelopes.
        public var accepted: Int
        /// Every rejected reading, in body order.
        public var errors: [ItemError]
    }

    /// A body that is not telemetry at all (400) or has too many readings (413).
    public struct BodyRejection: Error, Sendable, Equatable {
        public var status: HTTPStatus
        public var code: String
        public var detail: String
        public var errors: [ItemError]
    }

    private struct State {
        var requests = 0
        var bytes = 0
        var draining = false
        var unavailableUntil: ContinuousClock.Instant?
    }

    private enum Admission {
        case admitted
        case busy(String)
        case unavailable(String)
    }

    /// The limits in effect.
    public let configuration: Configuration
    private let auth: APIAuth
    private let producer: KafkaProducer
    private let logger: Logger
    private let clock: @Sendable () -> Int64
    private let state = Mutex(State())
    private let drained = Mutex<[CheckedContinuation<Void, Never>]>([])
    private let metrics: Metrics

    /// An ingest producing through `producer` (build it with `configuration.producerProperties`);
    /// `clock` gives wall-clock milliseconds (tests fix it).
    public init(configuration: Configuration, auth: APIAuth, producer: KafkaProducer, metrics registry: MetricsRegistry,
                logger: Logger, clock: @escaping @Sendable () -> Int64 = { Timestamp.now }) {
        self.configuration = configuration
        self.auth = auth
        self.producer = producer
        self.logger = logger
        self.clock = clock
        metrics = Metrics(registry)
        registry.gauge("twinstream_ingest_http_inflight_requests", help: "Telemetry requests being processed.") { [weak self] in
            Double(self?.state.withLock { $0.requests } ?? 0)
        }
        registry.gauge("twinstream_ingest_http_inflight_bytes", help: "Body bytes of the telemetry requests being processed.") { [weak self] in
            Double(self?.state.withLock { $0.bytes } ?? 0)
        }
        registry.gauge("twinstream_ingest_http_producer_queue_messages", help: "Messages of HTTP ingest waiting in the producer's queue or in flight to the broker.") {
            Double(producer.outstanding)
        }
    }

    /// Adds `POST /v1/telemetry` with the body limit.
    public func register(on router: inout Router) {
        router.post(Self.path, maxBodySize: configuration.maxBodyBytes) { [self] request in
            await self.handle(request)
        }
    }

    // MARK: Handling a request

    /// Answers one `POST /v1/telemetry`. Never throws: every outcome is a response.
    public func handle(_ request: HTTPRequest) async -> HTTPResponse {
        let started = ContinuousClock.now
        let response = await respond(request)
        metrics.requests.labels(String(response.status.code)).inc()
        metrics.seconds.observe((ContinuousClock.now - started).seconds)
        return response
    }

    private func respond(_ request: HTTPRequest) async -> HTTPResponse {
        let requestID = request.requestID
        let principal: APIPrincipal
        do {
            principal = try auth.authorize(request, requiring: .ingest)
        } catch {
            return HTTPResponse.from(error: error, requestID: requestID)
        }
        let format: BodyFormat
        switch Self.bodyFormat(contentType: request.headers["Content-Type"], contentEncoding: request.headers["Content-Encoding"]) {
        case .success(let found): format = found
        case .failure(let error): return HTTPResponse.from(error: error, requestID: requestID)
        }
        metrics.bodyBytes.observe(Double(request.body.count))

        switch admit(bytes: request.body.count) {
        case .admitted: break
        case .busy(let detail): return tooManyRequests(detail, requestID: requestID)
        case .unavailable(let detail): return unavailable(detail, requestID: requestID)
        }
        defer { release(bytes: request.body.count) }

        let traceparent = request.headers["traceparent"]
        let log = logger.with(traceparent: traceparent).with(metadata: [
            "requestId": .string(requestID), "tenant": .string(principal.tenant), "keyId": .string(principal.keyId),
        ])
        let prepared: Prepared
        switch Self.prepare(body: request.body, format: format, tenant: principal.tenant, requestID: requestID,
                            traceparent: traceparent, now: clock(), configuration: configuration) {
        case .success(let done): prepared = done
        case .failure(let rejection): return problem(for: rejection, requestID: requestID)
        }

        // A request that cannot fit a busy queue is turned away before any of it is produced.
        let outstanding = producer.outstanding
        if outstanding > 0 && outstanding + prepared.messages.count > configuration.producerQueueMessages {
            return tooManyRequests("the producer queue is full (\(outstanding) messages waiting)", requestID: requestID)
        }
        switch await deliver(prepared.messages) {
        case .delivered:
            break
        case .queueFull:
            log.warning("telemetry refused: producer queue full", ["messages": .int(prepared.messages.count)])
            return tooManyRequests("the producer queue is full", requestID: requestID)
        case .failed(let error):
            // Part of the batch may have been delivered; the client's retry is de-duplicated downstream.
            if error.isRetriable {
                let until = ContinuousClock.now + .seconds(configuration.unavailableRetryAfterSeconds)
                state.withLock { $0.unavailableUntil = until }
            }
            log.error("telemetry not acknowledged by the broker", ["error": .string(error.description), "messages": .int(prepared.messages.count)])
            return unavailable("the broker did not acknowledge the readings; retry later (retries are de-duplicated)", requestID: requestID)
        }

        metrics.record(prepared)
        if !prepared.errors.isEmpty {
            log.warning("telemetry readings dead-lettered", ["rejected": .int(prepared.errors.count), "accepted": .int(prepared.accepted),
                                                             "reason": .string(prepared.errors[0].reason.code)])
        }
        let fate = deadLettersLink(requestID)
        return .json(acceptedBody(prepared, requestID: requestID, deadLetters: fate), status: .accepted,
                     headers: ["Link": "<\(fate)>; rel=\"deadletters\""])
    }

    private enum Delivery {
        case delivered
        case queueFull
        case failed(KafkaError)
    }

    /// Enqueues every message in order and waits for the broker's acknowledgements. Unlike
    /// `sendAll` it does not wait for what was already enqueued when the queue stays full, or
    /// after the first failed delivery: back-pressure answers at once, not after the timeout.
    private func deliver(_ messages: [OutgoingMessage]) async -> Delivery {
        let tracker = DeliveryTracker()
        var enqueued = 0
        for message in messages {
            let deadline = ContinuousClock.now + configuration.queueFullWait
            var backoff = Duration.microseconds(200)
            while true {
                do {
                    try producer.produce(message) { tracker.complete($0) }
                    enqueued += 1
                    break
                } catch let error as KafkaError where error.isQueueFull && ContinuousClock.now < deadline {
                    try? await Task.sleep(for: backoff)
                    backoff = min(backoff * 2, .milliseconds(20))
                } catch let error as KafkaError {
                    return error.isQueueFull ? .queueFull : .failed(error)
                } catch {
                    return .failed(KafkaError(code: -1, message: "\(error)"))
                }
            }
        }
        if let failure = await tracker.wait(for: enqueued) { return .failed(failure) }
        return .delivered
    }

    private func admit(bytes: Int) -> Admission {
        let limits = (configuration.maxInFlightRequests, configuration.maxInFlightBytes)
        return state.withLock { state in
            if state.draining { return .unavailable("the ingestor is shutting down") }
            if let until = state.unavailableUntil {
                if ContinuousClock.now < until { return .unavailable("the broker is unavailable") }
                state.unavailableUntil = nil
            }
            // One request is always admitted when idle, however large (it passed the body limit).
            if state.requests > 0 && (state.requests + 1 > limits.0 || state.bytes + bytes > limits.1) {
                return .busy("too many telemetry requests in flight (\(state.requests) requests, \(state.bytes) bytes)")
            }
            state.requests += 1
            state.bytes += bytes
            return .admitted
        }
    }

    private func release(bytes: Int) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.requests -= 1
            state.bytes -= bytes
            guard state.requests == 0 else { return [] }
            return drained.withLock { waiting in
                defer { waiting.removeAll() }
                return waiting
            }
        }
        waiters.forEach { $0.resume() }
    }

    private func tooManyRequests(_ detail: String, requestID: String) -> HTTPResponse {
        .problem(.tooManyRequests, detail: detail, extensions: [("requestId", .string(requestID)), ("code", .string("backpressure"))],
                 headers: ["Retry-After": String(configuration.retryAfterSeconds)])
    }

    private func unavailable(_ detail: String, requestID: String) -> HTTPResponse {
        .problem(.serviceUnavailable, detail: detail, extensions: [("requestId", .string(requestID)), ("code", .string("brokerUnavailable"))],
                 headers: ["Retry-After": String(configuration.unavailableRetryAfterSeconds)])
    }

    private func problem(for rejection: BodyRejection, requestID: String) -> HTTPResponse {
        var extensions: [(String, ProblemValue)] = [("requestId", .string(requestID)), ("code", .string(rejection.code))]
        if !rejection.errors.isEmpty {
            var w = JSONWriter(capacity: 256)
            let omitted = Self.writeErrors(rejection.errors, limit: configuration.maxErrorsListed, to: &w)
            extensions.append(("errors", .rawJSON(w.bytes)))
            if omitted > 0 { extensions.append(("errorsOmitted", .int(omitted))) }
        }
        return .problem(rejection.status, detail: rejection.detail, extensions: extensions)
    }

    /// Where the client learns the fate of each reading of the request: the query API's list of
    /// the request's dead-letters, from every stage (empty while none was rejected). Readable with
    /// the key that posted the readings.
    func deadLettersLink(_ requestID: String) -> String {
        let id = requestID.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? requestID
        return "\(configuration.queryAPIURL)/v1/deadletters?requestId=\(id)"
    }

    private func acceptedBody(_ prepared: Prepared, requestID: String, deadLetters: String) -> [UInt8] {
        var w = JSONWriter(capacity: 160 + prepared.errors.prefix(configuration.maxErrorsListed).count * 160)
        w.beginObject()
        w.field("requestId", requestID)
        w.field("accepted", prepared.accepted)
        w.field("rejected", prepared.errors.count)
        // Accepted readings may still be rejected downstream (their model, their twin).
        w.field("deadLetters", deadLetters)
        w.key("errors")
        let omitted = Self.writeErrors(prepared.errors, limit: configuration.maxErrorsListed, to: &w)
        if omitted > 0 { w.field("errorsOmitted", omitted) }
        w.endObject()
        return w.bytes
    }

    /// Writes up to `limit` errors as a JSON array; returns how many were left out.
    private static func writeErrors(_ errors: [ItemError], limit: Int, to w: inout JSONWriter) -> Int {
        w.beginArray()
        for error in errors.prefix(limit) {
            let reason = DeadLetters.bounded(error.reason)
            w.beginObject()
            if let index = error.index { w.field("index", index) }
            if let line = error.line { w.field("line", line) }
            w.field("code", reason.code)
            w.field("pointer", reason.pointer)
            w.field("message", reason.message)
            if let expected = reason.expected { w.field("expected", expected) }
            if let actual = reason.actual { w.field("actual", actual) }
            w.endObject()
        }
        w.endArray()
        return max(0, errors.count - limit)
    }

    // MARK: Stopping

    /// Waits until cancelled; then answers new requests 503, waits (up to `drainTimeout`) for
    /// those in flight, and flushes and closes the producer.
    public func run() async throws {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(3600))
        }
        let busy = state.withLock { state -> Int in
            state.draining = true
            return state.requests
        }
        if busy > 0 {
            logger.info("http ingest draining", ["inFlight": .int(busy)])
            let timeout = configuration.drainTimeout
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.waitUntilIdle() }
                group.addTask { try? await Task.sleep(for: timeout) }
                await group.next()
                group.cancelAll()
            }
        }
        let undelivered = await producer.flush(timeout: .seconds(10))
        await producer.close()
        logger.info("http ingest stopped", ["undelivered": .int(undelivered)])
    }

    private func waitUntilIdle() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let idle = state.withLock { state -> Bool in
                if state.requests == 0 { return true }
                drained.withLock { $0.append(continuation) }
                return false
            }
            if idle { continuation.resume() }
        }
    }

    // MARK: The pure part

    /// The body's framing from its headers: JSON (also when Content-Type is absent) or NDJSON;
    /// anything else, a charset other than UTF-8, or a content coding is a 415.
    public static func bodyFormat(contentType: String?, contentEncoding: String? = nil) -> Result<BodyFormat, HTTPError> {
        let accept: HTTPHeaders = ["Accept-Post": "application/json, application/x-ndjson"]
        if let coding = contentEncoding?.trimmingCharacters(in: .whitespaces).lowercased(), !coding.isEmpty, coding != "identity" {
            return .failure(HTTPError(.unsupportedMediaType, code: .init("unsupportedContentEncoding"),
                                      detail: "Content-Encoding '\(coding)' is not supported; send the body uncompressed", headers: accept))
        }
        guard let contentType else { return .success(.json) }
        let parts = contentType.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
        let media = parts.first?.lowercased() ?? ""
        for parameter in parts.dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if pair.count == 2, pair[0].lowercased() == "charset",
               !["utf-8", "utf8", "\"utf-8\""].contains(pair[1].lowercased()) {
                return .failure(HTTPError(.unsupportedMediaType, code: .init("unsupportedCharset"),
                                          detail: "charset '\(pair[1])' is not supported; send UTF-8", headers: accept))
            }
        }
        if media == "application/json" || (media.hasPrefix("application/") && media.hasSuffix("+json")) { return .success(.json) }
        if ndjsonMediaTypes.contains(media) { return .success(.ndjson) }
        return .failure(HTTPError(.unsupportedMediaType, code: .init("unsupportedMediaType"),
                                  detail: "Content-Type '\(contentType)' is not supported; send application/json (a reading or an array) or application/x-ndjson (one reading per line)",
                                  headers: accept))
    }

    /// Turns a body into the messages to produce, or says why it is not telemetry at all.
    /// Pure: no I/O, the clock is `now`; the Kafka path's rules come from `IngestProcessor.envelopes`.
    public static func prepare(body: [UInt8], format: BodyFormat, tenant: String, requestID: String, traceparent: String?,
                               now: Int64, configuration: Configuration) -> Result<Prepared, BodyRejection> {
        let items: [Item]
        var errors: [ItemError] = []
        switch split(body, format: format, maxReadings: configuration.maxReadingsPerRequest) {
        case .failure(let rejection): return .failure(rejection)
        case .success(let (found, unparsed)):
            items = found
            errors = unparsed
        }
        guard items.contains(where: { $0.json.objectValue != nil }) else {
            let what = format == .ndjson ? "no line of the NDJSON body is a JSON object" : "the array holds no JSON object"
            let itemErrors = errors + items.map { item in
                ItemError(index: item.index, line: item.line, reason: notAReading(item))
            }
            return .failure(BodyRejection(status: .badRequest, code: "not_telemetry", detail: what + "; a reading is {\"twinId\", \"ts\", \"values\"}",
                                          errors: itemErrors.sorted(by: order)))
        }

        let source = TelemetryEnvelope.Source(kind: "http", ref: requestID)
        let trace = TraceContext.continuing(traceparent).description
        let headers = [KafkaHeader(MessageHeader.traceparent, trace), KafkaHeader(MessageHeader.contract, TelemetryEnvelope.contract),
                       KafkaHeader(MessageHeader.tenant, tenant)]
        var messages: [OutgoingMessage] = []
        messages.reserveCapacity(items.count + 1)
        for item in items {
            guard case .object(let object) = item.json else {
                errors.append(ItemError(index: item.index, line: item.line, reason: notAReading(item)))
                continue
            }
            if let claimed = object["tenant"], claimed != .string(tenant) {
                errors.append(ItemError(index: item.index, line: item.line, reason: ContractError(
                    code: "tenant_mismatch", pointer: item.pointer + "/tenant",
                    message: "the reading names another tenant than the API key's; omit 'tenant' or use the key's",
                    expected: tenant, actual: claimed.stringValue ?? claimed.typeName), twinId: object["twinId"]?.stringValue))
                continue
            }
            var rejections: [IngestProcessor.Rejection] = []
            IngestProcessor.envelopes(from: item.json, tenant: tenant, now: now, maxFutureSkewMs: configuration.maxFutureSkewMs,
                                      source: source, rejections: &rejections) { key, value in
                messages.append(OutgoingMessage(topic: Topic.telemetryIngested.name, key: key, value: value, headers: headers))
            }
            for rejection in rejections {
                var reason = rejection.error
                reason.pointer = item.pointer + reason.pointer
                errors.append(ItemError(index: item.index, line: item.line, reason: reason, twinId: rejection.twinId))
            }
        }
        let accepted = messages.count
        errors.sort(by: order)
        if !errors.isEmpty {
            messages.append(deadLetter(errors, body: body, tenant: tenant, source: source, trace: trace, now: now,
                                       maxReasons: configuration.maxDeadLetterReasons))
        }
        return .success(Prepared(messages: messages, accepted: accepted, errors: errors))
    }

    /// A reading candidate: its JSON, where it sits, and the pointer prefix of its reasons.
    private struct Item {
        var json: JSON
        var index: Int?
        var line: Int?
        var pointer: String
    }

    private static func order(_ a: ItemError, _ b: ItemError) -> Bool {
        (a.line ?? a.index ?? 0) < (b.line ?? b.index ?? 0)
    }

    private static func notAReading(_ item: Item) -> ContractError {
        ContractError(code: "not_telemetry", pointer: item.pointer, message: "expected a reading object",
                      expected: "object", actual: item.json.typeName)
    }

    /// Splits the body into reading candidates; NDJSON lines that are not JSON come back as errors.
    private static func split(_ body: [UInt8], format: BodyFormat, maxReadings: Int) -> Result<([Item], [ItemError]), BodyRejection> {
        func tooMany() -> BodyRejection {
            BodyRejection(status: .contentTooLarge, code: "too_many_readings",
                          detail: "at most \(maxReadings) readings per request; split the batch", errors: [])
        }
        switch format {
        case .json:
            let json: JSON
            do throws(ContractError) {
                json = try parseDocument(body)
            } catch {
                return .failure(BodyRejection(status: .badRequest, code: error.code, detail: "the body is not JSON: \(error.message)",
                                              errors: [ItemError(index: nil, line: nil, reason: error)]))
            }
            switch json {
            case .object:
                return .success(([Item(json: json, index: nil, line: nil, pointer: "")], []))
            case .array(let elements):
                guard !elements.isEmpty else {
                    return .failure(BodyRejection(status: .badRequest, code: "no_readings", detail: "the array holds no readings", errors: []))
                }
                guard elements.count <= maxReadings else { return .failure(tooMany()) }
                return .success((elements.enumerated().map { Item(json: $1, index: $0, line: nil, pointer: "/\($0)") }, []))
            default:
                let reason = ContractError(code: "not_telemetry", pointer: "", message: "expected a reading object or an array of readings",
                                           expected: "object or array", actual: json.typeName)
                return .failure(BodyRejection(status: .badRequest, code: "not_telemetry", detail: reason.message,
                                              errors: [ItemError(index: nil, line: nil, reason: reason)]))
            }
        case .ndjson:
            var items: [Item] = []
            var errors: [ItemError] = []
            var lineIndex = 0
            var start = 0
            var readings = 0
            while start <= body.count {
                var end = start
                while end < body.count && body[end] != 0x0A { end += 1 }
                var last = end
                if last > start && body[last - 1] == 0x0D { last -= 1 }
                let line = body[start..<last]
                if line.contains(where: { !($0 == 0x20 || $0 == 0x09 || $0 == 0x0D) }) {
                    readings += 1
                    guard readings <= maxReadings else { return .failure(tooMany()) }
                    do {
                        let json = try JSON(parsing: line)
                        items.append(Item(json: json, index: nil, line: lineIndex + 1, pointer: "/\(lineIndex)"))
                    } catch {
                        let parseError = error as? JSONError
                        errors.append(ItemError(index: nil, line: lineIndex + 1, reason: ContractError(
                            code: "invalid_json", pointer: "/\(lineIndex)", message: "line \(lineIndex + 1) is not JSON: \(parseError?.message ?? "\(error)")",
                            actual: parseError.map { "byte \($0.offset) of the line" })))
                    }
                }
                lineIndex += 1
                start = end + 1
            }
            if items.isEmpty && errors.isEmpty {
                return .failure(BodyRejection(status: .badRequest, code: "no_readings", detail: "the body holds no lines", errors: []))
            }
            return .success((items, errors))
        }
    }

    /// The request's dead-letter: every reason (bounded), the whole body as the original, the
    /// request id as its source; keyed by the twin when all rejected readings name one twin.
    private static func deadLetter(_ errors: [ItemError], body: [UInt8], tenant: String, source: TelemetryEnvelope.Source,
                                   trace: String, now: Int64, maxReasons: Int) -> OutgoingMessage {
        let twins = Set(errors.map(\.twinId))
        return DeadLetters.message(stage: IngestProcessor.stage, tenant: tenant, twinId: twins.count == 1 ? twins.first! : nil, model: nil,
                                   origin: nil, source: source, traceparent: trace, reasons: errors.map(\.reason),
                                   original: body, now: now, maxReasons: maxReasons)
    }

    /// The ingest's own counters, plus the stage metrics the Kafka path writes too.
    private struct Metrics: Sendable {
        let stage: StageMetrics
        let requests: MetricFamily<Counter>
        let accepted: Counter
        let rejected: Counter
        let bodyBytes: Histogram
        let seconds: Histogram

        init(_ registry: MetricsRegistry) {
            stage = StageMetrics(registry, stage: IngestProcessor.stage)
            requests = registry.counterFamily("twinstream_ingest_http_requests_total", help: "POST /v1/telemetry requests answered, by status.",
                                              labelNames: ["status"])
            accepted = registry.counter("twinstream_ingest_http_readings_total", help: "Readings received over HTTP, by outcome.",
                                        labels: ["outcome": "accepted"])
            rejected = registry.counter("twinstream_ingest_http_readings_total", help: "Readings received over HTTP, by outcome.",
                                        labels: ["outcome": "rejected"])
            bodyBytes = registry.histogram("twinstream_ingest_http_request_body_bytes", help: "Size of POST /v1/telemetry bodies that passed authentication.",
                                           buckets: Histogram.exponentialBuckets(start: 256, factor: 4, count: 9))
            seconds = registry.histogram("twinstream_ingest_http_request_seconds", help: "Time to answer POST /v1/telemetry, including the broker's acknowledgement.")
        }

        func record(_ prepared: Prepared) {
            accepted.inc(by: prepared.accepted)
            rejected.inc(by: prepared.errors.count)
            if prepared.accepted > 0 { stage.produced(Topic.telemetryIngested.name).inc(by: prepared.accepted) }
            if !prepared.errors.isEmpty, let letter = prepared.messages.last {
                stage.produced(Topic.telemetryDeadLetter.name).inc()
                stage.countDeadLetter(letter)
            }
        }
    }
}

/// Counts the delivery reports of one request and wakes it when all arrived or one failed.
private final class DeliveryTracker: Sendable {
    private struct State {
        var done = 0
        var target: Int?
        var failure: KafkaError?
        var waiter: CheckedContinuation<KafkaError?, Never>?
    }
    private let state = Mutex(State())

    func complete(_ result: Result<DeliveryReport, KafkaError>) {
        let wake = state.withLock { state -> (CheckedContinuation<KafkaError?, Never>, KafkaError?)? in
            state.done += 1
            if case .failure(let error) = result, state.failure == nil { state.failure = error }
            guard let waiter = state.waiter, state.failure != nil || state.done == state.target else { return nil }
            state.waiter = nil
            return (waiter, state.failure)
        }
        if let (waiter, failure) = wake { waiter.resume(returning: failure) }
    }

    /// Waits until `count` reports arrived or one failed; returns the first failure.
    func wait(for count: Int) async -> KafkaError? {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> (Bool, KafkaError?) in
                state.target = count
                if state.failure != nil || state.done == count { return (true, state.failure) }
                state.waiter = continuation
                return (false, nil)
            }
            if ready.0 { continuation.resume(returning: ready.1) }
        }
    }
}
