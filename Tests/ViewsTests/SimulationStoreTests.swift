import Contracts
import Views
import XCTest

/// Simulations by id and per twin: a final result is never replaced, and the store is bounded.
final class SimulationStoreTests: XCTestCase {
    func result(_ id: String, _ status: SimulationResult.Status, twin: String = "room-1", progress: Double? = nil, runSeconds: Double? = nil) -> SimulationResult {
        var r = SimulationResult(simulationId: id, tenant: "acme", twinId: twin, kind: .forecast, status: status, start: 0,
                                 timings: .init(runSeconds: runSeconds))
        r.progress = progress
        if status == .completed { r.times = [0, 60]; r.series = ["temperature": [20, 21]] }
        return r
    }

    func testAFinalResultIsNeverReplacedByProgressOrASecondFinalOne() {
        let store = SimulationStore()
        XCTAssertTrue(store.apply(result("s1", .accepted), bytes: result("s1", .accepted).encoded()))
        XCTAssertTrue(store.apply(result("s1", .running, progress: 0.6), bytes: [1]))
        XCTAssertEqual(store.entry(tenant: "acme", simulationId: "s1")?.progress, 0.6)
        let final = result("s1", .completed, runSeconds: 1)
        XCTAssertTrue(store.apply(final, bytes: final.encoded()))
        // A worker that died after publishing the final result, and its successor's rerun:
        XCTAssertFalse(store.apply(result("s1", .accepted), bytes: [2]))
        XCTAssertFalse(store.apply(result("s1", .running, progress: 0.1), bytes: [3]))
        XCTAssertFalse(store.apply(result("s1", .completed, runSeconds: 2), bytes: [4]))
        let entry = store.entry(tenant: "acme", simulationId: "s1")
        XCTAssertEqual(entry?.status, "completed")
        XCTAssertEqual(entry?.document, final.encoded())
        XCTAssertNil(store.entry(tenant: "beta", simulationId: "s1"), "tenant-scoped")
    }

    func testTheOldestSimulationIsEvictedPastCapacityAndListsAreNewestFirst() {
        let store = SimulationStore(capacity: 3)
        for i in 1...5 { store.apply(result("s\(i)", .accepted, twin: i % 2 == 0 ? "room-2" : "room-1"), bytes: [UInt8(i)]) }
        XCTAssertNil(store.entry(tenant: "acme", simulationId: "s1"))
        XCTAssertNil(store.entry(tenant: "acme", simulationId: "s2"))
        XCTAssertEqual(store.sizes.simulations, 3)
        XCTAssertEqual(store.sizes.evicted, 2)
        XCTAssertEqual(store.list(tenant: "acme", twinId: "room-1", limit: 10).items.map(\.simulationId), ["s5", "s3"])
        let page = store.list(tenant: "acme", twinId: "room-1", limit: 1)
        XCTAssertEqual(page.items.map(\.simulationId), ["s5"])
        XCTAssertEqual(store.list(tenant: "acme", twinId: "room-1", before: page.next, limit: 1).items.map(\.simulationId), ["s3"])
    }
}
