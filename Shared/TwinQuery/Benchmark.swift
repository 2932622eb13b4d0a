import Durations
import Contracts
import JSON

/// The outcome of `runFilterBenchmark`.
public struct FilterBenchmarkResult: Sendable {
    /// Best time of one filter pass over all twins, in milliseconds.
    public var perQueryMs: Double
    /// Best time of a first page (`TwinListQuery.run`: filter, count, sort by `-temperature`, 100 items).
    public var perPageMs: Double
    public var twins: Int
    public var matched: Int
}

/// Measures the filter `temperature>80 and model=pump and (metadata.site=north or stale)` over
/// `twins` synthetic `QueryTwin`s (4 properties, metadata, a relationship each), best of
/// `rounds` passes. Not a test: call it from a release build (debug builds are an order of
/// magnitude slower). Measured on the shared 2-core dev machine: about 12-16 ms per filter pass
/// and 16 ms per first page over 100,000 twins (budget: 50 ms).
public func runFilterBenchmark(twins: Int, rounds: Int = 7) -> FilterBenchmarkResult {
    let records = benchmarkTwins(twins)
    let filter = try! TwinFilter(parsing: "temperature>80 and model=pump and (metadata.site=north or stale)")
    let compiled = CompiledFilter<QueryTwin>(filter)
    let now: Int64 = 1_800_000_000_000
    let clock = ContinuousClock()
    var best = Duration.seconds(1_000)
    var matched = 0
    for _ in 0..<max(1, rounds) {
        var n = 0
        let t = clock.measure {
            for r in records where compiled.matches(r, now: now) { n += 1 }
        }
        best = min(best, t)
        matched = n
    }
    let query = try! TwinListQuery(filter: filter.text, sort: "-temperature")
    var bestPage = Duration.seconds(1_000)
    for _ in 0..<max(1, rounds) {
        var total = 0
        let t = clock.measure { total = query.run(over: records, now: now).total }
        precondition(total == matched)
        bestPage = min(bestPage, t)
    }
    func ms(_ d: Duration) -> Double {
        d.seconds * 1_000
    }
    return FilterBenchmarkResult(perQueryMs: ms(best), perPageMs: ms(bestPage), twins: twins, matched: matched)
}

/// Deterministic synthetic twins for the benchmark.
public func benchmarkTwins(_ count: Int) -> [QueryTwin] {
    var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
    func next() -> UInt64 {
        seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return seed >> 33
    }
    let now: Int64 = 1_800_000_000_000
    let sites = ["north", "south", "east", "west"]
    var out: [QueryTwin] = []
    out.reserveCapacity(count)
    for i in 0..<count {
        let model = i % 3 == 0 ? "tank@2" : "pump@1"
        let t = now - Int64(next() % 60_000)
        func prop(_ v: JSON) -> TwinState.Property { TwinState.Property(value: v, eventTime: t, ingestTime: t, eventId: "e\(i)") }
        let state = TwinState(
            tenant: "default", twinId: "twin-\(i)", model: model, version: Int64(next() % 1000), updatedAt: t,
            properties: [("flow", prop(.double(Double(next() % 1000) / 10))),
                         ("pressure", prop(.double(Double(next() % 100) / 10))),
                         ("status", prop(.string(i % 7 == 0 ? "fault" : "ok"))),
                         ("temperature", prop(.double(Double(next() % 1200) / 10)))],
            metadata: ["site": .string(sites[Int(next() % 4)]), "line": .int(Int(next() % 10))],
            relationships: [TwinState.Relationship(name: "feeds", target: "tank-\(i % 100)")])
        out.append(QueryTwin(state, reportingIntervalMs: 10_000))
    }
    return out
}
