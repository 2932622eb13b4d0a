import Contracts
import JSON
import XCTest
@testable import TwinQuery

final class PropertyHistoryTests: XCTestCase {
    func times(_ h: PropertyHistory) -> [Int64] { h.points().map(\.eventTime) }

    func testCountBoundEvictsOldest() {
        var h = PropertyHistory(retention: HistoryRetention(maxPoints: 5, maxAgeMs: 1_000_000))
        for t in 1...12 { h.insert(HistoryPoint(eventTime: Int64(t), value: .int(t))) }
        XCTAssertEqual(times(h), [8, 9, 10, 11, 12])
        XCTAssertEqual(h.count, 5)
        XCTAssertEqual(h.evicted, 7)
        XCTAssertEqual(h.retentionInfo.oldest, 8)
        XCTAssertEqual(h.retentionInfo.newest, 12)
        // Older than everything kept in a full buffer: dropped.
        h.insert(HistoryPoint(eventTime: 3, value: 0, late: true))
        XCTAssertEqual(times(h), [8, 9, 10, 11, 12])
        XCTAssertEqual(h.evicted, 8)
    }

    func testLatePointsAreInsertedInEventTimeOrder() {
        var h = PropertyHistory(retention: HistoryRetention(maxPoints: 6, maxAgeMs: 1_000))
        for t: Int64 in [10, 20, 40, 50] { h.insert(HistoryPoint(eventTime: t, value: .int(Int(t)))) }
        h.insert(HistoryPoint(eventTime: 30, value: 30, late: true))
        h.insert(HistoryPoint(eventTime: 5, value: 5, late: true))
        XCTAssertEqual(times(h), [5, 10, 20, 30, 40, 50])
        XCTAssertEqual(h.points().filter(\.late).map(\.eventTime), [5, 30])
        // Full: a late point in the middle evicts the oldest and keeps order, across the ring's wrap.
        h.insert(HistoryPoint(eventTime: 60, value: 60))
        h.insert(HistoryPoint(eventTime: 45, value: 45, late: true))
        h.insert(HistoryPoint(eventTime: 15, value: 15, late: true))
        XCTAssertEqual(times(h), [20, 30, 40, 45, 50, 60])
        h.insert(HistoryPoint(eventTime: 45, value: 46, late: true))
        XCTAssertEqual(times(h), [30, 40, 45, 45, 50, 60])
        XCTAssertEqual(h.points(from: 45, to: 46).map(\.value), [45, 46])
    }

    func testAgeBoundEvictsRelativeToNewestPoint() {
        var h = PropertyHistory(retention: HistoryRetention(maxPoints: 100, maxAgeMs: 100))
        for t: Int64 in [0, 50, 100, 150] { h.insert(HistoryPoint(eventTime: t, value: 1)) }
        XCTAssertEqual(times(h), [50, 100, 150])
        h.insert(HistoryPoint(eventTime: 40, value: 1, late: true))  // older than newest - maxAge
        XCTAssertEqual(times(h), [50, 100, 150])
        h.insert(HistoryPoint(eventTime: 400, value: 1))
        XCTAssertEqual(times(h), [400])
        XCTAssertEqual(h.evicted, 5)
    }

    func testRawRangeIsHalfOpen() {
        var h = PropertyHistory()
        for t in 0..<10 { h.insert(HistoryPoint(eventTime: Int64(t * 10), value: .int(t))) }
        XCTAssertEqual(h.points(from: 20, to: 50).map(\.eventTime), [20, 30, 40])
        XCTAssertEqual(h.points(from: 21, to: 21), [])
        XCTAssertEqual(h.points(to: 10).map(\.eventTime), [0])
        XCTAssertEqual(h.points(from: 85).map(\.eventTime), [90])
    }

