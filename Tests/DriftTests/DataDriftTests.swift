import Foundation
import XCTest
@testable import Drift

final class DataDriftTests: XCTestCase {
    /// PSI, KS statistic and asymptotic p-value, normalised Wasserstein and Jensen–Shannon equal the
    /// NumPy/SciPy values (Evidently's rules) within 1e-9 relative.
    func testStatisticsEqualScipy() throws {
        let fx = try Fixtures.json("datadrift.json")
        let cases = fx["cases"] as! [[String: Any]]
        XCTAssertGreaterThanOrEqual(cases.count, 10)
        for c in cases {
            let name = c["name"] as! String
            let ref = doubles(c["reference"]), cur = doubles(c["current"])
            func expected(_ key: String) -> Double { (c[key] as! NSNumber).doubleValue }
            let psi = DriftStatistics.populationStabilityIndex(reference: ref, current: cur)
            assertClose(psi, expected("psi"), abs: 1e-15, "\(name) psi")
            let bins = DriftStatistics.binned(reference: ref, current: cur, fillZeroes: true)
            XCTAssertEqual(bins.reference.count, (c["bins"] as! NSNumber).intValue, "\(name) bin count")
            let ks = DriftStatistics.kolmogorovSmirnov(reference: ref, current: cur)
            assertClose(ks.statistic, expected("ks_statistic"), "\(name) ks statistic")
            assertClose(ks.pValue, expected("ks_pvalue_asymp"), "\(name) ks p-value")
            assertClose(DriftStatistics.wassersteinDistance(ref, cur), expected("wasserstein"), abs: 1e-15,
                        "\(name) wasserstein")
            assertClose(DriftStatistics.normalisedWasserstein(reference: ref, current: cur),
                        expected("wasserstein_norm"), abs: 1e-15, "\(name) normalised wasserstein")
            assertClose(DriftStatistics.populationStandardDeviation(ref), expected("reference_std_ddof0"),
                        abs: 1e-15, "\(name) std")
            assertClose(DriftStatistics.jensenShannonDistance(reference: ref, current: cur, base: 2),
                        expected("js_base2"), abs: 1e-15, "\(name) js base 2")
            assertClose(DriftStatistics.jensenShannonDistance(reference: ref, current: cur, base: M_E),
                        expected("js_base_e"), abs: 1e-15, "\(name) js base e")
        }
    }

    /// Our Kolmogorov survival function against scipy.stats.kstwo.sf on a grid covering every algorithm.
    func testKolmogorovSurvivalEqualsScipy() throws {
        let fx = try Fixtures.json("kolmogorov.json")
        let rows = fx["rows"] as! [[NSNumber]]
        XCTAssertGreaterThan(rows.count, 400)
        for row in rows {
            let n = row[0].intValue, d = row[1].doubleValue, sf = row[2].doubleValue
            assertClose(Kolmogorov.survival(n: n, d: d), sf, rel: 1e-9, abs: 1e-300, "kstwo.sf(\(d), \(n))")
        }
    }

    func testWindowEvictsOldestAndRejectsNonFinite() {
        var w = DriftWindow(capacity: 3)
        XCTAssertTrue(w.append(1))
        XCTAssertFalse(w.append(.nan))
        XCTAssertFalse(w.append(.infinity))
        w.append(contentsOf: [2, 3, 4, 5])
        XCTAssertEqual(w.values, [3, 4, 5])
        XCTAssertEqual(w.count, 3)
        XCTAssertTrue(w.isFull)
        XCTAssertEqual(w.rejectedCount, 2)
        XCTAssertEqual(w.acceptedCount, 5)
        let s = w.summary
        XCTAssertEqual(s.count, 3)
        XCTAssertEqual(s.mean, 4)
        XCTAssertEqual(s.standardDeviation, 1)
        XCTAssertEqual(s.min, 3)
        XCTAssertEqual(s.max, 5)
        XCTAssertEqual(s.median, 4)
        XCTAssertEqual(s.p25, 3.5)
        w.reset()
        XCTAssertEqual(w, DriftWindow(capacity: 3))
        XCTAssertEqual(w.summary.count, 0)
        XCTAssertTrue(w.summary.mean.isNaN)
    }

