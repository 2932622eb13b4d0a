import Foundation
import XCTest

/// Reads fixture files written by `Benchmarks/drift/make_fixtures.py`. A missing or unreadable fixture is a
/// test failure (thrown), never a skip: the exactness tests are the point of this target.
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func json(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let url = directory.appendingPathComponent(name)
        guard let data = FileManager.default.contents(atPath: url.path) else {
            XCTFail("missing fixture \(url.path): run Benchmarks/drift.sh --fixtures", file: file, line: line)
            throw FixtureError.missing(url.path)
        }
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw FixtureError.malformed(url.path)
        }
        return object
    }

    static let streamNames = ["mean_shift", "variance_change", "gradual", "no_change", "multi_jump", "binary"]

    enum FixtureError: Error { case missing(String), malformed(String) }
}

/// Converts JSON numbers (NSNumber) to Double / Int.
func doubles(_ any: Any?) -> [Double] { (any as? [Any] ?? []).map { ($0 as! NSNumber).doubleValue } }
func ints(_ any: Any?) -> [Int] { (any as? [Any] ?? []).map { ($0 as! NSNumber).intValue } }

/// Seeded generator (SplitMix64) with a Box–Muller normal, so behaviour tests are reproducible; every
/// failure message includes the seed.
struct SeededRandom {
    private var state: UInt64
    private var spare: Double?
    let seed: UInt64

    init(seed: UInt64) {
        self.seed = seed
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    mutating func uniform() -> Double { (Double(next() >> 11) + 0.5) * 0x1p-53 }

    mutating func normal() -> Double {
        if let s = spare { spare = nil; return s }
        let u1 = uniform(), u2 = uniform()
        let r = (-2 * log(u1)).squareRoot()
        spare = r * sin(2 * .pi * u2)
        return r * cos(2 * .pi * u2)
    }
}

/// Encodes and decodes through JSON, as the drift-monitor persists state.
func roundTrip<T: Codable>(_ value: T) throws -> T {
    let data = try JSONEncoder().encode(value)
    return try JSONDecoder().decode(T.self, from: data)
}

func assertClose(_ actual: Double, _ expected: Double, rel: Double = 1e-9, abs absTol: Double = 1e-300,
                 _ message: String, file: StaticString = #filePath, line: UInt = #line) {
    if actual == expected { return }
    let ok = Swift.abs(actual - expected) <= Swift.max(rel * Swift.abs(expected), absTol)
    XCTAssertTrue(ok, "\(message): got \(actual), expected \(expected) (rel err \(Swift.abs(actual - expected) / Swift.abs(expected)))",
                  file: file, line: line)
}
