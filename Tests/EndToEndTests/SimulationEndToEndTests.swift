import Contracts
import Foundation
import HTTP
import JSON
import Kafka
import ServiceKit
import TestSupport
import XCTest

/// The simulator-worker as a process behind the query API: a simulation submitted over HTTP
/// whose worker is SIGKILLed mid-run is picked up again by a new worker and completes exactly
/// once as seen through the API.
final class SimulationEndToEndTests: XCTestCase {
    func testAWorkerKilledMidRunLeavesTheRequestToTheNextWhichCompletesItOnce() async throws {
        let stack = try SimulationStack(ports: 4)
        defer { stack.tearDown() }
        let broker = stack.broker, base = stack.base, key = stack.key
        func start(_ name: String, port: Int, _ extra: [String: String] = [:], log: String? = nil) throws -> ChildProcess {
            try stack.start(name, port: port, extra, log: log)
        }
        var first: ChildProcess? = try start("simulator-worker", port: base + 2, log: "worker-1.log")
        defer { first?.signal(SIGKILL) }
        for port in [base, base + 1, base + 2] {
            let ready = await Harness.eventually(timeout: .seconds(60)) { await Harness.get(port: port, "/readyz")?.status == 200 }
            XCTAssertTrue(ready, "service on \(port) never became ready")
        }
        let client = HTTPClient(port: base, timeout: .seconds(10))
        let headers: HTTPHeaders = ["Authorization": "Bearer \(key)", "Content-Type": "application/json"]
        let created = try await client.send(.post, "/v1/twins", headers: headers, body: Array(#"{"twinId":"room-7","model":"room@1"}"#.utf8))
        XCTAssertEqual(created.status.code, 202, created.text)
        let visible = try await client.get("/v1/twins/room-7?minVersion=1&wait=20000", headers: headers)
        XCTAssertEqual(visible.status.code, 200, visible.text)

        // Long enough (several seconds in a debug build) to be killed in the middle.
        let body = #"{"kind":"monteCarlo","horizon":"24h","step":"10m","samples":8000,"seed":11,"uncertain":{"tau":{"normal":[7200,600]},"Ta":{"uniform":[0,10]}},"threshold":{"series":"temperature","above":21}}"#
        let posted = try await client.send(.post, "/v1/twins/room-7/simulations", headers: headers, body: Array(body.utf8))
        XCTAssertEqual(posted.status.code, 202, posted.text)
        let location = try XCTUnwrap(posted.headers["Location"])
        var progress: Double?
        let running = await Harness.eventually(timeout: .seconds(60)) {
            let doc = try? JSON(parsing: try await client.get(location, headers: headers).text)
            progress = doc?["progress"]?.doubleValue
            return doc?["status"]?.stringValue == "running"
        }
        XCTAssertTrue(running, "the first worker never reported progress")
        first?.signal(SIGKILL)
        _ = await first?.waitForExit(timeout: .seconds(10))
        XCTAssertTrue(first?.endedBySignal ?? false)
        first = nil
        let midway = try JSON(parsing: try await client.get(location, headers: headers).text)
        XCTAssertNotEqual(midway["status"]?.stringValue, "completed", "killed at progress \(progress ?? -1) before it finished")

        let second = try start("simulator-worker", port: base + 3, log: "worker-2.log")
        defer { second.signal(SIGKILL) }
        let (done, final) = await SimulationStack.final(client, location, headers: headers, timeout: .seconds(120))
        XCTAssertTrue(done, "the request never completed after the worker was killed: \(final)")
        XCTAssertEqual(final["status"]?.stringValue, "completed", "\(final)")
        XCTAssertEqual(final["samples"]?.intValue, 8000)
        XCTAssertNotNil(final["probability"]?["value"]?.doubleValue)
        let list = try JSON(parsing: try await client.get("/v1/twins/room-7/simulations", headers: headers).text)
        XCTAssertEqual(list["total"]?.intValue, 1, "one simulation, listed once: \(list)")

        // On the topic: taken twice (the first worker's attempt was not acknowledged), finished once.
        var starts: [TopicPartition: KafkaConsumer.StartOffset] = [:]
        for p in 0..<Topic.partitionCount { starts[TopicPartition(Topic.simulationResults.name, p)] = .beginning }
        let reader = try KafkaConsumer(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers, EmbeddedBroker.clientProperties), reading: starts)
        var statuses: [String] = []
        let deadline = ContinuousClock.now + .seconds(20)
        while !reader.isCaughtUp || statuses.isEmpty, ContinuousClock.now < deadline {
            for message in try await reader.poll(maxMessages: 500, timeout: .milliseconds(200)) {
                if let r = try? SimulationResult(bytes: message.value) { statuses.append(r.status.rawValue) }
            }
        }
        await reader.close()
        XCTAssertEqual(statuses.filter { $0 == "accepted" }.count, 2, "\(statuses)")
        XCTAssertEqual(statuses.filter { ["completed", "failed", "cancelled", "refused"].contains($0) }.count, 1, "\(statuses)")

        second.signal(SIGTERM)
        let status = await second.waitForExit(timeout: .seconds(30))
        XCTAssertEqual(status, 0, "simulator-worker did not exit 0 on SIGTERM")
    }
}
