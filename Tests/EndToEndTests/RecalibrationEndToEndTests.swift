import Contracts
import Durations
import Foundation
import HTTP
import JSON
import Kafka
import ServiceKit
import TestSupport
import XCTest

/// Closing the loop on processes: query API, state-updater, simulator-worker and drift-monitor on
/// an embedded broker. Readings of a room whose real `tau` halves midway (once a minute of event
/// time, published fast) raise one residual alert; the monitor calibrates from the readings after
/// it, applies the fit with the simulation id as cause, and the alert resolves; a control room
/// raises nothing. In `suggest` mode nothing is applied until one API call applies the proposal.
final class RecalibrationEndToEndTests: XCTestCase {
    static let seed: UInt64 = ProcessInfo.processInfo.environment["DRIFT_SEED"].flatMap { UInt64($0) } ?? 20_261_121
    static let count = 1200, changeAt = 600

    struct Loop {
        let stack: SimulationStack
        let client: HTTPClient
        let headers: HTTPHeaders
        /// Event time of reading 0: `count` minutes before now, so the monitor's clock is not far off.
        let start: Int64
        let processes: [ChildProcess]

        func stop() { for p in processes { p.signal(SIGKILL) } }
    }

    /// The drift-monitor's environment in these tests; stale alerts are not their subject (the
    /// replayed readings are hours old).
    static func monitorEnvironment(_ mode: String, _ extra: [String: String] = [:]) -> [String: String] {
        ["DRIFT_RECALIBRATE": mode, "DRIFT_EVAL_EVERY": "0", "STALE_FACTOR": "1000"].merging(extra) { _, b in b }
    }

    /// The stack with a worker (unless `worker` is false) and a drift-monitor in `mode`, and room twins `ids` created.
    func startLoop(mode: String, rooms ids: [String], worker startWorker: Bool = true, monitor extra: [String: String] = [:]) async throws -> Loop {
        let stack = try SimulationStack(ports: 6)
        let worker = startWorker ? try stack.start("simulator-worker", port: stack.base + 2) : nil
        let monitor = try stack.start("drift-monitor", port: stack.base + 3, Self.monitorEnvironment(mode, extra))
        for port in [stack.base, stack.base + 1, stack.base + 3] + (startWorker ? [stack.base + 2] : []) {
            let ready = await Harness.eventually(timeout: .seconds(60)) { await Harness.get(port: port, "/readyz")?.status == 200 }
            XCTAssertTrue(ready, "service on \(port) never became ready")
        }
        let client = HTTPClient(port: stack.base, timeout: .seconds(10))
        let headers: HTTPHeaders = ["Authorization": "Bearer \(stack.key)", "Content-Type": "application/json"]
        for id in ids {
            let created = try await client.send(.post, "/v1/twins", headers: headers, body: Array(#"{"twinId":"\#(id)","model":"room@1"}"#.utf8))
            XCTAssertEqual(created.status.code, 202, created.text)
            let visible = try await client.get("/v1/twins/\(id)?minVersion=1&wait=20000", headers: headers)
            XCTAssertEqual(visible.status.code, 200, visible.text)
        }
        let start = (Timestamp.now - Int64(Self.count) * 60_000) / 60_000 * 60_000
        return Loop(stack: stack, client: client, headers: headers, start: start, processes: [monitor] + (worker.map { [$0] } ?? []))
    }

    /// Publishes readings `range` of the rooms on telemetry.valid.v1 (as the validator would), all at once.
    func publish(_ loop: Loop, _ rooms: [(id: String, series: SyntheticRoomSeries)], _ range: Range<Int> = 0..<count) async throws {
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: loop.stack.broker.bootstrapServers, ["log_level": "0"]))
        var messages: [OutgoingMessage] = []
        var all = rooms.map { room in var s = room.series; return (room.id, s.points(range.upperBound, start: loop.start)) }
        for k in range {
            for (id, points) in all {
                let p = points[k]
                let e = TelemetryEnvelope(eventId: "\(id)-\(k)", tenant: "acme", twinId: id, model: "room@1", eventTime: p.eventTime, ingestTime: p.eventTime,
                                          source: .kafka(topic: Topic.telemetryRaw.name, partition: 0, offset: Int64(k)),
                                          values: ["temperature": .double(p.temperature), "hvacPower": .double(p.hvacPower)])
                messages.append(OutgoingMessage(topic: Topic.telemetryValid.name, key: "acme/\(id)", value: e.encoded(),
                                                headers: [KafkaHeader(MessageHeader.tenant, "acme"), KafkaHeader(MessageHeader.contract, TelemetryEnvelope.contract)]))
            }
        }
        all = []
        _ = try await producer.sendAll(messages)
        await producer.close()
    }

