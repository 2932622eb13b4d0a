// Micro benchmarks for the JSON and JSONSchema modules. Run in release:
//   swift run -c release SchemaBench
// Prints operations per second on one core; not a test (numbers vary with the machine).
// `swift run -c release SchemaBench <substring>` runs only the benchmarks whose name contains it;
// `SchemaBench stack` checks that a depth-255 instance validates on threads with 256 KB-4 MB stacks.
import Dispatch
import Foundation
import JSON
import JSONSchema

let reading = #"{"twinId":"pump-17","ts":"2026-11-21T08:00:00.250Z","eventId":"e-000123","model":"pump@1","values":{"temperature":71.5,"pressure":3.2,"flow":12.75,"rpm":1450,"vibration":0.031},"units":{"temperature":"degF"}}"#
let readingBytes = Array(reading.utf8)

/// Runs `body` repeatedly for about `seconds` and returns operations per second.
/// Optional filter: `SchemaBench isValid` runs only benchmarks whose name contains "isValid".
let filter = CommandLine.arguments.dropFirst().first

/// With `BENCH_ITERATIONS=N` each benchmark runs exactly N times (for `perf stat` comparisons on a busy machine).
let fixedIterations = ProcessInfo.processInfo.environment["BENCH_ITERATIONS"].flatMap { Int($0) }

func measure(_ name: String, seconds: Double = 1.0, _ body: () throws -> Void) rethrows {
    if let filter, !name.contains(filter) { return }
    if let fixedIterations {
        for _ in 0..<fixedIterations { try body() }
        print("\(name): \(fixedIterations) iterations")
        return
    }
    for _ in 0..<1000 { try body() }  // warm up
    var iterations = 0
    let start = DispatchTime.now().uptimeNanoseconds
    var now = start
    while Double(now - start) < seconds * 1e9 {
        for _ in 0..<1000 { try body() }
        iterations += 1000
        now = DispatchTime.now().uptimeNanoseconds
    }
    let perSecond = Double(iterations) / (Double(now - start) / 1e9)
    let nanos = Double(now - start) / Double(iterations)
    print("\(name): \(Int(perSecond)) ops/s (\(String(Int(nanos))) ns/op)")
}

var sink = 0
print("reading: \(readingBytes.count) bytes")
try measure("JSON parse") { sink &+= try JSON(parsing: readingBytes).objectValue!.count }
let parsed = try JSON(parsing: readingBytes)
measure("JSON serialize") { sink &+= parsed.serialized().count }
try measure("JSON parse+serialize") { sink &+= try JSON(parsing: readingBytes).serialized().count }
measure("JSONWriter reading") {
    var w = JSONWriter()
    w.beginObject()
    w.field("twinId", "pump-17"); w.field("ts", "2026-11-21T08:00:00.250Z")
    w.key("values"); w.beginObject()
    w.field("temperature", 71.5); w.field("pressure", 3.2); w.field("flow", 12.75); w.field("rpm", 1450); w.field("vibration", 0.031)
    w.endObject(); w.endObject()
    sink &+= w.bytes.count
}
if sink == 42 { print(sink) }

// MARK: JSON Schema

/// The brief's "typical pump reading": 5 numeric properties with type/minimum/maximum, all
/// required, no additional properties.
let pumpSchema: JSON = [
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": [
        "temperature": ["type": "number", "minimum": -40, "maximum": 200],
        "pressure": ["type": "number", "minimum": 0, "maximum": 16],
        "flow": ["type": "number", "minimum": 0, "maximum": 500],
        "rpm": ["type": "number", "minimum": 0, "maximum": 3600],
        "vibration": ["type": "number", "minimum": 0, "maximum": 50],
    ],
    "required": ["temperature", "pressure", "flow", "rpm", "vibration"],
    "additionalProperties": false,
]
let pumpReading = try JSON(parsing: #"{"temperature":71.5,"pressure":3.2,"flow":12.75,"rpm":1450,"vibration":0.031}"#)
let badReading = try JSON(parsing: #"{"temperature":971.5,"pressure":-3.2,"flow":12.75,"rpm":1450,"extra":1}"#)
let compiled = try JSONSchema.compile(pumpSchema)
precondition(compiled.isValid(pumpReading) && !compiled.isValid(badReading))
measure("schema isValid (pump, valid)") { sink &+= compiled.isValid(pumpReading) ? 1 : 0 }
measure("schema validate (pump, valid)") { sink &+= compiled.validate(pumpReading).errors.count }
measure("schema isValid (pump, invalid)") { sink &+= compiled.isValid(badReading) ? 1 : 0 }
measure("schema validate (pump, invalid, 4 errors)") { sink &+= compiled.validate(badReading).errors.count }
let pumpBytes = Array(#"{"temperature":71.5,"pressure":3.2,"flow":12.75,"rpm":1450,"vibration":0.031}"#.utf8)
try measure("parse + isValid (pump bytes)") { sink &+= compiled.isValid(try JSON(parsing: pumpBytes)) ? 1 : 0 }
if sink == 42 { print(sink) }

// MARK: Stack use (not a speed figure): deepest evaluation on threads with small stacks.
/// Runs `body` on a new pthread with the given stack size and waits for it.
func onThread(stackKB: Int, _ body: @escaping @Sendable () -> Void) {
    final class Box: @unchecked Sendable { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
    var attr = pthread_attr_t()
    pthread_attr_init(&attr)
    pthread_attr_setstacksize(&attr, stackKB * 1024)
    var thread = pthread_t()
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    pthread_create(&thread, &attr, { raw in
        let b = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
        b.body()
        return nil
    }, box)
    pthread_join(thread, nil)
}

if filter == "stack" {
    let tree = try JSONSchema.compile(["type": "array", "items": ["$ref": "#"]])
    var deep: JSON = []
    for _ in 0..<255 { deep = [deep] }
    let input = deep
    for kb in [4096, 1024, 512, 384, 256] {
        onThread(stackKB: kb) {
            let ok = tree.isValid(input) && tree.validate(input).isValid
            print("stack \(kb) KB: depth-255 instance (510 nested evaluations) validated: \(ok)")
        }
    }
    let sem = DispatchSemaphore(value: 0)
    Task.detached {
        print("Swift concurrency thread: validated: \(tree.isValid(input) && tree.validate(input).isValid)")
        sem.signal()
    }
    sem.wait()
    DispatchQueue.global().async {
        print("Dispatch global queue thread: validated: \(tree.isValid(input) && tree.validate(input).isValid)")
        sem.signal()
    }
    sem.wait()
}
