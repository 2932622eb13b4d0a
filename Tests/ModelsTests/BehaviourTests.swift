import Foundation
import XCTest
@testable import Models

final class BehaviourTests: XCTestCase {
    func testRoomThermalDerivativeAtAKnownPoint() throws {
        let room = try XCTUnwrap(try TestSupport.shippedRegistry().latest(id: "room"))
        let behaviour = try XCTUnwrap(room.behaviour)
        XCTAssertEqual(behaviour.states.first?.derivative.source, "(Ta - temperature) / tau + P / C")
        // T = 20 degC, Ta = 10 degC, tau = 7200 s, P = 1 kW, C = 5 MJ/K:
        // dT/dt = (10 - 20) / 7200 + 1000 / 5e6 = -0.00138889 + 0.0002 K/s.
        var point = behaviour.initialVariables(["temperature": 20, "Ta": 10, "P": 1000])
        XCTAssertEqual(point[behaviour.slots["tau"]!], 7200)
        XCTAssertEqual(point[behaviour.slots["C"]!], 5_000_000)
        let d = behaviour.derivatives(at: &point)
        XCTAssertEqual(d[0], -10.0 / 7200 + 1000.0 / 5e6, accuracy: 1e-15)
        // Humidity and CO2 at their defaults: relaxing towards 60 % and 420 ppm.
        XCTAssertEqual(d[1], (60.0 - 45) / 3600, accuracy: 1e-15)
        XCTAssertEqual(d[2], 0, accuracy: 1e-15)
        // Steady state: T = Ta + P * tau / C.
        var steady = behaviour.initialVariables(["temperature": 10 + 1000.0 * 7200 / 5e6, "Ta": 10, "P": 1000])
        XCTAssertEqual(behaviour.derivatives(at: &steady)[0], 0, accuracy: 1e-15)
    }

    func testPumpOutputsFollowThePumpCurve() throws {
        let pump = try XCTUnwrap(try TestSupport.shippedRegistry().model(id: "pump", version: 1))
        let b = try XCTUnwrap(pump.behaviour)
        XCTAssertEqual(b.variables.prefix(3), ["rpm", "flow", "temperature"])
        // At rated speed and flow: 6.5 - 0.0007 * 60^2 = 3.98 bar; vibration at its rated value.
        var v = b.initialVariables(["rpm": 1450, "flow": 60, "temperature": 23])
        XCTAssertEqual(v[b.slots["pressure"]!], 3.98, accuracy: 1e-12)
        XCTAssertEqual(v[b.slots["vibration"]!], 2.8, accuracy: 1e-12)
        let d = b.derivatives(at: &v)
        XCTAssertEqual(d, [0, 0, 0])  // at rated speed, full flow, 15 + 8 degC: steady
        // Starting from rest the speed rises at setpoint / tau.
        var rest = b.initialVariables()
        XCTAssertEqual(b.derivatives(at: &rest)[0], 1450.0 / 2)
        XCTAssertEqual(rest[b.slots["pressure"]!], 0)
        // Telemetry that is neither a state nor an output is an observed slot (NaN until set).
        XCTAssertEqual(b.variables[b.telemetrySlots], ["running"])
    }

    func testBatteryCoulombCountingAndVoltage() throws {
        let battery = try XCTUnwrap(try TestSupport.shippedRegistry().latest(id: "battery"))
        let b = try XCTUnwrap(battery.behaviour)
        var v = b.initialVariables(["I": 50, "stateOfCharge": 80])
        let d = b.derivatives(at: &v)
        XCTAssertEqual(d[0], -100.0 * 50 / (3600 * 100), accuracy: 1e-15)  // % per second
        XCTAssertEqual(d[1], 50.0 * 50 * 0.025 / 60000, accuracy: 1e-15)  // at Ta = T = 25: Joule heating only
        XCTAssertEqual(v[b.slots["voltage"]!], 45 + 9 * 0.8 - 3 * Foundation.exp(-80.0 / 4) - 50 * 0.025, accuracy: 1e-12)
    }
}
