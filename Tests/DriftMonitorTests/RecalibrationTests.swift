import Contracts
import Foundation
import JSON
import Models
import ServiceKit
import Simulator
import XCTest
@testable import DriftMonitor

/// Closing the loop without Kafka: a room whose `tau` halves is recalibrated from its readings
/// after the alert (the calibration runs on the simulation engine in process), the fit is judged,
/// applied or proposed, and the story tells each step.
final class RecalibrationTests: XCTestCase {
    func settings(_ mode: RecalibrationSettings.Mode) -> DriftSettings {
        var s = DriftSettings()
        s.evalEvery = 0
        s.recalibration.defaultMode = mode
        return s
    }

    /// Runs a calibrate request as a simulator worker would.
    static func run(_ request: SimulationRequest) throws -> SimulationResult {
        let plan = try SimulationPlan(request, model: Fixtures.registry.model(referencedBy: request.twin.model), limits: SimulatorLimits(), now: request.requestedAt)
        return try SimulationRunner.run(plan).get()
    }

    /// Feeds the drifting and the control room reading by reading until `stop` holds (or the
    /// readings end); returns the alerts and the index reached.
    func feed(_ monitor: inout DriftMonitor, _ rooms: [[Reading]], from start: Int, until stop: (inout DriftMonitor) -> Bool) -> ([DriftAlert], Int) {
        var alerts: [DriftAlert] = []
        var k = start
        while k < rooms[0].count {
            for room in rooms { monitor.observe(room[k], now: room[k].eventTime + 1_000, into: &alerts) }
            k += 1
            if stop(&monitor) { break }
        }
        return (alerts, k)
    }

    func testModesParsePerModel() throws {
        XCTAssertEqual(try RecalibrationSettings.parseModes("suggest").0, .suggest)
        let (fallback, perModel) = try RecalibrationSettings.parseModes("auto, pump=off,room=suggest")
        XCTAssertEqual(fallback, .auto)
        XCTAssertEqual(perModel, ["pump": .off, "room": .suggest])
        XCTAssertThrowsError(try RecalibrationSettings.parseModes("room=sometimes"))
        XCTAssertThrowsError(try RecalibrationSettings.parseModes("=auto"))
        var s = RecalibrationSettings()
        (s.defaultMode, s.modes) = (fallback, perModel)
        XCTAssertEqual(s.mode(model: "battery"), .auto)
        XCTAssertEqual(s.mode(model: "pump"), .off)
        let env = try RecalibrationSettings.fromEnvironment(EnvironmentReader([:]))
        XCTAssertEqual(env.defaultMode, .suggest, "the issue's default")
        XCTAssertEqual(env.minPoints, 100)
        XCTAssertEqual(env.minGain, 0.2)
    }

    func testCalibratableParametersComeFromTheModelFileOrTheBehaviour() {
        let plans = Fixtures.plans(settings(.auto))
        XCTAssertEqual(DriftMonitor.calibratable(plans.plan("room@1")!, property: "temperature"), ["tau"], "room.v1.json names them")
        XCTAssertEqual(Set(DriftMonitor.calibratable(plans.plan("room@2")!, property: "temperature")), ["tau", "C"],
                       "default: the parameters the temperature's derivative reads")
    }

