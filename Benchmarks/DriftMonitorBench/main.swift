// DriftMonitorBench: the drift monitor's own rate on one core, in process (no Kafka): readings of
// simulated rooms (once a minute of event time, HVAC power switching, sensor noise) through the
// residual path — prediction over the horizon, standardisation, detector — with and without data
// drift, and from the envelope's bytes (decode included); memory per twin (the monitor's own
// estimate and the process's resident memory) and the cost of a twin's drift.state document.
//
// Build and run (from the package root):
//   swift build -c release --product DriftMonitorBench && taskset -c 0 .build/release/DriftMonitorBench [twins] [readings per twin]
//   BENCH_MODEL=pump .build/release/DriftMonitorBench 200 600   # pumps (pump@1, a reading a second, started
//       from rest as the fleet starts them): the horizon rule gives them 300 intervals to integrate per reading
// `DRIFT_STEP_MS` sets `DriftSettings.stepMs` (the longest integration step) for a run.
// `Benchmarks/drift.sh` runs it after the detector table.
import Contracts
import DriftMonitor
import Foundation
import JSON
import Models

func cpuSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)  // CPU time: fair on a shared machine
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
          let pages = text.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

let args = CommandLine.arguments
let twins = args.count > 1 ? Int(args[1]) ?? 2000 : 2000
let perTwin = args.count > 2 ? Int(args[2]) ?? 600 : 600
let registry = try ModelRegistry(directory: ProcessInfo.processInfo.environment["MODELS_DIR"] ?? "Schemas/models")

let pumps = ProcessInfo.processInfo.environment["BENCH_MODEL"] == "pump"

/// Readings of `twins` rooms, interleaved (one reading of every room, then the next round).
func makeRoomReadings() -> [Reading] {
    var random = SplitMix64(seed: 42)
    func next() -> UInt64 { random.next() }
    func normal() -> Double {
        let u1 = max(random.nextUnit(), 1e-300), u2 = random.nextUnit()
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }
    var T = [Double](repeating: 20, count: twins), P = [Double](repeating: 6000, count: twins)
    var out: [Reading] = []
    out.reserveCapacity(twins * perTwin)
    let start: Int64 = 1_795_219_200_000
    for k in 0..<perTwin {
        for i in 0..<twins {
            if next() % 30 == 0 { P[i] = [4000.0, 6000, 8000, 10000][Int(next() % 4)] }
            let t = start + Int64(k) * 60_000
            out.append(Reading(tenant: "bench", twinId: "room-\(i)", eventId: "r\(i)-\(k)", eventTime: t, model: "room@1",
                               values: ["temperature": .double(T[i] + 0.05 * normal()), "hvacPower": .double(P[i])]))
            let teq = 10 + P[i] * 7200 / 5e6
            T[i] = teq + (T[i] - teq) * exp(-60.0 / 7200)
        }
    }
    return out
}

/// Readings of `twins` pumps (pump@1 with its default parameters), one every `BENCH_SPACING_S` (1)
/// seconds, started from rest towards the default speed as the fleet starts them, with the fleet's
/// sensor noise.
func makePumpReadings() -> [Reading] {
    let spacing = ProcessInfo.processInfo.environment["BENCH_SPACING_S"].flatMap { Int($0) } ?? 1
    var random = SplitMix64(seed: 42)
    func normal() -> Double {
        let u1 = max(random.nextUnit(), 1e-300), u2 = random.nextUnit()
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }
    var rpm = [Double](repeating: 0, count: twins), flow = rpm, temperature = [Double](repeating: 15, count: twins)
    var out: [Reading] = []
    out.reserveCapacity(twins * perTwin)
    let start: Int64 = 1_795_219_200_000
    for k in 0..<perTwin {
        for i in 0..<twins {
            let r = rpm[i] / 1450
            let pressure = max(0, 6.5 * r * r - 0.0007 * flow[i] * flow[i])
            out.append(Reading(tenant: "bench", twinId: "pump-\(i)", eventId: "p\(i)-\(k)", eventTime: start + Int64(k * spacing) * 1000, model: "pump@1",
                               values: ["rpm": .double(rpm[i] + 2 * normal()), "flow": .double(flow[i] + 0.2 * normal()),
                                        "pressure": .double(pressure + 0.02 * normal()), "temperature": .double(temperature[i] + 0.1 * normal()),
                                        "vibration": .double(2.8 * r * r + 0.05 * normal()), "running": .bool(true)]))
            for _ in 0..<(100 * spacing) {  // Euler steps of 10 ms (time constants 1.5 s and more)
                let dt = 0.01
                let rr = rpm[i] / 1450
                rpm[i] += dt * (1450 - rpm[i]) / 2
                flow[i] += dt * (60 * rr - flow[i]) / 1.5
                temperature[i] += dt * (15 + 8 * rr * rr * rr - temperature[i]) / 600
            }
        }
    }
    return out
}

let readings = pumps ? makePumpReadings() : makeRoomReadings()

/// `DRIFT_DATA_PROPERTIES=all` watches every numeric telemetry for data drift, as before the default
/// became `modelled` (the control input hvacPower included), to compare the alerts.
func benchSettings() -> DriftSettings {
    var settings = DriftSettings()
    if ProcessInfo.processInfo.environment["DRIFT_DATA_PROPERTIES"] == "all" { settings.defaultDataProperties = .all }
    if let step = ProcessInfo.processInfo.environment["DRIFT_STEP_MS"].flatMap({ Int64($0) }) { settings.stepMs = step }
    return settings
}

