import Foundation
import XCTest
@testable import Drift

final class ADWINTests: XCTestCase {
    /// River's ADWIN alarm indices (and the width right after each alarm) on every fixture stream, with
    /// River's defaults and with a non-default configuration.
    func testAlarmIndicesEqualRiver() throws {
        for name in Fixtures.streamNames {
            let fx = try Fixtures.json("stream_\(name).json")
            let values = doubles(fx["values"])
            XCTAssertGreaterThan(values.count, 1000, name)
            for key in ["adwin", "adwin_clock1"] {
                let expected = fx[key] as! [String: Any]
                let params = expected["params"] as! [String: Any]
                var detector = ADWIN(delta: (params["delta"] as? NSNumber)?.doubleValue ?? 0.002,
                                     clock: (params["clock"] as? NSNumber)?.intValue ?? 32,
                                     maxBuckets: (params["max_buckets"] as? NSNumber)?.intValue ?? 5,
                                     minWindowLength: (params["min_window_length"] as? NSNumber)?.intValue ?? 5,
                                     gracePeriod: (params["grace_period"] as? NSNumber)?.intValue ?? 10)
                var alarms: [Int] = [], widths: [Int] = []
                for (i, v) in values.enumerated() where detector.update(v) {
                    alarms.append(i)
                    widths.append(detector.width)
                }
                XCTAssertEqual(alarms, ints(expected["alarms"]), "\(name)/\(key) alarm indices")
                XCTAssertEqual(widths, ints(expected["widths"]), "\(name)/\(key) widths after alarms")
                XCTAssertEqual(detector.width, (expected["final_width"] as! NSNumber).intValue, "\(name)/\(key) final width")
            }
        }
    }

    func testFixturesRecordTheirRiverVersion() throws {
        let fx = try Fixtures.json("stream_mean_shift.json")
        let versions = fx["versions"] as! [String: Any]
        XCTAssertEqual(versions["river"] as? String, "0.26.1")
    }

    func testCutReportsWhereTheChangeBegan() {
        var adwin = ADWIN()
        var rng = SeededRandom(seed: 11)
        var alarmAt: Int?
        for i in 0..<4000 {
            let x = rng.normal() + (i >= 2000 ? 2.0 : 0.0)
            if adwin.update(x) { alarmAt = i; break }
        }
        let at = try! XCTUnwrap(alarmAt, "seed 11")
        XCTAssertGreaterThanOrEqual(at, 2000, "seed 11: no false alarm before the shift")
        let cut = try! XCTUnwrap(adwin.lastCut)
        XCTAssertEqual(cut.detectedAt, at)
        XCTAssertEqual(cut.firstRetainedIndex + adwin.width, at + 1)
        XCTAssertEqual(cut.droppedCount, at + 1 - adwin.width)
        XCTAssertGreaterThan(cut.firstRetainedIndex, 1700, "seed 11: cut near the change")
        XCTAssertLessThanOrEqual(cut.firstRetainedIndex, 2100, "seed 11")
        XCTAssertGreaterThan(cut.meanAfter, cut.meanBefore)
        // River semantics: the next value starts a fresh window.
        adwin.update(0)
        XCTAssertEqual(adwin.width, 1)
        XCTAssertFalse(adwin.driftDetected)
    }

    func testKeepWindowAfterDriftWhenRestartDisabled() {
        var adwin = ADWIN(configuration: .init(restartAfterDrift: false))
        var rng = SeededRandom(seed: 12)
        for i in 0..<4000 {
            if adwin.update(rng.normal() + (i >= 2000 ? 2.0 : 0.0)) { break }
        }
        let width = adwin.width
        XCTAssertGreaterThan(width, 0)
        adwin.update(2.0)
        XCTAssertEqual(adwin.width, width + 1, "seed 12: textbook ADWIN keeps W1")
    }

