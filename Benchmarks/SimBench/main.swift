// SimBench: the Simulation module's speed and accuracy on the room model, beside a SciPy peer
// (Benchmarks/simulation/peer.py). Run through Benchmarks/simulation.sh, which pins one core.
//
//   SimBench <models directory> <data.json to write> <results.json to write>
//
// 1. forecast: 24 h at 1-minute output, Dormand–Prince rtol 1e-6 / atol 1e-9; solves per second
//    through the public API (system resolution, integration, result arrays) and the global error
//    of temperature against the closed form.
// 2. Monte Carlo: 10,000 samples of that run with Ta ~ N(10, 2²); p5/p50/p95 of temperature.
// 3. calibration: tau, C and the initial temperature from 1,441 noisy points (0.2 K) under an
//    HVAC schedule; the data are written for the peer so both fit the same numbers.
// 4. the worker's path for the Monte Carlo of 2: request JSON → plan → run → result JSON (no Kafka).
import Dispatch
import Foundation
import Contracts
import Models
import Simulation
import Simulator

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

let args = CommandLine.arguments
guard args.count == 4 else {
    FileHandle.standardError.write("usage: SimBench <models directory> <data.json> <results.json>\n".data(using: .utf8)!)
    exit(2)
}
let registry = try ModelRegistry(directory: args[1])
let room = registry.latest(id: "room")!
var results: [String: Double] = [:]

// MARK: 1. Forecast
let grid = try TimeGrid(horizon: 86_400, step: 60)
let (T0, Ta, P, tau, C) = (20.0, 10.0, 2000.0, 7200.0, 5e6)
let request = ForecastRequest(scenario: Scenario(values: ["temperature": T0, "Ta": Ta, "hvacPower": P]), grid: grid,
                              series: ["temperature"], options: SolverOptions(rtol: 1e-6, atol: 1e-9))
func exact(_ t: Double) -> Double { let teq = Ta + P * tau / C; return teq + (T0 - teq) * exp(-t / tau) }
var first = try Simulation.forecast(model: room, request)
var errMax = 0.0
for (t, x) in zip(grid.times, first.series["temperature"]!) { errMax = max(errMax, abs(x - exact(t))) }
var solves = 0
let t0 = now()
while now() - t0 < 2 {
    for _ in 0..<100 { first = try Simulation.forecast(model: room, request); solves += 1 }
}
results["forecast_solves_per_s"] = Double(solves) / (now() - t0)
results["forecast_error"] = errMax
results["forecast_steps"] = Double(first.statistics.acceptedSteps)
results["forecast_evaluations"] = Double(first.statistics.evaluations)

// MARK: 2. Monte Carlo
let mcRequest = MonteCarloRequest(scenario: Scenario(values: ["temperature": T0, "hvacPower": P]), grid: grid, samples: 10_000, seed: 2026,
                                  uncertain: ["Ta": .normal(mean: 10, sd: 2)], series: ["temperature"])
let m0 = now()
let mc = try MonteCarlo(model: room, request: mcRequest).run()
results["mc_seconds"] = now() - m0
do {
    // T(t) is linear in Ta: percentile q is exact(t; Ta = 10 + z_q·2).
    let e = exp(-86_400 / tau), sd = 2 * (1 - e)
    let band = mc.bands["temperature"]!
    let mean = (10 + P * tau / C) * (1 - e) + T0 * e
    results["mc_p5_error"] = abs(band.p5.last! - (mean - 1.6448536269514722 * sd))
    results["mc_p50_error"] = abs(band.p50.last! - mean)
    results["mc_p95_error"] = abs(band.p95.last! - (mean + 1.6448536269514722 * sd))
    results["mc_bin_width"] = mc.binWidth["temperature"]!
}

// MARK: 3. Calibration
let truth = (tau: 10_000.0, C: 8e6, T0: 18.0, Ta: 5.0)
let power = [SchedulePoint(0, 0), SchedulePoint(3 * 3600, 3000), SchedulePoint(10 * 3600, 0), SchedulePoint(16 * 3600, 1500)]
let clean = try Simulation.forecast(model: room, ForecastRequest(
    scenario: Scenario(values: ["temperature": truth.T0, "Ta": truth.Ta, "tau": truth.tau, "C": truth.C], inputs: ["P": .schedule(power, .previous)]),
    grid: grid, series: ["temperature"], options: SolverOptions(rtol: 1e-11, atol: 1e-12)))
var g = SampleRandom(seed: 7, index: 0)
let observed = clean.series["temperature"]!.map { $0 + 0.2 * g.normal() }
let data: [String: Any] = [
    "times": grid.times, "temperature": observed, "power": power.map { [$0.t, $0.value] },
    "truth": ["tau": truth.tau, "C": truth.C, "T0": truth.T0, "Ta": truth.Ta], "noise": 0.2,
]
try JSONSerialization.data(withJSONObject: data, options: [.sortedKeys]).write(to: URL(fileURLWithPath: args[2]))
let calibration = CalibrationRequest(
    scenario: Scenario(values: ["Ta": truth.Ta]),
    observations: ["temperature": zip(grid.times, observed).map { SchedulePoint($0, $1) },
                   "hvacPower": grid.times.map { t in SchedulePoint(t, power.last { $0.t <= t }!.value) }],
    parameters: ["tau", "C"], initialStates: ["temperature"])
var fit = try Calibration.run(model: room, calibration)
var fits = 0
let c0 = now()
while now() - c0 < 2 || fits < 3 { fit = try Calibration.run(model: room, calibration); fits += 1 }
results["cal_seconds_per_fit"] = (now() - c0) / Double(fits)
results["cal_tau"] = fit.values["tau"]!
results["cal_C"] = fit.values["C"]!
results["cal_tau_se"] = fit.standardErrors?["tau"] ?? .nan
results["cal_C_se"] = fit.standardErrors?["C"] ?? .nan
results["cal_iterations"] = Double(fit.iterations)
results["cal_converged"] = fit.converged ? 1 : 0
results["cal_rms_after"] = fit.rmsAfter["temperature"]!
// MARK: 4. The worker's path without Kafka
// The 10,000-sample Monte Carlo of section 2 as the simulator-worker handles it: the request
// document decoded, checked and planned, run, and the result document encoded.
let twin = SimulationRequest.TwinSnapshot(model: room.ref.description, values: ["temperature": T0, "hvacPower": P])
let spec = SimulationSpec(kind: .monteCarlo, horizonMs: 86_400_000, stepMs: 60_000, series: ["temperature"], samples: 10_000, seed: 2026,
                          uncertain: ["Ta": .init(.normal, 10, 2)])
let requestBytes = SimulationRequest(simulationId: "bench", tenant: "bench", twinId: "room-1", requestedAt: 0, start: 0, twin: twin, spec: spec).encoded()
let w0 = now()
let decoded = try SimulationRequest(bytes: requestBytes)
let plan = try SimulationPlan(decoded, model: room, limits: SimulatorLimits(), now: 0)
let resultBytes = try SimulationRunner.run(plan).get().encoded()
results["worker_mc_seconds"] = now() - w0
results["worker_result_bytes"] = Double(resultBytes.count)
try JSONSerialization.data(withJSONObject: results, options: [.sortedKeys, .prettyPrinted]).write(to: URL(fileURLWithPath: args[3]))
print(String(data: try JSONSerialization.data(withJSONObject: results, options: [.sortedKeys]), encoding: .utf8)!)
