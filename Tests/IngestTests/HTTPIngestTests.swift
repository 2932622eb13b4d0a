import Contracts
import Foundation
import HTTP
import JSON
import Kafka
import Ingest
import Stage
import ServiceKit
import XCTest

/// `POST /v1/telemetry`: the pure body handling, then the route on a real HTTP server producing to
/// the in-process embedded broker.
final class HTTPIngestTests: XCTestCase {
    let now: Int64 = 1_763_712_000_000  // 2025-11-21T08:00:00Z, the ingest's fixed clock

    // MARK: Fixture

    /// One broker for the tests that leave it up (starting one takes seconds); tests that take a
    /// broker down get their own. Tests tell their messages apart by request id.
    nonisolated(unsafe) private static var sharedBroker: EmbeddedBroker?

    override class func tearDown() {
        sharedBroker?.shutdown()
        sharedBroker = nil
        super.tearDown()
    }

    struct Fixture {
        let broker: EmbeddedBroker
        let ownsBroker: Bool
        let ingest: HTTPIngest
        let producer: KafkaProducer
        let server: HTTPServer
        let client: HTTPClient
        let metrics: MetricsRegistry
        /// Tenant `acme`, scope `ingest`.
        let key: String
        /// Tenant `acme`, scope `read` only.
        let readKey: String

        func post(_ body: String, contentType: String? = "application/json", key: String? = nil, headers: HTTPHeaders = [:]) async throws -> HTTPClient.Response {
            var all = headers
            if let contentType { all.set("Content-Type", contentType) }
            let key = key ?? self.key  // "" sends no key
            if !key.isEmpty { all.set("Authorization", "Bearer \(key)") }
            return try await client.post(HTTPIngest.path, headers: all, body: Array(body.utf8))
        }

        func close() async {
            await server.shutdown(gracePeriod: .seconds(1))
            await producer.close(timeout: .seconds(1))
            if ownsBroker { broker.shutdown() }
        }
    }

