import Dispatch
import JSON

/// Measures `TwinModel.check` on a typical pump reading (five numeric values, one in degF to
/// convert), `iterations` times on the calling thread after a warm-up, and returns checks per
/// second. Not a test: call it from a release build (e.g. `SchemaBench`).
/// Traps if the registry cannot be loaded or has no `pump` model.
public func runModelCheckBenchmark(registryDirectory: String, iterations: Int) -> Double {
    let registry: ModelRegistry
    do { registry = try ModelRegistry(directory: registryDirectory) } catch { fatalError("model benchmark: \(error)") }
    guard let pump = registry.model(referencedBy: "pump@1") ?? registry.latest(id: "pump") else {
        fatalError("model benchmark: no pump model in \(registryDirectory)")
    }
    let values: JSONObject = ["temperature": 71.5, "pressure": 3.2, "flow": 12.75, "rpm": 1450, "vibration": 0.031]
    let units = ["temperature": "degF"]
    precondition(pump.check(values: values, units: units).isValid, "model benchmark: the sample reading is not valid")
    var sink = 0
    for _ in 0..<min(iterations, 10_000) { sink &+= pump.check(values: values, units: units).errors.count }
    let start = DispatchTime.now().uptimeNanoseconds
    for _ in 0..<iterations {
        let r = pump.check(values: values, units: units)
        sink &+= r.errors.count &+ (r.converted ? 1 : 0)
    }
    let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    if sink == -1 { print(sink) }  // keeps the loop from being optimised away
    return Double(iterations) / max(elapsed, 1e-9)
}
