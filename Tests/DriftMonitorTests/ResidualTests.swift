import Contracts
import Foundation
import JSON
import Models
import Simulation
import TestSupport
import XCTest
@testable import DriftMonitor

/// The residual path on a synthetic room: a real change raises one alert where it happened; an
/// unchanged room raises none; episodes have hysteresis; a reset closes them.
final class ResidualTests: XCTestCase {
    func settings(dataDrift: Bool = false) -> DriftSettings {
        var s = DriftSettings()
        s.recalibration.defaultMode = .off  // detection alone: RecalibrationTests close the loop
        if !dataDrift { s.evalEvery = 0 }
        return s
    }

    func testRoomWhoseTauHalvesRaisesOneResidualAlertNearTheChangeAndAControlRoomNone() {
        let seed = Fixtures.seed
        var monitor = DriftMonitor(settings: settings(), plans: Fixtures.plans(settings()))
        var drifting = SyntheticRoom(twinId: "room-drift", seed: seed, tauAfter: 3600, changeAt: 600)
        var control = SyntheticRoom(twinId: "room-control", seed: seed &+ 1)
        let a = drifting.readings(1200), b = control.readings(1200)
        var alerts: [DriftAlert] = []
        for k in 0..<1200 { alerts += monitor.run([a[k], b[k]]) }
        let drift = alerts.filter { $0.twinId == "room-drift" }
        XCTAssertEqual(drift.count, 1, "seed \(seed): \(drift.map { "\($0.status) \($0.kind) \($0.property ?? "") at \(Timestamp.format($0.eventTime))" })")
        XCTAssertEqual(alerts.filter { $0.twinId == "room-control" }.map(\.message), [], "seed \(seed)")
        guard let alert = drift.first else { return }
        XCTAssertEqual(alert.kind, .residual)
        XCTAssertEqual(alert.status, .raised)
        XCTAssertEqual(alert.property, "temperature")
        XCTAssertEqual(alert.detector, "adwin")
        let change = Fixtures.start + 600 * 60_000
        let cut = try! XCTUnwrap(alert.changeStartedAt, "seed \(seed)")
        XCTAssertLessThanOrEqual(abs(cut - change), 30 * 60_000, "seed \(seed): cut at \(Timestamp.format(cut)), change at \(Timestamp.format(change))")
        XCTAssertGreaterThan(alert.eventTime, change)
        XCTAssertLessThanOrEqual(alert.eventTime - change, 60 * 60_000, "seed \(seed): detected an hour or more after the change")
        XCTAssertEqual(alert.story.map(\.step), ["detected"])
        XCTAssertTrue(alert.message.contains("room-drift") && alert.message.contains("recalibrate"), alert.message)
        print("tau halving, seed \(seed): detected \((alert.eventTime - change) / 60_000) min after the change, cut \((cut - change) / 60_000) min from it; \(alert.message)")
    }

    func testParametersOfTheTwinAreUsedAndARecalibrationResetsAndResolves() {
        // The twin says tau is 3600 and so is the room: nothing to say.
        let s = settings()
        let plans = Fixtures.plans(s)
        let directory = TwinDirectory(plans: plans)
        let key = "acme/room-9"
        func set(tau: Double) {
            directory.set(key, TwinInfo(model: "room@1", parameters: ["tau": tau], vector: plans.plan("room@1")!.parameters(["tau": tau])))
        }
        set(tau: 3600)
        var room = SyntheticRoom(twinId: "room-9", seed: Fixtures.seed &+ 2, tau: 3600, tauAfter: 1800, changeAt: 700)
        var monitor = DriftMonitor(settings: s, plans: plans)
        let readings = room.readings(1500)
        XCTAssertEqual(monitor.run(Array(readings[..<700]), directory: directory).count, 0, "seed \(Fixtures.seed)")
        // The room's tau halves: an episode opens...
        let drifted = monitor.run(Array(readings[700..<1000]), directory: directory)
        XCTAssertEqual(drifted.map(\.status), [.raised], "seed \(Fixtures.seed)")
        // ...and recalibrating the twin (setParameters tau 1800) resets it, which resolves the
        // episode with the reason; the recalibrated twin then raises nothing.
        set(tau: 1800)
        let fixed = monitor.run(Array(readings[1000...]), directory: directory)
        XCTAssertEqual(fixed.map(\.status), [.resolved], "seed \(Fixtures.seed)")
        XCTAssertEqual(fixed.first?.alertId, drifted.first?.alertId)
        XCTAssertEqual(fixed.first?.story.map(\.step), ["detected", "reset", "resolved"])
        XCTAssertTrue(fixed.first?.story[1].message.contains("tau 3600 → 1800") == true, fixed.first?.story[1].message ?? "")
        XCTAssertEqual(fixed.first?.eventTime, readings[1000].eventTime, "the new parameters count from the next reading")
        XCTAssertNotNil(monitor.document(key: key, now: 0)?.properties.first { $0.name == "temperature" }?.property.residual?.scale,
                        "the scale was estimated again after the reset")
    }

