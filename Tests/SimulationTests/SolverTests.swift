import Foundation
import Models
import XCTest
@testable import Simulation

/// Solvers against closed forms. Error control is local (per step), so these tests measure the
/// *global* error against exact solutions instead of trusting rtol.
final class SolverTests: XCTestCase {
    let day = try! TimeGrid(horizon: 86_400, step: 60)

    func testGridHas1441PointsFor24hAtOneMinute() throws {
        XCTAssertEqual(day.times.count, 1441)
        XCTAssertEqual(day.times.last, 86_400)
        let odd = try TimeGrid(horizon: 100, step: 30)
        XCTAssertEqual(odd.times, [0, 30, 60, 90, 100])
    }

    func testRoomDormandPrinceGlobalErrorWithinRange() throws {
        let scenario = Scenario(values: ["temperature": 20, "Ta": 10, "hvacPower": 2000])
        let r = try Simulation.forecast(model: Fixtures.room, ForecastRequest(scenario: scenario, grid: day))
        XCTAssertEqual(r.names, ["temperature", "humidity", "co2"])
        let exact = day.times.map { Fixtures.roomExact($0, T0: 20, Ta: 10, P: 2000) }
        let T = r.series["temperature"]!
        let range = (T.max()! - T.min()!)
        let err = maxError(T, exact)
        print("room DP5 rtol 1e-6: global max error \(err) K over range \(range) K, \(r.statistics)")
        XCTAssertLessThan(err, 1e-5 * range)
        XCTAssertEqual(T[0], 20)
    }

    func testBatteryStateOfChargeLinearUnderConstantCurrent() throws {
        // dSoC/dt = -100·I/(3600·capacityAh): 50 A on 100 Ah drains 50 % per hour.
        let grid = try TimeGrid(horizon: 3600, step: 60)
        let r = try Simulation.forecast(model: Fixtures.battery, ForecastRequest(
            scenario: Scenario(values: ["current": 50]), grid: grid, series: ["stateOfCharge", "voltage"]))
        let soc = r.series["stateOfCharge"]!
        let exact = grid.times.map { 100 - 100 * 50 * $0 / (3600 * 100) }
        XCTAssertLessThan(maxError(soc, exact), 1e-9)
        // The output is computed from the dense state at each grid time.
        let v = r.series["voltage"]!
        for j in [0, 30, 60] {
            let s = exact[j]
            XCTAssertEqual(v[j], 45 + 9 * s / 100 - 3 * exp(-s / 4) - 50 * 0.025, accuracy: 1e-9)
        }
    }

    func testRK4ErrorFallsSixteenfoldWhenStepHalves() throws {
        // A fast room (tau 1000 s) so RK4's error is well above rounding.
        let scenario = Scenario(values: ["temperature": 20, "Ta": 10, "hvacPower": 1000, "tau": 1000])
        let grid = try TimeGrid(horizon: 7200, step: 400)
        let exact = grid.times.map { Fixtures.roomExact($0, T0: 20, Ta: 10, P: 1000, tau: 1000) }
        var errors: [Double] = []
        for step in [400.0, 200, 100] {
            let r = try Simulation.forecast(model: Fixtures.room, ForecastRequest(
                scenario: scenario, grid: grid, series: ["temperature"], options: SolverOptions(method: .rk4, step: step)))
            errors.append(maxError(r.series["temperature"]!, exact))
        }
        let ratios = [errors[0] / errors[1], errors[1] / errors[2]]
        print("RK4 errors \(errors), ratios \(ratios)")
        for q in ratios { XCTAssert((12...20).contains(q), "ratio \(q)") }
    }

    func testRK4HermiteBetweenSteps() throws {
        // Grid not aligned with the steps: cubic Hermite fills in (third order).
        let scenario = Scenario(values: ["temperature": 20, "Ta": 10])
        let grid = try TimeGrid(horizon: 7200, step: 7)
        let r = try Simulation.forecast(model: Fixtures.room, ForecastRequest(
            scenario: scenario, grid: grid, series: ["temperature"], options: SolverOptions(method: .rk4, step: 60)))
        let exact = grid.times.map { Fixtures.roomExact($0, T0: 20, Ta: 10, P: 0) }
        XCTAssertLessThan(maxError(r.series["temperature"]!, exact), 1e-6)
    }

