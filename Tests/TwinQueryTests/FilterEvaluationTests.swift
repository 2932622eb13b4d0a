import Contracts
import JSON
import XCTest
@testable import TwinQuery

/// Hand-built twins for evaluation and paging tests.
func twin(_ id: String, model: String? = "pump@1", version: Int64 = 1, updatedAt: Int64 = 1_000, eventTime: Int64 = 1_000,
          properties: [(String, JSON)] = [], metadata: JSONObject = [:], desired: JSONObject = [:], parameters: JSONObject = [:],
          relationships: [(String, String)] = [], interval: Int64? = 10_000, missing: [String] = []) -> QueryTwin {
    let props = properties.sorted { $0.0 < $1.0 }.map {
        (name: $0.0, property: TwinState.Property(value: $0.1, eventTime: eventTime, ingestTime: eventTime, eventId: "e-\(id)"))
    }
    let state = TwinState(tenant: "t", twinId: id, model: model, version: version, updatedAt: updatedAt, properties: props,
                          missing: missing, metadata: metadata, desired: desired, parameters: parameters,
                          relationships: relationships.map { TwinState.Relationship(name: $0.0, target: $0.1) }.sorted())
    return QueryTwin(state, reportingIntervalMs: interval)
}

final class FilterEvaluationTests: XCTestCase {
    let pump = twin("pump-17", model: "pump@1", version: 7, updatedAt: 1_795_248_000_000, eventTime: 1_000_000,
                    properties: [("temperature", 85.5), ("status", "running-ok"), ("running", true), ("count", 3)],
                    metadata: ["site": "north", "loc": ["city": "Paris"]], desired: ["setpoint": 80], parameters: ["tau": 120.5],
                    relationships: [("feeds", "tank-7")])
    let tank = twin("tank-7", model: "tank@2", version: 2, updatedAt: 1_795_247_000_000, eventTime: 1_000_000,
                    properties: [("temperature", "n/a"), ("level", 0.4)], metadata: ["site": "south"])

    func matches(_ filter: String, _ t: QueryTwin, now: Int64 = 1_000_000, file: StaticString = #filePath, line: UInt = #line) -> Bool {
        do {
            return CompiledFilter<QueryTwin>(try TwinFilter(parsing: filter)).matches(t, now: now)
        } catch {
            XCTFail("\(filter): \(error)", file: file, line: line)
            return false
        }
    }

    /// `missing` selects incomplete twins: bare or `= true` (lacks some required telemetry),
    /// `= false` (complete), `= name` / `!= name` (lacks / has reported that one).
    func testMissingSelectsIncompleteTwins() {
        let partial = twin("pump-2", properties: [("temperature", 70)], missing: ["flow", "rpm"])
        XCTAssertTrue(matches("missing", partial))
        XCTAssertFalse(matches("missing", pump))
        XCTAssertTrue(matches("not missing", pump))
        XCTAssertTrue(matches("missing = true and model = pump", partial))
        XCTAssertTrue(matches("missing=false", pump))
        XCTAssertTrue(matches("missing=flow", partial))
        XCTAssertFalse(matches("missing=temperature", partial))
        XCTAssertTrue(matches("missing!=temperature", partial))
        XCTAssertFalse(matches("missing!=rpm", partial))
        XCTAssertTrue(matches("missing='true'", twin("odd", missing: ["true"])), "a quoted value is a name")
        XCTAssertFalse(matches("properties.missing = 1", partial))
        XCTAssertTrue(matches("properties.missing = 1", twin("p", properties: [("missing", 1)])), "a property named missing stays reachable")
    }

    func testNumericComparisons() {
        XCTAssertTrue(matches("temperature>80", pump))
        XCTAssertTrue(matches("temperature>=85.5", pump))
        XCTAssertFalse(matches("temperature<85.5", pump))
        XCTAssertTrue(matches("temperature<=85.5 and temperature!=80", pump))
        XCTAssertTrue(matches("count=3 and count=3.0", pump))
        XCTAssertTrue(matches("properties.temperature > 1e1", pump))
    }

    func testMismatchedTypesAndMissingFieldsAreFalseForEveryOperator() {
        for op in ["=", "!=", ">", ">=", "<", "<="] {
            XCTAssertFalse(matches("temperature\(op)80", tank), op)  // a string against a number
            XCTAssertFalse(matches("pressure\(op)80", pump), op)  // absent
            XCTAssertFalse(matches("temperature\(op)\"80\"", pump), op)  // a number against a string
        }
        XCTAssertTrue(matches("not temperature>80", tank))
    }

