import Contracts
import Foundation
import JSON
import TestSupport
import XCTest
@testable import DriftMonitor

/// Skipped readings, freshness with a controlled clock, data drift, and the drift.state document.
final class MonitorTests: XCTestCase {
    let key = "acme/room-1"

    func reading(_ k: Int, id: String? = nil, temperature: Double = 20, power: Double = 0) -> Reading {
        Reading(tenant: "acme", twinId: "room-1", eventId: id ?? "e\(k)", eventTime: Fixtures.start + Int64(k) * 60_000, model: "room@1",
                values: ["temperature": .double(temperature), "hvacPower": .double(power)])
    }

    func testLateAndRepeatedReadingsAreSkippedAndCounted() {
        var monitor = DriftMonitor(settings: DriftSettings(), plans: Fixtures.plans(DriftSettings()))
        var alerts: [DriftAlert] = []
        let now = Fixtures.start + 3_600_000
        XCTAssertEqual(monitor.observe(reading(10), now: now, into: &alerts), .applied)
        XCTAssertEqual(monitor.observe(reading(11), now: now, into: &alerts), .applied)
        XCTAssertEqual(monitor.observe(reading(5), now: now, into: &alerts), .late, "older than the newest processed reading")
        XCTAssertEqual(monitor.observe(reading(11), now: now, into: &alerts), .repeated, "same event id")
        XCTAssertEqual(monitor.observe(reading(12, id: "e10"), now: now, into: &alerts), .repeated, "an id among the last ones, even with a new time")
        XCTAssertEqual(monitor.observe(reading(12), offset: 7, now: now, into: &alerts), .applied)
        XCTAssertEqual(monitor.observe(reading(13), offset: 7, now: now, into: &alerts), .replayed, "an input offset already applied")
        XCTAssertEqual(monitor.counters.late, 1)
        XCTAssertEqual(monitor.counters.repeated, 2)
        XCTAssertEqual(monitor.counters.replayed, 1)
        XCTAssertEqual(monitor.observe(Reading(tenant: "acme", twinId: "x", eventId: "u", eventTime: 0, model: "toaster@1", values: [:]), now: now, into: &alerts), .unknownModel)
        XCTAssertEqual(monitor.observe(reading(15), twin: TwinInfo(model: "room@1", decommissioned: true), now: now, into: &alerts), .decommissioned)
        XCTAssertEqual(alerts, [])
    }

    func testStaleIsRaisedOnceAndResolvedWhenReadingsResumeWithAControlledClock() {
        var monitor = DriftMonitor(settings: DriftSettings(), plans: Fixtures.plans(DriftSettings()))
        var alerts: [DriftAlert] = []
        let t0 = Fixtures.start
        monitor.observe(reading(0), now: t0, into: &alerts)
        // 3 reporting intervals (180 s) is the limit: at exactly 180 s it is not stale yet.
        monitor.tick(now: t0 + 180_000, into: &alerts)
        XCTAssertEqual(alerts, [])
        monitor.tick(now: t0 + 200_000, lagging: true, into: &alerts)
        XCTAssertEqual(alerts, [], "a monitor behind its input does not blame the twins")
        monitor.tick(now: t0 + 180_001, into: &alerts)
        XCTAssertEqual(alerts.map(\.kind), [.stale])
        XCTAssertEqual(alerts.first?.property, nil)
        XCTAssertEqual(alerts.first?.changeStartedAt, t0)
        XCTAssertTrue(alerts.first?.message.contains("since 2026-11-21T00:00:00.000Z") == true, alerts.first?.message ?? "")
        monitor.tick(now: t0 + 3_600_000, into: &alerts)
        XCTAssertEqual(alerts.count, 1, "one episode, however long the silence")
        XCTAssertTrue(monitor.document(key: key, now: t0)!.stale)
        // A reading arrives: fresh again, resolved; then silent again: a second episode.
        let back = t0 + 3_600_000
        monitor.observe(reading(60), now: back + 500, into: &alerts)
        XCTAssertEqual(alerts.map(\.status), [.raised, .resolved])
        XCTAssertEqual(alerts[1].alertId, alerts[0].alertId)
        monitor.tick(now: back + 170_000, into: &alerts)
        XCTAssertEqual(alerts.count, 2)
        monitor.tick(now: back + 181_000, into: &alerts)
        XCTAssertEqual(alerts.map(\.status), [.raised, .resolved, .raised])
        XCTAssertNotEqual(alerts[2].alertId, alerts[0].alertId)
        // Decommissioned: the open episode closes and the twin is never stale again.
        XCTAssertTrue(monitor.forget(key: key, at: back + 200_000, into: &alerts))
        XCTAssertEqual(alerts.last?.status, .resolved)
        monitor.tick(now: back + 10_000_000, into: &alerts)
        XCTAssertEqual(alerts.count, 4)
        XCTAssertFalse(monitor.holds(key))
    }

