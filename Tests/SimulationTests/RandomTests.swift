import Foundation
import XCTest
@testable import Simulation

final class RandomTests: XCTestCase {
    func testPerSampleNormalsAreStandard() {
        // Sample i's first normal, over many i: mean 0, sd 1, P(z < −1) = 0.1587.
        let seed: UInt64 = 77, n = 200_000
        var sum = 0.0, sum2 = 0.0, below = 0
        for i in 0..<n {
            var g = SampleRandom(seed: seed, index: i)
            let z = g.normal()
            sum += z; sum2 += z * z
            if z < -1 { below += 1 }
        }
        let mean = sum / Double(n), sd = (sum2 / Double(n) - mean * mean).squareRoot()
        let p = Double(below) / Double(n)
        print("normals: mean \(mean) sd \(sd) P(z<-1) \(p)")
        XCTAssertEqual(mean, 0, accuracy: 5 / Double(n).squareRoot(), "seed \(seed)")
        XCTAssertEqual(sd, 1, accuracy: 0.01, "seed \(seed)")
        XCTAssertEqual(p, 0.158655, accuracy: 5 * (0.16 * 0.84 / Double(n)).squareRoot(), "seed \(seed)")
    }
}