func measure(_ label: String, evalEvery: Int) -> (rate: Double, monitor: DriftMonitor) {
    var settings = benchSettings()
    settings.evalEvery = evalEvery
    var monitor = DriftMonitor(settings: settings, plans: ModelPlans(registry: registry, settings: settings))
    var alerts: [DriftAlert] = []
    let t0 = cpuSeconds()
    for r in readings { monitor.observe(r, now: r.eventTime, into: &alerts) }
    let seconds = cpuSeconds() - t0
    let rate = Double(readings.count) / seconds
    print(String(format: "%-52@ %10.0f readings/s  (%d readings, %.2f s CPU, %d detector updates, %d alerts)",
                 label as NSString, rate, readings.count, seconds, monitor.counters.detectorUpdates, alerts.count))
    var byKind: [String: Int] = [:]
    for a in alerts where a.status == .raised { byKind["\(a.kind.rawValue) \(a.property ?? "-")", default: 0] += 1 }
    if !byKind.isEmpty { print("    episodes raised: " + byKind.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")) }
    return (rate, monitor)
}

print(pumps ? "DriftMonitorBench: \(twins) pump twins × \(perTwin) readings (one a second of event time), one core\n"
      : "DriftMonitorBench: \(twins) room twins × \(perTwin) readings (one a minute of event time), one core\n")
let rssBefore = residentBytes()
let residual = measure("residual path (prediction + detector), no data drift", evalEvery: 0)
let rssAfterFirst = residentBytes()
let full = measure("residual path + data drift (DRIFT_EVAL_EVERY=50)", evalEvery: 50)

// From the envelope's bytes, as the service reads them (decode + observe).
let envelopes: [[UInt8]] = readings.map {
    TelemetryEnvelope(eventId: $0.eventId, tenant: $0.tenant, twinId: $0.twinId, model: $0.model, eventTime: $0.eventTime,
                      ingestTime: $0.eventTime, source: .init(kind: "kafka", ref: "telemetry.raw.v1/0/1"), values: $0.values).encoded()
}
do {
    let settings = benchSettings()
    var monitor = DriftMonitor(settings: settings, plans: ModelPlans(registry: registry, settings: settings))
    var alerts: [DriftAlert] = []
    let t0 = cpuSeconds()
    for bytes in envelopes {
        guard let e = try? TelemetryEnvelope(bytes: bytes) else { continue }
        monitor.observe(Reading(e), now: e.eventTime, into: &alerts)
    }
    let seconds = cpuSeconds() - t0
    print(String(format: "%-52@ %10.0f readings/s", "from envelope bytes (decode + residual + data drift)" as NSString, Double(envelopes.count) / seconds))
}

// Memory per twin and the state document.
let estimate = full.monitor.estimatedBytes / max(1, full.monitor.twinCount)
print("\nmemory per twin: \(estimate) bytes (the monitor's estimate, data drift on, DRIFT_WINDOW=100); "
      + "resident growth while the first run built its twins: \((rssAfterFirst - rssBefore) / max(1, twins)) bytes per twin (readings included)")
var bytes = 0
let t0 = cpuSeconds()
for i in 0..<twins {
    bytes += full.monitor.document(key: "bench/\(pumps ? "pump" : "room")-\(i)", now: 0)?.encoded().count ?? 0
}
let encodeSeconds = cpuSeconds() - t0
print(String(format: "drift.state document: %d bytes per twin, %.1f µs to make (written every DRIFT_STATE_EVERY=60 readings: %.2f µs per reading)",
             bytes / max(1, twins), encodeSeconds / Double(twins) * 1e6, encodeSeconds / Double(twins) * 1e6 / 60))
let sample = full.monitor.document(key: pumps ? "bench/pump-0" : "bench/room-0", now: 0)!.encoded()
var restored = DriftMonitor(settings: full.monitor.settings, plans: full.monitor.plans)
var r0 = cpuSeconds()
for _ in 0..<200 { try restored.restore(bytes: sample) }
let fromBytes = (cpuSeconds() - r0) / 200 * 1e6
r0 = cpuSeconds()
for _ in 0..<200 { try restored.restore(DriftState(bytes: sample)) }
print(String(format: "restore from drift.state: %.1f µs per twin (from the bytes, as the service does; %.1f µs through DriftState)",
             fromBytes, (cpuSeconds() - r0) / 200 * 1e6))
// The "drift twins" follower reads every twin.state.v1 document (one per reading in steady state):
// the directory's member-by-member read against the full decode it replaced, on a pump's document.
let stateDocument = TwinState(tenant: "bench", twinId: "pump-0", model: "pump@1", version: 1_000, updatedAt: 1_700_000_000_000,
                              properties: ["rpm", "flow", "pressure", "temperature", "vibration"].map { name in
                                  (name, TwinState.Property(value: .double(1234.5678), unit: "unit", eventTime: 1_700_000_000_000,
                                                            ingestTime: 1_700_000_000_050, eventId: "0123456789abcdef0123456789abcdef"))
                              }, parameters: ["tauFlow": 1.5]).encoded()
let directory = TwinDirectory(plans: full.monitor.plans)
var d0 = cpuSeconds()
for _ in 0..<20_000 { precondition(directory.apply(key: "bench/pump-0", value: stateDocument)) }
let directoryCost = (cpuSeconds() - d0) / 20_000 * 1e6
d0 = cpuSeconds()
for _ in 0..<20_000 { let state = try TwinState(bytes: stateDocument); precondition(TwinInfo(state, plans: full.monitor.plans).model != nil) }
print(String(format: "twin.state.v1 document in the twin directory: %.2f µs (a full decode, as before: %.2f µs), %d bytes",
             directoryCost, (cpuSeconds() - d0) / 20_000 * 1e6, stateDocument.count))
print(String(format: "\ntarget ≥ 200,000 readings/s per core through the residual path: %@ (%.0f)",
             residual.rate >= 200_000 ? "met" : "NOT met", residual.rate))