    func testDataDriftOfAStuckSensorIsOneEpisode() {
        var s = DriftSettings()
        s.window = 100
        s.evalEvery = 25
        var monitor = DriftMonitor(settings: s, plans: Fixtures.plans(s))
        var random = SeededRandom(seed: Fixtures.seed)
        var alerts: [DriftAlert] = []
        for k in 0..<600 {
            // humidity is independent noise around 45 %, then stuck at 51 % from reading 300 to 450.
            let humidity = (300..<450).contains(k) ? 51 : 45 + 2 * random.normal()
            let r = Reading(tenant: "acme", twinId: "room-1", eventId: "e\(k)", eventTime: Fixtures.start + Int64(k) * 60_000, model: "room@1",
                            values: ["humidity": .double(humidity)])
            monitor.observe(r, now: r.eventTime, into: &alerts)
        }
        let humidity = alerts.filter { $0.kind == .data && $0.property == "humidity" }
        XCTAssertEqual(humidity.map(\.status), [.raised, .resolved], "seed \(Fixtures.seed): \(humidity.map { "\($0.status) \(Timestamp.format($0.eventTime))" })")
        XCTAssertEqual(humidity.first?.detector, "kolmogorovSmirnov")
        XCTAssertGreaterThanOrEqual(humidity.first?.eventTime ?? 0, Fixtures.start + 300 * 60_000)
        XCTAssertEqual(alerts.filter { $0.kind == .residual }.count, 0, "humidity alone gives no anchor with a temperature to compare")
        let data = monitor.document(key: key, now: 0)!.properties.first { $0.name == "humidity" }!.property.data!
        XCTAssertEqual(data.reference["count"], 100)
        XCTAssertEqual(data.reference["mean"]?.doubleValue ?? 0, 45, accuracy: 1)
    }

    /// A room's HVAC power switches among levels (a controller at work) while its humidity sensor is
    /// steady, then stuck at a new value: by default only the humidity episode is raised, none for the
    /// switching input; with DRIFT_DATA_PROPERTIES=all the same readings alert on hvacPower too.
    func testASwitchingControlInputRaisesNoDataAlertByDefaultAndARealShiftStillRaisesOne() {
        func alerts(_ properties: DriftSettings.DataProperties) -> [DriftAlert] {
            var s = DriftSettings()
            s.defaultDataProperties = properties
            var monitor = DriftMonitor(settings: s, plans: Fixtures.plans(s))
            var room = SyntheticRoom(twinId: "room-1", seed: Fixtures.seed &+ 7)
            var random = SeededRandom(seed: Fixtures.seed &+ 8)
            let readings = room.readings(900).enumerated().map { k, r in
                var r = r
                r.values["humidity"] = .double((400..<650).contains(k) ? 51 : 45 + 2 * random.normal())
                return r
            }
            return monitor.run(readings).filter { $0.kind == .data }
        }
        let byDefault = alerts(.modelled)
        XCTAssertEqual(byDefault.filter { $0.property == "hvacPower" }, [], "seed \(Fixtures.seed): the control input is not watched")
        let humidity = byDefault.filter { $0.property == "humidity" }
        XCTAssertEqual(humidity.map(\.status), [.raised, .resolved], "seed \(Fixtures.seed): the stuck humidity sensor is one episode")
        XCTAssertGreaterThanOrEqual(humidity.first?.eventTime ?? 0, Fixtures.start + 400 * 60_000)
        let all = alerts(.all)
        XCTAssertGreaterThan(all.filter { $0.property == "hvacPower" && $0.status == .raised }.count, 0,
                             "seed \(Fixtures.seed): with every property watched the switching input alerts")
    }

