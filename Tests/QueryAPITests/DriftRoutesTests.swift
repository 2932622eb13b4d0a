import Contracts
import Foundation
import HTTP
import JSON
import JSONSchema
import Kafka
import QueryAPI
import Synchronization
import Views
import XCTest

/// `GET /v1/alerts` and `GET /v1/twins/{id}/drift` from drift.alerts.v1 and drift.state.v1
/// messages fed to the views, and alert events on the event streams.
final class DriftRoutesTests: XCTestCase {
    static func alert(_ twinId: String, tenant: String = "acme", kind: DriftAlert.Kind = .residual, property: String? = "flow",
                      raisedAt: Int64, status: DriftAlert.Status = .raised) -> DriftAlert {
        var story = [DriftAlert.Step(step: "detected", at: raisedAt, message: "flow of \(twinId) no longer follows its model")]
        if status == .resolved { story.append(.init(step: "resolved", at: raisedAt + 60_000, message: "back")) }
        return DriftAlert(alertId: DriftAlert.id(tenant: tenant, twinId: twinId, kind: kind, property: property, raisedAt: raisedAt), status: status,
                          kind: kind, tenant: tenant, twinId: twinId, model: "pump@1", property: kind == .stale ? nil : property, detector: "adwin",
                          statistic: 2.5, threshold: 0.5, window: 300, changeStartedAt: raisedAt - 600_000,
                          eventTime: status == .raised ? raisedAt : raisedAt + 60_000, message: "m", scale: 0.1, story: story)
    }

    static let offsets = Atomic<Int64>(0)

    static func feed(_ h: Harness, _ alert: DriftAlert) {
        let offset = offsets.add(1, ordering: .relaxed).newValue
        h.views.apply(KafkaMessage(topic: Topic.driftAlerts.name, partition: 0, offset: offset, key: Array(alert.key.utf8), value: alert.encoded(), headers: []))
    }

