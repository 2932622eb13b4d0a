import Contracts
import Foundation
import JSON
import Kafka
import Stage
import TwinStore
import ServiceKit

// State-updater benchmarks (not run in CI):
//   swift build -c release --product StateBench && .build/release/StateBench [twins]
//   .build/release/StateBench per-reading [twins] [rounds] [batch] [rate] [flush ms]   (see PerReading.swift)
// 1. apply rate on one core: the fold alone, and the whole processor (decode the envelope bytes,
//    fold, encode the change event, one state document per twin per 500-message batch);
// 2. memory per twin with 10 numeric properties (resident set growth / twins);
// 3. checkpoint write and restore time for all of them.

func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
          let pages = text.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

func seconds(_ work: () -> Void) -> Double {
    let start = ContinuousClock.now
    work()
    return (ContinuousClock.now - start).seconds
}

if CommandLine.arguments.dropFirst().first == "per-reading" {
    let args = CommandLine.arguments.dropFirst(2).compactMap { Int($0) }
    func arg(_ i: Int, _ fallback: Int) -> Int { args.count > i ? args[i] : fallback }
    try runPerReading(PerReadingRun(twins: arg(0, 10_000), rounds: arg(1, 2), batch: arg(2, 250), rate: arg(3, 10_000), flushMs: arg(4, 250)))
    exit(0)
}

let twinCount = CommandLine.arguments.dropFirst().first.flatMap(Int.init) ?? 1_000_000
let names = ["flow", "pressure", "temperature", "vibration", "rpm", "current", "voltage", "power", "bearing", "speed"]
let start: Int64 = 1_763_712_000_000

func reading(twin: Int, round: Int) -> TelemetryEnvelope {
    var values = JSONObject(minimumCapacity: 5)
    for (i, name) in names.prefix(5).enumerated() { values[name] = .number(JSONNumber(Double((twin + round + i) % 1000) / 10)) }
    let t = start + Int64(round) * 1000
    return TelemetryEnvelope(eventId: "e-\(twin)-\(round)", tenant: "acme", twinId: "pump-\(twin)", model: "pump@1", eventTime: t,
                             ingestTime: t + 20, source: .init(kind: "kafka", ref: "raw/0/\(round)"), values: values)
}

// 1. Apply rate over 100,000 pump twins (5 values per reading), after one warm-up round.
do {
    let twins = 100_000, rounds = 5
    let envelopes = (0..<rounds).flatMap { r in (0..<twins).map { reading(twin: $0, round: r) } }
    var fold = TwinFold(options: .init(autoCreate: true))
    for e in envelopes.prefix(twins) { _ = fold.apply(reading: e, offset: 0) }
    var offset: Int64 = 1
    let applyTime = seconds {
        for e in envelopes.dropFirst(twins) {
            _ = fold.apply(reading: e, offset: offset)
            offset += 1
        }
    }
    let applied = envelopes.count - twins
    print(String(format: "fold apply: %.0f readings/s (%d readings, %d twins, 5 values each)", Double(applied) / applyTime, applied, twins))

    let messages = envelopes.enumerated().map { i, e in
        KafkaMessage(topic: Topic.telemetryValid.name, partition: 0, offset: Int64(i), key: Array(e.key.utf8), value: e.encoded(),
                     headers: [KafkaHeader(MessageHeader.tenant, "acme")])
    }
    let store = TwinStateStore(options: .init(autoCreate: true), defaultTenant: "default", checkpoints: nil, readState: nil,
                               logger: Logger(service: "bench", level: .error, sink: .init { _ in }), metrics: MetricsRegistry())
    var processor = StateUpdateProcessor(store: store)
    for m in messages.prefix(twins) { _ = processor.process(m, now: 0) }
    _ = processor.finishBatch(now: 0)
    var bytesOut = 0
    let processTime = seconds {
        var batch = 0
        for m in messages.dropFirst(twins) {
            for o in processor.process(m, now: 0) { bytesOut += o.value.count }
            batch += 1
            if batch == 500 {
                for o in processor.finishBatch(now: 0) { bytesOut += o.value.count }
                batch = 0
            }
        }
        for o in processor.finishBatch(now: 0) { bytesOut += o.value.count }
    }
    print(String(format: "processor (decode + fold + change event + state per batch): %.0f readings/s, %.0f MB/s out",
                 Double(applied) / processTime, Double(bytesOut) / processTime / 1e6))
}

// 2. Memory per twin: 10 numeric properties each, set by one reading.
let before = residentBytes()
var fold = TwinFold(options: .init(autoCreate: true))
fold.twins.reserveCapacity(twinCount)
for t in 0..<twinCount {
    var values = JSONObject(minimumCapacity: 10)
    for (i, name) in names.enumerated() { values[name] = .number(JSONNumber(Double((t + i) % 1000) / 10)) }
    let e = TelemetryEnvelope(eventId: "e-\(t)", tenant: "acme", twinId: "pump-\(t)", model: "pump@1", eventTime: start, ingestTime: start + 20,
                              source: .init(kind: "kafka", ref: "raw/0/\(t)"), values: values)
    _ = fold.apply(reading: e, offset: Int64(t))
}
let after = residentBytes()
print(String(format: "memory: %.0f bytes per twin (%d twins, 10 numeric properties; resident set %.0f MB → %.0f MB)",
             Double(after - before) / Double(twinCount), twinCount, Double(before) / 1e6, Double(after) / 1e6))

// 3. Checkpoint write and restore, split over 6 partitions as the service would hold them.
let dir = FileManager.default.temporaryDirectory.appendingPathComponent("statebench-\(getpid())").path
let directory = try CheckpointDirectory(path: dir)
var parts = [[String: TwinRecord]](repeating: [:], count: 6)
for (key, record) in fold.twins { parts[Int(UInt(bitPattern: key.hashValue) % 6)][key] = record }
var totalBytes = 0
let writeTime = seconds {
    for (p, twins) in parts.enumerated() { totalBytes += try! directory.write(Checkpoint(partition: Int32(p), stateOffset: 0, twins: twins)) }
}
print(String(format: "checkpoint write: %.2f s, %.0f MB (%.0f bytes per twin)", writeTime, Double(totalBytes) / 1e6, Double(totalBytes) / Double(twinCount)))
var restored = 0
let restoreTime = seconds {
    for p in 0..<6 { restored += (try! directory.read(Int32(p)))!.twins.count }
}
print(String(format: "restore from checkpoint: %.2f s for %d twins", restoreTime, restored))
try? FileManager.default.removeItem(atPath: dir)