    func testVerdictAppliesOnlyAConvergedClearlyBetterFitWithinTheModelsRange() {
        let model = Fixtures.registry.model(referencedBy: "room@1")!
        func result(tau: Double, before: Double = 0.5, after: Double = 0.05, converged: Bool = true, status: SimulationResult.Status = .completed) -> SimulationResult {
            var r = SimulationResult(simulationId: "recal-1", tenant: "t", twinId: "r", kind: .calibrate, status: status, start: 0)
            if status == .completed {
                r.fit = .init(parameters: ["tau": tau], initial: [:], standardErrors: ["tau": 40], correlation: nil, rmsBefore: ["temperature": before],
                              rmsAfter: ["temperature": after], noise: ["temperature": 0.05], iterations: 6, converged: converged, improved: true,
                              points: 100, ignored: [], message: "m")
            } else {
                r.reason = .init(code: "deadline_exceeded", message: "too slow")
            }
            return r
        }
        XCTAssertEqual(CalibrationVerdict.judge(result(tau: 3600), property: "temperature", model: model, minGain: 0.2), .better)
        XCTAssertEqual(CalibrationVerdict.judge(result(tau: 3600, after: 0.45), property: "temperature", model: model, minGain: 0.2).outcome, "not_improved",
                       "10% is under RECALIBRATE_MIN_GAIN")
        XCTAssertEqual(CalibrationVerdict.judge(result(tau: 3600, after: 0.39), property: "temperature", model: model, minGain: 0.2), .better, "22% is enough")
        guard case .notImproved(let reason, _) = CalibrationVerdict.judge(result(tau: 3600, converged: false), property: "temperature", model: model, minGain: 0.2) else {
            return XCTFail("a fit that did not converge is not applied")
        }
        XCTAssertEqual(reason, "not_converged")
        XCTAssertEqual(CalibrationVerdict.judge(result(tau: 30), property: "temperature", model: model, minGain: 0.2).outcome, "out_of_range", "tau's minimum is 60 s")
        XCTAssertEqual(CalibrationVerdict.judge(result(tau: .nan), property: "temperature", model: model, minGain: 0.2).outcome, "out_of_range")
        XCTAssertEqual(CalibrationVerdict.judge(result(tau: 3600, status: .failed), property: "temperature", model: model, minGain: 0.2),
                       .failed(reason: "deadline_exceeded", message: "the calibration ended failed: too slow"))
        XCTAssertEqual(CalibrationVerdict.judge(result(tau: 3600), property: "humidity", model: model, minGain: 0.2).outcome, "failed", "no RMS for the property")
    }