    func testDetectorDecisionFollowsEvidentlyRule() throws {
        var rng = SeededRandom(seed: 41)
        var small = DataDriftDetector(configuration: .init(windowSize: 500))
        XCTAssertNil(small.evaluate(), "no verdict on empty windows")
        for _ in 0..<500 { small.addReference(rng.normal()) }
        for _ in 0..<500 { small.addCurrent(rng.normal() + 0.5) }
        let r1 = try XCTUnwrap(small.evaluate())
        XCTAssertEqual(r1.method, .kolmogorovSmirnov, "reference ≤ 1000 values → KS")
        XCTAssertTrue(r1.driftDetected, "seed 41: 0.5σ shift with 500 values")
        XCTAssertEqual(r1.statistic, r1.ksPValue)
        XCTAssertEqual(r1.threshold, 0.05)

        var large = DataDriftDetector(configuration: .init(windowSize: 2000))
        for _ in 0..<2000 { large.addReference(rng.normal()) }
        for _ in 0..<2000 { large.addCurrent(rng.normal()) }
        let r2 = try XCTUnwrap(large.evaluate())
        XCTAssertEqual(r2.method, .wasserstein, "reference > 1000 values → Wasserstein")
        XCTAssertFalse(r2.driftDetected, "seed 41: same distribution")
        XCTAssertEqual(r2.reference.count, 2000)

        for method in DataDriftMethod.allCases {
            let c = DataDriftDetector.Configuration(windowSize: 10, method: method, psiThreshold: 0.2)
            let r = DataDriftDetector.compare(reference: (0..<100).map(Double.init), current: (50..<150).map(Double.init),
                                              configuration: c)
            XCTAssertTrue(r.driftDetected, "\(method)")
            XCTAssertNotEqual(r.method, .evidentlyDefault)
        }
    }

    func testDetectorRoundTripPromoteAndReset() throws {
        var rng = SeededRandom(seed: 42)
        var d = DataDriftDetector(configuration: .init(windowSize: 200))
        for _ in 0..<250 { d.addReference(rng.normal()) }
        for _ in 0..<130 { d.addCurrent(rng.normal() + 1) }
        d.addCurrent(.nan)
        let restored = try roundTrip(d)
        XCTAssertEqual(restored, d)
        XCTAssertEqual(restored.evaluate(), d.evaluate())
        XCTAssertEqual(restored.current.rejectedCount, 1)
        let report = try XCTUnwrap(d.evaluate())
        XCTAssertEqual(try roundTrip(report), report)
        d.promoteCurrentToReference()
        XCTAssertEqual(d.reference.count, 130)
        XCTAssertEqual(d.current.count, 0)
        d.reset()
        XCTAssertEqual(d, DataDriftDetector(configuration: .init(windowSize: 200)))
    }

    func testEdgeCases() {
        XCTAssertTrue(DriftStatistics.kolmogorovSmirnov(reference: [], current: [1]).pValue.isNaN)
        XCTAssertTrue(DriftStatistics.populationStabilityIndex(reference: [1], current: []).isNaN)
        let same = DriftStatistics.kolmogorovSmirnov(reference: [1, 2, 3], current: [1, 2, 3])
        XCTAssertEqual(same.statistic, 0)
        XCTAssertEqual(same.pValue, 1)
        XCTAssertEqual(DriftStatistics.normalisedWasserstein(reference: [2, 2, 2], current: [2, 2, 2]), 0)
        XCTAssertEqual(DriftStatistics.populationStabilityIndex(reference: [5, 5, 5], current: [5, 5]), 0)
        XCTAssertEqual(Kolmogorov.survival(n: 10, d: 0), 1)
        XCTAssertEqual(Kolmogorov.survival(n: 10, d: 1), 0)
        XCTAssertTrue(Kolmogorov.survival(n: 10, d: .nan).isNaN)
    }
}