    func testPreviousScheduleStepMatchesPiecewiseClosedForm() throws {
        // P switches from 0 to 3 kW at t = 3600 s.
        let schedule = InputSignal.schedule([SchedulePoint(0, 0), SchedulePoint(3600, 3000)], .previous)
        let scenario = Scenario(values: ["temperature": 20, "Ta": 10], inputs: ["P": schedule])
        let r = try Simulation.forecast(model: Fixtures.room, ForecastRequest(scenario: scenario, grid: day, series: ["temperature", "P"]))
        let t1 = Fixtures.roomExact(3600, T0: 20, Ta: 10, P: 0)
        let exact = day.times.map { t in
            t <= 3600 ? Fixtures.roomExact(t, T0: 20, Ta: 10, P: 0) : Fixtures.roomExact(t - 3600, T0: t1, Ta: 10, P: 3000)
        }
        let T = r.series["temperature"]!
        let err = maxError(T, exact)
        print("previous-schedule step: global max error \(err), \(r.statistics)")
        XCTAssertLessThan(err, 1e-5 * (T.max()! - T.min()!))
        XCTAssertEqual(r.series["P"]![60], 3000)  // right-continuous at the switch
        XCTAssertEqual(r.series["P"]![59], 0)
    }

    func testLinearScheduleRampMatchesClosedForm() throws {
        // Ta = 10 + b·t: T = 10 + b(t − tau) + (T0 − 10 + b·tau)·e^(−t/tau).
        let b = 5.0 / 43_200
        let schedule = InputSignal.schedule([SchedulePoint(0, 10), SchedulePoint(43_200, 15)], .linear)
        let grid = try TimeGrid(horizon: 43_200, step: 60)
        let r = try Simulation.forecast(model: Fixtures.room, ForecastRequest(
            scenario: Scenario(values: ["temperature": 20], inputs: ["Ta": schedule]), grid: grid, series: ["temperature"]))
        let tau = 7200.0
        let exact = grid.times.map { t in 10 + b * (t - tau) + (20 - 10 + b * tau) * exp(-t / tau) }
        XCTAssertLessThan(maxError(r.series["temperature"]!, exact), 1e-5 * 10)
    }

    func testWhatIfLayersChangesOverTheBase() throws {
        let base = ForecastRequest(scenario: Scenario(values: ["temperature": 20, "Ta": 10]), grid: day, series: ["temperature"])
        let r = try Simulation.whatIf(model: Fixtures.room, base: base, changes: Scenario(values: ["Ta": 0, "tau": 3600]))
        let exact = day.times.map { Fixtures.roomExact($0, T0: 20, Ta: 0, P: 0, tau: 3600) }
        XCTAssertLessThan(maxError(r.series["temperature"]!, exact), 1e-4)
    }

    func testPumpOutputsAreFinite() throws {
        let grid = try TimeGrid(horizon: 600, step: 1)
        let r = try Simulation.forecast(model: Fixtures.pump, ForecastRequest(grid: grid, series: ["rpm", "pressure", "flow"]))
        XCTAssertEqual(r.series["rpm"]!.last!, 1450, accuracy: 1e-3)
        XCTAssert(r.series["pressure"]!.allSatisfy(\.isFinite))
    }

    func testSameRequestGivesSameResultsBitForBit() throws {
        let schedule = InputSignal.schedule([SchedulePoint(0, 0), SchedulePoint(3600, 3000)], .previous)
        let request = ForecastRequest(scenario: Scenario(values: ["temperature": 20], inputs: ["P": schedule]), grid: day)
        let a = try Simulation.forecast(model: Fixtures.room, request), b = try Simulation.forecast(model: Fixtures.room, request)
        XCTAssertEqual(a, b)
        let encoder = JSONEncoder()
        XCTAssertEqual(try encoder.encode(a.series["temperature"]!), try encoder.encode(b.series["temperature"]!))
    }

