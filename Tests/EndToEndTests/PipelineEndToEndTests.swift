import Contracts
import Foundation
import HTTP
import JSON
import Kafka
import TestSupport
import XCTest

/// End-to-end tests: the real executables as processes, on the embedded broker.
final class PipelineEndToEndTests: XCTestCase {
    private func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("twinstream-e2e-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// `twinctl up` (broker + six services), a reading in on telemetry.raw.v1 and out of
    /// `GET /v1/twins/{id}`; garbage lands on the dead-letter topic; nobody exits; Ctrl-C stops all with 0.
    func testTwinctlUpServesAPublishedReadingAndDeadLettersGarbage() async throws {
        let base = Harness.freePortRange(6)
        let dir = try tempDir()
        let up = try ChildProcess("twinctl", ["up", "--no-fleet", "--base-port", String(base), "--log-dir", dir.path, "--state-dir", dir.appendingPathComponent("state").path],
                                  stderrTo: dir.appendingPathComponent("twinctl.log"))
        let started = await Harness.eventually(timeout: .seconds(120)) { up.output.contains { $0.hasPrefix("platform up") } }
        XCTAssertTrue(started, "twinctl up did not start: \(up.output)")
        let bootstrap = try XCTUnwrap(up.output.first { $0.hasPrefix("bootstrap.servers=") }?.dropFirst("bootstrap.servers=".count))
        XCTAssertTrue(up.output.contains { $0.contains("platform up; Ctrl-C") }, "some service was not ready: \(up.output)")

        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: String(bootstrap)))
        let ts = Int64(Date().timeIntervalSince1970 * 1000)
        _ = try await producer.send(OutgoingMessage(topic: Topic.telemetryRaw.name, key: "pump-e2e",
                                                    value: Array(#"{"twinId":"pump-e2e","model":"pump@1","ts":\#(ts),"values":{"flow":12,"pressure":3.1,"temperature":71.5,"rpm":1450}}"#.utf8)))
        // The local stack's API key (printed by `twinctl up`) reads the query API too.
        let key = try XCTUnwrap(up.output.first { $0.hasPrefix("api key: ") }?.dropFirst("api key: ".count), "\(up.output)")
        var twin: [UInt8] = []
        let served = await Harness.eventually(timeout: .seconds(30)) {
            guard let (status, body) = await Harness.get(port: base, "/v1/twins/pump-e2e", key: String(key)), status == 200 else { return false }
            twin = body
            return true
        }
        XCTAssertTrue(served, "GET /v1/twins/pump-e2e never answered with the reading")
        XCTAssertEqual(Harness.property(twin, "temperature"), 71.5)
        XCTAssertEqual(Harness.property(twin, "rpm"), 1450)
        XCTAssertEqual((try? JSON(parsing: twin))?["properties"]?["temperature"]?["eventTime"]?.stringValue, Timestamp.format(ts))
        let unauthenticated = await Harness.get(port: base, "/v1/twins/pump-e2e")
        XCTAssertEqual(unauthenticated?.status, 401, "the query API needs a key")
        // The same path over HTTP, with the key `twinctl up` generated and printed: a mixed NDJSON
        // batch. Lines the ingestor rejects are counted in the 202; lines it accepts end on
        // telemetry.valid.v1 or, failing their model, on the dead-letter topic — none vanish.
        let batch = [
            #"{"twinId":"pump-http","ts":\#(ts),"values":{"flow":30,"pressure":2.5,"temperature":20.5,"rpm":1400}}"#,
            #"{"twinId":"pump-http"}"#,
            #"{"twinId":"room-http","ts":\#(ts),"values":{"temperature":69.8,"co2":700},"units":{"temperature":"degF"}}"#,
            #"{"twinId":"pump-bad","ts":\#(ts),"values":{"flow":-5,"pressure":2.5,"temperature":20,"rpm":100}}"#,
            "not json",
        ].joined(separator: "\n")
        let posted = try await HTTPClient(port: base + 1).post("/v1/telemetry", headers: ["Authorization": "Bearer \(key)", "Content-Type": "application/x-ndjson"],
                                                               body: Array(batch.utf8))
        XCTAssertEqual(posted.status.code, 202, posted.text)
        let answer = try JSON(parsing: posted.text)
        XCTAssertEqual(answer["accepted"]?.intValue, 3, posted.text)
        XCTAssertEqual(answer["rejected"]?.intValue, 2, posted.text)
        let servedHTTP = await Harness.eventually(timeout: .seconds(30)) {
            guard let (status, body) = await Harness.get(port: base, "/v1/twins/pump-http", key: String(key)), status == 200 else { return false }
            return Harness.property(body, "temperature") == 20.5
        }
        XCTAssertTrue(servedHTTP, "a reading posted to the ingestor never reached the query API")
        var valid: [TelemetryEnvelope] = [], letters: [DeadLetter] = []
        let accounted = await Harness.eventually(timeout: .seconds(30)) {
            valid = ((try? await readTopic(Topic.telemetryValid, bootstrap: String(bootstrap))) ?? []).compactMap { try? TelemetryEnvelope(bytes: $0.value) }
                .filter { $0.source.kind == "http" }
            letters = ((try? await readTopic(Topic.telemetryDeadLetter, bootstrap: String(bootstrap))) ?? []).compactMap { try? DeadLetter(bytes: $0.value) }
            return valid.count + letters.filter { $0.stage == "validator" }.count == 3 && letters.contains { $0.stage == "ingestor" && $0.source != nil }
        }
        XCTAssertTrue(accounted, "accepted lines not all accounted for: valid \(valid.map(\.twinId)), dead-letters \(letters.map { ($0.stage, $0.twinId) })")
        XCTAssertEqual(Set(valid.map(\.twinId)), ["pump-http", "room-http"])
        XCTAssertEqual(try XCTUnwrap(valid.first { $0.twinId == "room-http" }?.values["temperature"]?.doubleValue), 21, accuracy: 1e-9, "°F converted to the model's °C")
        let modelLetter = try XCTUnwrap(letters.first { $0.stage == "validator" })
        XCTAssertEqual(modelLetter.twinId, "pump-bad")
        XCTAssertEqual(modelLetter.reasons.map(\.code), ["out_of_range"])
        XCTAssertEqual(modelLetter.reasons.first?.pointer, "/values/flow")
        let ingestLetter = try XCTUnwrap(letters.first { $0.stage == "ingestor" && $0.source != nil })
        XCTAssertEqual(ingestLetter.reasons.count, 2, "one reason per rejected line: \(ingestLetter.reasons)")
        let unauthorized = try await HTTPClient(port: base + 1).post("/v1/telemetry", headers: ["Content-Type": "application/json"], body: Array("{}".utf8))
        XCTAssertEqual(unauthorized.status.code, 401)

        let missing = await Harness.get(port: base, "/v1/twins/nobody", key: String(key))
        XCTAssertEqual(missing?.status, 404)

        // Undecodable bytes: dead-lettered with the original, and every service keeps running.
        let garbage: [UInt8] = [0x7B, 0x22, 0xFF, 0x00, 0x13]
        _ = try await producer.send(OutgoingMessage(topic: Topic.telemetryRaw.name, key: nil as String?, value: garbage))
        await producer.close()
        let deadLetters = try KafkaConsumer(configuration: KafkaConfiguration(bootstrapServers: String(bootstrap)),
                                            readingFromBeginning: (0..<Topic.partitionCount).map { TopicPartition(Topic.telemetryDeadLetter.name, $0) })
        var letter: DeadLetter?
        _ = await Harness.eventually(timeout: .seconds(30)) {
            for message in (try? await deadLetters.poll()) ?? [] {
                if let decoded = try? DeadLetter(bytes: message.value), decoded.original == garbage { letter = decoded }
            }
            return letter != nil
        }
        await deadLetters.close()
        XCTAssertEqual(letter?.stage, "ingestor")
        XCTAssertEqual(letter?.reasons.first?.code, "invalid_json")
        for offset in 0..<6 {
            let health = await Harness.get(port: base + offset, "/healthz")
            XCTAssertEqual(health?.status, 200, "service on port \(base + offset) stopped answering")
        }
        let metrics = await Harness.get(port: base + 1, "/metrics")
        let deadLetterLines = String(decoding: metrics?.body ?? [], as: UTF8.self).split(separator: "\n").filter { $0.hasPrefix("twinstream_deadlettered_total{") }
        // Two invalid_json: the HTTP request's unparsable line and the garbage (each dead-letter
        // counts every distinct code it carries, whichever path wrote it).
        XCTAssertTrue(deadLetterLines.contains { $0.contains(#"reason="invalid_json""#) && $0.contains(#"stage="ingestor""#) && $0.contains(#"tenant="default""#) && $0.hasSuffix(" 2") },
                      "no dead-letter count for the garbage: \(deadLetterLines)")

        up.signal(SIGINT)
        let status = await up.waitForExit(timeout: .seconds(60))
        XCTAssertEqual(status, 0, "twinctl up: \(up.output.suffix(10))")
        XCTAssertEqual(up.output.filter { $0.contains("exited with 0") }.count, 6, "\(up.output.suffix(8))")
    }
}
