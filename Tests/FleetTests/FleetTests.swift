import Contracts
import Fleet
import Foundation
import JSON
import Models
import Simulation
import Simulator
import XCTest

/// The simulated fleet obeys its models: a calibration from a fleet twin's own readings recovers
/// the parameters the fleet used; readings are seeded and reproducible; only observed inputs vary.
final class FleetTests: XCTestCase {
    static let seed: UInt64 = 2026
    static let registry: ModelRegistry = {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Schemas/models").path
        return try! ModelRegistry(directory: dir)
    }()
    static let start: Int64 = 1_795_219_200_000  // 2026-11-21T00:00:00Z

    /// Every reading of `ticks` rounds, by twin: (epoch ms, values).
    func readings(twins: Int, ticks: Int, seed: UInt64 = seed, step: Double = 60) throws -> (FleetSimulator, [String: [(Int64, [String: Double])]]) {
        let fleet = try FleetSimulator(count: twins, registry: Self.registry, options: .init(seed: seed, step: step, start: Self.start))
        var out: [String: [(Int64, [String: Double])]] = [:]
        for _ in 0..<ticks {
            try fleet.tick { twinId, reading, _ in
                let json = try! JSON(parsing: reading)
                var values: [String: Double] = [:]
                for (k, v) in json["values"]?.objectValue ?? [:] { if let d = v.doubleValue { values[k] = d } }
                out[twinId, default: []].append((Int64(json["ts"]!.intValue!), values))
            }
        }
        return (fleet, out)
    }

    func testACalibrationFromAFleetRoomsReadingsRecoversItsTrueParametersWithinTwoStandardErrors() throws {
        print("FleetTests seed \(Self.seed)")
        // A day of one-minute readings of room-1 (thermostat with a night setback, outdoor cycle).
        let (fleet, all) = try readings(twins: 2, ticks: 1441)
        let room = try XCTUnwrap(all["room-1"])
        let truth = try XCTUnwrap(fleet.truth.first { $0.twinId == "room-1" })
        XCTAssertEqual(truth.model, "room@2")
        var history: [String: [SimulationSpec.Point]] = [:]
        for (ts, values) in room {
            let t = Double(ts - room[0].0) / 1000
            for name in ["temperature", "hvacPower", "outdoorTemperature"] {
                guard let x = values[name] else { XCTFail("room-1 reports \(name): \(values)"); return }
                history[name, default: []].append(.init(t, x))
            }
        }
        XCTAssertGreaterThan(Set(history["hvacPower"]!.map(\.value)).count, 1, "the thermostat switched the HVAC")
        let spec = SimulationSpec(kind: .calibrate, fit: ["tau", "C"], properties: ["temperature"], history: history)
        let request = SimulationRequest(simulationId: "cal-1", tenant: "acme", twinId: "room-1", requestedAt: Self.start, start: Self.start,
                                        twin: .init(model: "room@2"), spec: spec)
        let plan = try SimulationPlan(request, model: Self.registry.model(referencedBy: "room@2"), limits: SimulatorLimits(), now: Self.start)
        let fit = try XCTUnwrap(try SimulationRunner.run(plan).get().fit)
        XCTAssertTrue(fit.converged && fit.improved, fit.message)
        for name in ["tau", "C"] {
            let estimate = try XCTUnwrap(fit.parameters[name]), se = try XCTUnwrap(fit.standardErrors?[name]), real = try XCTUnwrap(truth.parameters[name])
            print("\(name): fleet \(real), calibrated \(estimate) ± \(se) (default \(Self.registry.model(referencedBy: "room@2")!.parameter(named: name)!.defaultValue))")
            XCTAssertLessThanOrEqual(abs(estimate - real), 2 * se, "\(name): the calibration recovers the fleet's value within two standard errors")
            XCTAssertLessThan(se / real, 0.05, "\(name) is identified by the fleet's inputs")
        }
    }

    func testReadingsAreSeededReproducibleAndIndependentOfTheFleetSize() throws {
        let (_, a) = try readings(twins: 3, ticks: 30)
        let (_, b) = try readings(twins: 6, ticks: 30)
        let (_, c) = try readings(twins: 3, ticks: 30, seed: Self.seed + 1)
        for id in ["pump-1", "room-1", "battery-1"] {
            XCTAssertEqual(a[id]!.map(\.1), b[id]!.map(\.1), "\(id) reads the same in a larger fleet")
            XCTAssertNotEqual(a[id]!.map(\.1), c[id]!.map(\.1), "\(id) differs with another seed")
        }
        XCTAssertEqual(a["room-1"]!.map(\.0), (0..<30).map { Self.start + Int64($0) * 60_000 }, "stamped start + k · step")
    }

    func testReadingsStayInTheirModelsRangesAndUnobservedInputsStayAtTheirDefaults() throws {
        let (fleet, all) = try readings(twins: 6, ticks: 24 * 60)
        for truth in fleet.truth {
            let model = try XCTUnwrap(Self.registry.model(referencedBy: truth.model))
            for (_, values) in all[truth.twinId]! {
                for (name, x) in values {
                    let t = try XCTUnwrap(model.telemetry(named: name), "\(name) is a telemetry of \(truth.model)")
                    XCTAssertTrue((t.minimum ?? -.infinity)...(t.maximum ?? .infinity) ~= x, "\(truth.twinId).\(name) = \(x)")
                }
            }
        }
        // A room's humidity relaxes towards the default outdoor humidity (60 %): nothing unobserved moves it.
        let humidity = all["room-1"]!.map { $0.1["humidity"]! }
        XCTAssertEqual(humidity.suffix(60).reduce(0, +) / 60, 60, accuracy: 0.5)
        // A battery is charged and discharged and its state of charge stays in a plausible band.
        let soc = all["battery-1"]!.map { $0.1["stateOfCharge"]! }, current = all["battery-1"]!.map { $0.1["current"]! }
        XCTAssertTrue(current.contains { $0 > 0 } && current.contains { $0 < 0 }, "discharged by day and charged at night")
        XCTAssertTrue(soc.allSatisfy { $0 > 5 && $0 < 100 })
    }
}