    func testStatisticsOfWindow() {
        var adwin = ADWIN()
        for v in [1.0, 2, 3, 4, 5] { adwin.update(v) }
        XCTAssertEqual(adwin.width, 5)
        XCTAssertEqual(adwin.mean, 3)
        XCTAssertEqual(adwin.sumOfSquaredDeviations, 10, accuracy: 1e-12)
        XCTAssertEqual(adwin.variance, 2, accuracy: 1e-12)
        XCTAssertEqual(adwin.threshold, 0)
    }

    func testResetForgetsEverything() {
        var adwin = ADWIN(delta: 0.01)
        var rng = SeededRandom(seed: 13)
        for _ in 0..<1000 { adwin.update(rng.normal()) }
        adwin.update(.nan)
        adwin.reset()
        XCTAssertEqual(adwin, ADWIN(delta: 0.01))
        XCTAssertEqual(adwin.width, 0)
        XCTAssertEqual(adwin.acceptedCount, 0)
        XCTAssertEqual(adwin.rejectedCount, 0)
    }

    /// A detector persisted and restored at any point continues exactly as the uninterrupted one.
    func testCodableRoundTripContinuesIdentically() throws {
        let fx = try Fixtures.json("stream_multi_jump.json")
        let values = doubles(fx["values"])
        for cutPoint in [0, 7, 511, 512, 1023, 1500] {
            var original = ADWIN()
            for v in values[..<cutPoint] { original.update(v) }
            var restored = try roundTrip(original)
            XCTAssertEqual(restored, original, "state after restore at \(cutPoint)")
            for (i, v) in values[cutPoint...].enumerated() {
                let a = original.update(v), b = restored.update(v)
                XCTAssertEqual(a, b, "alarm at \(cutPoint + i) after restoring at \(cutPoint)")
            }
            XCTAssertEqual(restored, original, "final state after restoring at \(cutPoint)")
        }
    }

    func testNonFiniteInputIsIgnoredAndCounted() {
        var clean = ADWIN(), dirty = ADWIN()
        var rng = SeededRandom(seed: 14)
        for i in 0..<3000 {
            let x = rng.normal() + (i > 1500 ? 1.5 : 0)
            let a = clean.update(x)
            if i % 100 == 0 {
                XCTAssertFalse(dirty.update(.nan))
                XCTAssertFalse(dirty.update(.infinity))
                XCTAssertFalse(dirty.update(-.infinity))
                XCTAssertFalse(dirty.update(1e200))
            }
            XCTAssertEqual(dirty.update(x), a, "seed 14, index \(i)")
        }
        XCTAssertEqual(dirty.rejectedCount, 120)
        XCTAssertEqual(dirty.acceptedCount, 3000)
        XCTAssertEqual(dirty.width, clean.width)
        XCTAssertEqual(dirty.mean, clean.mean)
        XCTAssertNoThrow(try JSONEncoder().encode(dirty))
    }

    /// Values are settled in batches; every accessor still sees every value, with River's per-insert
    /// arithmetic bit for bit (width, total and sum of squared deviations after each value, as River's
    /// `_insert_element` computes them one at a time).
    func testAccessorsSeeEveryValueWithRiversArithmetic() {
        var adwin = ADWIN(configuration: .init(clock: 1_000_000))  // no cut test: the window only grows
        var rng = SeededRandom(seed: 15)
        var width = 0.0, total = 0.0, variance = 0.0
        for i in 0..<300 {
            let x = 100 + 3 * rng.normal()
            width += 1
            var increment = 0.0
            if width > 1 { increment = (width - 1) * (x - total / (width - 1)) * (x - total / (width - 1)) / width }
            variance += increment
            total += x
            adwin.update(x)
            XCTAssertEqual(adwin.width, i + 1, "seed 15, value \(i)")
            XCTAssertEqual(adwin.sum.bitPattern, total.bitPattern, "seed 15, value \(i)")
            XCTAssertEqual(adwin.sumOfSquaredDeviations.bitPattern, variance.bitPattern, "seed 15, value \(i)")
            XCTAssertEqual(adwin.windowStartIndex, 0)
        }
        XCTAssertGreaterThan(adwin.rows, 1)
    }
}
