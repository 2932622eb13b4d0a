import Contracts
import Foundation
import HTTP
import JSON
import Kafka
import TestSupport
import XCTest

/// SIGKILL of each service in turn while readings flow, each restarted after a pause: no reading
/// is lost, the state (on twin.state.v1 and through the query API) equals the reference fold of
/// the readings the test sent, a simulation open when its worker died completes, and drift alerts
/// open before the drift monitor died are neither lost nor raised again.
final class KillAndRestartTests: XCTestCase {
    func testSIGKILLOfEachServiceInTurnMidStreamLosesNothing() async throws {
        let stack = try await FaultStack()
        defer { stack.tearDown(keepLogs: (testRun?.failureCount ?? 0) > 0) }
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: stack.bootstrap))
        defer { Task { await producer.close() } }
        // With FAULTS=full: more twins, and three rounds of kills.
        var load = KnownLoad(twins: fullFaults ? 200 : 40)
        let headers: HTTPHeaders = ["Authorization": "Bearer \(stack.key)", "Content-Type": "application/json"]
        let api = HTTPClient(port: stack.port("query-api"), timeout: .seconds(10))

        // Twins whose only reading is an hour old and names no model (the prefix rule gives
        // it): stale at once, so each opens one alert that must stay open, and stay one, across
        // the drift monitor's death.
        let probes = (0..<3).map { "pump-stale-\($0)" }
        let old = Int64(Date().timeIntervalSince1970 * 1000) - 3_600_000
        _ = try await producer.sendAll(probes.map { (twin: String) in
            OutgoingMessage(topic: Topic.telemetryRaw.name, key: twin,
                            value: Array(#"{"twinId":"\#(twin)","ts":\#(old),"values":{"flow":1,"pressure":1,"temperature":20,"rpm":100}}"#.utf8))
        })
        var ledger = AlertLedger([])
        let probesOpen = await Harness.eventually(timeout: .seconds(60)) {
            ledger = (try? await AlertLedger.read(stack)) ?? ledger
            return probes.allSatisfy { probe in ledger.openAlerts.keys.contains { $0.hasPrefix("default/\(probe)/stale") } }
        }
        XCTAssertTrue(probesOpen, "the stale probes never raised their alerts: \(ledger.openAlerts)")
        let openBefore = ledger.openAlerts

        // A simulation long enough (seconds in a debug build) to be running when its worker dies.
        let created = try await api.send(.post, "/v1/twins", headers: headers, body: Array(#"{"twinId":"room-f","model":"room@1"}"#.utf8))
        XCTAssertEqual(created.status.code, 202, created.text)
        let visible = try await api.get("/v1/twins/room-f?minVersion=1&wait=20000", headers: headers)
        XCTAssertEqual(visible.status.code, 200, visible.text)

        var location: String?
        let kills = (0..<(fullFaults ? 3 : 1)).flatMap { round in FaultStack.services.map { (round, $0) } }
        for (round, name) in kills {
            _ = try await producer.sendAll(load.next(5))
            if name == "simulator-worker" && round == 0 {
                let body = #"{"kind":"monteCarlo","horizon":"24h","step":"10m","samples":8000,"seed":5,"uncertain":{"tau":{"normal":[7200,600]}},"threshold":{"series":"temperature","above":21}}"#
                let posted = try await api.send(.post, "/v1/twins/room-f/simulations", headers: headers, body: Array(body.utf8))
                XCTAssertEqual(posted.status.code, 202, posted.text)
                location = posted.headers["Location"]
                let taken = await Harness.eventually(timeout: .seconds(60)) {
                    guard let location, let doc = try? JSON(parsing: try await api.get(location, headers: headers).text) else { return false }
                    return doc["status"]?.stringValue == "running"
                }
                XCTAssertTrue(taken, "the worker never started the simulation")
            }
            // Killed with the readings just sent still on their way through the pipeline.
            await stack.kill(name)
            _ = try await producer.sendAll(load.next(3))
            // The outage itself (what the fault is), not a synchronisation.
            try await Task.sleep(for: .seconds(1))
            try stack.start(name)
            let notReady = await stack.waitUntilReady([name], timeout: .seconds(60))
            XCTAssertEqual(notReady, [], "\(name) not ready after its restart")
        }
        _ = try await producer.sendAll(load.next(2))

        let problems = await load.converged(stack)
        XCTAssertEqual(problems, [], "state differs from the reference fold of \(load.sent) readings per twin")
        let missing = try await load.missingFromValid(stack)
        XCTAssertEqual(missing.count, 0, "readings lost before telemetry.valid.v1: \(missing.sorted().prefix(10))")

        let final = try XCTUnwrap(location)
        var status = ""
        let completed = await Harness.eventually(timeout: .seconds(120)) {
            status = (try? JSON(parsing: try await api.get(final, headers: headers).text))?["status"]?.stringValue ?? ""
            return ["completed", "failed", "cancelled", "refused"].contains(status)
        }
        XCTAssertTrue(completed && status == "completed", "the simulation open when its worker died ended as '\(status)'")

        ledger = try await AlertLedger.read(stack)
        XCTAssertEqual(ledger.problems, [], "alerts raised twice")
        for (condition, id) in openBefore {
            XCTAssertEqual(ledger.openAlerts[condition], id, "\(condition): the alert open before the kills is no longer the open one")
            XCTAssertEqual(ledger.raised[condition]?.count, 1, "\(condition) raised again: \(ledger.raised[condition] ?? [])")
        }
        let notReady = await stack.waitUntilReady(timeout: .seconds(60))
        XCTAssertEqual(notReady, [], "not ready after the restarts")
        let unhealthy = await stack.unhealthy()
        XCTAssertEqual(unhealthy, [])
    }
}
