import Foundation
import JSON
import Models
import XCTest
@testable import Simulation

/// Models shared by the simulation tests, loaded once from `Schemas/models` (found from this
/// file's real path, so the tests also work from a package that links this folder).
enum Fixtures {
    static let modelsDirectory: String = {
        URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Schemas/models").path
    }()

    static let registry: ModelRegistry = {
        do { return try ModelRegistry(directory: modelsDirectory) } catch { fatalError("cannot load \(modelsDirectory): \(error)") }
    }()

    static var room: TwinModel { registry.latest(id: "room")! }
    static var battery: TwinModel { registry.latest(id: "battery")! }
    static var pump: TwinModel { registry.latest(id: "pump")! }

    /// A one-state model from its derivative text (for blow-up tests).
    static func oneState(_ derivative: String, initial: Double = 0) throws -> TwinModel {
        let text = """
        {"id": "probe", "version": 1, "reportingIntervalMs": 1000,
         "telemetry": {"x": {"type": "number"}},
         "parameters": {"k": {"default": 1}},
         "behaviour": {"states": {"x": {"initial": \(initial), "derivative": "\(derivative)"}}}}
        """
        return try TwinModel(document: JSON(parsing: text))
    }

    /// Room temperature under constant inputs: T(t) = Teq + (T0 − Teq)·e^(−t/tau), Teq = Ta + P·tau/C.
    static func roomExact(_ t: Double, T0: Double, Ta: Double, P: Double, tau: Double = 7200, C: Double = 5e6) -> Double {
        let teq = Ta + P * tau / C
        return teq + (T0 - teq) * exp(-t / tau)
    }
}

/// Max |a − b|.
func maxError(_ a: [Double], _ b: [Double]) -> Double {
    zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
}
