// DriftBench: runs the Drift module's streaming detectors over the benchmark streams written by
// Benchmarks/drift/bench_streams.py and prints, as JSON, every alarm index per stream and the time taken,
// for Benchmarks/drift/report.py to compare with River side by side.
//
// Build from the package root: `swift build -c release --product DriftBench`
// Run (one core): `taskset -c 0 .build/release/DriftBench STREAMS.f64 STREAMS LENGTH [out.json]`
// where STREAMS.f64 holds STREAMS × LENGTH little-endian float64 values, stream after stream.
import Drift
import Foundation

func cpuSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)  // CPU time: fair on a shared machine
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

let args = CommandLine.arguments
guard args.count >= 4, let streams = Int(args[2]), let length = Int(args[3]) else {
    FileHandle.standardError.write(Data("usage: DriftBench STREAMS.f64 STREAMS LENGTH [out.json]\n".utf8))
    exit(2)
}
guard let data = FileManager.default.contents(atPath: args[1]), data.count == streams * length * 8 else {
    FileHandle.standardError.write(Data("cannot read \(args[1]) as \(streams)×\(length) float64 values\n".utf8))
    exit(2)
}
let values: [Double] = {
    var v = [Double](repeating: 0, count: streams * length)
    v.withUnsafeMutableBytes { out in
        data.withUnsafeBytes { raw in out.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[0..<out.count])) }
    }
    #if _endian(big)
    for i in v.indices { v[i] = Double(bitPattern: UInt64(littleEndian: v[i].bitPattern)) }
    #endif
    return v
}()

/// Runs a fresh detector over every stream; returns alarm indices per stream and the elapsed seconds.
func run<D: ChangeDetector>(_ make: () -> D) -> (alarms: [[Int]], seconds: Double) {
    var alarms = [[Int]](repeating: [], count: streams)
    var elapsed = 0.0
    values.withUnsafeBufferPointer { all in
        for s in 0..<streams {
            var detector = make()
            var found: [Int] = []
            found.reserveCapacity(64)
            let base = s * length
            let start = cpuSeconds()
            for i in 0..<length where detector.update(all[base + i]) {
                found.append(i)
            }
            elapsed += cpuSeconds() - start
            alarms[s] = found
        }
    }
    return (alarms, elapsed)
}

var results: [String: Any] = ["samples": streams * length]
for (name, runner) in [
    ("ADWIN", { run { ADWIN() } }),
    ("PageHinkley", { run { PageHinkley() } }),
    ("CUSUM", { run { CUSUM() } }),
] as [(String, () -> (alarms: [[Int]], seconds: Double))] {
    // DRIFT_ONLY=ADWIN (for profiling) runs just the named detector.
    if let only = ProcessInfo.processInfo.environment["DRIFT_ONLY"], only != name { continue }
    let r = runner()
    results[name] = ["alarms": r.alarms, "seconds": r.seconds]
    FileHandle.standardError.write(Data("\(name): \(String(format: "%.3f", r.seconds)) s, \(String(format: "%.1f", Double(streams * length) / r.seconds / 1e6)) M samples/s\n".utf8))
}
let json = try JSONSerialization.data(withJSONObject: results)
if args.count >= 5 {
    try json.write(to: URL(fileURLWithPath: args[4]))
} else {
    FileHandle.standardOutput.write(json)
}
