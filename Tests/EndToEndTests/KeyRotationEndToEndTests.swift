import Contracts
import Foundation
import HTTP
import Kafka
import ServiceKit
import TestSupport
import XCTest

/// A running ingestor takes a key added to its keys file and drops a removed one without a
/// restart, and SIGHUP reloads without stopping it.
final class KeyRotationEndToEndTests: XCTestCase {
    func testTheIngestorPicksUpKeyChangesAndSurvivesSIGHUP() async throws {
        let broker = try EmbeddedBroker(topics: Topic.all)
        defer { broker.shutdown() }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("twinstream-keys-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let keysFile = dir.appendingPathComponent("api-keys.json").path
        let first = try APIKeysFile.addKey(tenant: "acme", scopes: [.ingest], to: keysFile)
        let port = Harness.freePort()
        let ingestor = try ChildProcess("ingestor", environment: Harness.embeddedBrokerEnvironment([
            "KAFKA_BROKERS": broker.bootstrapServers, "HTTP_PORT": String(port), "API_KEYS_FILE": keysFile, "API_KEYS_RELOAD_INTERVAL": "200ms",
        ]), stderrTo: dir.appendingPathComponent("ingestor.log"))
        defer { ingestor.signal(SIGTERM) }

        let now = Int64(Date().timeIntervalSince1970 * 1000)
        func post(_ key: String) async -> Int? {
            let body = Array(#"{"twinId":"pump-1","ts":\#(now),"values":{"flow":3}}"#.utf8)
            return try? await HTTPClient(port: port).post("/v1/telemetry", headers: ["Authorization": "Bearer \(key)", "Content-Type": "application/json"], body: body).status.code
        }
        let up = await Harness.eventually(timeout: .seconds(30)) { await post(first.key) == 202 }
        XCTAssertTrue(up, "the ingestor never accepted the first key")

        // Rotate in the file while it runs.
        let second = try APIKeysFile.addKey(tenant: "acme", scopes: [.ingest], to: keysFile)
        try APIKeysFile.remove(id: first.entry.id, from: keysFile)
        let rotated = await Harness.eventually(timeout: .seconds(15)) {
            let (new, old) = (await post(second.key), await post(first.key))
            return new == 202 && old == 401
        }
        XCTAssertTrue(rotated, "the running ingestor did not take the rotated keys")

        // SIGHUP reloads; it never stops a service.
        ingestor.signal(SIGHUP)
        let reloaded = await Harness.eventually(timeout: .seconds(10)) { ingestor.output.contains { $0.contains("SIGHUP: reloading API keys") } }
        XCTAssertTrue(reloaded, "no reload logged after SIGHUP")
        let alive = await Harness.get(port: port, "/healthz")
        XCTAssertEqual(alive?.status, 200, "SIGHUP must not stop the service")
        let stillAccepted = await post(second.key)
        XCTAssertEqual(stillAccepted, 202)
    }
}
