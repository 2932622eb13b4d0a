import Contracts
import Foundation
import HTTP
import JSON
import JSONSchema
import QueryAPI
import Views
import XCTest

/// `POST /v1/twins/{id}/recalibrations`: one call applies a calibration with its simulation id as
/// the command's cause; unknown, unfinished, other-twin and not-better calibrations are refused
/// with problem+json and nothing is sent.
final class RecalibrationRouteTests: XCTestCase {
    /// A room whose real tau is 9000 s reports an hour of readings; the twin still says 7200.
    func room(_ h: Harness, _ id: String) async {
        await h.create(id, model: "room@1")
        let start = Harness.now - 3_600_000
        for i in 0..<60 {
            let t = Double(i * 60)
            let T = 10 + 1.44 + (18 - 11.44) * exp(-t / 9000) + (i % 2 == 0 ? 0.02 : -0.02)
            h.reading(id, at: start + Int64(i) * 60_000, ["temperature": .double(T), "hvacPower": 1000])
        }
    }

    func calibrate(_ h: Harness, _ id: String) async throws -> String {
        let posted = await h.request(.post, "/v1/twins/\(id)/simulations", body: #"{"kind":"calibrate","fit":["tau"]}"#)
        XCTAssertEqual(posted.status, 202, posted.text)
        return try XCTUnwrap(posted.json["simulationId"]?.stringValue)
    }

    func testOneCallAppliesACalibrationWithItsSimulationIdAsCause() async throws {
        let h = try Harness()
        await room(h, "room-1")
        let simulationId = try await calibrate(h, "room-1")
        let before = h.publisher.published.count
        let applied = await h.request(.post, "/v1/twins/room-1/recalibrations", body: #"{"simulationId":"\#(simulationId)"}"#)
        XCTAssertEqual(applied.status, 202, applied.text)
        let command = try XCTUnwrap(h.publisher.published.last)
        XCTAssertEqual(h.publisher.published.count, before + 1)
        XCTAssertEqual(command.kind, .setParameters)
        XCTAssertEqual(command.cause, simulationId)
        XCTAssertEqual(try XCTUnwrap(command.parameters?["tau"]?.doubleValue), 9000, accuracy: 900)
        // The twin's change says why its parameters moved.
        let changes = h.views.events.retained(tenant: "acme", twinId: "room-1").filter { $0.kind == .change }.compactMap { try? TwinChange(bytes: $0.data) }
        let change = try XCTUnwrap(changes.last { $0.commandId == command.commandId })
        XCTAssertEqual(change.cause, simulationId)
        XCTAssertEqual(change.changes.map(\.path), ["/parameters/tau"])
        let status = await h.request(.get, "/v1/commands/\(command.commandId)")
        XCTAssertEqual(status.json["cause"]?.stringValue, simulationId, status.text)
        XCTAssertEqual(status.json["status"]?.stringValue, "applied", status.text)

        // Calibrated again from the same readings, the twin is already right: not better, refused.
        let again = try await calibrate(h, "room-1")
        let refused = await h.request(.post, "/v1/twins/room-1/recalibrations", body: #"{"simulationId":"\#(again)"}"#)
        XCTAssertEqual(refused.status, 422, refused.text)
        XCTAssertEqual(refused.json["code"]?.stringValue, "notImproved", refused.text)
        XCTAssertTrue(refused.text.contains("RECALIBRATE_MIN_GAIN"), refused.text)
        XCTAssertEqual(h.publisher.published.count, before + 1, "nothing sent")
    }

    func testUnknownUnfinishedAndOtherTwinsCalibrationsAreRefusedAndTheAnswersMatchTheOpenAPIDocument() async throws {
        let h = try Harness()
        await room(h, "room-1")
        await room(h, "room-2")
        let other = try await calibrate(h, "room-2")
        let sent = h.publisher.published.count
        let cases: [(String, Int, String)] = [
            (#"{"simulationId":"sim-unknown"}"#, 404, "simulationNotFound"),
            (#"{"simulationId":"\#(other)"}"#, 422, "wrongTwin"),
            (#"{"simulationId":"a b"}"#, 400, ""),
            (#"{}"#, 400, ""),
            (#"{"simulationId":"\#(other)","tau":1}"#, 400, ""),
        ]
        for (body, status, code) in cases {
            let response = await h.request(.post, "/v1/twins/room-1/recalibrations", body: body)
            XCTAssertEqual(response.status, status, "\(body): \(response.text)")
            if !code.isEmpty { XCTAssertEqual(response.json["code"]?.stringValue, code, response.text) }
            XCTAssertEqual(response.headers["Content-Type"], "application/problem+json", body)
        }
        h.simulations.hold()
        let pending = try await calibrate(h, "room-1")
        let early = await h.request(.post, "/v1/twins/room-1/recalibrations", body: #"{"simulationId":"\#(pending)"}"#)
        XCTAssertEqual(early.status, 409, early.text)
        XCTAssertEqual(early.json["code"]?.stringValue, "simulationNotFinished")
        let forecast = await h.request(.post, "/v1/twins/room-1/simulations", body: #"{"kind":"forecast","horizon":"1h"}"#)
        h.simulations.release()
        let notCalibration = await h.request(.post, "/v1/twins/room-1/recalibrations",
                                             body: #"{"simulationId":"\#(forecast.json["simulationId"]?.stringValue ?? "")"}"#)
        XCTAssertEqual(notCalibration.json["code"]?.stringValue, "notACalibration", notCalibration.text)
        let readOnly = await h.request(.post, "/v1/twins/room-1/recalibrations", key: "acmeReader", body: #"{"simulationId":"\#(pending)"}"#)
        XCTAssertEqual(readOnly.status, 403, "scope write: \(readOnly.text)")
        XCTAssertEqual(h.publisher.published.count, sent, "nothing sent")

        let doc = try JSON(parsing: try XCTUnwrap(FileManager.default.contents(atPath: Harness.openAPIPath)).map { $0 })
        var root = doc
        root["$ref"] = .string("#/components/schemas/Problem")
        root["$schema"] = .string("https://json-schema.org/draft/2020-12/schema")
        XCTAssertTrue(try CompiledSchema(compiling: root).validate(early.json).isValid, early.text)
        let applied = await h.request(.post, "/v1/twins/room-1/recalibrations", body: #"{"simulationId":"\#(pending)"}"#)
        XCTAssertEqual(applied.status, 202, applied.text)
    }
}
