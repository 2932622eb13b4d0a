import Foundation
import XCTest
@testable import Drift

final class PageHinkleyTests: XCTestCase {
    func testAlarmIndicesEqualRiver() throws {
        for name in Fixtures.streamNames {
            let fx = try Fixtures.json("stream_\(name).json")
            let values = doubles(fx["values"])
            for key in ["page_hinkley", "page_hinkley_up", "page_hinkley_down"] {
                let expected = fx[key] as! [String: Any]
                let p = expected["params"] as! [String: Any]
                let mode = PageHinkley.Mode(rawValue: p["mode"] as? String ?? "both")!
                var ph = PageHinkley(minInstances: (p["min_instances"] as? NSNumber)?.intValue ?? 30,
                                     delta: (p["delta"] as? NSNumber)?.doubleValue ?? 0.005,
                                     threshold: (p["threshold"] as? NSNumber)?.doubleValue ?? 50,
                                     alpha: (p["alpha"] as? NSNumber)?.doubleValue ?? 1 - 0.0001, mode: mode)
                var alarms: [Int] = []
                for (i, v) in values.enumerated() where ph.update(v) { alarms.append(i) }
                XCTAssertEqual(alarms, ints(expected["alarms"]), "\(name)/\(key)")
            }
        }
    }

    func testStatisticCrossesThresholdAtAlarm() {
        var ph = PageHinkley()
        var rng = SeededRandom(seed: 21)
        var previous = 0.0
        for i in 0..<5000 {
            let alarmed = ph.update(rng.normal() + (i >= 1000 ? 3 : 0))
            if alarmed {
                XCTAssertGreaterThan(ph.statistic, ph.threshold, "seed 21")
                XCTAssertLessThanOrEqual(previous, ph.threshold, "seed 21")
                XCTAssertGreaterThanOrEqual(i, 1000, "seed 21")
                break
            }
            previous = ph.statistic
        }
        XCTAssertEqual(ph.detectionCount, 1, "seed 21")
    }

    func testResetAndRoundTrip() throws {
        let fx = try Fixtures.json("stream_gradual.json")
        let values = doubles(fx["values"])
        for cutPoint in [0, 1, 29, 30, 457, 458, 1300] {
            var original = PageHinkley()
            for v in values[..<cutPoint] { original.update(v) }
            var restored = try roundTrip(original)
            XCTAssertEqual(restored, original, "restore at \(cutPoint)")
            for (i, v) in values[cutPoint...].enumerated() {
                XCTAssertEqual(original.update(v), restored.update(v), "index \(cutPoint + i), restored at \(cutPoint)")
            }
            XCTAssertEqual(restored, original)
        }
        var ph = PageHinkley(threshold: 10)
        for v in values { ph.update(v) }
        ph.reset()
        XCTAssertEqual(ph, PageHinkley(threshold: 10))
        XCTAssertEqual(ph.statistic, 0)
    }

    func testNonFiniteInputIsIgnoredAndCounted() {
        var ph = PageHinkley(), clean = PageHinkley()
        var rng = SeededRandom(seed: 22)
        for i in 0..<2000 {
            let x = rng.normal() + (i > 1000 ? 2 : 0)
            XCTAssertFalse(ph.update(.nan))
            XCTAssertFalse(ph.update(-.infinity))
            XCTAssertEqual(ph.update(x), clean.update(x), "seed 22, index \(i)")
        }
        XCTAssertEqual(ph.rejectedCount, 4000)
        XCTAssertEqual(ph.statistic, clean.statistic)
    }
}
