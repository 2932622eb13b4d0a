import Foundation
import XCTest
@testable import Drift

final class CUSUMTests: XCTestCase {
    func testDefaults() {
        let c = CUSUM()
        XCTAssertEqual(c.configuration.slack, 0.5)
        XCTAssertEqual(c.threshold, 12.5)
    }

    /// h = 12.5 promises ≤ 0.2 false alarms per 100,000 standard-normal samples (ARL0 ≈ 854,000, i.e.
    /// ≈ 0.12 / 100k). On 2,000,000 seeded samples we expect ≈ 2.3; more than 10 would mean a broken chart.
    func testFalseAlarmRateOnStandardNormal() {
        let seed: UInt64 = 31
        var rng = SeededRandom(seed: seed)
        var cusum = CUSUM()
        var alarms = 0
        for _ in 0..<2_000_000 where cusum.update(rng.normal()) { alarms += 1 }
        XCTAssertLessThanOrEqual(alarms, 10, "seed \(seed): \(alarms) false alarms in 2,000,000 samples")
    }

    /// Median delay for a 1σ shift starting from the in-control steady state must be ≤ 25 (≈ 22 expected).
    func testMedianDelayForOneSigmaShift() {
        let seed: UInt64 = 32
        var rng = SeededRandom(seed: seed)
        var delays: [Int] = []
        for _ in 0..<1000 {
            var cusum = CUSUM()
            for _ in 0..<200 { cusum.update(rng.normal()) }  // steady state (an in-control alarm just restarts)
            var t = 0
            while !cusum.update(rng.normal() + 1) { t += 1 }
            delays.append(t)
        }
        delays.sort()
        let median = delays[delays.count / 2]
        XCTAssertLessThanOrEqual(median, 25, "seed \(seed): median delay \(median)")
        XCTAssertGreaterThanOrEqual(median, 18, "seed \(seed): median delay \(median) suspiciously short")
    }

    func testDirectionAndRestart() {
        var cusum = CUSUM(configuration: .init(threshold: 5))
        var t = 0
        while !cusum.update(-2) { t += 1 }
        XCTAssertEqual(cusum.lastDirection, -1)
        XCTAssertEqual(t, 3)  // 1.5 per step: 1.5, 3, 4.5, 6 > 5 at the 4th value
        cusum.update(0)
        XCTAssertEqual(cusum.statistic, 0, "restarted after the alarm")
    }

    func testWarmUpStandardisesAndFreezes() {
        var cusum = CUSUM(configuration: .init(standardisation: .warmUp(count: 2000)))
        var rng = SeededRandom(seed: 33)
        for _ in 0..<2000 { XCTAssertFalse(cusum.update(100 + 5 * rng.normal())) }
        XCTAssertTrue(cusum.isWarmedUp)
        XCTAssertEqual(cusum.referenceMean, 100, accuracy: 0.5, "seed 33")
        XCTAssertEqual(cusum.referenceStandardDeviation, 5, accuracy: 0.3, "seed 33")
        var alarmed = -1
        for i in 0..<1000 where cusum.update(100 + 5 * rng.normal() + 5) { alarmed = i; break }
        XCTAssertTrue((0..<60).contains(alarmed), "seed 33: 1σ shift detected at \(alarmed)")
        // After the alarm the next values re-estimate the new regime.
        cusum.update(105)
        XCTAssertFalse(cusum.isWarmedUp)
    }

    func testKnownStandardisationEqualsCallerStandardising() {
        var known = CUSUM(configuration: .init(standardisation: .known(mean: 10, standardDeviation: 2)))
        var plain = CUSUM()
        var rng = SeededRandom(seed: 34)
        for i in 0..<5000 {
            let x = 10 + 2 * rng.normal() + (i > 2500 ? 2 : 0)
            XCTAssertEqual(known.update(x), plain.update((x - 10) / 2), "seed 34, index \(i)")
        }
    }

    func testResetRoundTripAndNonFinite() throws {
        var rng = SeededRandom(seed: 35)
        let values = (0..<6000).map { i in rng.normal() + (i >= 3000 ? 1.0 : 0.0) }
        for config in [CUSUM.Configuration(), .init(threshold: 4, standardisation: .warmUp(count: 30))] {
            for cutPoint in [0, 10, 30, 2999, 3020] {
                var original = CUSUM(configuration: config)
                for v in values[..<cutPoint] { original.update(v) }
                var restored = try roundTrip(original)
                XCTAssertEqual(restored, original)
                for (i, v) in values[cutPoint...].enumerated() {
                    XCTAssertEqual(original.update(v), restored.update(v), "seed 35, index \(cutPoint + i)")
                }
                XCTAssertEqual(restored, original)
                original.reset()
                XCTAssertEqual(original, CUSUM(configuration: config))
            }
        }
        var cusum = CUSUM()
        XCTAssertFalse(cusum.update(.nan))
        XCTAssertFalse(cusum.update(.infinity))
        XCTAssertEqual(cusum.rejectedCount, 2)
        XCTAssertEqual(cusum.acceptedCount, 0)
        XCTAssertEqual(cusum.statistic, 0)
    }

    /// The protocol lets the monitor drive any detector the same way.
    func testProtocolUse() {
        var detectors: [any ChangeDetector] = [ADWIN(), PageHinkley(), CUSUM()]
        var rng = SeededRandom(seed: 36)
        var fired = [Bool](repeating: false, count: detectors.count)
        for i in 0..<6000 {
            let x = rng.normal() + (i >= 3000 ? 3.0 : 0.0)
            for d in detectors.indices where detectors[d].update(x) && i >= 3000 { fired[d] = true }
        }
        XCTAssertEqual(fired, [true, true, true], "seed 36")
    }
}
