import Contracts
import Foundation
import HTTP
import JSON
import JSONSchema
import QueryAPI
import Views
import XCTest

/// The simulation routes: submit (202 + Location, pending until a worker takes it), read, list,
/// cancel, 422s with pointers, tenant isolation, `simulation` events and the OpenAPI document.
final class SimulationRouteTests: XCTestCase {
    /// A room twin observed at 24 °C with 800 W of heating.
    func room(_ h: Harness, _ id: String = "room-1", key: String = "acme", tenant: String = "acme") async {
        await h.create(id, model: "room@1", key: key)
        h.reading(id, tenant: tenant, at: Harness.now - 1_000, ["temperature": 24, "hvacPower": 800, "humidity": 40])
    }

    func testASubmittedSimulationIsPendingThenItsResultIsReadAndListed() async throws {
        let h = try Harness()
        await room(h)
        h.simulations.hold()
        let posted = await h.request(.post, "/v1/twins/room-1/simulations", body: #"{"kind":"whatIf","horizon":"6h","step":"5m","parameters":{"tau":9000}}"#)
        XCTAssertEqual(posted.status, 202, posted.text)
        let location = try XCTUnwrap(posted.headers["Location"])
        let id = try XCTUnwrap(posted.json["simulationId"]?.stringValue)
        XCTAssertEqual(location, "/v1/simulations/\(id)")
        XCTAssertEqual(posted.json["status"]?.stringValue, "pending")
        let pending = await h.request(.get, location)
        XCTAssertEqual(pending.json["status"]?.stringValue, "pending", pending.text)

        // The request carries the twin's state: the worker needs nothing else.
        let published = try XCTUnwrap(h.simulations.requests.last)
        XCTAssertEqual(published.twin.values["temperature"], 24)
        XCTAssertEqual(published.twin.values["hvacPower"], 800)
        XCTAssertEqual(published.twin.model, "room@1")
        XCTAssertEqual(published.tenant, "acme")

        h.simulations.release()
        let done = await h.request(.get, location)
        XCTAssertEqual(done.json["status"]?.stringValue, "completed", done.text)
        XCTAssertEqual(done.json["series"]?["temperature"]?.arrayValue?.first?.doubleValue, 24)
        XCTAssertEqual(done.json["times"]?.arrayValue?.count, 73)
        XCTAssertEqual(done.json["parameters"]?["tau"]?.doubleValue, 9000)

        // The twin's stream carried the status changes.
        let kinds = h.views.events.retained(tenant: "acme", twinId: "room-1").filter { $0.kind == .simulation }
            .compactMap { try? JSON(parsing: $0.data)["status"]?.stringValue }
        XCTAssertEqual(kinds, ["accepted", "completed"])

        // Newest first, paged like /v1/twins.
        for _ in 0..<2 { _ = await h.request(.post, "/v1/twins/room-1/simulations", body: #"{"kind":"forecast","horizon":"1h"}"#) }
        let first = await h.request(.get, "/v1/twins/room-1/simulations?limit=2")
        XCTAssertEqual(first.json["total"]?.intValue, 3)
        let page1 = first.json["items"]?.arrayValue?.compactMap { $0["simulationId"]?.stringValue } ?? []
        XCTAssertEqual(page1.count, 2)
        XCTAssertFalse(page1.contains(id), "the oldest is not on the first page")
        let cursor = try XCTUnwrap(first.json["nextCursor"]?.stringValue)
        let second = await h.request(.get, "/v1/twins/room-1/simulations?limit=2&cursor=\(cursor)")
        XCTAssertEqual(second.json["items"]?.arrayValue?.compactMap { $0["simulationId"]?.stringValue }, [id])
        XCTAssertNil(second.json["nextCursor"])
    }

    func testBadRequestsAnswer4xxWithAPointerAndPublishNothing() async throws {
        var configuration = QueryAPI.Configuration()
        configuration.simulation.maxHorizonMs = 7 * 86_400_000
        let h = try Harness(configuration: configuration)
        await room(h)
        let cases: [(String, Int, String, String)] = [
            (#"{"kind":"forecast","horizon":"1h","parameters":{"warp":1}}"#, 422, "unknownName", "/parameters/warp"),
            (#"{"kind":"forecast","horizon":"30d"}"#, 422, "horizonTooLong", "/horizon"),
            (#"{"kind":"monteCarlo","horizon":"1h","samples":10,"uncertain":{"tau":{"normal":[7200,-5]}}}"#, 422, "invalidDistribution", "/uncertain/tau"),
            (#"{"kind":"monteCarlo","horizon":"1h","samples":10,"uncertain":{"tau":{"gamma":[1,2]}}}"#, 422, "invalidDistribution", "/uncertain/tau"),
            (#"{"kind":"forecast","horizon":"1h","series":["mood"]}"#, 422, "unknownName", "/series/0"),
            (#"{"kind":"forecast","horizon":"soon"}"#, 422, "invalidValue", "/horizon"),
            (#"{"kind":"forecast"}"#, 400, "invalidBody", "/horizon"),
            (#"{"kind":"forecast","horizon":"1h","samples":"many"}"#, 400, "invalidBody", "/samples"),
            (#"{"kind":"forecast","horizon":"1h","horizn":"2h"}"#, 400, "invalidBody", "/horizn"),
        ]
        for (body, status, code, pointer) in cases {
            let response = await h.request(.post, "/v1/twins/room-1/simulations", body: body)
            XCTAssertEqual(response.status, status, "\(body): \(response.text)")
            XCTAssertEqual(response.code, code, body)
            XCTAssertEqual(response.json["pointer"]?.stringValue, pointer, body)
            XCTAssertEqual(response.headers["Content-Type"], "application/problem+json")
        }
        XCTAssertTrue(h.simulations.requests.isEmpty, "nothing was published")
        let missing = await h.request(.post, "/v1/twins/nobody/simulations", body: #"{"kind":"forecast","horizon":"1h"}"#)
        XCTAssertEqual(missing.status, 404)
    }

    func testCancelPublishesAControlAndAFinishedSimulationCannotBeCancelled() async throws {
        let h = try Harness()
        await room(h)
        h.simulations.hold()
        let posted = await h.request(.post, "/v1/twins/room-1/simulations",
                                     body: #"{"kind":"monteCarlo","horizon":"6h","samples":100,"uncertain":{"Ta":{"uniform":[0,10]}},"threshold":{"series":"temperature","above":25}}"#)
        let location = try XCTUnwrap(posted.headers["Location"])
        let other = await h.request(.delete, location, key: "beta")
        XCTAssertEqual(other.status, 404, "another tenant cannot cancel it")
        let cancelled = await h.request(.delete, location)
        XCTAssertEqual(cancelled.status, 202, cancelled.text)
        XCTAssertEqual(h.simulations.controls.map(\.tenant), ["acme"])
        XCTAssertEqual(h.simulations.controls.first?.simulationId, posted.json["simulationId"]?.stringValue)
        let after = await h.request(.get, location)
        XCTAssertEqual(after.json["status"]?.stringValue, "cancelled")
        let again = await h.request(.delete, location)
        XCTAssertEqual(again.status, 409)
        XCTAssertEqual(again.code, "simulationFinished")
    }

    func testCalibrationUsesTheRetainedHistoryAndSaysHowManyPoints() async throws {
        let h = try Harness()
        await h.create("room-1", model: "room@1")
        let start = Harness.now - 3_600_000
        for i in 0..<60 {
            let t = Double(i * 60)
            let T = 10 + 1.44 + (18 - 11.44) * exp(-t / 9000) + (i % 2 == 0 ? 0.02 : -0.02)
            h.reading("room-1", at: start + Int64(i) * 60_000, ["temperature": .double(T), "hvacPower": 1000])
        }
        let posted = await h.request(.post, "/v1/twins/room-1/simulations", body: #"{"kind":"calibrate","fit":["tau"]}"#)
        XCTAssertEqual(posted.status, 202, posted.text)
        XCTAssertEqual(posted.json["historyPoints"]?.intValue, 120, "60 temperatures and 60 HVAC powers")
        let request = try XCTUnwrap(h.simulations.requests.last)
        XCTAssertEqual(request.start, start, "t = 0 is the history's first point")
        XCTAssertEqual(request.spec.history?["temperature"]?.count, 60)
        XCTAssertEqual(request.spec.history?["temperature"]?.last?.t, 3540)
        let done = await h.request(.get, try XCTUnwrap(posted.headers["Location"]))
        XCTAssertEqual(done.json["status"]?.stringValue, "completed", done.text)
        XCTAssertEqual(done.json["fit"]?["points"]?.intValue, 60)
        XCTAssertEqual(try XCTUnwrap(done.json["fit"]?["parameters"]?["tau"]?.doubleValue), 9000, accuracy: 900)
    }

    func testAnotherTenantSeesNoneOfItAndTheAnswersMatchTheOpenAPIDocument() async throws {
        let h = try Harness()
        await room(h)
        let posted = await h.request(.post, "/v1/twins/room-1/simulations", body: #"{"kind":"sweep","horizon":"1h","sweep":{"P":[0,1000]}}"#)
        let location = try XCTUnwrap(posted.headers["Location"])
        for (method, target) in [(HTTPMethod.get, location), (.delete, location), (.get, "/v1/twins/room-1/simulations"), (.post, "/v1/twins/room-1/simulations")] {
            let response = await h.request(method, target, key: "beta", body: method == .post ? #"{"kind":"forecast","horizon":"1h"}"# : nil)
            XCTAssertEqual(response.status, 404, "\(method) \(target) for another tenant: \(response.text)")
        }
        await room(h, key: "beta", tenant: "beta")
        let theirs = await h.request(.get, "/v1/twins/room-1/simulations", key: "beta")
        XCTAssertEqual(theirs.json["total"]?.intValue, 0, "beta's room-1 is another twin")

        let doc = try JSON(parsing: try XCTUnwrap(FileManager.default.contents(atPath: Harness.openAPIPath)).map { $0 })
        func assertValid(_ response: TestResponse, _ name: String, line: UInt = #line) throws {
            var root = doc
            root["$ref"] = .string("#/components/schemas/\(name)")
            root["$schema"] = .string("https://json-schema.org/draft/2020-12/schema")
            let result = try CompiledSchema(compiling: root).validate(response.json)
            XCTAssertTrue(result.isValid, "\(name): \(result.errors.prefix(5).map(\.description)) in \(response.text.prefix(400))", line: line)
        }
        try assertValid(posted, "SimulationAccepted")
        try assertValid(await h.request(.get, location), "Simulation")
        try assertValid(await h.request(.get, "/v1/twins/room-1/simulations"), "SimulationList")
        try assertValid(await h.request(.post, "/v1/twins/room-1/simulations", body: #"{"kind":"forecast","horizon":"1h","parameters":{"x":1}}"#), "Problem")
        h.simulations.hold()
        let pending = await h.request(.post, "/v1/twins/room-1/simulations", body: #"{"kind":"forecast","horizon":"1h"}"#)
        try assertValid(await h.request(.get, try XCTUnwrap(pending.headers["Location"])), "Simulation")
        try assertValid(await h.request(.delete, try XCTUnwrap(pending.headers["Location"])), "SimulationCancelling")
    }
}
