import Contracts
import Foundation
import HTTP
import JSON
import ServiceKit
import QueryAPI
import Views
import XCTest

/// The query API's routes, driven through its router with the fold standing in for Kafka.
final class QueryAPITests: XCTestCase {
    /// Every route with a sample target, the scope it needs, and a body where it takes one.
    static let routes: [(method: HTTPMethod, target: String, scope: String, body: String?)] = [
        (.get, "/v1/twins", "read", nil),
        (.post, "/v1/twins", "write", #"{"twinId":"pump-99","model":"pump@1"}"#),
        (.get, "/v1/twins/pump-1", "read", nil),
        (.patch, "/v1/twins/pump-1", "write", #"{"metadata":{"site":"x"}}"#),
        (.delete, "/v1/twins/pump-1", "write", nil),
        (.get, "/v1/twins/pump-1/history?property=flow", "read", nil),
        (.get, "/v1/twins/pump-1/relationships", "read", nil),
        (.put, "/v1/twins/pump-1/relationships/supplies/room-1", "write", nil),
        (.delete, "/v1/twins/pump-1/relationships/supplies/room-1", "write", nil),
        (.get, "/v1/twins/pump-1/graph?depth=2", "read", nil),
        (.get, "/v1/twins/pump-1/events", "read", nil),
        (.get, "/v1/events", "read", nil),
        (.get, "/v1/commands/cmd-1", "read", nil),
        (.get, "/v1/models", "read", nil),
        (.get, "/v1/models/pump", "read", nil),
        (.get, "/v1/deadletters", "admin", nil),
        (.post, "/v1/twins/pump-1/simulations", "simulate", #"{"kind":"forecast","horizon":"1h"}"#),
        (.get, "/v1/twins/pump-1/simulations", "read", nil),
        (.get, "/v1/simulations/sim-1", "read", nil),
        (.delete, "/v1/simulations/sim-1", "simulate", nil),
        (.get, "/v1/alerts", "read", nil),
        (.get, "/v1/twins/pump-1/drift", "read", nil),
    ]

    func testEveryRouteAnswers401WithoutAValidKeyAnd403WithoutItsScope() async throws {
        let h = try Harness()
        for route in Self.routes {
            let label = "\(route.method) \(route.target)"
            let none = await h.request(route.method, route.target, key: nil, body: route.body)
            XCTAssertEqual(none.status, 401, label)
            XCTAssertEqual(none.headers["Content-Type"], "application/problem+json", label)
            XCTAssertNotNil(none.headers["WWW-Authenticate"], label)
            XCTAssertNotNil(none.json["requestId"]?.stringValue, "problem documents carry the request id: \(label)")
            let bad = await h.request(route.method, route.target, key: "tsk_notakey_000000000000000000000000", body: route.body)
            XCTAssertEqual(bad.status, 401, label)
            let wrongScope = route.scope == "read" ? "acmeIngest" : "acmeReader"
            let forbidden = await h.request(route.method, route.target, key: wrongScope, body: route.body)
            XCTAssertEqual(forbidden.status, 403, label)
            XCTAssertEqual(forbidden.code, "insufficientScope", label)
        }
        // The unauthenticated document lists every route the router has.
        let doc = await h.request(.get, "/openapi.json", key: nil)
        XCTAssertEqual(doc.status, 200)
    }

    /// Partial readings: `GET /v1/twins/{id}` lists the required telemetry never reported, and the
    /// filter selects incomplete twins.
    func testATwinShowsTheRequiredTelemetryItLacksAndTheFilterFindsIt() async throws {
        let h = try Harness()
        await h.create("pump-1")
        await h.create("pump-2")
        h.reading("pump-1", at: Harness.now - 500, ["temperature": 71.5])
        h.reading("pump-2", at: Harness.now - 500, ["flow": 12.5, "pressure": 3, "temperature": 70, "rpm": 1450])
        let one = await h.request(.get, "/v1/twins/pump-1").json
        XCTAssertEqual(one["missing"], ["flow", "pressure", "rpm"])
        XCTAssertEqual(one["properties"]?["temperature"]?["value"], 71.5)
        let two = await h.request(.get, "/v1/twins/pump-2").json
        XCTAssertEqual(two["missing"], [])
        func ids(_ filter: String) async -> [String] {
            let answer = await h.request(.get, "/v1/twins?filter=" + filter.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)
            XCTAssertEqual(answer.status, 200, answer.text)
            return answer.json["items"]?.arrayValue?.compactMap { $0["twinId"]?.stringValue } ?? []
        }
        let incomplete = await ids("missing")
        XCTAssertEqual(incomplete, ["pump-1"])
        let complete = await ids("not missing")
        XCTAssertEqual(complete, ["pump-2"])
        let lackingFlow = await ids("missing=flow")
        XCTAssertEqual(lackingFlow, ["pump-1"])
    }

    func testCreateReadPatchRelateAndDecommissionThroughCommands() async throws {
        let h = try Harness()
        let created = await h.create("pump-1", metadata: #"{"site":"north"}"#)
        XCTAssertEqual(created.json["status"]?.stringValue, "pending")
        let location = try XCTUnwrap(created.headers["Location"])
        XCTAssertEqual(created.json["location"]?.stringValue, location)
        let outcome = await h.request(.get, location)
        XCTAssertEqual(outcome.json["status"]?.stringValue, "applied", outcome.text)
        XCTAssertEqual(outcome.json["version"]?.intValue, 1)
        await h.create("room-1", model: "room")  // the latest version: room@2

        h.reading("pump-1", at: Harness.now - 500, ["flow": 12.5, "rpm": 1450])
        let twin = await h.request(.get, "/v1/twins/pump-1")
        XCTAssertEqual(twin.status, 200, twin.text)
        XCTAssertEqual(twin.headers["ETag"], "\"2\"")
        XCTAssertEqual(twin.json["model"]?.stringValue, "pump@1")
        XCTAssertEqual(twin.json["properties"]?["flow"]?["value"]?.doubleValue, 12.5)
        XCTAssertEqual(twin.json["properties"]?["flow"]?["unit"]?.stringValue, h.models.model(referencedBy: "pump@1")?.telemetry(named: "flow")?.unit)
        XCTAssertEqual(twin.json["properties"]?["flow"]?["stale"]?.boolValue, false)
        XCTAssertEqual(twin.json["freshness"]?["reportingIntervalMs"]?.intValue, 1000)
        XCTAssertEqual(twin.json["metadata"]?["site"]?.stringValue, "north")
        XCTAssertNil(twin.json["sync"], "restore bookkeeping is not part of the API")

        // A stale If-Match is accepted (the check is the state-updater's) and rejected with a reason.
        let conflict = await h.request(.patch, "/v1/twins/pump-1", headers: ["If-Match": "\"1\""], body: #"{"metadata":{"site":"south"}}"#)
        XCTAssertEqual(conflict.status, 202, conflict.text)
        let rejected = await h.request(.get, try XCTUnwrap(conflict.headers["Location"]))
        XCTAssertEqual(rejected.json["status"]?.stringValue, "rejected")
        XCTAssertEqual(rejected.json["reason"]?["code"]?.stringValue, "version_conflict")
        XCTAssertEqual(h.publisher.published.last?.ifVersion, 1, "If-Match maps to ifVersion")

        let patched = await h.request(.patch, "/v1/twins/pump-1", headers: ["If-Match": "W/\"2\"", "Content-Type": "application/merge-patch+json"],
                                      body: #"{"metadata":{"site":"south","line":3}}"#)
        XCTAssertEqual(patched.status, 202, patched.text)
        let afterPatch = await h.request(.get, "/v1/twins/pump-1?minVersion=3")
        XCTAssertEqual(afterPatch.json["metadata"]?["site"]?.stringValue, "south")
        XCTAssertEqual(afterPatch.json["metadata"]?["line"]?.intValue, 3)

        let parameters = await h.request(.patch, "/v1/twins/pump-1", body: #"{"parameters":{"ratedSpeed":1500}}"#)
        XCTAssertEqual(parameters.status, 202, parameters.text)
        XCTAssertEqual(h.publisher.published.last?.kind, .setParameters)
        let mixed = await h.request(.patch, "/v1/twins/pump-1", body: #"{"parameters":{"ratedSpeed":1500},"metadata":{}}"#)
        XCTAssertEqual(mixed.status, 422)
        XCTAssertEqual(mixed.code, "mixedPatch")

        let related = await h.request(.put, "/v1/twins/pump-1/relationships/supplies/room-1")
        XCTAssertEqual(related.status, 202, related.text)
        XCTAssertEqual(h.publisher.published.last?.relationship?.targetModel, "room@2", "the target's model travels with relate")
        let relationships = await h.request(.get, "/v1/twins/pump-1/relationships")
        XCTAssertEqual(relationships.json["outgoing"]?[0]?["target"]?.stringValue, "room-1")
        XCTAssertEqual(relationships.json["outgoing"]?[0]?["targetModel"]?.stringValue, "room@2")
        let incoming = await h.request(.get, "/v1/twins/room-1/relationships")
        XCTAssertEqual(incoming.json["incoming"]?[0]?["source"]?.stringValue, "pump-1")
        let graph = await h.request(.get, "/v1/twins/room-1/graph?depth=1")
        XCTAssertEqual(graph.json["nodes"]?.arrayValue?.compactMap { $0["twinId"]?.stringValue }.sorted(), ["pump-1", "room-1"])
        XCTAssertEqual(graph.json["edges"]?[0]?["source"]?.stringValue, "pump-1")
        let outOnly = await h.request(.get, "/v1/twins/room-1/graph?depth=3&direction=out")
        XCTAssertEqual(outOnly.json["nodes"]?.arrayValue?.count, 1, "room-1 has no outgoing relationships")

        let wrongTarget = await h.request(.put, "/v1/twins/pump-1/relationships/supplies/pump-1")
        XCTAssertEqual(wrongTarget.code, "wrongTargetModel")
        let unknownRel = await h.request(.put, "/v1/twins/pump-1/relationships/feeds/room-1")
        XCTAssertEqual(unknownRel.code, "unknownRelationship")
        let missingTarget = await h.request(.put, "/v1/twins/pump-1/relationships/supplies/room-404")
        XCTAssertEqual(missingTarget.code, "targetNotFound")

        let unrelated = await h.request(.delete, "/v1/twins/pump-1/relationships/supplies/room-1")
        XCTAssertEqual(unrelated.status, 202, unrelated.text)
        let none = await h.request(.get, "/v1/twins/room-1/relationships")
        XCTAssertEqual(none.json["incoming"]?.arrayValue?.count, 0)
        let gone = await h.request(.delete, "/v1/twins/pump-1/relationships/supplies/room-1")
        XCTAssertEqual(gone.code, "relationshipNotFound")

        let exists = await h.request(.post, "/v1/twins", body: #"{"twinId":"pump-1","model":"pump"}"#)
        XCTAssertEqual(exists.status, 409)
        let deleted = await h.request(.delete, "/v1/twins/pump-1")
        XCTAssertEqual(deleted.status, 202)
        let after = await h.request(.get, "/v1/twins/pump-1")
        XCTAssertEqual(after.status, 404)
        XCTAssertEqual(after.code, "twinNotFound")
    }

    func testReadYourWritesWaitsForMinVersionAndGivesUpWith503() async throws {
        let h = try Harness()
        await h.create("pump-1")
        h.publisher.hold()
        let patched = await h.request(.patch, "/v1/twins/pump-1", body: #"{"desired":{"rpm":1200}}"#)
        XCTAssertEqual(patched.status, 202)
        let pending = await h.request(.get, try XCTUnwrap(patched.headers["Location"]))
        XCTAssertEqual(pending.json["status"]?.stringValue, "pending", "accepted, not yet applied")

        async let waited = h.request(.get, "/v1/twins/pump-1?minVersion=2&wait=5000")
        try await Task.sleep(for: .milliseconds(100))
        h.publisher.release()
        let response = await waited
        XCTAssertEqual(response.status, 200, response.text)
        XCTAssertEqual(response.json["version"]?.intValue, 2)
        XCTAssertEqual(response.json["desired"]?["rpm"]?.intValue, 1200)

        let tooFar = await h.request(.get, "/v1/twins/pump-1?minVersion=9&wait=50")
        XCTAssertEqual(tooFar.status, 503)
        XCTAssertEqual(tooFar.code, "versionNotVisible")
        XCTAssertEqual(tooFar.headers["Retry-After"], "1")
        let notYet = await h.request(.get, "/v1/twins/pump-7?minVersion=1&wait=20")
        XCTAssertEqual(notYet.status, 503)
        XCTAssertEqual(h.views.twins.sizes.waiters, 0, "expired waiters are removed")
        let badWait = await h.request(.get, "/v1/twins/pump-1?minVersion=1&wait=999999")
        XCTAssertEqual(badWait.status, 400)
    }

    func testListFiltersSortsPagesAndCounts() async throws {
        let h = try Harness()
        for i in 0..<30 {
            await h.create(String(format: "pump-%02d", i), metadata: #"{"site":"\#(i % 2 == 0 ? "north" : "south")"}"#)
            h.reading(String(format: "pump-%02d", i), at: Harness.now - 100, ["temperature": .number(JSONNumber(Double(60 + i)))])
        }
        await h.create("room-1", model: "room")
        h.reading("room-1", at: Harness.now - 600_000, ["temperature": 21])
        let hot = await h.request(.get, "/v1/twins?filter=" + "temperature>80 and model=pump".addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)
        XCTAssertEqual(hot.status, 200, hot.text)
        XCTAssertEqual(hot.json["total"]?.intValue, 9, "pump-21 ... pump-29 (room-1 is not a pump)")
        XCTAssertEqual(hot.json["items"]?.arrayValue?.compactMap { $0["twinId"]?.stringValue }, (21..<30).map { String(format: "pump-%02d", $0) })

        let north = await h.request(.get, "/v1/twins?model=pump&filter=metadata.site%3Dnorth&sort=-temperature&limit=4")
        XCTAssertEqual(north.json["total"]?.intValue, 15)
        XCTAssertEqual(north.json["items"]?.arrayValue?.compactMap { $0["twinId"]?.stringValue }, ["pump-28", "pump-26", "pump-24", "pump-22"])

        // Cursor paging returns every twin exactly once.
        var seen: [String] = []
        var cursor: String?
        repeat {
            let page = await h.request(.get, "/v1/twins?limit=7" + (cursor.map { "&cursor=\($0)" } ?? ""))
            XCTAssertEqual(page.status, 200, page.text)
            seen += page.json["items"]?.arrayValue?.compactMap { $0["twinId"]?.stringValue } ?? []
            cursor = page.json["nextCursor"]?.stringValue
        } while cursor != nil
        XCTAssertEqual(seen, seen.sorted())
        XCTAssertEqual(seen.count, 31)
        XCTAssertEqual(Set(seen).count, 31)

        let rooms = await h.request(.get, "/v1/twins?model=room")
        XCTAssertEqual(rooms.json["total"]?.intValue, 1)
        let stale = await h.request(.get, "/v1/twins?stale=true")
        XCTAssertEqual(stale.json["total"]?.intValue, 1, "only room-1: 10 minutes without a reading, three intervals are 3")

        let broken = await h.request(.get, "/v1/twins?filter=" + "temperature >> 3".addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)
        XCTAssertEqual(broken.status, 400)
        XCTAssertEqual(broken.code, "invalidFilter")
        XCTAssertEqual(broken.json["parameter"]?.stringValue, "filter")
        XCTAssertNotNil(broken.json["position"]?.intValue, broken.text)
        XCTAssertNotNil(broken.json["token"]?.stringValue, broken.text)
        for bad in ["limit=0", "limit=5000", "limit=x", "sort=%2B%2B", "cursor=garbage", "rel=feeds", "stale=maybe", "colour=red"] {
            let response = await h.request(.get, "/v1/twins?\(bad)")
            XCTAssertEqual(response.status, 400, bad)
        }
    }

    func testHistoryGivesPointsAndBucketsWithTheRetentionStated() async throws {
        let h = try Harness()
        await h.create("pump-1")
        let base: Int64 = 1_700_000_000_000
        for i in 0..<10 { h.reading("pump-1", at: base + Int64(i) * 1000, ["flow": .number(JSONNumber(Double(i)))]) }
        h.reading("pump-1", at: base + 2500, ["flow": 100])  // late
        let raw = await h.request(.get, "/v1/twins/pump-1/history?property=flow")
        XCTAssertEqual(raw.status, 200, raw.text)
        let points = try XCTUnwrap(raw.json["points"]?.arrayValue)
        XCTAssertEqual(points.count, 11)
        XCTAssertEqual(points.filter { $0["late"]?.boolValue == true }.count, 1)
        XCTAssertEqual(h.views.history.sizes.points, 11, "the points gauge counts what is held")
        XCTAssertEqual(raw.json["retention"]?["maxPoints"]?.intValue, h.views.history.retention.maxPoints)
        XCTAssertEqual(raw.json["unit"]?.stringValue, h.models.model(referencedBy: "pump@1")?.telemetry(named: "flow")?.unit)

        let window = await h.request(.get, "/v1/twins/pump-1/history?property=flow&from=\(base + 3000)&to=\(Timestamp.format(base + 6000))")
        XCTAssertEqual(window.json["points"]?.arrayValue?.compactMap { $0["value"]?.intValue }, [3, 4, 5])

        let buckets = await h.request(.get, "/v1/twins/pump-1/history?property=flow&from=\(base)&to=\(base + 10_000)&step=5s")
        XCTAssertEqual(buckets.status, 200, buckets.text)
        let list = try XCTUnwrap(buckets.json["buckets"]?.arrayValue)
        XCTAssertEqual(list.count, 2)
        XCTAssertEqual(list[0]["count"]?.intValue, 6)
        XCTAssertEqual(list[0]["max"]?.doubleValue, 100)
        XCTAssertEqual(list[1]["min"]?.doubleValue, 5)
        XCTAssertEqual(list[1]["mean"]?.doubleValue, 7)

        for bad in ["", "property=flow&step=0", "property=flow&from=yesterday"] {
            let response = await h.request(.get, "/v1/twins/pump-1/history?\(bad)")
            XCTAssertEqual(response.status, 400, bad)
        }
        // An empty range holds no point, with or without buckets; from and to are always stated.
        for empty in ["property=flow&from=20&to=10", "property=flow&from=20&to=10&step=5"] {
            let response = await h.request(.get, "/v1/twins/pump-1/history?\(empty)")
            XCTAssertEqual(response.status, 200, empty)
            XCTAssertEqual(response.json["points"]?.arrayValue?.count ?? response.json["buckets"]?.arrayValue?.count, 0, empty)
        }
        let none = await h.request(.get, "/v1/twins/pump-1/history?property=rpm")
        XCTAssertEqual(none.json["points"], [], none.text)
        XCTAssertNotNil(none.json["from"]?.stringValue, "a history without points still says which range it covers: \(none.text)")
        XCTAssertNotNil(none.json["to"]?.stringValue, none.text)
    }

    func testModelsAndDeadLetters() async throws {
        let h = try Harness()
        let models = await h.request(.get, "/v1/models")
        XCTAssertEqual(Set(models.json["items"]?.arrayValue?.compactMap { $0["ref"]?.stringValue } ?? []), ["pump@1", "pump@2", "room@1", "room@2", "battery@1"])
        let latest = await h.request(.get, "/v1/models/pump")
        XCTAssertEqual(latest.json["version"]?.intValue, 2)
        let first = await h.request(.get, "/v1/models/pump@1")
        XCTAssertEqual(first.json["version"]?.intValue, 1)
        let missing = await h.request(.get, "/v1/models/pump@7")
        XCTAssertEqual(missing.status, 404)

        h.deadLetter(tenant: "acme", reason: "out_of_range", twinId: "pump-1", offset: 1)
        h.deadLetter(tenant: "acme", reason: "not_a_number", offset: 2)
        h.deadLetter(tenant: "beta", reason: "out_of_range", offset: 3)
        let all = await h.request(.get, "/v1/deadletters")
        XCTAssertEqual(all.json["total"]?.intValue, 2)
        XCTAssertEqual(all.json["items"]?[0]?["id"]?.stringValue, "0-2", "newest first")
        XCTAssertEqual(all.json["items"]?[0]?["originalEncoding"]?.stringValue, "utf8")
        let range = await h.request(.get, "/v1/deadletters?reason=out_of_range")
        XCTAssertEqual(range.json["items"]?.arrayValue?.compactMap { $0["twinId"]?.stringValue }, ["pump-1"])
        let other = await h.request(.get, "/v1/deadletters?tenant=beta")
        XCTAssertEqual(other.status, 403, "a tenant admin reads only its own dead-letters")
        let operatorView = await h.request(.get, "/v1/deadletters?tenant=beta", key: "ops")
        XCTAssertEqual(operatorView.json["total"]?.intValue, 1, "operator tenants read every tenant's")
    }

    /// The link a 202 of HTTP ingest gives: the request's dead-letters, from any stage, readable
    /// with the key that posted them (scope ingest) or a reader of the tenant — and nobody else's.
    func testTheDeadLettersOfOneIngestRequestAreReadableWithTheKeyThatPostedThem() async throws {
        let h = try Harness()
        h.deadLetter(tenant: "acme", reason: "out_of_range", twinId: "pump-1", requestId: "req-7", offset: 1)
        h.deadLetter(tenant: "acme", reason: "unknown_property", twinId: "pump-2", requestId: "req-8", offset: 2)
        h.deadLetter(tenant: "beta", reason: "out_of_range", twinId: "pump-1", requestId: "req-7", offset: 3)
        h.deadLetter(tenant: "acme", reason: "out_of_range", twinId: "pump-3", offset: 4)
        for key in ["acmeIngest", "acmeReader", "acme"] {
            let answer = await h.request(.get, "/v1/deadletters?requestId=req-7", key: key)
            XCTAssertEqual(answer.status, 200, "\(key): \(answer.text)")
            XCTAssertEqual(answer.json["total"]?.intValue, 1, "\(key): \(answer.text)")
            XCTAssertEqual(answer.json["items"]?[0]?["twinId"], "pump-1")
            XCTAssertEqual(answer.json["items"]?[0]?["source"]?["ref"], "req-7")
        }
        let none = await h.request(.get, "/v1/deadletters?requestId=req-404", key: "acmeIngest")
        XCTAssertEqual(none.json["total"]?.intValue, 0, "no dead-letter: every reading of the request arrived")
        let everything = await h.request(.get, "/v1/deadletters", key: "acmeIngest")
        XCTAssertEqual(everything.status, 403, "without requestId the list is for admins")
        XCTAssertEqual(everything.code, "insufficientScope")
        let otherTenant = await h.request(.get, "/v1/deadletters?requestId=req-7&tenant=beta", key: "acmeIngest")
        XCTAssertEqual(otherTenant.status, 403)
        let operatorIngest = await h.request(.get, "/v1/deadletters?requestId=req-7&tenant=acme", key: "ops")
        XCTAssertEqual(operatorIngest.json["total"]?.intValue, 1, "an operator's admin key reads any tenant's")
    }

    /// Filters the document restricts are refused with what is expected, not answered with an
    /// empty list that reads as "nothing was rejected" (found by Schemathesis).
    func testDeadLetterFiltersOutsideTheDocumentAreRefusedWithWhatIsExpected() async throws {
        let h = try Harness()
        h.deadLetter(tenant: "acme", reason: "out_of_range", twinId: "pump-1", offset: 1)
        let stage = await h.request(.get, "/v1/deadletters?stage=null")
        XCTAssertEqual(stage.status, 400)
        XCTAssertEqual(stage.code, "invalidParameter")
        XCTAssertTrue(stage.text.contains("ingestor, validator, state-updater"), stage.text)
        let empty = await h.request(.get, "/v1/deadletters?requestId=", key: "acmeIngest")
        XCTAssertEqual(empty.status, 400)
        let long = await h.request(.get, "/v1/deadletters?requestId=" + String(repeating: "r", count: 129), key: "acmeIngest")
        XCTAssertEqual(long.status, 400)
        let tenant = await h.request(.get, "/v1/deadletters?tenant=")
        XCTAssertEqual(tenant.status, 400)
        let validator = await h.request(.get, "/v1/deadletters?stage=validator")
        XCTAssertEqual(validator.status, 200)
    }

    func testRateLimitAnswers429WithRetryAfterPerKey() async throws {
        var configuration = QueryAPI.Configuration()
        configuration.ratePerKey = 1
        configuration.burstPerKey = 3
        let h = try Harness(configuration: configuration)
        for _ in 0..<3 {
            let ok = await h.request(.get, "/v1/models")
            XCTAssertEqual(ok.status, 200)
        }
        let limited = await h.request(.get, "/v1/models")
        XCTAssertEqual(limited.status, 429)
        XCTAssertEqual(limited.code, "rateLimited")
        XCTAssertEqual(limited.headers["Retry-After"], "1")
        let otherKey = await h.request(.get, "/v1/models", key: "beta")
        XCTAssertEqual(otherKey.status, 200, "each key has its own bucket")
    }

    /// `RATE_LIMIT_PER_KEY=0` means unlimited, as documented: no request is ever refused for rate.
    func testARateLimitOfZeroIsUnlimited() async throws {
        let configuration = try QueryAPI.Configuration.fromEnvironment(EnvironmentReader(["RATE_LIMIT_PER_KEY": "0"]))
        XCTAssertEqual(configuration.ratePerKey, 0)
        let h = try Harness(configuration: configuration)
        for i in 0..<200 {
            let answer = await h.request(.get, "/v1/models")
            XCTAssertEqual(answer.status, 200, "request \(i)")
            if answer.status != 200 { break }
        }
    }

    func testCommandsAreAnswered503WhenTheBrokerCannotTakeThem() async throws {
        let h = try Harness()
        h.publisher.failNext(.queueFull)
        let full = await h.request(.post, "/v1/twins", body: #"{"twinId":"pump-1","model":"pump"}"#)
        XCTAssertEqual(full.status, 503)
        XCTAssertEqual(full.headers["Retry-After"], "1")
        h.publisher.failNext(.unavailable("timed out"))
        let down = await h.request(.post, "/v1/twins", body: #"{"twinId":"pump-1","model":"pump"}"#)
        XCTAssertEqual(down.status, 503)
        XCTAssertEqual(down.code, "brokerUnavailable")
        XCTAssertEqual(h.publisher.published.count, 0)
        await h.create("pump-1")
    }
}

extension Harness {
    /// The tests' clock, fixed for the whole run: the API's freshness (`stale`) is computed
    /// against it, so no assertion depends on how long the machine took.
    static let now: Int64 = Int64(Date().timeIntervalSince1970 * 1000)
}
