import XCTest
@testable import HTTP

/// Routing without a server: parameters, precedence, 404, 405, HEAD/OPTIONS, middleware,
/// error mapping.
final class RouterTests: XCTestCase {
    private func makeRouter() -> Router {
        var router = Router()
        router.get("/v1/twins/{id}") { request in .text("twin \(request.parameter("id")!)") }
        router.get("/v1/twins/search") { _ in .text("search") }
        router.delete("/v1/twins/{id}") { request in .text("deleted \(request.parameter("id")!)") }
        router.put("/v1/twins/{id}/relationships/{rel}/{target}") { request in
            .text("\(request.pathParameters["id"]!) \(request.pathParameters["rel"]!) \(request.pathParameters["target"]!)")
        }
        router.post("/v1/telemetry", maxBodySize: 8 << 20) { request in .text("got \(request.body.count)") }
        router.get("/") { _ in .text("root") }
        router.get("/fail") { _ in throw HTTPError(.conflict, detail: "stale") }
        router.get("/crash") { _ in
            struct Boom: Error {}
            throw Boom()
        }
        return router
    }

    private func respond(_ router: Router, _ method: HTTPMethod, _ target: String) async -> (Int, String, HTTPHeaders) {
        let response = await router.respond(to: HTTPRequest(method: method, target: target))
        return (response.status.code, String(decoding: response.bodyBytes, as: UTF8.self), response.headers)
    }

    func testParametersAndPrecedence() async {
        let router = makeRouter()
        var result = await respond(router, .get, "/v1/twins/pump-17")
        XCTAssertEqual(result.1, "twin pump-17")
        result = await respond(router, .get, "/v1/twins/search")
        XCTAssertEqual(result.1, "search", "a literal segment beats a parameter")
        result = await respond(router, .get, "/v1/twins/a%2Fb")
        XCTAssertEqual(result.1, "twin a/b", "parameters are decoded")
        result = await respond(router, .put, "/v1/twins/p1/relationships/feeds/p2")
        XCTAssertEqual(result.1, "p1 feeds p2")
        result = await respond(router, .get, "/v1/twins/pump-17/")
        XCTAssertEqual(result.1, "twin pump-17", "trailing slash ignored")
        result = await respond(router, .get, "/")
        XCTAssertEqual(result.1, "root")
        result = await respond(router, .delete, "/v1/twins/search")
        XCTAssertEqual(result.1, "deleted search", "falls back to the parameter route that has the method")
    }

    func testNotFoundAndMethodNotAllowed() async {
        let router = makeRouter()
        var result = await respond(router, .get, "/v1/nothing")
        XCTAssertEqual(result.0, 404)
        XCTAssertTrue(result.1.contains(#""status":404"#))
        result = await respond(router, .get, "/v1/twins/a/b")
        XCTAssertEqual(result.0, 404)
        result = await respond(router, .post, "/v1/twins/pump-17")
        XCTAssertEqual(result.0, 405)
        XCTAssertEqual(result.2["Allow"], "DELETE, GET, HEAD, OPTIONS")
        result = await respond(router, .options, "/v1/twins/pump-17")
        XCTAssertEqual(result.0, 204)
        XCTAssertEqual(result.2["Allow"], "DELETE, GET, HEAD, OPTIONS")
        result = await respond(router, .head, "/v1/twins/pump-17")
        XCTAssertEqual(result.0, 200, "HEAD uses the GET route")
    }

    func testRouteBodyLimitIsKnownBeforeTheBody() {
        let router = makeRouter()
        XCTAssertEqual(router.match(method: .post, segments: ["v1", "telemetry"]).maxBodySize, 8 << 20)
        XCTAssertNil(router.match(method: .get, segments: ["v1", "twins", "x"]).maxBodySize)
        XCTAssertEqual(router.match(method: .get, segments: ["v1", "twins", "x"]).pattern, "/v1/twins/{id}")
    }

    func testThrownErrorsBecomeProblems() async {
        let router = makeRouter()
        var result = await respond(router, .get, "/fail")
        XCTAssertEqual(result.0, 409)
        XCTAssertTrue(result.1.contains("stale"))
        result = await respond(router, .get, "/crash")
        XCTAssertEqual(result.0, 500)
        XCTAssertTrue(result.1.contains(#""requestId":"test""#))
        XCTAssertFalse(result.1.contains("Boom"))
    }

    func testMiddlewareWrapsEveryRequestInOrder() async {
        var router = makeRouter()
        let seen = Collector<String>()
        router.use { request, next in
            seen.append("outer \(request.path)")
            var response = try await next(request)
            response.headers.add("X-Outer", "1")
            return response
        }
        router.use { request, next in
            guard request.headers["X-Key"] == "secret" else { throw HTTPError(.unauthorized, detail: "missing key") }
            return try await next(request)
        }
        var response = await router.respond(to: HTTPRequest(target: "/v1/twins/x", headers: ["X-Key": "secret"]))
        XCTAssertEqual(response.status, .ok)
        XCTAssertEqual(response.headers["X-Outer"], "1")
        response = await router.respond(to: HTTPRequest(target: "/v1/twins/x"))
        XCTAssertEqual(response.status, .unauthorized)
        response = await router.respond(to: HTTPRequest(target: "/nope", headers: ["X-Key": "secret"]))
        XCTAssertEqual(response.status, .notFound)
        XCTAssertEqual(seen.values, ["outer /v1/twins/x", "outer /v1/twins/x", "outer /nope"])
    }

    func testCatchAllHandler() async {
        var router = Router()
        router.notFoundHandler = { request in .text("fallback \(request.path)") }
        let response = await router.respond(to: HTTPRequest(target: "/anything/at/all"))
        XCTAssertEqual(String(decoding: response.bodyBytes, as: UTF8.self), "fallback /anything/at/all")
    }
}