    /// The issue's loop in `auto` mode: one alert, a request with the post-alert readings, the
    /// fit within two standard errors of the true tau applied with the simulation id as cause,
    /// the alert resolved by the reset; the control room says nothing; the result applies once.
    func testAutoModeRecalibratesARoomWhoseTauHalvesAndResolvesTheAlert() throws {
        let seed = Fixtures.seed
        var monitor = DriftMonitor(settings: settings(.auto), plans: Fixtures.plans(settings(.auto)))
        var drifting = SyntheticRoom(twinId: "room-drift", seed: seed, tauAfter: 3600, changeAt: 600)
        var control = SyntheticRoom(twinId: "room-control", seed: seed &+ 1)
        let a = drifting.readings(1200), b = control.readings(1200)
        var outbox = RecalibrationOutbox()
        var (alerts, k) = feed(&monitor, [a, b], from: 0) { m in
            outbox = m.takeOutbox()
            return !outbox.requests.isEmpty
        }
        let request = try XCTUnwrap(outbox.requests.first, "seed \(seed): no calibration requested")
        XCTAssertEqual(outbox.requests.count, 1)
        XCTAssertEqual(request.twinId, "room-drift")
        XCTAssertEqual(request.spec.kind, .calibrate)
        XCTAssertEqual(request.spec.fit, ["tau", "temperature"], "the model's calibratable parameters, and where the temperature starts")
        XCTAssertEqual(request.spec.history?["temperature"]?.count, 100, "RECALIBRATE_MIN_POINTS readings")
        XCTAssertEqual(request.spec.history?["hvacPower"]?.count, 100, "the input the readings drive")
        XCTAssertEqual(request.twin.parameters["tau"], 7200, "the fit starts from the twin's parameters")
        XCTAssertGreaterThanOrEqual(request.start, Fixtures.start + 600 * 60_000, "only readings after the change")
        XCTAssertEqual(alerts.map(\.status), [.raised, .updated], "seed \(seed)")
        XCTAssertEqual(alerts.last?.recalibration?.state, "requested")
        XCTAssertEqual(alerts.last?.recalibration?.simulationId, request.simulationId)

        // The worker's result comes back: applied, reset, resolved.
        let result = try Self.run(request)
        var more: [DriftAlert] = []
        XCTAssertTrue(monitor.apply(result: result, now: Timestamp.now, into: &more))
        XCTAssertFalse(monitor.apply(result: result, now: Timestamp.now, into: &more), "a result applies once")
        outbox = monitor.takeOutbox()
        XCTAssertEqual(outbox.outcomes, ["applied"])
        let command = try XCTUnwrap(outbox.commands.first)
        XCTAssertEqual(command.kind, .setParameters)
        XCTAssertEqual(command.cause, request.simulationId)
        let tau = try XCTUnwrap(command.parameters?["tau"]?.doubleValue)
        let se = try XCTUnwrap(result.fit?.standardErrors?["tau"])
        XCTAssertLessThanOrEqual(abs(tau - 3600), 2 * se, "seed \(seed): fitted tau \(tau) ± \(se), truth 3600")
        print("recalibration, seed \(seed): tau \(tau) ± \(se) (truth 3600), RMS \(result.fit!.rmsBefore["temperature"]!) → \(result.fit!.rmsAfter["temperature"]!)")
        XCTAssertEqual(more.map(\.status), [.resolved])
        let story = try XCTUnwrap(more.last?.story)
        XCTAssertEqual(story.map(\.step), ["detected", "requested", "result", "applied", "reset", "resolved"])
        XCTAssertEqual(more.last?.recalibration?.commandId, command.commandId)
        XCTAssertNotNil(more.last?.recalibration?.standardErrors?["tau"])

        // The twin goes on with tau as fitted: the directory still shows 7200 for a while (the
        // command is on its way), then the new value; neither resets it again, no new alert.
        let plan = monitor.plans.plan("room@1")!
        let directory = TwinDirectory(plans: monitor.plans)
        directory.set("acme/room-drift", TwinInfo(model: "room@1", parameters: ["tau": 7200], vector: plan.parameters(["tau": 7200])))
        var after: [DriftAlert] = []
        for j in k..<(k + 100) {
            monitor.observe(a[j], twin: directory.info("acme/room-drift"), now: a[j].eventTime + 1_000, into: &after)
            monitor.observe(b[j], now: b[j].eventTime + 1_000, into: &after)
        }
        directory.set("acme/room-drift", TwinInfo(model: "room@1", parameters: ["tau": tau], vector: plan.parameters(["tau": tau])))
        for j in (k + 100)..<1200 {
            monitor.observe(a[j], twin: directory.info("acme/room-drift"), now: a[j].eventTime + 1_000, into: &after)
            monitor.observe(b[j], now: b[j].eventTime + 1_000, into: &after)
        }
        XCTAssertEqual(after.map(\.message), [], "seed \(seed)")
        XCTAssertEqual(monitor.counters.resets, 1, "one reset: the recalibration's")
        XCTAssertTrue((alerts + more).allSatisfy { $0.twinId == "room-drift" }, "the control room raises nothing")
    }