    private func start(brokerDown: Bool = false, _ configure: (inout HTTPIngest.Configuration) -> Void = { _ in }) async throws -> Fixture {
        let broker: EmbeddedBroker
        if brokerDown {
            broker = try EmbeddedBroker(topics: Topic.all)
            broker.setBrokerDown(1)
        } else if let shared = Self.sharedBroker {
            broker = shared
        } else {
            broker = try EmbeddedBroker(topics: Topic.all)
            Self.sharedBroker = broker
        }
        var configuration = HTTPIngest.Configuration()
        configure(&configuration)
        let writer = APIKeys.generate(tenant: "acme", scopes: [.ingest])
        let reader = APIKeys.generate(tenant: "acme", scopes: [.read])
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers, ["log_level": "0"])
            .with(configuration.producerProperties))
        let metrics = MetricsRegistry()
        let fixed = now
        let ingest = HTTPIngest(configuration: configuration, auth: .keys(try APIKeys(entries: [writer.entry, reader.entry])),
                                producer: producer, metrics: metrics, logger: Logger(service: "ingestor", sink: .discard), clock: { fixed })
        var router = Router()
        ingest.register(on: &router)
        var serverConfiguration = HTTPServer.Configuration(host: "127.0.0.1", port: 0)
        serverConfiguration.logger = HTTPServer.Configuration.silentLogger
        let server = HTTPServer(configuration: serverConfiguration, router: router)
        let port = try server.start()
        return Fixture(broker: broker, ownsBroker: brokerDown, ingest: ingest, producer: producer, server: server, client: HTTPClient(port: port, timeout: .seconds(60)),
                       metrics: metrics, key: writer.key, readKey: reader.key)
    }

    /// Reads `topic` from the beginning until `count` messages for which `mine` holds arrived
    /// (or 30 s passed), and returns those.
    private func consume(_ broker: EmbeddedBroker, _ topic: Topic, count: Int, mine: (KafkaMessage) -> Bool) async throws -> [KafkaMessage] {
        let consumer = try KafkaConsumer(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers),
                                         readingFromBeginning: (0..<topic.partitions).map { TopicPartition(topic.name, $0) })
        var messages: [KafkaMessage] = []
        let deadline = ContinuousClock.now + .seconds(30)
        while messages.count < count && ContinuousClock.now < deadline {
            messages += try await consumer.poll(maxMessages: 100, timeout: .milliseconds(200)).filter(mine)
        }
        await consumer.close()
        return messages
    }

    private func json(_ response: HTTPClient.Response) throws -> JSON { try JSON(parsing: response.body) }

    // MARK: Accepting and dead-lettering

    func testMixedBatchesAreAcceptedAndEachRequestsRejectsDeadLetteredOnce() async throws {
        let f = try await start { $0.queryAPIURL = "http://query.example:8080" }
        let array = #"""
        [{"twinId":"pump-1","ts":1763711999000,"values":{"flow":3.5}},
         {"twinId":"pump-2","values":{"flow":1}},
         {"twinId":"pump-3","ts":"2025-11-21T07:59:59Z","values":{"on":true},"tenant":"acme"},
         {"twinId":"pump-4","ts":"2099-01-01T00:00:00Z","values":{"flow":[1]}},
         {"twinId":"pump-5","ts":1763711999000,"values":{"flow":2},"tenant":"globex"}]
        """#
        let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let runID = UUID().uuidString.prefix(8)
        let first = try await f.post(array, headers: ["traceparent": trace, "X-Request-Id": "req-array-\(runID)"])
        XCTAssertEqual(first.status, .accepted, first.text)
        let answer = try json(first)
        XCTAssertEqual(answer["requestId"], .string("req-array-\(runID)"))
        // How to learn each reading's fate, including rejections by later stages.
        XCTAssertEqual(answer["deadLetters"], .string("http://query.example:8080/v1/deadletters?requestId=req-array-\(runID)"))
        XCTAssertEqual(first.headers["Link"], "<http://query.example:8080/v1/deadletters?requestId=req-array-\(runID)>; rel=\"deadletters\"")
        XCTAssertEqual(answer["accepted"], 2)
        XCTAssertEqual(answer["rejected"], 3)
        let errors = try XCTUnwrap(answer["errors"]?.arrayValue)
        XCTAssertEqual(errors.map { $0["index"] }, [1, 3, 4])
        XCTAssertEqual(errors.map { $0["code"] }, ["missing_field", "wrong_type", "tenant_mismatch"])
        XCTAssertEqual(errors.map { $0["pointer"] }, ["/1/ts", "/3/values/flow", "/4/tenant"])

        let ndjson = "{\"twinId\":\"pump-6\",\"ts\":1763711999000,\"values\":{\"flow\":4}}\n\n{oops\n{\"twinId\":\"pump-7\",\"ts\":\"2099-01-01T00:00:00Z\",\"values\":{\"flow\":4}}\n"
        let second = try await f.post(ndjson, contentType: "application/x-ndjson", key: nil, headers: ["X-Request-Id": "req-ndjson-\(runID)"])
        XCTAssertEqual(second.status, .accepted, second.text)
        let answer2 = try json(second)
        XCTAssertEqual(answer2["accepted"], 1)
        XCTAssertEqual(answer2["rejected"], 2)
        XCTAssertEqual(answer2["errors"]?.arrayValue?.map { $0["line"] }, [3, 4])
        XCTAssertEqual(answer2["errors"]?.arrayValue?.map { $0["pointer"] }, ["/2", "/3/ts"])
        XCTAssertEqual(answer2["errors"]?.arrayValue?.map { $0["code"] }, ["invalid_json", "future_timestamp"])

        // The 202 came after the broker acknowledged: everything is there to read.
        let requests: Set<String> = ["req-array", "req-ndjson"].map { "\($0)-\(runID)" }.reduce(into: []) { $0.insert($1) }
        let envelopes = try await consume(f.broker, .telemetryIngested, count: 3) { message in
            (try? TelemetryEnvelope(bytes: message.value)).map { requests.contains($0.source.ref) } ?? false
        }
        XCTAssertEqual(envelopes.count, 3)
        let decoded = try envelopes.map { try TelemetryEnvelope(bytes: $0.value) }.sorted { $0.twinId < $1.twinId }
        XCTAssertEqual(decoded.map(\.twinId), ["pump-1", "pump-3", "pump-6"])
        XCTAssertEqual(decoded.map(\.source.ref), ["req-array-\(runID)", "req-array-\(runID)", "req-ndjson-\(runID)"])
        XCTAssertTrue(decoded.allSatisfy { $0.source.kind == "http" })
        XCTAssertTrue(decoded.allSatisfy { $0.tenant == "acme" && $0.ingestTime == now })
        for message in envelopes {
            let envelope = try TelemetryEnvelope(bytes: message.value)
            XCTAssertEqual(message.keyString, "acme/\(envelope.twinId)")
            XCTAssertEqual(message.headers.string(MessageHeader.contract), "telemetry-envelope/1")
            XCTAssertEqual(message.headers.string(MessageHeader.tenant), "acme")
            let traceparent = try XCTUnwrap(TraceContext(traceparent: message.headers.string(MessageHeader.traceparent) ?? ""))
            if envelope.source.ref == "req-array-\(runID)" {
                XCTAssertEqual(traceparent.traceId, "4bf92f3577b34da6a3ce929d0e0e4736", "the request's trace continues")
                XCTAssertNotEqual(traceparent.parentId, "00f067aa0ba902b7", "under the ingestor's own span")
            }
        }

        let letters = try await consume(f.broker, .telemetryDeadLetter, count: 2) { message in
            (try? DeadLetter(bytes: message.value)).flatMap { $0.source.map { requests.contains($0.ref) } } ?? false
        }
        XCTAssertEqual(letters.count, 2, "one dead-letter per request")
        let byRequest = Dictionary(uniqueKeysWithValues: try letters.map { message -> (String, (KafkaMessage, DeadLetter)) in
            let letter = try DeadLetter(bytes: message.value)
            return (letter.source?.ref ?? "", (message, letter))
        })
        let (arrayMessage, arrayLetter) = try XCTUnwrap(byRequest["req-array-\(runID)"])
        XCTAssertEqual(arrayLetter.stage, "ingestor")
        XCTAssertEqual(arrayLetter.tenant, "acme")
        XCTAssertEqual(arrayLetter.source, .init(kind: "http", ref: "req-array-\(runID)"))
        XCTAssertNil(arrayLetter.origin)
        XCTAssertEqual(arrayLetter.reasons.map(\.code), ["missing_field", "wrong_type", "tenant_mismatch"])
        XCTAssertEqual(arrayLetter.reasons.map(\.pointer), ["/1/ts", "/3/values/flow", "/4/tenant"])
        XCTAssertEqual(arrayLetter.original, Array(array.utf8), "the body exactly as received, so every pointer resolves")
        XCTAssertEqual(arrayMessage.headers.string("reason"), "missing_field")
        XCTAssertEqual(arrayMessage.headers.string(MessageHeader.contract), "dead-letter/1")
        let (_, ndjsonLetter) = try XCTUnwrap(byRequest["req-ndjson-\(runID)"])
        XCTAssertEqual(ndjsonLetter.reasons.map(\.pointer), ["/2", "/3/ts"])
        XCTAssertEqual(ndjsonLetter.twinId, nil, "line 3 named no twin")
        XCTAssertEqual(ndjsonLetter.original, Array(ndjson.utf8))

        let metrics = f.metrics.render()
        for line in [#"twinstream_ingest_http_requests_total{status="202"} 2"#,
                     #"twinstream_ingest_http_readings_total{outcome="accepted"} 3"#,
                     #"twinstream_ingest_http_readings_total{outcome="rejected"} 5"#,
                     #"twinstream_messages_produced_total{topic="telemetry.ingested.v1"} 3"#,
                     #"twinstream_messages_produced_total{topic="telemetry.deadletter.v1"} 2"#,
                     "twinstream_ingest_http_request_body_bytes_count 2"] {
            XCTAssertTrue(metrics.contains(line), "metrics lack \(line)")
        }
        // Dead-letter reasons are counted per code, with the tenant (and model, none here).
        XCTAssertTrue(metrics.split(separator: "\n").contains { $0.hasPrefix("twinstream_deadlettered_total{") && $0.contains(#"reason="missing_field""#)
                && $0.contains(#"stage="ingestor""#) && $0.contains(#"tenant=""#) }, metrics)
        await f.close()
    }

    /// A request whose bad lines fail for two different reasons: the dead-letter's `reasons`
    /// header names both codes and the metric counts each once, as the README promises (HTTP
    /// dead-letters once carried only the first code's header, so one code went uncounted).
    func testAnHTTPDeadLetterCountsEveryDistinctReasonCode() async throws {
        let f = try await start()
        let runID = UUID().uuidString
        let ndjson = "{\"twinId\":\"pump-7\",\"values\":{\"flow\":1}}\nnot json\n{\"twinId\":\"pump-7\",\"values\":{\"flow\":2}}\n"
        let response = try await f.post(ndjson, contentType: "application/x-ndjson", headers: ["X-Request-Id": "req-codes-\(runID)"])
        XCTAssertEqual(response.status, .accepted)
        let letters = try await consume(f.broker, .telemetryDeadLetter, count: 1) { message in
            (try? DeadLetter(bytes: message.value))?.source?.ref == "req-codes-\(runID)"
        }
        let message = try XCTUnwrap(letters.first, "the request's dead-letter")
        XCTAssertEqual(message.headers.string(deadLetterReasonHeader), "missing_field")
        XCTAssertEqual(message.headers.string(deadLetterReasonsHeader), "missing_field,invalid_json")
        let counted = f.metrics.render().split(separator: "\n").filter { $0.hasPrefix("twinstream_deadlettered_total{") }
        for code in ["missing_field", "invalid_json"] {
            XCTAssertTrue(counted.contains { $0.contains(#"reason="\#(code)""#) && $0.hasSuffix(" 1") }, "\(code) not counted once: \(counted)")
        }
        await f.close()
    }

    func testHTTPAndKafkaSourcesApplyTheSameRules() throws {
        let body = #"[{"twinId":"pump-1","ts":1763711999000,"values":{"flow":3.5,"rpm":1400}},{"twinId":"pump-1","ts":"2099-01-01T00:00:00Z","values":{"flow":1}}]"#
        let prepared = try HTTPIngest.prepare(body: Array(body.utf8), format: .json, tenant: "acme", requestID: "r", traceparent: nil,
                                              now: now, configuration: HTTPIngest.Configuration()).get()
        var processor = IngestProcessor(defaultTenant: "default")
        let fromKafka = processor.process(KafkaMessage(topic: Topic.telemetryRaw.name, partition: 0, offset: 1, key: nil, value: Array(body.utf8),
                                                       headers: [KafkaHeader(MessageHeader.tenant, "acme")]), now: now)
        XCTAssertEqual(prepared.messages.map(\.topic), fromKafka.map(\.topic))
        let http = try TelemetryEnvelope(bytes: prepared.messages[0].value)
        let kafka = try TelemetryEnvelope(bytes: fromKafka[0].value)
        XCTAssertEqual(http.eventId, kafka.eventId, "a reading gets the same event id whichever way it came")
        XCTAssertEqual(prepared.messages[0].key, fromKafka[0].key)
        XCTAssertEqual(try DeadLetter(bytes: prepared.messages[1].value).reasons, try DeadLetter(bytes: fromKafka[1].value).reasons)
        XCTAssertEqual(try DeadLetter(bytes: prepared.messages[1].value).twinId, "pump-1", "keyed by the twin when all rejects name one")
        XCTAssertEqual(prepared.messages[1].key, Array("acme/pump-1".utf8))
    }

    func testNDJSONPointersCountPhysicalLinesAndAcceptCRLF() throws {
        let body = "\r\n{\"twinId\":\"a\",\"ts\":1,\"values\":{\"x\":1}}\r\n  \r\n{\"twinId\":\"b\",\"values\":{\"x\":1}}\r\n[1]\r\n"
        let prepared = try HTTPIngest.prepare(body: Array(body.utf8), format: .ndjson, tenant: "acme", requestID: "r", traceparent: nil,
                                              now: now, configuration: HTTPIngest.Configuration()).get()
        XCTAssertEqual(prepared.accepted, 1)
        XCTAssertEqual(prepared.errors.map(\.line), [4, 5])
        XCTAssertEqual(prepared.errors.map(\.reason.pointer), ["/3/ts", "/4"])
        XCTAssertEqual(prepared.errors.map(\.reason.code), ["missing_field", "not_telemetry"])
    }

    func testDeadLetterReasonsAreBoundedButTheOriginalKeepsEverything() throws {
        var configuration = HTTPIngest.Configuration()
        configuration.maxDeadLetterReasons = 3
        let body = "[" + (0..<5).map { _ in #"{"twinId":"p","values":{"x":1}}"# }.joined(separator: ",") + "]"
        let prepared = try HTTPIngest.prepare(body: Array(body.utf8), format: .json, tenant: "acme", requestID: "r", traceparent: nil,
                                              now: now, configuration: configuration).get()
        XCTAssertEqual(prepared.errors.count, 5)
        let letter = try DeadLetter(bytes: try XCTUnwrap(prepared.messages.last).value)
        XCTAssertEqual(letter.reasons.map(\.code), ["missing_field", "missing_field", "missing_field", "more_errors"])
        XCTAssertTrue(letter.reasons[3].message.hasPrefix("2 further"), letter.reasons[3].message)
        XCTAssertEqual(letter.original, Array(body.utf8))
    }

    // MARK: Refusals

    func testBodiesThatAreNotTelemetryAre400AndNothingIsProduced() async throws {
        let f = try await start()
        let cases: [(String, String, String)] = [
            ("application/json", "{\"twinId\":", "invalid_json"),
            ("application/json", "42", "not_telemetry"),
            ("application/json", "[]", "no_readings"),
            ("application/json", "[1, \"two\", null]", "not_telemetry"),
            ("application/x-ndjson", "garbage\n[1]\n", "not_telemetry"),
            ("application/x-ndjson", "\n \n", "no_readings"),
            ("application/json", "", "invalid_json"),
        ]
        for (type, body, code) in cases {
            let response = try await f.post(body, contentType: type)
            XCTAssertEqual(response.status, .badRequest, "\(body): \(response.text)")
            XCTAssertEqual(response.headers["Content-Type"], "application/problem+json")
            XCTAssertEqual(try json(response)["code"], .string(code), body)
        }
        let lines = try json(try await f.post("garbage\n[1]\n", contentType: "application/x-ndjson"))["errors"]?.arrayValue
        XCTAssertEqual(lines?.map { $0["line"] }, [1, 2], "the 400 says what is wrong with each line")
        XCTAssertFalse(f.metrics.render().contains("twinstream_messages_produced_total"), "a 400 produces nothing")
        XCTAssertTrue(f.metrics.render().contains(#"twinstream_ingest_http_requests_total{status="400"} 8"#))
        await f.close()
    }

    func testRequestsWithoutAValidIngestKeyAre401Or403() async throws {
        let f = try await start()
        let reading = #"{"twinId":"p","ts":1,"values":{"x":1}}"#
        let missing = try await f.post(reading, key: "")
        XCTAssertEqual(missing.status, .unauthorized)
        XCTAssertEqual(missing.headers["WWW-Authenticate"], #"Bearer realm="twinstream""#)
        let wrong = try await f.post(reading, key: APIKeys.generate(tenant: "acme", scopes: [.ingest]).key)
        XCTAssertEqual(wrong.status, .unauthorized)
        XCTAssertEqual(wrong.headers["WWW-Authenticate"], #"Bearer realm="twinstream", error="invalid_token""#)
        let readOnly = try await f.post(reading, key: f.readKey)
        XCTAssertEqual(readOnly.status, .forbidden)
        XCTAssertEqual(try json(readOnly)["code"], "insufficientScope")
        let viaHeader = try await f.client.post(HTTPIngest.path, headers: ["X-API-Key": f.key, "Content-Type": "application/json"], body: Array(reading.utf8))
        XCTAssertEqual(viaHeader.status, .accepted, viaHeader.text)
        await f.close()
    }

    func testOversizedBodiesAndBatchesAre413() async throws {
        // A route limit above the server's 1 MiB default: bodies up to it are read, larger ones are 413.
        let f = try await start { $0.maxBodyBytes = 2 << 20; $0.maxReadingsPerRequest = 3 }
        let reading = #"{"twinId":"p","ts":1,"values":{"x":1}}"#
        let padded = try await f.post(String(repeating: " ", count: (2 << 20) - 100) + reading)
        XCTAssertEqual(padded.status, .accepted, padded.text)
        let tooLarge = try await f.post(String(repeating: " ", count: 2 << 20) + reading)
        XCTAssertEqual(tooLarge.status, .contentTooLarge)
        let tooMany = try await f.post("[" + Array(repeating: reading, count: 4).joined(separator: ",") + "]")
        XCTAssertEqual(tooMany.status, .contentTooLarge)
        XCTAssertEqual(try json(tooMany)["code"], "too_many_readings")
        let tooManyLines = try await f.post(Array(repeating: reading, count: 4).joined(separator: "\n"), contentType: "application/x-ndjson")
        XCTAssertEqual(tooManyLines.status, .contentTooLarge)
        let justRight = try await f.post("[" + Array(repeating: reading, count: 3).joined(separator: ",") + "]")
        XCTAssertEqual(justRight.status, .accepted, justRight.text)
        await f.close()
    }

    func testUnsupportedMediaTypesAndEncodingsAre415() async throws {
        let f = try await start()
        let reading = #"{"twinId":"p","ts":1,"values":{"x":1}}"#
        for type in ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=iso-8859-1"] {
            let response = try await f.post(reading, contentType: type)
            XCTAssertEqual(response.status, .unsupportedMediaType, type)
            XCTAssertEqual(response.headers["Accept-Post"], "application/json, application/x-ndjson")
        }
        let gzip = try await f.post(reading, headers: ["Content-Encoding": "gzip"])
        XCTAssertEqual(gzip.status, .unsupportedMediaType)
        for type in ["application/json; charset=UTF-8", "application/vnd.acme.telemetry+json", "application/ndjson"] {
            let response = try await f.post(reading, contentType: type)
            XCTAssertEqual(response.status, .accepted, "\(type): \(response.text)")
        }
        let untyped = try await f.post(reading, contentType: nil)
        XCTAssertEqual(untyped.status, .accepted, "no Content-Type is read as JSON")
        await f.close()
    }

    // MARK: Back-pressure and broker failures

    func testAnUnavailableBrokerIsA503WithRetryAfterNeverA202() async throws {
        let f = try await start(brokerDown: true) { $0.deliveryTimeout = .seconds(1); $0.unavailableRetryAfterSeconds = 7 }
        let reading = #"{"twinId":"p","ts":1,"values":{"x":1}}"#
        let first = try await f.post(reading)
        XCTAssertEqual(first.status, .serviceUnavailable, first.text)
        XCTAssertEqual(first.headers["Retry-After"], "7")
        XCTAssertEqual(try json(first)["code"], "brokerUnavailable")
        // Right after a failed delivery the ingest answers 503 at once instead of queueing more.
        let second = try await f.post(reading)
        XCTAssertEqual(second.status, .serviceUnavailable)
        XCTAssertEqual(second.headers["Retry-After"], "7")
        XCTAssertTrue(f.metrics.render().contains(#"twinstream_ingest_http_requests_total{status="503"} 2"#))
        XCTAssertFalse(f.metrics.render().contains(#"twinstream_messages_produced_total"#))
        await f.close()
    }

    func testAFullProducerQueueIsA429WithRetryAfter() async throws {
        let f = try await start(brokerDown: true) {
            $0.producerQueueMessages = 2; $0.deliveryTimeout = .seconds(5); $0.queueFullWait = .milliseconds(50); $0.retryAfterSeconds = 3
        }
        let reading = #"{"twinId":"p","ts":1,"values":{"x":1}}"#
        // Three messages cannot fit a queue of two that the (down) broker never drains.
        let refused = try await f.post("[\(reading),\(reading),\(reading)]")
        XCTAssertEqual(refused.status, .tooManyRequests, refused.text)
        XCTAssertEqual(refused.headers["Retry-After"], "3")
        XCTAssertEqual(try json(refused)["code"], "backpressure")
        XCTAssertTrue(f.metrics.render().contains(#"twinstream_ingest_http_requests_total{status="429"} 1"#))
        await f.close()
    }

    func testTheInFlightBoundIsA429WithRetryAfter() async throws {
        let f = try await start(brokerDown: true) { $0.maxInFlightRequests = 1; $0.deliveryTimeout = .seconds(5) }
        let reading = #"{"twinId":"p","ts":1,"values":{"x":1}}"#
        let waiting = Task { try await f.post(reading) }
        let busy = await eventually { f.metrics.render().contains("twinstream_ingest_http_inflight_requests 1") }
        XCTAssertTrue(busy)
        let refused = try await f.post(reading)
        XCTAssertEqual(refused.status, .tooManyRequests, refused.text)
        XCTAssertEqual(refused.headers["Retry-After"], "1")
        _ = try await waiting.value
        await f.close()
    }

    /// `HTTP_MAX_INFLIGHT_BYTES`: while one request holds the budget, another whose body would
    /// pass it is answered 429 at once, even below the request-count bound.
    func testTheInFlightByteBoundIsA429WithRetryAfter() async throws {
        let f = try await start(brokerDown: true) { $0.maxInFlightRequests = 10; $0.maxInFlightBytes = 2_048; $0.deliveryTimeout = .seconds(2) }
        let reading = #"{"twinId":"p","ts":1,"values":{"x":1}}"#
        let large = "[" + Array(repeating: reading, count: 40).joined(separator: ",") + "]"  // about 1.6 KB
        let waiting = Task { try await f.post(large) }
        let busy = await eventually { f.metrics.render().contains("twinstream_ingest_http_inflight_requests 1") }
        XCTAssertTrue(busy)
        let refused = try await f.post(large)
        XCTAssertEqual(refused.status, .tooManyRequests, refused.text)
        XCTAssertEqual(refused.headers["Retry-After"], "1")
        XCTAssertTrue(refused.text.contains("bytes"), refused.text)
        _ = try await waiting.value
        await f.close()
    }

    /// The 202 lists at most `maxErrorsListed` rejected readings and counts the rest in
    /// `errorsOmitted`; the dead-letter still has every reason.
    func testErrorsBeyondTheListedBoundAreCountedInErrorsOmitted() async throws {
        var configuration = HTTPIngest.Configuration()
        configuration.maxErrorsListed = 2
        let body = "[" + (0..<5).map { _ in #"{"twinId":"p","values":{"x":1}}"# }.joined(separator: ",") + "]"
        let prepared = try HTTPIngest.prepare(body: Array(body.utf8), format: .json, tenant: "acme", requestID: "r", traceparent: nil,
                                              now: now, configuration: configuration).get()
        XCTAssertEqual(prepared.errors.count, 5)
        let f = try await start { $0.maxErrorsListed = 2 }
        let answer = try await f.post(body)
        XCTAssertEqual(answer.status, .accepted, answer.text)
        let json = try self.json(answer)
        XCTAssertEqual(json["errors"]?.arrayValue?.count, 2)
        XCTAssertEqual(json["errorsOmitted"]?.intValue, 3)
        XCTAssertEqual(json["rejected"]?.intValue, 5)
        await f.close()
    }

    func testAStoppingIngestAnswers503AndClosesItsProducer() async throws {
        let f = try await start()
        let running = Task { try await f.ingest.run() }
        let reading = #"{"twinId":"p","ts":1,"values":{"x":1}}"#
        let accepted = try await f.post(reading)
        XCTAssertEqual(accepted.status, .accepted)
        running.cancel()
        try await running.value
        let late = try await f.post(reading)
        XCTAssertEqual(late.status, .serviceUnavailable)
        XCTAssertNotNil(late.headers["Retry-After"])
        await f.server.shutdown(gracePeriod: .seconds(1))
    }

    /// Polls `condition` until it holds (or 20 s pass); the result is asserted, never the time.
    private func eventually(_ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(20)
        while !condition() && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        return condition()
    }
}
