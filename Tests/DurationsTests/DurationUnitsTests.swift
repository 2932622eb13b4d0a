import Durations
import XCTest

/// Every module converts durations through these; a wrong rounding would skew timeouts,
/// Kafka settings and metrics alike.
final class DurationUnitsTests: XCTestCase {
    func testSecondsKeepTheFraction() {
        XCTAssertEqual(Duration.milliseconds(1500).seconds, 1.5, accuracy: 1e-12)
        XCTAssertEqual(Duration.nanoseconds(1).seconds, 1e-9, accuracy: 1e-21)
        XCTAssertEqual(Duration.seconds(-2).seconds, -2)
    }

    func testMillisecondsRoundTowardZero() {
        XCTAssertEqual(Duration.seconds(300).milliseconds, 300_000)
        XCTAssertEqual(Duration.microseconds(1999).milliseconds, 1)
        XCTAssertEqual(Duration.milliseconds(250).milliseconds, 250)
        XCTAssertEqual(Duration.microseconds(2500).microseconds, 2500)
    }

    func testNonNegativeNanosecondsClampAtZero() {
        XCTAssertEqual(Duration.seconds(-1).nonNegativeNanoseconds, 0)
        XCTAssertEqual(Duration.zero.nonNegativeNanoseconds, 0)
        XCTAssertEqual(Duration.milliseconds(3).nonNegativeNanoseconds, 3_000_000)
    }
}