    /// An episode that closes while its recalibration still collects readings (here: new
    /// parameters reset the twin) says in its story that the recalibration was dropped, and why.
    func testAnEpisodeClosingBeforeItsCalibrationSaysTheRecalibrationWasDropped() throws {
        let seed = Fixtures.seed
        var s = settings(.auto)
        s.recalibration.minPoints = 10_000
        var monitor = DriftMonitor(settings: s, plans: Fixtures.plans(s))
        var drifting = SyntheticRoom(twinId: "room-drift", seed: seed, tauAfter: 3600, changeAt: 600)
        let a = drifting.readings(1200)
        let (raised, _) = feed(&monitor, [a], from: 0) { _ in false }
        XCTAssertEqual(raised.map(\.status), [.raised], "seed \(seed): collecting, nothing requested yet")
        XCTAssertEqual(monitor.counters.resets, 0)
        let plan = monitor.plans.plan("room@1")!
        let directory = TwinDirectory(plans: monitor.plans)
        directory.set("acme/room-drift", TwinInfo(model: "room@1", parameters: ["tau": 3600], vector: plan.parameters(["tau": 3600])))
        var drifting2 = SyntheticRoom(twinId: "room-drift", seed: seed, tauAfter: 3600, changeAt: 600)
        let later = drifting2.readings(1201)
        var alerts: [DriftAlert] = []
        monitor.observe(later[1200], twin: directory.info("acme/room-drift"), now: later[1200].eventTime + 1_000, into: &alerts)
        let resolved = try XCTUnwrap(alerts.last, "seed \(seed)")
        XCTAssertEqual(resolved.status, .resolved)
        XCTAssertEqual(resolved.recalibration?.state, "notApplied")
        XCTAssertEqual(resolved.recalibration?.reason, "episode_resolved")
        XCTAssertEqual(resolved.story.map(\.step), ["detected", "notApplied", "reset", "resolved"])
    }

    /// `suggest`: the alert carries the proposal and nothing is applied; the parameters arriving
    /// (the operator's call) close the episode with an `applied` step.
    func testSuggestModeProposesAndTheOperatorsApplyClosesTheEpisode() throws {
        let seed = Fixtures.seed
        let s = settings(.suggest)
        var monitor = DriftMonitor(settings: s, plans: Fixtures.plans(s))
        var drifting = SyntheticRoom(twinId: "room-drift", seed: seed, tauAfter: 3600, changeAt: 600)
        let a = drifting.readings(1200)
        var outbox = RecalibrationOutbox()
        var (alerts, k) = feed(&monitor, [a], from: 0) { m in
            outbox = m.takeOutbox()
            return !outbox.requests.isEmpty
        }
        let request = try XCTUnwrap(outbox.requests.first, "seed \(seed)")
        let result = try Self.run(request)
        monitor.apply(result: result, now: Timestamp.now, into: &alerts)
        outbox = monitor.takeOutbox()
        XCTAssertEqual(outbox.commands, [], "suggest applies nothing")
        XCTAssertEqual(outbox.outcomes, ["suggested"])
        let proposal = try XCTUnwrap(alerts.last)
        XCTAssertEqual(proposal.status, .updated)
        XCTAssertEqual(proposal.recalibration?.state, "suggested")
        XCTAssertEqual(proposal.recalibration?.simulationId, request.simulationId)
        XCTAssertNotNil(proposal.recalibration?.parameters?["tau"])
        XCTAssertNotNil(proposal.recalibration?.standardErrors?["tau"])
        XCTAssertTrue(proposal.story.last!.message.contains("POST /v1/twins/room-drift/recalibrations"), proposal.story.last!.message)
        XCTAssertEqual(monitor.openAlerts("acme/room-drift").map(\.recalibration?.state), ["suggested"], "the episode stays open")

        // The operator applies it: the twin's parameters become the proposal.
        let tau = proposal.recalibration!.parameters!["tau"]!
        let plan = monitor.plans.plan("room@1")!
        let info = TwinInfo(model: "room@1", parameters: ["tau": tau], vector: plan.parameters(["tau": tau]))
        var closed: [DriftAlert] = []
        monitor.observe(a[k], twin: info, now: a[k].eventTime + 1_000, into: &closed)
        XCTAssertEqual(closed.map(\.status), [.resolved])
        XCTAssertEqual(closed.last?.story.map(\.step), ["detected", "requested", "result", "suggested", "applied", "reset", "resolved"])
    }

