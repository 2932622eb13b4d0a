import Contracts
import Foundation
import Kafka
import TestSupport
import XCTest

/// The broker away for the whole stack at once, through `twinctl broker`'s admin port: every
/// service reports not-ready while it is away, recovers when it is back, and loses nothing; and
/// injected request errors (timeouts, leaders and coordinators moving) are retried through.
final class BrokerOutageTests: XCTestCase {
    func testBrokerAwayTenSecondsEveryServiceNotReadyThenRecoversLosingNothing() async throws {
        let stack = try await FaultStack()
        defer { stack.tearDown(keepLogs: (testRun?.failureCount ?? 0) > 0) }
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: stack.bootstrap))
        var load = KnownLoad(twins: 30)
        _ = try await producer.sendAll(load.next(5))

        try await stack.admin("/down")
        // Readings sent while the broker is away wait in the producer and go when it is back.
        let during = load.next(5)
        let sending = Task { try await producer.sendAll(during) }
        var seenNotReady: Set<String> = []
        var unhealthy: [String] = []
        let away = ContinuousClock.now
        while ContinuousClock.now - away < .seconds(10) {
            for name in FaultStack.services where !seenNotReady.contains(name) {
                if let status = await Harness.get(port: stack.port(name), "/readyz")?.status, status != 200 { seenNotReady.insert(name) }
            }
            unhealthy += await stack.unhealthy()
            try await Task.sleep(for: .milliseconds(200))
        }
        try await stack.admin("/up")
        XCTAssertEqual(Set(FaultStack.services).subtracting(seenNotReady), [], "reported ready while the broker was away")
        XCTAssertEqual(unhealthy, [], "a service stopped answering /healthz or exited while the broker was away")

        _ = try await sending.value
        _ = try await producer.sendAll(load.next(2))
        await producer.close()
        let notReady = await stack.waitUntilReady(timeout: .seconds(90))
        XCTAssertEqual(notReady, [], "not ready again after the broker came back")
        let problems = await load.converged(stack)
        XCTAssertEqual(problems, [], "state differs from the reference fold after the outage")
        let missing = try await load.missingFromValid(stack)
        XCTAssertEqual(missing.count, 0, "readings lost: \(missing.sorted().prefix(10))")
        let after = await stack.unhealthy()
        XCTAssertEqual(after, [])
    }

    func testInjectedRequestErrorsAreRetriedAndLoseNothing() async throws {
        let stack = try await FaultStack()
        defer { stack.tearDown(keepLogs: (testRun?.failureCount ?? 0) > 0) }
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: stack.bootstrap))
        var load = KnownLoad(twins: 30)
        // Each round: errors queued for the next requests of a kind, whichever client sends
        // them, then readings through the whole pipeline.
        let rounds: [(request: String, errors: [String])] = [
            ("Produce", Array(repeating: "REQUEST_TIMED_OUT", count: 4) + Array(repeating: "NOT_LEADER_FOR_PARTITION", count: 4)),
            ("Fetch", Array(repeating: "NOT_LEADER_FOR_PARTITION", count: 6)),
            ("OffsetCommit", ["NOT_COORDINATOR", "REQUEST_TIMED_OUT", "NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS"]),
            ("Heartbeat", ["NOT_COORDINATOR", "NOT_COORDINATOR"]),
            ("FindCoordinator", ["COORDINATOR_NOT_AVAILABLE", "COORDINATOR_NOT_AVAILABLE"]),
        ]
        for round in rounds {
            try await stack.admin("/errors?request=\(round.request)&errors=\(round.errors.joined(separator: ","))")
            _ = try await producer.sendAll(load.next(4))
        }
        await producer.close()
        let problems = await load.converged(stack)
        XCTAssertEqual(problems, [], "state differs from the reference fold after the injected errors")
        let missing = try await load.missingFromValid(stack)
        XCTAssertEqual(missing.count, 0, "readings lost: \(missing.sorted().prefix(10))")
        let notReady = await stack.waitUntilReady(timeout: .seconds(60))
        XCTAssertEqual(notReady, [])
        let unhealthy = await stack.unhealthy()
        XCTAssertEqual(unhealthy, [])
    }

    /// The admin port refuses what it cannot do, saying what it takes.
    func testBrokerAdminPortRefusesUnknownRequestKindsAndErrorNames() async throws {
        let (broker, _, port) = try await FaultStack.startBroker()
        defer { broker.signal(SIGKILL) }
        let kind = try await FaultStack.admin(port: port, "/errors?request=Nonsense&errors=REQUEST_TIMED_OUT")
        XCTAssertEqual(kind.status, 400)
        XCTAssertTrue(kind.text.contains("Produce"), kind.text)
        let name = try await FaultStack.admin(port: port, "/errors?request=Produce&errors=NO_SUCH_ERROR")
        XCTAssertEqual(name.status, 400)
        XCTAssertTrue(name.text.contains("NO_SUCH_ERROR"), name.text)
        let id = try await FaultStack.admin(port: port, "/down?broker=7")
        XCTAssertEqual(id.status, 400)
        let ok = try await FaultStack.admin(port: port, "/errors?request=Produce&errors=REQUEST_TIMED_OUT")
        XCTAssertEqual(ok.status, 204)
        broker.signal(SIGTERM)
        let status = await broker.waitForExit(timeout: .seconds(20))
        XCTAssertEqual(status, 0)
    }
}
