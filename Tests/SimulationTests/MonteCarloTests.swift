import Foundation
import Models
import XCTest
@testable import Simulation

/// Standard normal quantile (Acklam's rational approximation refined by one Newton step).
func normalQuantile(_ p: Double) -> Double {
    var lo = -10.0, hi = 10.0
    for _ in 0..<200 {
        let mid = (lo + hi) / 2
        if 0.5 * erfc(-mid / 2.0.squareRoot()) < p { lo = mid } else { hi = mid }
    }
    return (lo + hi) / 2
}

final class MonteCarloTests: XCTestCase {
    /// Room with T0 = 20, P = 0 and Ta ~ N(10, 2²): T(t) = Ta·(1 − e) + 20·e with e = e^(−t/tau) is
    /// linear in Ta, so its percentiles are mean + z_q·sd with sd = 2·(1 − e).
    func roomRequest(samples: Int, seed: UInt64, threshold: Threshold? = nil, grid: TimeGrid? = nil) throws -> MonteCarloRequest {
        MonteCarloRequest(scenario: Scenario(values: ["temperature": 20, "hvacPower": 0]),
                          grid: try grid ?? TimeGrid(horizon: 86_400, step: 600), samples: samples, seed: seed,
                          uncertain: ["Ta": .normal(mean: 10, sd: 2)], series: ["temperature"], threshold: threshold)
    }

    func testPercentilesConvergeToAnalytic() throws {
        let seed: UInt64 = 20_261_205, n = 2000
        let mc = try MonteCarlo(model: Fixtures.room, request: roomRequest(samples: n, seed: seed,
                                                                            grid: TimeGrid(horizon: 86_400, step: 60)))
        let result = try mc.run()
        XCTAssertEqual(result.samples, n)
        XCTAssertTrue(result.complete)
        let band = result.bands["temperature"]!
        let w = result.binWidth["temperature"]!
        for j in [0, 30, 120, 600, 1440] {
            let t = result.times[j], e = exp(-t / 7200)
            let mean = 10 * (1 - e) + 20 * e, sd = 2 * (1 - e)
            for (q, value) in [(0.05, band.p5[j]), (0.5, band.p50[j]), (0.95, band.p95[j])] {
                let exact = mean + normalQuantile(q) * sd
                // Sampling s.e. of a sample quantile: sqrt(q(1−q)/N)/pdf(z_q)·sd; allow 4 s.e. + one bin width.
                let z = normalQuantile(q), pdf = exp(-z * z / 2) / (2 * Double.pi).squareRoot()
                let tolerance = 4 * (q * (1 - q) / Double(n)).squareRoot() / pdf * sd + w + 1e-9
                XCTAssertEqual(value, exact, accuracy: tolerance, "seed \(seed), t \(t), q \(q)")
            }
        }
        XCTAssertLessThan(w, 0.02 * 2, "bin width \(w) should be ~0.007 sd")
    }

    func testCrossingProbabilityWilsonIntervalContainsAnalytic() throws {
        // T decreases monotonically towards Ta (< 20), so "below 8 within 24 h" ⇔ T(24 h) < 8.
        let seed: UInt64 = 77, n = 2000
        let threshold = Threshold(series: "temperature", .below, 8)
        let result = try MonteCarlo(model: Fixtures.room, request: roomRequest(samples: n, seed: seed, threshold: threshold)).run()
        let e = exp(-86_400 / 7200.0)
        let mean = 10 * (1 - e) + 20 * e, sd = 2 * (1 - e)
        let exact = 0.5 * erfc(-((8 - mean) / sd) / 2.0.squareRoot())
        let p = result.threshold!
        // Exactly the samples whose drawn Ta gives T(24 h) < 8 cross (a check of the counting itself).
        let direct = (0..<n).filter { i in
            var g = SampleRandom(seed: seed, index: i)
            let ta = 10 + 2 * g.normal()
            return ta * (1 - e) + 20 * e < 8
        }.count
        XCTAssertEqual(p.crossings, direct, "seed \(seed)")
        print("crossing: \(p.crossings)/\(p.samples) = \(p.probability) [\(p.low), \(p.high)], exact \(exact)")
        // The reported 95 % interval misses the truth for 1 seed in 20 by design; so that a fixed
        // seed is not a coin toss, the assertion uses the 99.9 % Wilson interval (z = 3.29) of the
        // same counts. (This seed happens to sit 2.9 standard errors low: outside the 95 % one.)
        let wide = wilsonInterval(successes: p.crossings, trials: p.samples, z: 3.2905)
        XCTAssert(wide.low <= exact && exact <= wide.high, "seed \(seed): \(exact) not in [\(wide.low), \(wide.high)]")
        XCTAssertEqual(p.low, wilsonInterval(successes: p.crossings, trials: p.samples).low)
    }

