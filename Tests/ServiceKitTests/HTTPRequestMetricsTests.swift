import HTTP
import XCTest
@testable import ServiceKit

/// Every service counts its HTTP answers by route pattern, method and status: the dashboard's
/// query-API and ingest panels and the `TwinStreamHTTPErrors` alert read these series.
final class HTTPRequestMetricsTests: XCTestCase {
    func testAnswersAreCountedByRoutePatternMethodAndStatusThrownErrorsIncluded() async throws {
        let metrics = MetricsRegistry()
        var router = Router()
        router.get("/v1/twins/{id}") { request in
            guard request.pathParameters["id"] == "pump-1" else { throw HTTPError(.notFound, status: .notFound, detail: "no such twin") }
            return .json(#"{"id":"pump-1"}"#)
        }
        router.post("/v1/fail") { _ in throw CancellationError() }
        ServiceRuntime.countHTTPRequests(&router, metrics: metrics)

        _ = await router.respond(to: HTTPRequest(method: .get, target: "/v1/twins/pump-1"))
        _ = await router.respond(to: HTTPRequest(method: .get, target: "/v1/twins/pump-1"))
        let missing = await router.respond(to: HTTPRequest(method: .get, target: "/v1/twins/pump-2"))
        XCTAssertEqual(missing.status.code, 404, "the middleware must not change the answer")
        let failed = await router.respond(to: HTTPRequest(method: .post, target: "/v1/fail"))
        XCTAssertEqual(failed.status.code, 500)
        _ = await router.respond(to: HTTPRequest(method: .get, target: "/nowhere"))

        let text = metrics.render()
        XCTAssertTrue(text.contains(#"twinstream_http_requests_total{method="GET",route="/v1/twins/{id}",status="200"} 2"#), text)
        XCTAssertTrue(text.contains(#"twinstream_http_requests_total{method="GET",route="/v1/twins/{id}",status="404"} 1"#), text)
        XCTAssertTrue(text.contains(#"twinstream_http_requests_total{method="POST",route="/v1/fail",status="500"} 1"#), text)
        XCTAssertTrue(text.contains(#"twinstream_http_requests_total{method="GET",route="unmatched",status="404"} 1"#), "raw paths never become labels: \(text)")
        XCTAssertTrue(text.contains(#"twinstream_http_request_seconds_count{route="/v1/twins/{id}"} 3"#), text)
        XCTAssertFalse(text.contains("pump-2"), "no raw path in a label")
    }
}