    func testDataPropertiesSettingChoosesTheWatchedTelemetry() throws {
        var s = DriftSettings()
        XCTAssertEqual(Fixtures.plans(s).plan("room@2")?.dataProperties, ["temperature", "humidity", "co2"],
                       "modelled: inputs (hvacPower, outdoorTemperature) are left out")
        (s.defaultDataProperties, s.dataProperties) = try DriftSettings.parseDataProperties("modelled, room=temperature+hvacPower, pump=all")
        let plans = Fixtures.plans(s)
        XCTAssertEqual(plans.plan("room@2")?.dataProperties, ["temperature", "hvacPower"])
        XCTAssertEqual(plans.plan("pump")?.dataProperties, plans.plan("pump")?.numeric)
        XCTAssertNoThrow(try plans.checkDataProperties(s))
        for bad in ["room=", "room=temperature+", "=all"] {
            XCTAssertThrowsError(try DriftSettings.parseDataProperties(bad), bad)
        }
        (s.defaultDataProperties, s.dataProperties) = try DriftSettings.parseDataProperties("room=temprature")
        XCTAssertThrowsError(try Fixtures.plans(s).checkDataProperties(s)) { error in
            XCTAssertTrue("\(error)".contains("temprature"), "\(error)")
        }
        (s.defaultDataProperties, s.dataProperties) = try DriftSettings.parseDataProperties("toaster=all")
        XCTAssertThrowsError(try Fixtures.plans(s).checkDataProperties(s))
    }