    func testHysteresisOneEpisodeIsOneRaisedAndOneResolvedMessage() {
        // A sensor offset of +1 °C for 400 readings, then gone: ADWIN alarms when it comes and when
        // it goes, but the episode is one raised and one resolved message.
        var s = settings()
        s.resolveWindow = 30
        var monitor = DriftMonitor(settings: s, plans: Fixtures.plans(s))
        var room = SyntheticRoom(twinId: "room-3", seed: Fixtures.seed &+ 3)
        var readings = room.readings(1500)
        for k in 600..<1000 {
            let x = readings[k].values["temperature"]!.doubleValue!
            readings[k].values["temperature"] = .double(x + 1)
        }
        let alerts = monitor.run(readings)
        XCTAssertEqual(alerts.map(\.status), [.raised, .resolved], "seed \(Fixtures.seed): \(alerts.map { "\($0.status) at \(Timestamp.format($0.eventTime))" })")
        XCTAssertEqual(Set(alerts.map(\.alertId)).count, 1)
        let detections = monitor.document(key: "acme/room-3", now: 0)!.properties.first { $0.name == "temperature" }!.property.residual!.detections
        XCTAssertGreaterThan(detections, 1, "the detector alarmed again during the episode without a second alert")
        XCTAssertEqual(alerts.last?.story.map(\.step), ["detected", "resolved"])
        XCTAssertGreaterThan(alerts.last!.eventTime, Fixtures.start + 1000 * 60_000)
    }

    func testCUSUMPerModel() {
        var s = settings()
        s.detectors = ["room": .cusum]
        var monitor = DriftMonitor(settings: s, plans: Fixtures.plans(s))
        var room = SyntheticRoom(twinId: "room-c", seed: Fixtures.seed &+ 4, tauAfter: 3600, changeAt: 600)
        let alerts = monitor.run(room.readings(1000))
        XCTAssertEqual(alerts.map(\.detector), ["cusum"], "seed \(Fixtures.seed)")
        XCTAssertGreaterThan(alerts.first?.eventTime ?? 0, Fixtures.start + 600 * 60_000)
    }

    func testPredictionAgreesWithSimulationEngine() throws {
        // The monitor's fixed-step prediction over a horizon with a changing input, against the
        // simulation engine's adaptive solver on the same schedule.
        let s = settings()
        let plan = try XCTUnwrap(Fixtures.plans(s).plan("room@1"))
        var history = History(capacity: 20, width: plan.tracked.count, minimumSpacingMs: plan.horizonMs / 16)
        let powers = [2000.0, 9000, 9000, 0, 5000, 5000, 5000, 12000, 1000, 3000, 3000]
        for (k, p) in powers.enumerated() {
            let values: JSONObject = k == 0 ? ["temperature": 18.5, "hvacPower": .double(p)] : ["hvacPower": .double(p)]
            history.append(time: Int64(k) * 60_000, plan.trackedValues({ values[$0]?.doubleValue }, previous: history.newest))
        }
        let parameters = plan.parameters(["tau": 5400])
        var out = [Double](repeating: 0, count: plan.watched.count)
        plan.predict(history: history, anchor: 0, to: 600_000, current: history.newest.map(Array.init)!, parameters: parameters, into: &out)
        let schedule = powers.enumerated().map { SchedulePoint(Double($0.offset) * 60, $0.element) }
        let trajectory = try Simulation.forecast(model: plan.model, ForecastRequest(
            scenario: Scenario(values: ["temperature": 18.5, "tau": 5400], inputs: ["P": .schedule(schedule, .previous)]),
            grid: TimeGrid(horizon: 600, step: 600), series: ["temperature"], options: SolverOptions(rtol: 1e-10, atol: 1e-12)))
        let engine = try XCTUnwrap(trajectory.series["temperature"]?.last)
        let index = try XCTUnwrap(plan.watched.firstIndex { $0.name == "temperature" })
        XCTAssertEqual(out[index], engine, accuracy: 1e-6, "monitor \(out[index]) vs engine \(engine)")
        XCTAssertNotEqual(out[index], 18.5, accuracy: 0.1, "the prediction moved over the horizon")
    }

