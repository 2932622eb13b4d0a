import Contracts
import Foundation
import HTTP
import JSON
import JSONSchema
import QueryAPI
import Views
import XCTest

/// Tenant isolation on every route, malformed input on every route, and the OpenAPI document
/// against the router and against real answers.
final class IsolationAndRobustnessTests: XCTestCase {
    /// acme owns pump-1 (with a reading, a relationship to room-1 and a dead-letter); beta tries
    /// every route with acme's ids, filters and commands and must learn nothing.
    func testAnotherTenantsTwinsAreInvisibleOnEveryRoute() async throws {
        let h = try Harness()
        await h.create("pump-1", metadata: #"{"site":"secret"}"#)
        await h.create("room-1", model: "room")
        h.reading("pump-1", at: Harness.now, ["temperature": 99])
        _ = await h.request(.put, "/v1/twins/pump-1/relationships/supplies/room-1")
        h.deadLetter(tenant: "acme", reason: "out_of_range", twinId: "pump-1", offset: 1)
        let acmeCommand = try XCTUnwrap(h.publisher.published.first?.commandId)
        await h.create("pump-b", key: "beta")
        let before = h.publisher.published.count

        for route in QueryAPITests.routes {
            let target = route.target.replacingOccurrences(of: "cmd-1", with: acmeCommand)
            guard target.contains("pump-1") || target.contains(acmeCommand) else { continue }
            let response = await h.request(route.method, target, key: "beta", body: route.body)
            XCTAssertEqual(response.status, 404, "\(route.method) \(target) with another tenant's id: \(response.text)")
            XCTAssertFalse(response.text.contains("secret"), "\(route.method) \(target) leaked data")
        }
        XCTAssertEqual(h.publisher.published.count, before, "no command was published for another tenant's twin")

        let list = await h.request(.get, "/v1/twins?filter=metadata.site%3Dsecret", key: "beta")
        XCTAssertEqual(list.json["total"]?.intValue, 0)
        let all = await h.request(.get, "/v1/twins?limit=1000", key: "beta")
        XCTAssertEqual(all.json["items"]?.arrayValue?.compactMap { $0["twinId"]?.stringValue }, ["pump-b"])
        let related = await h.request(.get, "/v1/twins?relatedTo=room-1", key: "beta")
        XCTAssertEqual(related.json["total"]?.intValue, 0)
        let bRelationships = await h.request(.get, "/v1/twins/pump-b/graph?depth=5", key: "beta")
        XCTAssertEqual(bRelationships.json["nodes"]?.arrayValue?.count, 1)
        // beta can relate only to its own twins: acme's room is "not found".
        let cross = await h.request(.put, "/v1/twins/pump-b/relationships/supplies/room-1", key: "beta")
        XCTAssertEqual(cross.code, "targetNotFound")
        // Creating a twin with the same id in another tenant is a different twin.
        let same = await h.request(.post, "/v1/twins", key: "beta", body: #"{"twinId":"pump-1","model":"pump"}"#)
        XCTAssertEqual(same.status, 202)
        let mine = await h.request(.get, "/v1/twins/pump-1", key: "beta")
        XCTAssertEqual(mine.json["metadata"], .object([:]))
        let theirs = await h.request(.get, "/v1/twins/pump-1")
        XCTAssertEqual(theirs.json["metadata"]?["site"]?.stringValue, "secret")
        let letters = await h.request(.get, "/v1/deadletters", key: "beta")
        XCTAssertEqual(letters.json["total"]?.intValue, 0)

        // Event streams: beta's tenant-wide stream never carries acme's changes.
        let betaEvents = h.views.events.subscribe(tenant: "beta")
        h.reading("pump-1", at: Harness.now + 1, ["temperature": 98])
        h.reading("pump-b", tenant: "beta", at: Harness.now, ["temperature": 1])
        var iterator = betaEvents.events.makeAsyncIterator()
        let first = await iterator.next()
        XCTAssertEqual(first?.twinId, "pump-b")
        XCTAssertEqual(first?.tenant, "beta")
    }

    /// Garbage in ids, parameters, headers and bodies answers 4xx with a problem document on
    /// every route — never a 5xx, never a crash.
    func testMalformedRequestsAnswer4xxNeverServerErrors() async throws {
        let h = try Harness()
        await h.create("pump-1")
        let ids = ["", "a%2Fb", String(repeating: "x", count: 129), "%00", "%FF%FE", "..", "pump-1%20", "%E2%80%AE"]
        let queries = ["minVersion=-1", "minVersion=abc", "minVersion=1&wait=-5", "wait=10", "depth=99", "depth=-1", "direction=up",
                       "property=", "step=1x", "from=" + String(repeating: "9", count: 40), "limit=99999999999999999999",
                       "filter=" + String(repeating: "(", count: 300), "filter=" + String(repeating: "a", count: 5_000),
                       "filter=%22unterminated", "filter=a%3D%5Cq", "filter=not", "sort=", "cursor=%FF", "relatedTo=&rel=x"]
        let bodies = ["", "null", "[]", "{", #"{"twinId":5}"#, #"{"twinId":"ok","model":"nope"}"#, #"{"twinId":"../x","model":"pump"}"#,
                      #"{"twinId":"ok","model":"pump","parameters":{"ratedSpeed":"fast"}}"#, #"{"twinId":"ok","model":"pump","parameters":{"warp":1}}"#,
                      #"{"twinId":"ok","model":"pump","extra":1}"#, #"{"metadata":5}"#, #"{"model":7}"#, "{}", String(repeating: "[", count: 10_000),
                      #"{"twinId":"ok","model":"pump","metadata":{"a":"\ud800"}}"#]
        let headerSets: [HTTPHeaders] = [["If-Match": "\"x\""], ["If-Match": "-3"], ["If-Match": "1, 2"], ["Content-Type": "text/plain"],
                                         ["Last-Event-ID": String(repeating: "z", count: 200)]]
        var checked = 0
        func check(_ method: HTTPMethod, _ target: String, headers: HTTPHeaders = [:], body: String? = nil) async {
            let response = await h.request(method, target, headers: headers, body: body)
            checked += 1
            XCTAssertTrue((400..<500).contains(response.status) || (200..<300).contains(response.status),
                          "\(method) \(target) \(headers) \(body?.prefix(40) ?? ""): \(response.status) \(response.text)")
            if response.status >= 400 {
                XCTAssertEqual(response.headers["Content-Type"], "application/problem+json", "\(method) \(target)")
                XCTAssertNotNil(response.json["requestId"], "\(method) \(target)")
            }
        }
        for route in QueryAPITests.routes where route.method != .get || !route.target.hasSuffix("/events") {
            for id in ids {
                await check(route.method, route.target.replacingOccurrences(of: "pump-1", with: id), body: route.body)
            }
            let path = String(route.target.split(separator: "?").first!)
            for query in queries { await check(route.method, path + "?" + query, body: route.body) }
            for body in bodies where route.method != .get { await check(route.method, path, body: body) }
            for headers in headerSets { await check(route.method, path, headers: headers, body: route.body) }
        }
        // Seeded random bytes as bodies and filter text.
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<300 {
            let bytes = (0..<Int.random(in: 0..<64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let text = String(decoding: bytes, as: UTF8.self)
            await check(.post, "/v1/twins", body: text)
            await check(.patch, "/v1/twins/pump-1", body: text)
            await check(.get, "/v1/twins?filter=" + (text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""))
        }
        XCTAssertGreaterThan(checked, 1_000)
        // And the API still works (pump-1 itself was deleted by one of the valid requests).
        await h.create("pump-after")
        let ok = await h.request(.get, "/v1/twins/pump-after")
        XCTAssertEqual(ok.status, 200)
    }

    /// The query API serves the document from its binary, so it needs no file wherever it runs:
    /// the built-in copy must be `Schemas/openapi.json` itself.
    func testTheEmbeddedOpenAPIDocumentIsSchemasOpenAPIJSON() throws {
        let file = String(decoding: try XCTUnwrap(FileManager.default.contents(atPath: Harness.openAPIPath)), as: UTF8.self)
        XCTAssertTrue(embeddedOpenAPIDocument + "\n" == file, "Shared/QueryAPI/OpenAPIDocument.swift is out of date: run scripts/embed-openapi.sh")
    }

    /// The hand-written OpenAPI document lists exactly the router's routes (plus the runtime's
    /// probes), with the scope each needs, and real answers satisfy its response schemas.
    func testOpenAPIDocumentMatchesTheRoutesAndTheAnswers() async throws {
        let h = try Harness()
        let doc = try JSON(parsing: try XCTUnwrap(FileManager.default.contents(atPath: Harness.openAPIPath)).map { $0 })
        XCTAssertEqual(doc["openapi"]?.stringValue, "3.1.0")
        var documented = Set<String>()
        var scopes: [String: String] = [:]
        for (path, item) in try XCTUnwrap(doc["paths"]?.objectValue) {
            for (method, operation) in try XCTUnwrap(item.objectValue) where ["get", "post", "put", "patch", "delete"].contains(method) {
                documented.insert("\(method.uppercased()) \(path)")
                scopes["\(method.uppercased()) \(path)"] = operation["x-required-scope"]?.stringValue
            }
        }
        let routed = Set(h.router.routes).union(["GET /healthz", "GET /readyz", "GET /metrics"])
        XCTAssertEqual(documented.subtracting(routed), [], "documented but not routed")
        XCTAssertEqual(routed.subtracting(documented), [], "routed but not documented")
        for route in QueryAPITests.routes {
            let path = String(route.target.split(separator: "?").first!)
            let pattern = h.router.routes.first { entry in
                let parts = entry.split(separator: " ", maxSplits: 1)
                guard parts[0] == route.method.rawValue else { return false }
                let a = parts[1].split(separator: "/"), b = path.split(separator: "/")
                return a.count == b.count && zip(a, b).allSatisfy { $0.hasPrefix("{") || $0 == $1 }
            }
            XCTAssertEqual(scopes[try XCTUnwrap(pattern, path)], route.scope, "scope of \(route.method) \(path)")
        }

        // Real answers against the document's schemas.
        func schema(_ name: String) throws -> CompiledSchema {
            var root = doc
            root["$ref"] = .string("#/components/schemas/\(name)")
            root["$schema"] = .string("https://json-schema.org/draft/2020-12/schema")
            return try CompiledSchema(compiling: root)
        }
        func assertValid(_ response: TestResponse, _ name: String, line: UInt = #line) throws {
            let result = try schema(name).validate(response.json)
            XCTAssertTrue(result.isValid, "\(name): \(result.errors.prefix(5).map(\.description)) in \(response.text.prefix(400))", line: line)
        }
        let created = await h.create("pump-1")
        try assertValid(created, "CommandAccepted")
        await h.create("room-1", model: "room")
        _ = await h.request(.put, "/v1/twins/pump-1/relationships/supplies/room-1")
        h.reading("pump-1", at: Harness.now, ["flow": 3, "rpm": 1000])
        h.deadLetter(tenant: "acme", reason: "out_of_range", twinId: "pump-1", offset: 4)
        try assertValid(await h.request(.get, "/v1/twins/pump-1"), "Twin")
        try assertValid(await h.request(.get, "/v1/twins?limit=1"), "TwinList")
        try assertValid(await h.request(.get, "/v1/twins/pump-1/history?property=flow"), "History")
        try assertValid(await h.request(.get, "/v1/twins/pump-1/history?property=flow&step=1m"), "History")
        try assertValid(await h.request(.get, "/v1/twins/pump-1/relationships"), "Relationships")
        try assertValid(await h.request(.get, "/v1/twins/pump-1/graph?depth=2"), "Graph")
        try assertValid(await h.request(.get, try XCTUnwrap(created.headers["Location"])), "CommandStatus")
        try assertValid(await h.request(.get, "/v1/models"), "ModelList")
        try assertValid(await h.request(.get, "/v1/deadletters"), "DeadLetterList")
        try assertValid(await h.request(.get, "/v1/twins/pump-1/drift"), "TwinDrift")
        DriftRoutesTests.feedDrift(h)
        try assertValid(await h.request(.get, "/v1/twins/pump-1/drift"), "TwinDrift")
        try assertValid(await h.request(.get, "/v1/alerts"), "AlertList")
        try assertValid(await h.request(.get, "/v1/twins/nobody"), "Problem")
        try assertValid(await h.request(.get, "/v1/twins?filter=a%3E"), "Problem")
        let change = try XCTUnwrap(h.views.events.retained(tenant: "acme", twinId: "pump-1").last { $0.kind == .change })
        let result = try schema("TwinChange").validate(try JSON(parsing: change.data))
        XCTAssertTrue(result.isValid, "\(result.errors.prefix(3))")
        let alert = try XCTUnwrap(h.views.events.retained(tenant: "acme", twinId: "pump-1").last { $0.kind == .alert })
        let alertResult = try schema("DriftAlert").validate(try JSON(parsing: alert.data))
        XCTAssertTrue(alertResult.isValid, "\(alertResult.errors.prefix(3))")
    }
}