    func testShardMergeEqualsUnshardedExactly() throws {
        let seed: UInt64 = 4242, n = 300
        let request = try roomRequest(samples: n, seed: seed, threshold: Threshold(series: "temperature", .below, 9))
        let mc = try MonteCarlo(model: Fixtures.room, request: request)
        var whole = mc.makeAccumulator()
        try mc.accumulate(0..<n, into: &whole)
        var g = SampleRandom(seed: seed, index: -1)
        for trial in 0..<3 {
            // Random split into 1...6 contiguous shards, merged in a random order, each shard via JSON.
            var cuts = Set<Int>()
            for _ in 0..<Int(g.next() % 6) { cuts.insert(Int(g.next() % UInt64(n))) }
            let bounds = ([0] + cuts.sorted() + [n]).reduce(into: [Int]()) { if $0.last != $1 { $0.append($1) } }
            var shards: [MonteCarloAccumulator] = []
            for k in 0..<(bounds.count - 1) {
                let shardEngine = try MonteCarlo(model: Fixtures.room, request: request)  // each worker rebuilds it
                var acc = shardEngine.makeAccumulator()
                try shardEngine.accumulate(bounds[k]..<bounds[k + 1], into: &acc)
                let data = try JSONEncoder().encode(acc)
                shards.append(try JSONDecoder().decode(MonteCarloAccumulator.self, from: data))
            }
            shards.shuffle(using: &g)
            var merged = mc.makeAccumulator()
            for s in shards { try merged.merge(s) }
            XCTAssertEqual(merged, whole, "seed \(seed), trial \(trial), bounds \(bounds)")
            XCTAssertEqual(merged.crossings, whole.crossings)
            XCTAssertEqual(merged.finish(), whole.finish())
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            XCTAssertEqual(try encoder.encode(merged), try encoder.encode(whole))
        }
        XCTAssertGreaterThan(whole.crossings, 0)
        // Overlapping shards are refused.
        var a = mc.makeAccumulator(), b = mc.makeAccumulator()
        try mc.accumulate(0..<10, into: &a)
        try mc.accumulate(5..<15, into: &b)
        XCTAssertThrowsError(try a.merge(b)) { XCTAssertEqual(($0 as! SimulationError).code, .incompatibleShards) }
    }

    func testDeterministicBySeed() throws {
        let r1 = try MonteCarlo(model: Fixtures.room, request: roomRequest(samples: 100, seed: 9)).run()
        let r2 = try MonteCarlo(model: Fixtures.room, request: roomRequest(samples: 100, seed: 9)).run()
        let r3 = try MonteCarlo(model: Fixtures.room, request: roomRequest(samples: 100, seed: 10)).run()
        XCTAssertEqual(r1, r2)
        XCTAssertNotEqual(r1.bands, r3.bands)
    }

    func testRedrawsAreCountedAndBounded() throws {
        // Ta ~ N(58, 4²) but the model allows at most 60: about 31 % of draws are redrawn.
        var request = try roomRequest(samples: 200, seed: 5)
        request.uncertain = ["Ta": .normal(mean: 58, sd: 4)]
        request.grid = try TimeGrid(horizon: 86_400, step: 3600)
        let result = try MonteCarlo(model: Fixtures.room, request: request).run()
        XCTAssertGreaterThan(result.redraws, 30)
        XCTAssertLessThanOrEqual(result.bands["temperature"]!.p95.last!, 60 + 1e-6)
    }

    func testInvalidDistributions() throws {
        var request = try roomRequest(samples: 10, seed: 1)
        request.uncertain = ["Ta": .normal(mean: 10, sd: -1)]
        XCTAssertThrowsError(try MonteCarlo(model: Fixtures.room, request: request)) {
            XCTAssertEqual(($0 as! SimulationError).code, .invalidDistribution)
        }
        request.uncertain = ["tau": .normal(mean: -1000, sd: 100)]  // tau >= 60
        XCTAssertThrowsError(try MonteCarlo(model: Fixtures.room, request: request)) {
            XCTAssertEqual(($0 as! SimulationError).code, .redrawLimit)
        }
        request.uncertain = ["nope": .uniform(low: 0, high: 1)]
        XCTAssertThrowsError(try MonteCarlo(model: Fixtures.room, request: request)) {
            XCTAssertEqual(($0 as! SimulationError).code, .unknownName)
        }
    }

    func testUniformAndLognormalParametersAndUncertainInitialState() throws {
        var request = try roomRequest(samples: 200, seed: 3)
        request.uncertain = ["tau": .lognormal(mu: log(7200), sigma: 0.3), "C": .uniform(low: 4e6, high: 6e6),
                             "temperature": .normal(mean: 20, sd: 1)]
        let result = try MonteCarlo(model: Fixtures.room, request: request).run()
        let band = result.bands["temperature"]!
        // At t = 0 the band is the initial-state distribution: p5 ≈ 20 − 1.645.
        XCTAssertEqual(band.p5[0], 20 - 1.645, accuracy: 0.3)
        XCTAssert(zip(band.p5, band.p95).allSatisfy { $0 <= $1 })
    }

    func testCancellation() throws {
        let started = Date()
        let mc = try MonteCarlo(model: Fixtures.room, request: roomRequest(samples: 1_000_000, seed: 1))
        XCTAssertThrowsError(try mc.run(control: RunControl(shouldStop: { Date().timeIntervalSince(started) > 0.3 }))) {
            XCTAssertEqual(($0 as! SimulationError).code, .cancelled)
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 1.5)
    }

    /// At 0 or N successes the interval still contains the estimate (rounding once put the upper
    /// end at 0.9999999999999998 for 300 of 300).
    func testWilsonIntervalContainsTheEstimateAtTheEnds() {
        for n in [1, 7, 300, 10_000] {
            let all = wilsonInterval(successes: n, trials: n), none = wilsonInterval(successes: 0, trials: n)
            XCTAssertEqual(all.high, 1, "n = \(n)")
            XCTAssertEqual(none.low, 0, "n = \(n)")
            XCTAssertLessThan(all.low, 1)
            XCTAssertGreaterThan(none.high, 0)
        }
    }
}