    /// A pump from off its equilibrium, predicted over its 5-minute horizon by the monitor (default
    /// step: a sixteenth of the horizon, ROS2 because the flow lag of 1.5 s is stiff at that step) and by the
    /// simulation engine (adaptive, rtol 1e-10); `tauFlow` 0.05 s (the model's minimum) with
    /// `DRIFT_STEP=30s` as well, where RK4 overflowed. Tolerance: a tenth of the fleet's sensor
    /// noise per property (rpm 2, flow 0.2 m3/h, temperature 0.1 K, pressure 0.02 bar, vibration
    /// 0.05 mm/s); measured: temperature 0.005-0.007 K off (second order in the step, largest far
    /// from equilibrium as here), the fast states and outputs within 1e-9. Why it is right:
    /// residuals are standardised by a scale of at least the noise (the warm-up's σ), a detector
    /// needs a mean shift of several tenths of σ held over its window to alarm, and this error is
    /// smooth in the state: neighbouring readings share it, so it moves the centre, not the noise.
    func testStiffPumpPredictionAgreesWithSimulationEngineInABoundedNumberOfSteps() throws {
        let noise = ["rpm": 2.0, "flow": 0.2, "temperature": 0.1, "pressure": 0.02, "vibration": 0.05]
        for (tauFlow, stepMs) in [(1.5, nil), (0.05, Int64(30_000)), (1.5, Int64(1_000))] as [(Double, Int64?)] {
            var s = settings()
            s.stepMs = stepMs
            let plan = try XCTUnwrap(Fixtures.plans(s).plan("pump@1"))
            XCTAssertEqual(plan.horizonMs, 300_000)
            XCTAssertEqual(plan.stepMs, stepMs ?? 18_750, "default: a sixteenth of the horizon")
            var history = History(capacity: 20, width: plan.tracked.count, minimumSpacingMs: plan.horizonMs / 16)
            let start: JSONObject = ["rpm": 900, "flow": 25, "temperature": 16]
            history.append(time: 0, plan.trackedValues({ start[$0]?.doubleValue }, previous: nil))
            // Readings every 20 s afterwards (no inputs observed: one segment).
            for k in 1...14 { history.append(time: Int64(k) * 20_000, plan.trackedValues({ _ in nil }, previous: history.newest)) }
            let parameters = plan.parameters(["tauFlow": tauFlow])
            var out = [Double](repeating: 0, count: plan.watched.count)
            let steps = plan.predict(history: history, anchor: 0, to: 300_000, current: history.newest.map(Array.init)!, parameters: parameters, into: &out)
            let names = plan.watched.map(\.name)
            let trajectory = try Simulation.forecast(model: plan.model, ForecastRequest(
                scenario: Scenario(values: ["rpm": 900, "flow": 25, "temperature": 16, "tauFlow": tauFlow]),
                grid: TimeGrid(horizon: 300, step: 300), series: names, options: SolverOptions(rtol: 1e-10, atol: 1e-12)))
            for (w, name) in names.enumerated() {
                let engine = try XCTUnwrap(trajectory.series[name]?.last)
                XCTAssertEqual(out[w], engine, accuracy: 0.1 * noise[name]!, "tauFlow \(tauFlow), step \(stepMs ?? 0) ms: \(name) monitor \(out[w]) vs engine \(engine)")
            }
            XCTAssertNotEqual(out[names.firstIndex(of: "temperature")!], 16, accuracy: 0.5, "the prediction moved over the horizon")
            print("pump prediction, tauFlow \(tauFlow), step \(stepMs ?? plan.stepMs) ms: \(steps) steps; "
                  + names.enumerated().map { "\($0.element) \(out[$0.offset])" }.joined(separator: ", "))
            XCTAssertLessThanOrEqual(steps, stepMs == 1_000 ? 300 : 30, "a bounded number of steps over the horizon")
        }
    }

    /// Session 13's `DRIFT_STEP=30s` run: a pump whose flow lag is short against the step made RK4
    /// overflow, and the non-finite residuals reached the warm-up. Now the prediction stays finite, and
    /// a non-finite residual is skipped, never fed.
    func testALongStepOnAStiffPumpGivesFiniteResidualsAndNoAlert() {
        var s = settings()
        s.stepMs = 30_000
        s.warmup = 20
        let plans = Fixtures.plans(s)
        let directory = TwinDirectory(plans: plans)
        directory.set("acme/pump-1", TwinInfo(model: "pump@1", parameters: ["tauFlow": 0.05], vector: plans.plan("pump@1")!.parameters(["tauFlow": 0.05])))
        var monitor = DriftMonitor(settings: s, plans: plans)
        var random = SeededRandom(seed: Fixtures.seed)
        let readings = (0..<200).map { k in
            Reading(tenant: "acme", twinId: "pump-1", eventId: "p\(k)", eventTime: Fixtures.start + Int64(k) * 10_000, model: "pump@1",
                    values: ["rpm": .double(1450 + 2 * random.normal()), "flow": .double(60 + 0.2 * random.normal()),
                             "pressure": .double(6.5 - 0.0007 * 3600 + 0.02 * random.normal()), "temperature": .double(23 + 0.1 * random.normal()),
                             "vibration": .double(2.8 + 0.05 * random.normal())])
        }
        let alerts = monitor.run(readings, directory: directory)
        XCTAssertEqual(alerts.map(\.message), [], "seed \(Fixtures.seed)")
        XCTAssertEqual(monitor.counters.nonFinite, 0)
        XCTAssertGreaterThan(monitor.counters.detectorUpdates, 0)
        let document = monitor.document(key: "acme/pump-1", now: 0)!
        for p in document.properties { if let r = p.property.residual { XCTAssertTrue(r.scale?.isFinite == true && r.center?.isFinite == true, "\(p.name): \(r)") } }
    }
}
