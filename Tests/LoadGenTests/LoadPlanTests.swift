import Foundation
import LoadGen
import XCTest

/// The pure parts of `twinctl load`: what the benchmark's reference fold relies on.
final class LoadPlanTests: XCTestCase {
    func testDueReadingsFollowTheRateAndNeverRunAhead() {
        let schedule = LoadSchedule(rate: 10_000, twins: 100)
        XCTAssertEqual(schedule.due(after: 0), 0)
        XCTAssertEqual(schedule.due(after: -1), 0)
        XCTAssertEqual(schedule.due(after: 0.0001), 1)
        XCTAssertEqual(schedule.due(after: 0.00019), 1, "a reading is due only once its whole time has come")
        XCTAssertEqual(schedule.due(after: 1.5), 15_000)
        XCTAssertEqual(LoadSchedule(rate: 333, twins: 1).due(after: 60), 19_980)
        var previous = 0
        for step in 0..<1000 {
            let due = schedule.due(after: Double(step) * 0.00137)
            XCTAssertGreaterThanOrEqual(due, previous)
            previous = due
        }
    }

    func testReadingsGoRoundTheTwinsAndCountsFollowFromTheNumberSent() {
        let schedule = LoadSchedule(rate: 50, twins: 7)
        var perTwin = Array(repeating: 0, count: 7)
        for k in 0..<45 {
            XCTAssertEqual(schedule.round(of: k), perTwin[schedule.twin(of: k)], "reading \(k) is its twin's next round")
            perTwin[schedule.twin(of: k)] += 1
        }
        XCTAssertEqual((0..<7).map { schedule.readings(ofTwin: $0, sent: 45) }, perTwin)
        XCTAssertEqual(perTwin.reduce(0, +), 45)
    }

    func testAReadingIsAValidPumpReadingWithTheValuesOfItsSet() throws {
        let readings = LoadReadings(prefix: "load-", twins: 12)
        XCTAssertEqual(readings.twinId(7), "load-000007")
        XCTAssertEqual(LoadReadings.twinId(prefix: "p-", index: 1_234_567), "p-1234567")
        let bytes = readings.reading(twin: 7, round: 60, ts: 1_764_900_000_123)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        XCTAssertEqual(object["twinId"] as? String, "load-000007")
        XCTAssertEqual(object["model"] as? String, "pump@1")
        XCTAssertEqual((object["ts"] as? NSNumber)?.int64Value, 1_764_900_000_123)
        let values = try XCTUnwrap(object["values"] as? [String: Double])
        let set = LoadReadings.valueSet(twin: 7, round: 60)
        XCTAssertEqual(set, 3)
        XCTAssertEqual(values, Dictionary(uniqueKeysWithValues: LoadReadings.values(set: set).map { ($0.name, $0.value) }))
        // Every set within pump@1's ranges (flow ≤ 500, pressure ≤ 16, temperature ≤ 120, vibration ≤ 50, rpm ≤ 3600).
        for set in 0..<LoadReadings.valueSets {
            let v = Dictionary(uniqueKeysWithValues: LoadReadings.values(set: set).map { ($0.name, $0.value) })
            XCTAssertTrue(v["flow"]! <= 500 && v["pressure"]! <= 16 && v["temperature"]! <= 120 && v["vibration"]! <= 50 && v["rpm"]! <= 3600, "set \(set): \(v)")
        }
    }

    func testEventTimesOfATwinAlwaysMoveForward() {
        var clock = EventClock(twins: 2)
        XCTAssertEqual(clock.stamp(twin: 0, now: 1000), 1000)
        XCTAssertEqual(clock.stamp(twin: 0, now: 1000), 1001, "same millisecond: one past the previous")
        XCTAssertEqual(clock.stamp(twin: 0, now: 999), 1002, "a clock step back never makes a reading late")
        XCTAssertEqual(clock.stamp(twin: 1, now: 1000), 1000, "twins are stamped independently")
        XCTAssertEqual(clock.stamp(twin: 0, now: 5000), 5000)
    }
}