    // MARK: Failures

    func testRK4BlowUpNamesStateAndTime() throws {
        // tau = 60 s with RK4 steps of 600 s: |R(-10)| ≈ 291 per step, overflow within the day.
        let request = ForecastRequest(scenario: Scenario(values: ["tau": 60]), grid: day, series: ["temperature"],
                                      options: SolverOptions(method: .rk4, step: 600))
        XCTAssertThrowsError(try Simulation.forecast(model: Fixtures.room, request)) { error in
            let e = error as! SimulationError
            XCTAssertEqual(e.code, .blowUp)
            XCTAssertEqual(e.state, "temperature")
            XCTAssertNotNil(e.time)
            XCTAssert(e.message.contains("temperature"), e.message)
        }
    }

    func testFiniteTimeBlowUpIsTypedError() throws {
        // dx/dt = exp(x), x(0) = 0: x = −log(1 − t), singular at t = 1.
        let model = try Fixtures.oneState("exp(x)")
        let grid = try TimeGrid(horizon: 2, step: 0.1)
        XCTAssertThrowsError(try Simulation.forecast(model: model, ForecastRequest(grid: grid))) { error in
            let e = error as! SimulationError
            XCTAssert([.blowUp, .stepSizeCollapse].contains(e.code), "\(e)")
            XCTAssertEqual(e.state, "x")
            XCTAssertEqual(e.time ?? 0, 1, accuracy: 0.01)
            print(e)
        }
    }

    func testStepBudgetExceeded() throws {
        let request = ForecastRequest(scenario: Scenario(values: ["temperature": 20]), grid: day,
                                      options: SolverOptions(maxStep: 10, maxSteps: 1000))
        XCTAssertThrowsError(try Simulation.forecast(model: Fixtures.room, request)) { error in
            XCTAssertEqual((error as! SimulationError).code, .stepBudgetExceeded)
        }
        let rk4 = ForecastRequest(grid: day, options: SolverOptions(method: .rk4, step: 1, maxSteps: 1000))
        XCTAssertThrowsError(try Simulation.forecast(model: Fixtures.room, rk4)) { error in
            XCTAssertEqual((error as! SimulationError).code, .stepBudgetExceeded)
        }
    }

    func testUnknownNameAndOutputOverride() throws {
        XCTAssertThrowsError(try Simulation.forecast(model: Fixtures.room, ForecastRequest(scenario: Scenario(values: ["nope": 1]), grid: day))) {
            XCTAssertEqual(($0 as! SimulationError).code, .unknownName)
        }
        XCTAssertThrowsError(try Simulation.forecast(model: Fixtures.room, ForecastRequest(grid: day, series: ["nope"]))) {
            XCTAssertEqual(($0 as! SimulationError).code, .unknownName)
        }
        XCTAssertThrowsError(try Simulation.forecast(model: Fixtures.battery, ForecastRequest(scenario: Scenario(values: ["voltage": 1]), grid: day))) {
            XCTAssertEqual(($0 as! SimulationError).code, .invalidRequest)
        }
    }

    func testCancellationStopsPromptlyAndProgressIsReported() throws {
        // 1e9 s at max step 1 s would take hours; cancellation after 50 ms must end it at once.
        let grid = try TimeGrid(horizon: 1e9, step: 1e6)
        let started = Date()
        let progress = Counter()
        let control = RunControl(shouldStop: { Date().timeIntervalSince(started) > 0.3 },
                                 progress: { _ in progress.increment() }, progressInterval: 0.05)
        let request = ForecastRequest(grid: grid, options: SolverOptions(maxStep: 1, maxSteps: .max))
        XCTAssertThrowsError(try Simulation.forecast(model: Fixtures.room, request, control: control)) {
            XCTAssertEqual(($0 as! SimulationError).code, .cancelled)
        }
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertLessThan(elapsed, 1.0)
        XCTAssertGreaterThan(progress.value, 1)
    }
}

/// A thread-safe counter for callbacks.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