    func alerts(_ loop: Loop, _ twinId: String) async throws -> [JSON] {
        let page = try JSON(parsing: try await loop.client.get("/v1/alerts?twinId=\(twinId)", headers: loop.headers).text)
        return page["items"]?.arrayValue ?? []
    }

    func changes(_ loop: Loop, _ twinId: String) async throws -> [TwinChange] {
        try await readTopic(.twinChanges, bootstrap: loop.stack.broker.bootstrapServers).compactMap { try? TwinChange(bytes: $0.value) }
            .filter { $0.twinId == twinId && $0.kind == .command }
    }

    func testAutoModeAppliesAFitWithinTwoStandardErrorsWithTheSimulationIdAsCauseAndTheAlertResolves() async throws {
        let loop = try await startLoop(mode: "auto", rooms: ["room-d", "room-c"])
        defer { loop.stop(); loop.stack.tearDown() }
        let published = ContinuousClock.now
        let wall = Timestamp.now
        try await publish(loop, [("room-d", SyntheticRoomSeries(seed: Self.seed, tauAfter: 3600, changeAt: Self.changeAt)),
                                 ("room-c", SyntheticRoomSeries(seed: Self.seed &+ 1))])
        var episode: JSON = .null
        let resolved = await Harness.eventually(timeout: .seconds(180)) {
            episode = (try? await self.alerts(loop, "room-d"))?.first ?? .null
            return episode["status"]?.stringValue == "resolved"
        }
        XCTAssertTrue(resolved, "seed \(Self.seed): the room-d episode never resolved: \(episode)")
        let steps = episode["story"]?.arrayValue ?? []
        XCTAssertEqual(steps.compactMap { $0["step"]?.stringValue }, ["detected", "requested", "result", "applied", "reset", "resolved"], "\(episode)")
        let r = episode["recalibration"] ?? .null
        let simulationId = try XCTUnwrap(r["simulationId"]?.stringValue, "\(episode)")
        let tau = try XCTUnwrap(r["parameters"]?["tau"]?.doubleValue), se = try XCTUnwrap(r["standardErrors"]?["tau"]?.doubleValue)
        XCTAssertLessThanOrEqual(abs(tau - 3600), 2 * se, "seed \(Self.seed): tau \(tau) ± \(se), truth 3600")
        XCTAssertEqual(r["state"]?.stringValue, "applied")

        // The twin's parameters moved, and its change says why.
        let applied = await Harness.eventually(timeout: .seconds(30)) { (try? await self.changes(loop, "room-d"))?.contains { $0.cause == simulationId } ?? false }
        XCTAssertTrue(applied, "no change of room-d caused by \(simulationId)")
        let change = try await changes(loop, "room-d").first { $0.cause == simulationId }
        XCTAssertEqual(change?.commandType, "setParameters")
        XCTAssertEqual(change?.changes.first { $0.path == "/parameters/tau" }?.new?.doubleValue, tau)
        let wallSeconds = (ContinuousClock.now - published).seconds
        let twin = try JSON(parsing: try await loop.client.get("/v1/twins/room-d", headers: loop.headers).text)
        XCTAssertEqual(twin["parameters"]?["tau"]?.doubleValue, tau, "\(twin)")

        // The monitor's own measure: wall-clock seconds from the alert to the parameters sent.
        let metrics = String(decoding: await Harness.get(port: loop.stack.base + 3, "/metrics")?.body ?? [], as: UTF8.self)
        let detectionToApplied = metrics.split(separator: "\n").first { $0.hasPrefix("twinstream_recalibration_applied_seconds_sum") }.map(String.init) ?? "?"
        XCTAssertTrue(metrics.contains(#"twinstream_recalibrations_total{outcome="applied"} 1"#), metrics)

        // The control room raised nothing.
        let control = try await alerts(loop, "room-c")
        XCTAssertEqual(control.count, 0, "seed \(Self.seed): \(control)")
        // How long the loop took: in event time from the change to the applied step, and on the wall clock.
        let change600 = loop.start + Int64(Self.changeAt) * 60_000
        let detected = steps.first.flatMap { $0["at"]?.stringValue.flatMap(Timestamp.parse) } ?? 0
        let requestedAt = steps.first { $0["step"]?.stringValue == "requested" }.flatMap { $0["at"]?.stringValue.flatMap(Timestamp.parse) } ?? 0
        // Published fast, every reading is in before the result: the applied step carries the last
        // reading's event time; the data the loop needed end at the requested step.
        print("recalibration end to end, seed \(Self.seed): tau \(tau) ± \(se) (truth 3600); event time from the change: detected after \((detected - change600) / 60_000) min, requested (the readings it needs) after \((requestedAt - change600) / 60_000) min; wall clock from publishing \(Self.count * 2) readings (started \(Timestamp.format(wall))) to the applied parameters on the twin: \(String(format: "%.1f", wallSeconds)) s; \(detectionToApplied)")
    }

    func testSuggestModeAppliesNothingUntilOneAPICallAppliesTheProposal() async throws {
        let loop = try await startLoop(mode: "suggest", rooms: ["room-s"])
        defer { loop.stop(); loop.stack.tearDown() }
        let room = [("room-s", SyntheticRoomSeries(seed: Self.seed &+ 2, tauAfter: 3600, changeAt: Self.changeAt))]
        try await publish(loop, room, 0..<1000)
        var episode: JSON = .null
        let suggested = await Harness.eventually(timeout: .seconds(180)) {
            episode = (try? await self.alerts(loop, "room-s"))?.first ?? .null
            return episode["recalibration"]?["state"]?.stringValue == "suggested"
        }
        XCTAssertTrue(suggested, "seed \(Self.seed): no proposal: \(episode)")
        XCTAssertEqual(episode["status"]?.stringValue, "updated")
        let simulationId = try XCTUnwrap(episode["recalibration"]?["simulationId"]?.stringValue)
        XCTAssertNotNil(episode["recalibration"]?["standardErrors"]?["tau"]?.doubleValue)
        let before = try await changes(loop, "room-s")
        XCTAssertEqual(before.filter { $0.commandType == "setParameters" }.count, 0, "suggest applies nothing")

        let response = try await loop.client.send(.post, "/v1/twins/room-s/recalibrations", headers: loop.headers,
                                                  body: Array(#"{"simulationId":"\#(simulationId)"}"#.utf8))
        XCTAssertEqual(response.status.code, 202, response.text)
        // The monitor takes the new parameters with the twin's next reading: the room goes on reporting.
        var next = 1000
        let resolved = await Harness.eventually(timeout: .seconds(90)) {
            if next < Self.count {
                try? await self.publish(loop, room, next..<(next + 10))
                next += 10
            }
            episode = (try? await self.alerts(loop, "room-s"))?.first ?? .null
            return episode["status"]?.stringValue == "resolved"
        }
        XCTAssertTrue(resolved, "the episode did not resolve after the apply call: \(episode)")
        XCTAssertEqual(episode["story"]?.arrayValue?.compactMap { $0["step"]?.stringValue }, ["detected", "requested", "result", "suggested", "applied", "reset", "resolved"])
        let after = try await changes(loop, "room-s")
        XCTAssertEqual(after.filter { $0.cause == simulationId }.count, 1)
    }

    /// A fit that does not lower the RMS by RECALIBRATE_MIN_GAIN is not applied; the story says why.
    func testAFitThatDoesNotImproveEnoughIsNotAppliedAndTheStorySaysWhy() async throws {
        let loop = try await startLoop(mode: "auto", rooms: ["room-n"], monitor: ["RECALIBRATE_MIN_GAIN": "0.99"])
        defer { loop.stop(); loop.stack.tearDown() }
        try await publish(loop, [("room-n", SyntheticRoomSeries(seed: Self.seed &+ 3, tauAfter: 3600, changeAt: Self.changeAt))])
        var episode: JSON = .null
        let judged = await Harness.eventually(timeout: .seconds(180)) {
            episode = (try? await self.alerts(loop, "room-n"))?.first ?? .null
            return episode["recalibration"]?["state"]?.stringValue == "notApplied"
        }
        XCTAssertTrue(judged, "seed \(Self.seed): \(episode)")
        XCTAssertEqual(episode["status"]?.stringValue, "updated", "the episode stays open")
        XCTAssertEqual(episode["recalibration"]?["reason"]?.stringValue, "not_improved")
        let last = episode["story"]?.arrayValue?.last
        XCTAssertEqual(last?["step"]?.stringValue, "notApplied")
        XCTAssertTrue(last?["message"]?.stringValue?.contains("RECALIBRATE_MIN_GAIN") ?? false, "\(episode)")
        let commands = try await changes(loop, "room-n")
        XCTAssertEqual(commands.filter { $0.commandType == "setParameters" }.count, 0, "nothing applied")
    }

    /// A recalibration pending when the monitor is killed survives in drift.state.v1: its result,
    /// arriving while no monitor runs, is applied once by the next one.
    func testAResultArrivingWhileTheMonitorIsDownIsAppliedOnceAfterItsRestart() async throws {
        let loop = try await startLoop(mode: "auto", rooms: ["room-r"], worker: false)
        defer { loop.stop(); loop.stack.tearDown() }
        try await publish(loop, [("room-r", SyntheticRoomSeries(seed: Self.seed &+ 4, tauAfter: 3600, changeAt: Self.changeAt))])
        var episode: JSON = .null
        let requested = await Harness.eventually(timeout: .seconds(180)) {
            episode = (try? await self.alerts(loop, "room-r"))?.first ?? .null
            return episode["recalibration"]?["state"]?.stringValue == "requested"
        }
        XCTAssertTrue(requested, "seed \(Self.seed): \(episode)")
        let simulationId = try XCTUnwrap(episode["recalibration"]?["simulationId"]?.stringValue)
        loop.stop()  // the monitor is SIGKILLed with its request pending
        _ = await loop.processes[0].waitForExit(timeout: .seconds(10))

        let worker = try loop.stack.start("simulator-worker", port: loop.stack.base + 2)
        defer { worker.signal(SIGKILL) }
        let (done, result) = await SimulationStack.final(loop.client, "/v1/simulations/\(simulationId)", headers: loop.headers, timeout: .seconds(120))
        XCTAssertTrue(done, "the calibration never finished: \(result)")
        let monitor = try loop.stack.start("drift-monitor", port: loop.stack.base + 4, Self.monitorEnvironment("auto"), log: "drift-monitor-2.log")
        defer { monitor.signal(SIGKILL) }
        let resolved = await Harness.eventually(timeout: .seconds(120)) {
            episode = (try? await self.alerts(loop, "room-r"))?.first ?? .null
            return episode["status"]?.stringValue == "resolved"
        }
        XCTAssertTrue(resolved, "the restarted monitor did not apply the result: \(episode)")
        XCTAssertEqual(episode["story"]?.arrayValue?.compactMap { $0["step"]?.stringValue }, ["detected", "requested", "result", "applied", "reset", "resolved"])
        let applied = await Harness.eventually(timeout: .seconds(30)) { (try? await self.changes(loop, "room-r"))?.contains { $0.cause == simulationId } ?? false }
        XCTAssertTrue(applied)
        let commands = try await readTopic(.twinCommands, bootstrap: loop.stack.broker.bootstrapServers).compactMap { try? TwinCommand(bytes: $0.value) }
        XCTAssertEqual(commands.filter { $0.cause == simulationId }.count, 1, "applied once")
        let statuses = try await readTopic(.driftAlerts, bootstrap: loop.stack.broker.bootstrapServers).compactMap { try? DriftAlert(bytes: $0.value) }
            .filter { $0.twinId == "room-r" }.map(\.status)
        XCTAssertEqual(statuses, [.raised, .updated, .resolved], "one message per step, none repeated")
    }
}
