import Contracts
import Foundation
import HTTP
import JSON
import Kafka
import ServiceKit
import Synchronization
import TestSupport
import XCTest

/// The query API as a process in front of a real state-updater, on the embedded broker: a twin
/// created over HTTP becomes a command, the state-updater applies it, and the API reads its own
/// write (`minVersion`), streams the twin's changes and reports the command's outcome.
final class QueryAPIEndToEndTests: XCTestCase {
    func testCreateThroughTheAPIIsAppliedByTheStateUpdaterAndStreamedBack() async throws {
        let broker = try EmbeddedBroker(topics: Topic.all)
        defer { broker.shutdown() }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("twinstream-qapi-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let keysFile = dir.appendingPathComponent("keys.json").path
        let (key, _) = try APIKeysFile.addKey(tenant: "acme", scopes: [.read, .write], to: keysFile)
        let (otherKey, _) = try APIKeysFile.addKey(tenant: "beta", scopes: [.read, .write], to: keysFile)
        let base = Harness.freePortRange(2)
        let common = Harness.embeddedBrokerEnvironment(["KAFKA_BROKERS": broker.bootstrapServers, "LOG_LEVEL": "info"])
        let api = try ChildProcess("query-api", environment: common.merging(["HTTP_PORT": String(base), "API_KEYS_FILE": keysFile]) { _, b in b },
                                   stderrTo: dir.appendingPathComponent("query-api.log"))
        let updater = try ChildProcess("state-updater", environment: common.merging(["HTTP_PORT": String(base + 1), "STATE_DIR": dir.appendingPathComponent("state").path]) { _, b in b },
                                       stderrTo: dir.appendingPathComponent("state-updater.log"))
        defer {
            api.signal(SIGKILL)
            updater.signal(SIGKILL)
        }
        for port in [base, base + 1] {
            let ready = await Harness.eventually(timeout: .seconds(60)) { await Harness.get(port: port, "/readyz")?.status == 200 }
            XCTAssertTrue(ready, "service on \(port) never became ready")
        }
        let client = HTTPClient(port: base, timeout: .seconds(10))
        let auth: HTTPHeaders = ["Authorization": "Bearer \(key)"]

        let created = try await client.send(.post, "/v1/twins", headers: ["Authorization": "Bearer \(key)", "Content-Type": "application/json"],
                                            body: Array(#"{"twinId":"pump-q","model":"pump","metadata":{"site":"north"}}"#.utf8))
        XCTAssertEqual(created.status.code, 202, created.text)
        let location = try XCTUnwrap(created.headers["Location"])
        let read = try await client.get("/v1/twins/pump-q?minVersion=1&wait=20000", headers: auth)
        XCTAssertEqual(read.status.code, 200, read.text)
        XCTAssertEqual(read.headers["ETag"], "\"1\"")
        XCTAssertEqual(try JSON(parsing: read.text)["model"]?.stringValue, "pump@2", "`pump` is the latest version loaded")
        let outcome = await Harness.eventually(timeout: .seconds(20)) {
            (try? JSON(parsing: try await client.get(location, headers: auth).text))?["status"]?.stringValue == "applied"
        }
        XCTAssertTrue(outcome, "the command's outcome never showed as applied")

        // A reading folded by the state-updater arrives on the twin's event stream.
        let events = Mutex<[ServerSentEvent]>([])
        let reader = Task {
            for try await event in client.events("/v1/twins/pump-q/events", headers: auth) { events.withLock { $0.append(event) } }
        }
        defer { reader.cancel() }
        // The stream subscribes when its head is written: wait until the query API has it.
        let subscribed = await Harness.eventually(timeout: .seconds(10)) {
            String(decoding: await Harness.get(port: base, "/metrics")?.body ?? [], as: UTF8.self).contains("twinstream_sse_subscribers 1")
        }
        XCTAssertTrue(subscribed, "the event stream never subscribed")
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let envelope = TelemetryEnvelope(eventId: "e-1", tenant: "acme", twinId: "pump-q", model: "pump@2", eventTime: now, ingestTime: now,
                                         source: .init(kind: "test", ref: "e2e"), values: ["flow": 42.5])
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers))
        _ = try await producer.send(OutgoingMessage(topic: Topic.telemetryValid.name, key: envelope.key, value: envelope.encoded(),
                                                    headers: [KafkaHeader(MessageHeader.tenant, "acme"), KafkaHeader(MessageHeader.contract, TelemetryEnvelope.contract)]))
        await producer.close()
        let streamed = await Harness.eventually(timeout: .seconds(20)) { events.withLock { !$0.isEmpty } }
        XCTAssertTrue(streamed, "no change event arrived on the stream")
        let change = try TwinChange(bytes: Array(try XCTUnwrap(events.withLock { $0.first }).data.utf8))
        XCTAssertEqual(change.kind, .telemetry)
        XCTAssertEqual(change.changes.first?.new, 42.5)
        let after = try await client.get("/v1/twins/pump-q?minVersion=2&wait=20000", headers: auth)
        XCTAssertEqual(try JSON(parsing: after.text)["properties"]?["flow"]?["value"], 42.5)

        // A patch with a stale If-Match is rejected by the state-updater, with its reason readable.
        let stale = try await client.send(.patch, "/v1/twins/pump-q", headers: ["Authorization": "Bearer \(key)", "If-Match": "\"1\"", "Content-Type": "application/merge-patch+json"],
                                          body: Array(#"{"metadata":{"site":"south"}}"#.utf8))
        XCTAssertEqual(stale.status.code, 202, stale.text)
        var reason: String?
        _ = await Harness.eventually(timeout: .seconds(20)) {
            reason = (try? JSON(parsing: try await client.get(try XCTUnwrap(stale.headers["Location"]), headers: auth).text))?["reason"]?["code"]?.stringValue
            return reason != nil
        }
        XCTAssertEqual(reason, "version_conflict")

        // Another tenant sees nothing of it.
        let other = try await client.get("/v1/twins/pump-q", headers: ["Authorization": "Bearer \(otherKey)"])
        XCTAssertEqual(other.status.code, 404)
        let none = try await client.get("/v1/twins/pump-q")
        XCTAssertEqual(none.status.code, 401)

        api.signal(SIGTERM)
        let status = await api.waitForExit(timeout: .seconds(30))
        XCTAssertEqual(status, 0, "query-api did not exit 0 on SIGTERM with an open event stream")
    }
}