    /// pump-1 has an open residual episode and a drift state.
    static func feedDrift(_ h: Harness) {
        let open = alert("pump-1", raisedAt: Harness.now - 3_600_000)
        feed(h, open)
        let state = DriftState(tenant: "acme", twinId: "pump-1", model: "pump@1", updatedAt: Harness.now, lastEventTime: Harness.now - 1_000, stale: false,
                               properties: [("flow", .init(residual: .init(detector: "adwin", statistic: 0.3, threshold: 0, window: 120, residuals: 900,
                                                                           warmup: 200, warmupNeeded: 200, center: 0.01, scale: 0.1, detections: 1),
                                                           data: .init(reference: ["count": 100, "mean": 3.0], current: ["count": 40, "mean": 3.5])))],
                               openAlerts: [open], monitor: Array(#"{"secretDetectorState":[1,2,3]}"#.utf8))
        h.views.apply(KafkaMessage(topic: Topic.driftState.name, partition: 0, offset: 1, key: Array(state.key.utf8), value: state.encoded(), headers: []))
    }

    func testAlertsAreEpisodesNewestFirstFilteredAndPaged() async throws {
        let h = try Harness()
        let t = Harness.now - 86_400_000
        // Five episodes of acme, one of beta; pump-2's is raised, repeated, then resolved.
        Self.feed(h, Self.alert("pump-1", raisedAt: t))
        Self.feed(h, Self.alert("pump-2", raisedAt: t + 1_000))
        Self.feed(h, Self.alert("pump-2", raisedAt: t + 1_000))
        Self.feed(h, Self.alert("pump-2", raisedAt: t + 1_000, status: .resolved))
        Self.feed(h, Self.alert("pump-2", raisedAt: t + 1_000))  // a late duplicate never reopens it
        Self.feed(h, Self.alert("pump-3", kind: .stale, raisedAt: t + 2_000))
        Self.feed(h, Self.alert("pump-1", kind: .data, raisedAt: t + 3_000))
        Self.feed(h, Self.alert("pump-4", raisedAt: t + 4_000))
        Self.feed(h, Self.alert("pump-1", tenant: "beta", raisedAt: t + 5_000))

        let all = await h.request(.get, "/v1/alerts")
        XCTAssertEqual(all.status, 200, all.text)
        XCTAssertEqual(all.json["total"], 5)
        let ids = all.json["items"]?.arrayValue?.map { "\($0["twinId"]!.stringValue!)/\($0["kind"]!.stringValue!)/\($0["status"]!.stringValue!)" }
        XCTAssertEqual(ids, ["pump-4/residual/raised", "pump-1/data/raised", "pump-3/stale/raised", "pump-2/residual/resolved", "pump-1/residual/raised"])
        XCTAssertEqual(all.json["items"]?[3]?["story"]?.arrayValue?.map { $0["step"] }, ["detected", "resolved"])

        let open = await h.request(.get, "/v1/alerts?status=open")
        XCTAssertEqual(open.json["total"], 4)
        let resolved = await h.request(.get, "/v1/alerts?status=resolved&kind=residual")
        XCTAssertEqual(resolved.json["items"]?.arrayValue?.map { $0["twinId"] }, ["pump-2"])
        let pump1 = await h.request(.get, "/v1/alerts?twinId=pump-1")
        XCTAssertEqual(pump1.json["total"], 2)
        let window = await h.request(.get, "/v1/alerts?from=\(t + 1_000)&to=\(Timestamp.format(t + 3_000))")
        XCTAssertEqual(window.json["total"], 3)

        // Paging: two at a time, nothing lost or repeated.
        var seen: [String] = []
        var cursor: String?
        repeat {
            let page = await h.request(.get, "/v1/alerts?limit=2" + (cursor.map { "&cursor=\($0)" } ?? ""))
            XCTAssertEqual(page.json["total"], 5)
            seen += page.json["items"]?.arrayValue?.compactMap { $0["alertId"]?.stringValue } ?? []
            cursor = page.json["nextCursor"]?.stringValue
        } while cursor != nil
        XCTAssertEqual(seen, all.json["items"]?.arrayValue?.compactMap { $0["alertId"]?.stringValue })

        // Another tenant sees only its own.
        let beta = await h.request(.get, "/v1/alerts", key: "beta")
        XCTAssertEqual(beta.json["total"], 1)

        for bad in ["kind=vibes", "status=maybe", "from=yesterday", "limit=0", "cursor=nonsense", "sort=twinId", "twinId=a%20b"] {
            let response = await h.request(.get, "/v1/alerts?\(bad)")
            XCTAssertEqual(response.status, 400, bad)
            XCTAssertEqual(response.code, "invalidParameter", bad)
        }
        // from after to is an empty range: nothing in it, not an error.
        let inverted = await h.request(.get, "/v1/alerts?from=20&to=10")
        XCTAssertEqual(inverted.status, 200)
        XCTAssertEqual(inverted.json["total"], 0)
    }

    /// A recalibration's steps arrive as `updated` messages: the episode shows its latest story
    /// and proposal, stays open, and a repeated older message does not shorten it.
    func testUpdatedMessagesExtendAnOpenEpisodesStory() async throws {
        let h = try Harness()
        let raised = Self.alert("room-1", property: "temperature", raisedAt: Harness.now - 3_600_000)
        Self.feed(h, raised)
        var updated = raised
        updated.status = .updated
        updated.story.append(.init(step: "requested", at: Harness.now - 3_000_000, message: "calibration requested", details: ["simulationId": "recal-1"]))
        updated.story.append(.init(step: "suggested", at: Harness.now - 2_900_000, message: "proposed"))
        updated.recalibration = .init(mode: "suggest", state: "suggested", simulationId: "recal-1", points: 100, parameters: ["tau": 3600],
                                      standardErrors: ["tau": 20], rmsBefore: 0.5, rmsAfter: 0.05)
        Self.feed(h, updated)
        Self.feed(h, raised)  // at-least-once: the raised message again
        let open = await h.request(.get, "/v1/alerts?status=open")
        let item = try XCTUnwrap(open.json["items"]?.arrayValue?.first, open.text)
        XCTAssertEqual(item["status"]?.stringValue, "updated")
        XCTAssertEqual(item["story"]?.arrayValue?.compactMap { $0["step"]?.stringValue }, ["detected", "requested", "suggested"])
        XCTAssertEqual(item["recalibration"]?["simulationId"]?.stringValue, "recal-1")
        XCTAssertEqual(item["recalibration"]?["parameters"]?["tau"]?.doubleValue, 3600)
        let events = h.views.events.retained(tenant: "acme", twinId: "room-1").filter { $0.kind == .alert }
        XCTAssertEqual(events.count, 3, "every message reaches the twin's event stream")
        var root = try JSON(parsing: try XCTUnwrap(FileManager.default.contents(atPath: Harness.openAPIPath)).map { $0 })
        root["$ref"] = .string("#/components/schemas/AlertList")
        root["$schema"] = .string("https://json-schema.org/draft/2020-12/schema")
        let result = try CompiledSchema(compiling: root).validate(open.json)
        XCTAssertTrue(result.isValid, "AlertList: \(result.errors.prefix(5).map(\.description))")
    }

    func testTwinDriftShowsTheMonitorsPublicStateAndAlertsReachTheEventStreams() async throws {
        let h = try Harness()
        await h.create("pump-1")
        let before = await h.request(.get, "/v1/twins/pump-1/drift")
        XCTAssertEqual(before.status, 200, before.text)
        XCTAssertEqual(before.json["monitored"], false)

        let stream = h.views.events.subscribe(tenant: "acme", twinId: "pump-1")
        Self.feedDrift(h)
        let drift = await h.request(.get, "/v1/twins/pump-1/drift")
        XCTAssertEqual(drift.json["monitored"], true)
        XCTAssertEqual(drift.json["properties"]?["flow"]?["residual"]?["scale"], .double(0.1))
        XCTAssertEqual(drift.json["properties"]?["flow"]?["data"]?["reference"]?["count"], 100)
        XCTAssertEqual(drift.json["openAlerts"]?.arrayValue?.count, 1)
        XCTAssertNil(drift.json["monitor"], "the monitor's internal state is not served")
        XCTAssertFalse(drift.text.contains("secretDetectorState"))
        XCTAssertEqual(h.views.driftStates.document(key: "acme/pump-1").map { String(decoding: $0, as: UTF8.self).contains("secretDetectorState") }, false,
                       "nor kept in the view")

        var events = stream.events.makeAsyncIterator()
        let event = await events.next()
        XCTAssertEqual(event?.kind, .alert)
        XCTAssertEqual(event.flatMap { try? DriftAlert(bytes: $0.data) }?.twinId, "pump-1")

        let missing = await h.request(.get, "/v1/twins/pump-9/drift")
        XCTAssertEqual(missing.status, 404)
        let other = await h.request(.get, "/v1/twins/pump-1/drift", key: "beta")
        XCTAssertEqual(other.status, 404)
    }
}
