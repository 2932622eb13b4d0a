import Foundation
import Models
import XCTest
@testable import Simulation

/// Synthetic room data: true tau/C, an HVAC schedule that makes them identifiable (steps of P
/// reveal both the time constant and the gain P·tau/C), Gaussian noise from a seeded generator.
enum RoomData {
    static let power = [SchedulePoint(0, 0), SchedulePoint(3 * 3600, 3000), SchedulePoint(10 * 3600, 0), SchedulePoint(16 * 3600, 1500)]

    static func make(seed: UInt64, points: Int, noise: Double = 0.2, tau: Double = 10_000, C: Double = 8e6,
                     T0: Double = 18, Ta: Double = 5) throws -> [String: [SchedulePoint]] {
        let grid = try TimeGrid(horizon: 86_400, step: 86_400 / Double(points - 1))
        let truth = try Simulation.forecast(model: Fixtures.room, ForecastRequest(
            scenario: Scenario(values: ["temperature": T0, "Ta": Ta, "tau": tau, "C": C], inputs: ["P": .schedule(power, .previous)]),
            grid: grid, series: ["temperature"], options: SolverOptions(rtol: 1e-11, atol: 1e-12)))
        var g = SampleRandom(seed: seed, index: 0)
        let T = truth.series["temperature"]!
        return [
            "temperature": zip(grid.times, T).map { SchedulePoint($0, $1 + noise * g.normal()) },
            // The observed HVAC power, as the worker would pass it: one reading per minute-ish.
            "hvacPower": grid.times.map { t in SchedulePoint(t, power.last { $0.t <= t }!.value) },
        ]
    }

    static func request(_ observations: [String: [SchedulePoint]], fitInitial: Bool = true) -> CalibrationRequest {
        CalibrationRequest(scenario: Scenario(values: ["Ta": 5]), observations: observations, parameters: ["tau", "C"],
                           initialStates: fitInitial ? ["temperature"] : [])
    }
}

final class CalibrationTests: XCTestCase {
    func testRecoversTruthWithHonestStandardErrors() throws {
        let seed: UInt64 = 31, data = try RoomData.make(seed: seed, points: 1441)
        let r = try Calibration.run(model: Fixtures.room, RoomData.request(data))
        print(r.message, r.values, r.standardErrors ?? [:], "rms", r.rmsBefore, r.rmsAfter, "iterations", r.iterations)
        XCTAssertTrue(r.converged, "seed \(seed): \(r.message)")
        XCTAssertTrue(r.improved, "seed \(seed): \(r.message)")
        XCTAssertEqual(r.points, 1441)
        let se = try XCTUnwrap(r.standardErrors)
        XCTAssertLessThan(abs(r.values["tau"]! - 10_000), 3 * se["tau"]!, "seed \(seed)")
        XCTAssertLessThan(abs(r.values["C"]! - 8e6), 3 * se["C"]!, "seed \(seed)")
        XCTAssertEqual(r.rmsAfter["temperature"]!, 0.2, accuracy: 0.02, "seed \(seed)")
        XCTAssertEqual(r.noise["temperature"]!, 0.2, accuracy: 0.03, "seed \(seed)")
        XCTAssertGreaterThan(r.rmsBefore["temperature"]!, r.rmsAfter["temperature"]!)
        let c = try XCTUnwrap(r.correlation)
        XCTAssertEqual(c[0][0], 1, accuracy: 1e-12)
        XCTAssertEqual(c[0][1], c[1][0], accuracy: 1e-12)
    }

    /// Coverage of the reported standard errors: over 100 seeded data sets the truth should lie
    /// within 1.96 SE about 95 times. With n = 100 and p = 0.95 the count is Binomial; 88...100
    /// holds with probability > 0.999, so the test fails only if the errors are mis-stated.
    /// 361 points per case (24 h at 4 min) keep 100 fits quick in debug builds.
    func testStandardErrorCoverageOverSeeds() throws {
        var coveredTau = 0, coveredC = 0, fits = 0
        for seed in UInt64(1000)..<1100 {
            let data = try RoomData.make(seed: seed, points: 361)
            let r = try Calibration.run(model: Fixtures.room, RoomData.request(data))
            guard r.converged, r.improved, let se = r.standardErrors else {
                XCTFail("seed \(seed): \(r.message)")
                continue
            }
            fits += 1
            if abs(r.values["tau"]! - 10_000) <= 1.96 * se["tau"]! { coveredTau += 1 }
            if abs(r.values["C"]! - 8e6) <= 1.96 * se["C"]! { coveredC += 1 }
        }
        print("coverage over 100 seeds: tau \(coveredTau), C \(coveredC) (fits \(fits))")
        XCTAssert((88...100).contains(coveredTau), "tau covered \(coveredTau)/100 (seeds 1000..<1100)")
        XCTAssert((88...100).contains(coveredC), "C covered \(coveredC)/100 (seeds 1000..<1100)")
    }

    func testModelDataMismatchIsNotReportedAsAFit() throws {
        // A sinusoid under constant power: no first-order response to constant inputs does that.
        let seed: UInt64 = 8
        var g = SampleRandom(seed: seed, index: 0)
        let times = (0...360).map { Double($0) * 240 }
        let data: [String: [SchedulePoint]] = [
            "temperature": times.map { SchedulePoint($0, 20 + 3 * sin(2 * Double.pi * $0 / 7200) + 0.2 * g.normal()) },
            "hvacPower": [SchedulePoint(0, 500)],
        ]
        let r = try Calibration.run(model: Fixtures.room, RoomData.request(data))
        print("mismatch:", r.message, r.values, r.rmsBefore, r.rmsAfter)
        XCTAssertFalse(r.improved && r.converged, "seed \(seed): a mismatch was reported as a fit: \(r.message)")
        XCTAssertFalse(r.improved, "seed \(seed)")
    }

    func testNoiselessDataFitsExactly() throws {
        let data = try RoomData.make(seed: 1, points: 289, noise: 0)
        let r = try Calibration.run(model: Fixtures.room, RoomData.request(data, fitInitial: false))
        XCTAssertTrue(r.improved, r.message)
        XCTAssertEqual(r.values["tau"]!, 10_000, accuracy: 1)
        XCTAssertEqual(r.values["C"]!, 8e6, accuracy: 1e3)
    }

    func testErrors() throws {
        let data = try RoomData.make(seed: 1, points: 25)
        var request = RoomData.request(data)
        request.parameters = ["nope"]
        XCTAssertThrowsError(try Calibration.run(model: Fixtures.room, request)) { XCTAssertEqual(($0 as! SimulationError).code, .unknownName) }
        request.parameters = ["tau", "C"]
        request.observations["temperature"] = Array(data["temperature"]!.prefix(3))
        XCTAssertThrowsError(try Calibration.run(model: Fixtures.room, request)) { XCTAssertEqual(($0 as! SimulationError).code, .insufficientData) }
    }
}
