import Foundation
import Models
import XCTest
@testable import Simulation

final class SweepTests: XCTestCase {
    let grid = try! TimeGrid(horizon: 86_400, step: 60)

    func testOneDimensionalSweepAgainstClosedForm() throws {
        // T falls from 20 towards Ta = 10; seconds below 15: from t* = tau·ln((20 − 10)/(15 − 10)) to the horizon.
        let request = SweepRequest(scenario: Scenario(values: ["temperature": 20, "Ta": 10]), grid: grid,
                                   axes: [SweepAxis(name: "tau", from: 3600, to: 14_400, count: 4)], series: "temperature",
                                   threshold: .below, level: 15)
        let result = try Sweep(model: Fixtures.room, request: request).run()
        XCTAssertEqual(result.points.count, 4)
        for p in result.points {
            let tau = p.coordinates[0]
            XCTAssertEqual(p.final, Fixtures.roomExact(86_400, T0: 20, Ta: 10, P: 0, tau: tau), accuracy: 1e-4)  // 1e-5 of the 10 K range
            XCTAssertEqual(p.maximum, 20)
            XCTAssertEqual(p.minimum, p.final, accuracy: 1e-4)
            let exact = 86_400 - tau * log(2)
            // Linear interpolation between grid values: error far below the 60 s spacing.
            XCTAssertEqual(p.secondsBeyond!, exact, accuracy: 1)
        }
    }

    func testTwoDimensionalRowByRowAndShardMerge() throws {
        let request = SweepRequest(scenario: Scenario(values: ["temperature": 20]), grid: try TimeGrid(horizon: 3600 * 12, step: 600),
                                   axes: [SweepAxis(name: "Ta", values: [0, 5, 10]), SweepAxis(name: "hvacPower", values: [0, 1000])],
                                   series: "temperature", threshold: .above, level: 18)
        let sweep = try Sweep(model: Fixtures.room, request: request)
        XCTAssertEqual(sweep.pointCount, 6)
        let whole = try sweep.run()
        XCTAssertEqual(whole.points.map(\.coordinates), [[0, 0], [0, 1000], [5, 0], [5, 1000], [10, 0], [10, 1000]])
        let shards = [try sweep.run(points: 4..<6), try sweep.run(points: 0..<1), try sweep.run(points: 1..<4)]
        XCTAssertEqual(try sweep.merge(shards), whole)
        XCTAssertThrowsError(try sweep.merge(shards + [try sweep.run(points: 0..<1)])) {
            XCTAssertEqual(($0 as! SimulationError).code, .incompatibleShards)
        }
        for p in whole.points {
            XCTAssertEqual(p.final, Fixtures.roomExact(43_200, T0: 20, Ta: p.coordinates[0], P: p.coordinates[1]), accuracy: 1e-5)
        }
    }
}
