import XCTest
@testable import Models

final class UnitsTests: XCTestCase {
    private func assertConverts(_ value: Double, _ from: String, _ to: String, _ expected: Double, accuracy: Double = 1e-9,
                                file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(try Units.convert(value, from: from, to: to), expected, accuracy: accuracy, "\(value) \(from) → \(to)",
                       file: file, line: line)
    }

    func testTemperatureKnownPoints() {
        assertConverts(0, "degC", "degF", 32)
        assertConverts(0, "degC", "K", 273.15)
        assertConverts(32, "degF", "K", 273.15)
        assertConverts(-40, "degC", "degF", -40)
        assertConverts(-40, "degF", "degC", -40)
        assertConverts(100, "degC", "degF", 212)
        assertConverts(0, "K", "degC", -273.15)
        assertConverts(71.5, "degF", "degC", 21.944444444444443)
        assertConverts(20, "°C", "degC", 20)
        assertConverts(68, "°F", "degC", 20)
    }

    func testTemperatureRoundTrips() throws {
        let units = ["degC", "degF", "K"]
        for value in stride(from: -300.0, through: 1000.0, by: 37.3) {
            for a in units {
                for b in units {
                    let there = try Units.convert(value, from: a, to: b)
                    XCTAssertEqual(try Units.convert(there, from: b, to: a), value, accuracy: 1e-9, "\(value) \(a) → \(b) → \(a)")
                }
            }
        }
    }

    func testPressure() {
        assertConverts(1, "bar", "kPa", 100)
        assertConverts(1, "bar", "Pa", 100_000)
        assertConverts(1, "bar", "psi", 14.5038, accuracy: 1e-4)
        assertConverts(14.5038, "psi", "bar", 1, accuracy: 1e-5)
        assertConverts(1, "MPa", "bar", 10)
        assertConverts(1013.25, "mbar", "atm", 1)
        assertConverts(1, "hPa", "mbar", 1)
        assertConverts(760, "mmHg", "kPa", 101.325, accuracy: 1e-4)
    }

    func testSIPrefixes() {
        assertConverts(1, "kW", "W", 1000)
        assertConverts(2.5, "MW", "kW", 2500)
        assertConverts(1500, "mV", "V", 1.5)
        assertConverts(1, "A", "mA", 1000)
        assertConverts(1, "uA", "nA", 1000)
        assertConverts(1, "µA", "uA", 1)
        assertConverts(1, "μA", "uA", 1)
        assertConverts(1, "kWh", "Wh", 1000)
        assertConverts(1, "Wh", "J", 3600)
        assertConverts(1, "Ah", "mAh", 1000)
        assertConverts(1, "Ah", "C", 3600)
        assertConverts(1, "kHz", "Hz", 1000)
        assertConverts(1, "kg", "g", 1000)
        assertConverts(1, "km", "m", 1000)
        assertConverts(1, "mm", "m", 0.001)
        assertConverts(1, "L", "mL", 1000)
        assertConverts(1, "kohm", "ohm", 1000)
        assertConverts(1, "kΩ", "ohm", 1000)
        assertConverts(1, "ms", "s", 0.001)
        assertConverts(1, "h", "min", 60)
    }

    func testFlowSpeedAndRatios() {
        assertConverts(1, "m3/h", "L/min", 1000.0 / 60.0)
        assertConverts(60, "L/min", "L/s", 1)
        assertConverts(3.6, "m3/h", "L/s", 1)
        assertConverts(1, "m^3/h", "m3/h", 1)
        assertConverts(1, "m/s", "mm/s", 1000)
        assertConverts(3600, "rpm", "Hz", 60)
        assertConverts(50, "%", "1", 0.5)
        assertConverts(1, "%", "ppm", 10_000)
        assertConverts(1, "kJ/K", "J/K", 1000)
    }

    func testCanonicalSpellingAndKnownUnits() {
        XCTAssertEqual(Units.canonical("°C"), "degC")
        XCTAssertEqual(Units.canonical("µA"), "uA")
        XCTAssertEqual(Units.canonical("m^3/h"), "m3/h")
        XCTAssertEqual(Units.canonical("kΩ"), "kohm")
        XCTAssertEqual(Units.canonical("bar*h2/m6"), "bar*h2/m6")
        for known in ["degC", "degF", "K", "Pa", "kPa", "MPa", "bar", "mbar", "psi", "W", "kW", "V", "A", "Wh", "kWh", "Ah",
                      "Hz", "g", "kg", "m", "mm", "L", "L/min", "L/s", "m3/h", "rpm", "%", "ppm", "mm/s", "J/K", "s"] {
            XCTAssertTrue(Units.isKnown(known), known)
        }
        for unknown in ["degX", "", "kdegC", "mmin", "bar/", "/s", "m0", "xyz", "Kg", "m^0", "1m"] {
            XCTAssertFalse(Units.isKnown(unknown), unknown)
        }
    }

    func testIncompatibleDimensionsError() {
        XCTAssertThrowsError(try Units.convert(1, from: "bar", to: "degC")) { error in
            let e = error as? ModelError
            XCTAssertEqual(e?.code, .incompatibleUnits)
            XCTAssertEqual(e?.message, #"cannot convert "bar" (pressure) to "degC" (temperature)"#)
        }
        XCTAssertThrowsError(try Units.convert(1, from: "m3/h", to: "m/s")) { error in
            XCTAssertEqual((error as? ModelError)?.message, #"cannot convert "m3/h" (volumetric flow) to "m/s" (velocity)"#)
        }
        XCTAssertFalse(Units.areCompatible("W", "Wh"))
        XCTAssertTrue(Units.areCompatible("W", "kW"))
    }

    func testUnknownUnitError() {
        XCTAssertThrowsError(try Units.convert(1, from: "degX", to: "degC")) { error in
            let e = error as? ModelError
            XCTAssertEqual(e?.code, .unknownUnit)
            XCTAssertEqual(e?.description, #"unknown unit "degX""#)
        }
        XCTAssertThrowsError(try Units.convert(1, from: "degC", to: "furlong"))
    }

    func testTemperatureInCompoundsIsADifference() {
        // W/degC is a thermal conductance: a difference of 1 degC is 1 K, no 273.15 offset.
        assertConverts(1, "W/degC", "W/K", 1)
        assertConverts(1, "W/degF", "W/K", 9.0 / 5.0)
    }
}