    func testAggregationMinMaxMeanLastPerStep() throws {
        var h = PropertyHistory()
        let values: [(Int64, Double)] = [(0, 5), (10, 1), (25, 9), (59, 3), (60, 7), (130, 2), (135, 4)]
        for (t, v) in values.reversed() { h.insert(HistoryPoint(eventTime: t, value: .double(v), late: true)) }
        let buckets = try h.aggregate(from: 0, to: 140, step: 60)
        XCTAssertEqual(buckets.map(\.start), [0, 60, 120])
        XCTAssertEqual(buckets.map(\.end), [60, 120, 140])
        XCTAssertEqual(buckets.map(\.count), [4, 1, 2])
        XCTAssertEqual(buckets.map(\.min), [1, 7, 2])
        XCTAssertEqual(buckets.map(\.max), [9, 7, 4])
        XCTAssertEqual(buckets.map(\.mean), [4.5, 7, 3])
        XCTAssertEqual(buckets.map(\.last), [3, 7, 4])
        XCTAssertEqual(buckets.map(\.lastTime), [59, 60, 135])
        // Buckets are aligned to `from`, and points outside [from, to) are left out.
        let shifted = try h.aggregate(from: 10, to: 60, step: 20)
        XCTAssertEqual(shifted.map(\.start), [10, 50])
        XCTAssertEqual(shifted.map(\.count), [2, 1])
        XCTAssertEqual(shifted.map(\.end), [30, 60])
    }

    func testNonNumericValuesHaveOnlyLast() throws {
        var h = PropertyHistory()
        h.insert(HistoryPoint(eventTime: 1, value: "idle"))
        h.insert(HistoryPoint(eventTime: 2, value: "running"))
        h.insert(HistoryPoint(eventTime: 12, value: true))
        let b = try h.aggregate(from: 0, to: 20, step: 10)
        XCTAssertEqual(b.count, 2)
        XCTAssertNil(b[0].min)
        XCTAssertNil(b[0].mean)
        XCTAssertEqual(b[0].last, "running")
        XCTAssertEqual(b[1].last, true)
    }

    func testAggregationRangeErrors() {
        let h = PropertyHistory()
        XCTAssertThrowsError(try h.aggregate(from: 10, to: 10, step: 1)) { XCTAssertEqual(($0 as? QueryError)?.code, .invalidRange) }
        XCTAssertThrowsError(try h.aggregate(from: 0, to: 10, step: 0)) { XCTAssertEqual(($0 as? QueryError)?.parameter, "step") }
        XCTAssertThrowsError(try h.aggregate(from: .min, to: .max, step: 1))
        // Any step over any range: only buckets holding points exist, so none is too fine.
        var filled = PropertyHistory()
        filled.insert(HistoryPoint(eventTime: 5, value: 1))
        filled.insert(HistoryPoint(eventTime: 9_000_000, value: 2))
        XCTAssertEqual(try filled.aggregate(from: 0, to: 86_400_000, step: 1).map(\.start), [5, 9_000_000])
    }

    func testMemoryIsBounded() {
        var h = PropertyHistory(retention: HistoryRetention(maxPoints: 100, maxAgeMs: .max / 4))
        for t in 0..<10_000 { h.insert(HistoryPoint(eventTime: Int64(t), value: .double(Double(t) / 3))) }
        XCTAssertEqual(h.count, 100)
        XCTAssertEqual(h.storage.count, 100)
        XCTAssertLessThan(h.estimatedBytes, 100 * MemoryLayout<HistoryPoint>.stride + 200)
    }

    func testTwinHistoryRecordsPropertyChangesIncludingLateOnes() {
        var history = TwinHistory(retention: HistoryRetention(maxPoints: 10, maxAgeMs: 10_000), maxProperties: 2)
        func change(_ version: Int64, _ entries: [TwinChange.Entry]) -> TwinChange {
            TwinChange(tenant: "t", twinId: "p", model: "pump@1", version: version, kind: .telemetry, at: 0, eventTime: 0, changes: entries)
        }
        history.record(change(1, [TwinChange.Entry(path: "/properties/temperature", old: nil, new: 70, newTime: 1_000),
                                  TwinChange.Entry(path: "/metadata/site", old: nil, new: "north")]))
        history.record(change(2, [TwinChange.Entry(path: "/properties/temperature", old: 70, new: 72, oldTime: 1_000, newTime: 2_000)]))
        history.record(change(3, [TwinChange.Entry(path: "/properties/temperature", old: 72, new: 71, oldTime: 2_000, newTime: 1_500, late: true),
                                  TwinChange.Entry(path: "/properties/pressure", old: nil, new: 3, newTime: 1_500),
                                  TwinChange.Entry(path: "/properties/flow", old: nil, new: 1, newTime: 1_500)]))
        let temperature = history[property: "temperature"]!
        XCTAssertEqual(temperature.points().map(\.value), [70, 71, 72])
        XCTAssertEqual(temperature.points().map(\.late), [false, true, false])
        XCTAssertEqual(history.properties.count, 2)
        XCTAssertEqual(history.ignored, 1)
        XCTAssertGreaterThan(history.estimatedBytes, 0)
    }
}