    /// A fit that does not improve enough is not applied; the story says why; the episode stays
    /// open and no second request goes out within RECALIBRATE_MIN_INTERVAL.
    func testAFitThatDoesNotImproveIsNotAppliedAndTheStorySaysWhy() throws {
        var s = settings(.auto)
        s.recalibration.minGain = 0.99  // nothing real improves this much
        s.recalibration.minIntervalMs = 6 * 3_600_000
        var monitor = DriftMonitor(settings: s, plans: Fixtures.plans(s))
        var drifting = SyntheticRoom(twinId: "room-drift", seed: Fixtures.seed, tauAfter: 3600, changeAt: 600)
        let a = drifting.readings(1000)
        var outbox = RecalibrationOutbox()
        var (alerts, k) = feed(&monitor, [a], from: 0) { m in
            outbox = m.takeOutbox()
            return !outbox.requests.isEmpty
        }
        let request = try XCTUnwrap(outbox.requests.first)
        monitor.apply(result: try Self.run(request), now: Timestamp.now, into: &alerts)
        XCTAssertEqual(monitor.takeOutbox().outcomes, ["not_improved"])
        let last = try XCTUnwrap(alerts.last)
        XCTAssertEqual(last.status, .updated)
        XCTAssertEqual(last.story.map(\.step), ["detected", "requested", "result", "notApplied"])
        XCTAssertEqual(last.recalibration?.reason, "not_improved")
        XCTAssertTrue(last.story.last!.message.contains("RECALIBRATE_MIN_GAIN"), last.story.last!.message)
        (alerts, k) = feed(&monitor, [a], from: k) { m in !m.takeOutbox().requests.isEmpty }
        XCTAssertEqual(k, 1000, "no second request within RECALIBRATE_MIN_INTERVAL")
        XCTAssertEqual(monitor.openAlerts("acme/room-drift").count, 1)
    }

    /// A pending recalibration is part of the twin's state: after a restore the result still
    /// applies, once; a request without a result fails after RECALIBRATE_TIMEOUT.
    func testAPendingRecalibrationSurvivesARestoreAndTimesOut() throws {
        let s = settings(.auto)
        var monitor = DriftMonitor(settings: s, plans: Fixtures.plans(s))
        var drifting = SyntheticRoom(twinId: "room-drift", seed: Fixtures.seed, tauAfter: 3600, changeAt: 600)
        let a = drifting.readings(1000)
        var outbox = RecalibrationOutbox()
        _ = feed(&monitor, [a], from: 0) { m in
            outbox = m.takeOutbox()
            return !outbox.requests.isEmpty
        }
        let request = try XCTUnwrap(outbox.requests.first)
        let document = try XCTUnwrap(monitor.document(key: "acme/room-drift", now: 0))
        var restored = DriftMonitor(settings: s, plans: Fixtures.plans(s))
        try restored.restore(DriftState(bytes: document.encoded()))
        XCTAssertEqual(restored.awaitedSimulations().map(\.simulationId), [request.simulationId])
        var alerts: [DriftAlert] = []
        XCTAssertTrue(restored.apply(result: try Self.run(request), now: Timestamp.now, into: &alerts))
        XCTAssertEqual(restored.takeOutbox().commands.map(\.cause), [request.simulationId])
        XCTAssertEqual(alerts.map(\.status), [.resolved])

        var waiting = DriftMonitor(settings: s, plans: Fixtures.plans(s))
        try waiting.restore(DriftState(bytes: document.encoded()))
        let requestedAt = request.requestedAt
        waiting.expireRecalibrations(now: requestedAt + s.recalibration.timeoutMs, into: &alerts)
        XCTAssertEqual(waiting.awaitedSimulations().count, 1, "not yet")
        waiting.expireRecalibrations(now: requestedAt + s.recalibration.timeoutMs + 1, into: &alerts)
        XCTAssertEqual(waiting.awaitedSimulations().count, 0)
        XCTAssertEqual(waiting.takeOutbox().outcomes, ["failed"])
        XCTAssertEqual(waiting.openAlerts("acme/room-drift").first?.recalibration?.reason, "timeout")
    }
}