    func testStringsAndContains() {
        XCTAssertTrue(matches("status=running-ok", pump))
        XCTAssertTrue(matches("status~running", pump))
        XCTAssertTrue(matches("status~ok", pump))
        XCTAssertFalse(matches("status~OK", pump))
        XCTAssertTrue(matches("status>running and status<s", pump))
        XCTAssertTrue(matches("twinId~17 and twinId=pump-17", pump))
        XCTAssertFalse(matches("temperature~8", pump))  // `~` only matches strings
    }

    func testBooleans() {
        XCTAssertTrue(matches("running=true", pump))
        XCTAssertTrue(matches("running!=false", pump))
        XCTAssertFalse(matches("running>false", pump))
        XCTAssertFalse(matches("running=\"true\"", pump))
    }

    func testMetadataDesiredParameters() {
        XCTAssertTrue(matches("metadata.site=north", pump))
        XCTAssertFalse(matches("metadata.site=north", tank))
        XCTAssertTrue(matches("metadata.loc.city=Paris", pump))
        XCTAssertFalse(matches("metadata.loc.zip=1", pump))
        XCTAssertTrue(matches("desired.setpoint=80 and parameters.tau>120", pump))
    }

    func testModelWithAndWithoutVersion() {
        XCTAssertTrue(matches("model=pump", pump))
        XCTAssertTrue(matches("model=pump@1", pump))
        XCTAssertFalse(matches("model=pump@2", pump))
        XCTAssertFalse(matches("model=pum", pump))
        XCTAssertTrue(matches("model!=pump", tank))
        XCTAssertFalse(matches("model=pump", twin("x", model: nil)))
        XCTAssertTrue(matches("temperature>80 and model=pump", pump))
        XCTAssertFalse(matches("temperature>80 and model=pump", tank))
    }

    func testVersionAndUpdatedAt() {
        XCTAssertTrue(matches("version>=7", pump))
        XCTAssertTrue(matches("updatedAt>=2026-11-21T08:00:00Z", pump))
        XCTAssertFalse(matches("updatedAt>=2026-11-21T08:00:00Z", tank))
        XCTAssertTrue(matches("updatedAt<1795248000000", tank))
    }

    func testStale() {
        // Interval 10 s, factor 3: stale when the newest reading is more than 30 s old.
        XCTAssertFalse(matches("stale", pump, now: 1_030_000))
        XCTAssertTrue(matches("stale", pump, now: 1_030_001))
        XCTAssertTrue(matches("stale=false", pump, now: 1_030_000))
        XCTAssertTrue(matches("not stale", pump, now: 1_000_000))
        XCTAssertFalse(matches("stale", twin("no-interval", interval: nil), now: .max))
        XCTAssertFalse(matches("stale", twin("no-readings"), now: .max))
        let f = Freshness(factor: 1)
        XCTAssertTrue(f.isStale(latestEventTime: 0, reportingIntervalMs: 10, now: 11))
        XCTAssertFalse(f.isStale(latestEventTime: 0, reportingIntervalMs: 10, now: 10))
        XCTAssertEqual(Freshness().staleAfter(latestEventTime: 1_000, reportingIntervalMs: 10_000), 31_000)
    }

    func testOrNotAndPrecedenceEvaluate() {
        XCTAssertTrue(matches("model=tank or model=pump and temperature>80", pump))
        XCTAssertFalse(matches("(model=tank or model=pump) and temperature>80", tank))
        XCTAssertTrue(matches("not (model=tank) and not not running=true", pump))
        XCTAssertTrue(matches("a=1 or b=2 or model=pump", pump))
        XCTAssertFalse(matches("model=pump and version=7 and temperature<0", pump))
    }

    func testRelationshipFilter() {
        XCTAssertTrue(RelationshipFilter(target: "tank-7", name: "feeds").matches(pump))
        XCTAssertTrue(RelationshipFilter(target: "tank-7").matches(pump))
        XCTAssertFalse(RelationshipFilter(target: "tank-7", name: "drains").matches(pump))
        XCTAssertFalse(RelationshipFilter(target: "tank-8").matches(pump))
        XCTAssertFalse(RelationshipFilter(target: "tank-7").matches(tank))
    }
}