    func testStateDocumentRoundTripContinuesExactly() throws {
        // Two monitors on the same readings; one is saved to drift.state.v1 bytes halfway (with an
        // open episode) and restored into a fresh monitor: both go on to the same alerts and the same state.
        var s = DriftSettings()
        s.evalEvery = 40
        let plans = Fixtures.plans(s)
        var original = DriftMonitor(settings: s, plans: plans)
        var room = SyntheticRoom(twinId: "room-1", seed: Fixtures.seed &+ 5, tauAfter: 3600, changeAt: 500)
        let readings = room.readings(1300)
        let first = original.run(Array(readings[..<800]))
        XCTAssertTrue(first.contains { $0.kind == .residual && $0.status == .raised }, "seed \(Fixtures.seed): an episode is open at the save")
        let saved = try XCTUnwrap(original.document(key: key, now: 42)).encoded()
        var restored = DriftMonitor(settings: s, plans: plans)
        try restored.restore(DriftState(bytes: saved))
        XCTAssertEqual(restored.openAlerts(key), original.openAlerts(key))
        var fromBytes = DriftMonitor(settings: s, plans: plans)
        try fromBytes.restore(bytes: saved)  // what the service does: one parse, same twin
        XCTAssertEqual(fromBytes.document(key: key, now: 42).map { String(decoding: $0.encoded(), as: UTF8.self) },
                       original.document(key: key, now: 42).map { String(decoding: $0.encoded(), as: UTF8.self) })
        XCTAssertThrowsError(try fromBytes.restore(bytes: Array(#"{"tenant":"acme"}"#.utf8)))
        XCTAssertEqual(restored.document(key: key, now: 42).map { String(decoding: $0.encoded(), as: UTF8.self) },
                       original.document(key: key, now: 42).map { String(decoding: $0.encoded(), as: UTF8.self) })
        let rest = Array(readings[800...])
        let a = original.run(rest), b = restored.run(rest)
        XCTAssertEqual(a, b)
        XCTAssertFalse(b.contains { $0.status == .raised && $0.kind == .residual }, "the open episode is not raised again")
        XCTAssertEqual(restored.document(key: key, now: 99).map { String(decoding: $0.encoded(), as: UTF8.self) },
                       original.document(key: key, now: 99).map { String(decoding: $0.encoded(), as: UTF8.self) })
        // The stale timer is armed again on restore.
        var staleA: [DriftAlert] = [], staleB: [DriftAlert] = []
        original.tick(now: readings.last!.eventTime + 200_000, into: &staleA)
        restored.tick(now: readings.last!.eventTime + 200_000, into: &staleB)
        XCTAssertEqual(staleA.map(\.kind), [.stale])
        XCTAssertEqual(staleA, staleB)
    }

    /// A fleet created at once (and the same fleet restored at once) spreads its drift.state
    /// writes over the cycle of `DRIFT_STATE_EVERY` readings instead of writing every twin's
    /// document in the same reading: in a soak, 10,000 twins' documents in one burst every few
    /// minutes lagged the monitor and the query view by 20,000 messages each time.
    func testAFleetCreatedOrRestoredAtOnceSpreadsItsStateDocumentsOverTheCycle() throws {
        var s = DriftSettings()
        s.stateEvery = 20
        let plans = Fixtures.plans(s)
        var monitor = DriftMonitor(settings: s, plans: plans)
        let twins = 400
        func round(_ k: Int, into monitor: inout DriftMonitor) -> Int {
            var alerts: [DriftAlert] = []
            for i in 0..<twins {
                let r = Reading(tenant: "acme", twinId: "room-\(i)", eventId: "e\(i)-\(k)", eventTime: Fixtures.start + Int64(k) * 60_000,
                                model: "room@1", values: ["temperature": .double(20), "hvacPower": .double(0)])
                monitor.observe(r, now: Fixtures.start, into: &alerts)
            }
            return monitor.takeDue().count
        }
        let created = (0..<(3 * s.stateEvery)).map { round($0, into: &monitor) }
        XCTAssertEqual(created.reduce(0, +), 3 * twins, "each twin writes once per cycle: \(created)")
        XCTAssertLessThanOrEqual(created.max()!, 3 * twins / s.stateEvery, "writes per reading round: \(created)")
        var restored = DriftMonitor(settings: s, plans: plans)
        for i in 0..<twins {
            try restored.restore(bytes: XCTUnwrap(monitor.document(key: "acme/room-\(i)", now: 0)).encoded())
        }
        let after = (0..<s.stateEvery).map { round(3 * s.stateEvery + $0, into: &restored) }
        XCTAssertEqual(after.reduce(0, +), twins, "\(after)")
        XCTAssertLessThanOrEqual(after.max()!, 3 * twins / s.stateEvery, "writes per reading round after a restore: \(after)")
    }

    /// The directory reads a state document's model and parameters member by member: it gives
    /// what the fully decoded document gives, follows a parameter change and a decommission, and
    /// refuses what is not a JSON object.
    func testTheTwinDirectoryTakesWhatAFullDecodeOfTheStateDocumentGives() throws {
        let plans = Fixtures.plans(DriftSettings())
        let directory = TwinDirectory(plans: plans)
        let properties: [(name: String, property: TwinState.Property)] = [
            ("temperature", .init(value: 21.5, unit: "degC", eventTime: 1, ingestTime: 2, eventId: "e\"1")),
            ("hvacPower", .init(value: ["nested": [1, 2]], eventTime: 1, ingestTime: 2, eventId: "e2")),
        ]
        let first = TwinState(tenant: "acme", twinId: "room-1", model: "room@1", version: 3, updatedAt: 5, properties: properties,
                              metadata: ["parameters": ["tau": 1]], parameters: ["tau": 3600, "label": "not a number", "C": 4.5e6])
        XCTAssertTrue(directory.apply(key: key, value: first.encoded()))
        XCTAssertEqual(directory.info(key), TwinInfo(try TwinState(bytes: first.encoded()), plans: plans))
        XCTAssertEqual(directory.info(key)?.parameters, ["tau": 3600, "C": 4.5e6])
        var changed = first
        changed.version = 4
        changed.parameters = ["tau": 1800]
        XCTAssertTrue(directory.apply(key: key, value: changed.encoded()))
        XCTAssertEqual(directory.info(key), TwinInfo(changed, plans: plans))
        XCTAssertTrue(directory.apply(key: key, value: []))
        XCTAssertEqual(directory.info(key)?.decommissioned, true)
        XCTAssertTrue(directory.apply(key: key, value: changed.encoded()), "a twin created again after its decommission")
        XCTAssertEqual(directory.info(key), TwinInfo(changed, plans: plans))
        let unmodelled = TwinState(tenant: "acme", twinId: "room-2", version: 1, updatedAt: 5)
        XCTAssertTrue(directory.apply(key: "acme/room-2", value: unmodelled.encoded()))
        XCTAssertEqual(directory.info("acme/room-2"), TwinInfo(unmodelled, plans: plans))
        for damaged in [#"[1,2]"#, #"{"model":"room@1","parameters":{"tau":1}"#, #"{"model":"room@1"} x"#, "not json"] {
            XCTAssertFalse(directory.apply(key: "acme/room-3", value: Array(damaged.utf8)), damaged)
        }
        XCTAssertNil(directory.info("acme/room-3"))
    }

    func testMemoryPerTwinIsBounded() {
        var s = DriftSettings()
        s.window = 100
        var monitor = DriftMonitor(settings: s, plans: Fixtures.plans(s))
        var room = SyntheticRoom(twinId: "room-1", seed: Fixtures.seed)
        _ = monitor.run(room.readings(3000))
        let after3000 = monitor.estimatedBytes
        var later = SyntheticRoom(twinId: "room-1", seed: 9)
        _ = monitor.run(later.readings(6000).map {
            var r = $0; r.eventTime += 3000 * 60_000; r.eventId += "b"; return r
        })
        XCTAssertLessThan(monitor.estimatedBytes, 20_000)
        XCTAssertLessThanOrEqual(monitor.estimatedBytes, after3000 + 512, "state stops growing once windows are full (ADWIN grows a row per doubling)")
    }

    /// A pump (model interval 1 s) that reports every 10 s, ticked every second as the service does:
    /// judged by its own pace, it raises nothing; when it goes silent for 5 minutes it raises one
    /// episode, resolved by its next reading, and its next ordinary gaps raise nothing again. Under
    /// the model's interval alone (STALE_FACTOR 3) it raised and resolved an episode on every gap.
    func testATwinReportingSlowerThanItsModelRaisesNothingAndASilentOneRaisesOnceAndResolvesOnce() {
        var monitor = DriftMonitor(settings: DriftSettings(), plans: Fixtures.plans(DriftSettings()))
        var alerts: [DriftAlert] = []
        var clock = Fixtures.start
        func pump(_ k: Int) -> Reading {
            Reading(tenant: "acme", twinId: "pump-1", eventId: "p\(k)", eventTime: clock, model: "pump@1",
                    values: ["rpm": 1450, "flow": 60, "pressure": 3.98, "temperature": 23, "vibration": 2.8])
        }
        var k = 0
        func run(seconds: Int, reporting: Bool) {
            for second in 0..<seconds {
                if reporting && second % 10 == 0 { monitor.observe(pump(k), now: clock + 200, into: &alerts); k += 1 }
                clock += 1000
                monitor.tick(now: clock, into: &alerts)
            }
        }
        run(seconds: 600, reporting: true)
        XCTAssertEqual(alerts.map(\.message), [], "a twin keeping its own pace is not stale")
        run(seconds: 300, reporting: false)
        XCTAssertEqual(alerts.map(\.status), [.raised], "silent for 5 minutes: one episode")
        XCTAssertEqual(alerts.first?.kind, .stale)
        XCTAssertEqual(alerts.first?.window, 10_000, "judged by its pace of 10 s")
        XCTAssertTrue(alerts.first?.message.contains("its own pace of 10 s (the model declares 1 s)") == true, alerts.first?.message ?? "")
        run(seconds: 600, reporting: true)
        XCTAssertEqual(alerts.map(\.status), [.raised, .resolved], "resolved by the next reading, not raised again on the following gaps")
        XCTAssertEqual(alerts.last?.eventTime, Fixtures.start + 900_000 + 200)
    }

    /// A reference window taken while the asset warms up from cold (humidity settling from 53 % to
    /// 45 % with a 10-minute time constant) made data drift fire once the warm-up was over; after the
    /// default settle period (DRIFT_SETTLE, 1 h of event time) the reference is the settled asset.
    func testDataDriftWaitsForTheSettlePeriodBeforeItsReference() {
        func alerts(settleMs: Int64) -> [DriftAlert] {
            var s = DriftSettings()
            s.evalEvery = 25
            s.settleMs = settleMs
            var monitor = DriftMonitor(settings: s, plans: Fixtures.plans(s))
            var random = SeededRandom(seed: Fixtures.seed &+ 11)
            var out: [DriftAlert] = []
            for k in 0..<900 {
                let t = Double(k) * 10  // a reading every 10 s for 2.5 h
                let humidity = 45 + 8 * exp(-t / 600) + 0.5 * random.normal()
                let r = Reading(tenant: "acme", twinId: "room-1", eventId: "e\(k)", eventTime: Fixtures.start + Int64(t * 1000), model: "room@1",
                                values: ["humidity": .double(humidity)])
                monitor.observe(r, now: r.eventTime, into: &out)
            }
            return out.filter { $0.kind == .data }
        }
        XCTAssertGreaterThan(alerts(settleMs: 0).filter { $0.status == .raised }.count, 0, "seed \(Fixtures.seed): a reference taken at once sees the warm-up")
        XCTAssertEqual(alerts(settleMs: DriftSettings().settleMs).map(\.message), [], "seed \(Fixtures.seed)")
        XCTAssertEqual(DriftSettings().settleMs, 3_600_000)
    }

    /// A drift.state document written before the observed reporting gaps and the settle period
    /// existed (no `gaps`, no `settleUntil` in its monitor object) still restores, and the twin goes on
    /// as the one that wrote it (its settle period long over, its windows as they were).
    func testAStateDocumentWithoutGapsOrSettleRestores() throws {
        var s = DriftSettings()
        s.evalEvery = 40
        let plans = Fixtures.plans(s)
        var original = DriftMonitor(settings: s, plans: plans)
        var room = SyntheticRoom(twinId: "room-1", seed: Fixtures.seed &+ 5)
        let readings = room.readings(400)
        _ = original.run(Array(readings[..<200]))
        let saved = try XCTUnwrap(original.document(key: key, now: 42)).encoded()
        guard case .object(var document) = try JSON(parsing: saved), case .object(var monitor)? = document["monitor"] else { return XCTFail("no monitor object") }
        XCTAssertNotNil(monitor["gaps"])
        XCTAssertNotNil(monitor["settleUntil"])
        monitor["gaps"] = nil
        monitor["settleUntil"] = nil
        document["monitor"] = .object(monitor)
        var restored = DriftMonitor(settings: s, plans: plans)
        try restored.restore(bytes: JSON.object(document).serialized())
        XCTAssertTrue(restored.holds(key))
        XCTAssertEqual(restored.run(Array(readings[200...])), original.run(Array(readings[200...])), "seed \(Fixtures.seed): it goes on as the twin it was")
        XCTAssertEqual(restored.lastEventTime(key), readings.last?.eventTime)
    }
}
