import Contracts
import Foundation
import JSON
import Kafka
import ServiceKit
import TestSupport
import XCTest
@testable import DriftMonitor

/// A condition that goes out, back in and out again is one episode: an open residual or data
/// episode resolves only after `DRIFT_RESOLVE_AFTER` of event time clear, and going out meanwhile
/// continues it (same alertId, one `updated` step `recurred` at most). Seeded (`DRIFT_SEED`), the
/// clock is the readings' event time.
final class FlapTests: XCTestCase {
    let key = "acme/room-4"
    let minute: Int64 = 60_000

    func settings(holdMinutes: Int64 = 60) -> DriftSettings {
        var s = DriftSettings()
        s.recalibration.defaultMode = .off
        s.evalEvery = 0
        s.resolveWindow = 30
        s.resolveAfterMs = holdMinutes * 60_000
        return s
    }

    /// A room read every minute whose temperature sensor reads 2 °C high during `offsets` (reading
    /// ranges): out of band while it does (and at each edge), in band between.
    func readings(_ count: Int, offsets: [Range<Int>]) -> [Reading] {
        var room = SyntheticRoom(twinId: "room-4", seed: Fixtures.seed &+ 11)
        var readings = room.readings(count)
        for range in offsets {
            for k in range where k < count {
                readings[k].values["temperature"] = .double(readings[k].values["temperature"]!.doubleValue! + 2)
            }
        }
        return readings
    }

    func describe(_ alerts: [DriftAlert]) -> String {
        "seed \(Fixtures.seed): " + alerts.map { "\($0.status) \($0.alertId) at \(Timestamp.format($0.eventTime))" }.joined(separator: ", ")
    }

    /// Out an hour, in an hour, out, in, out, then in for good, with a 60-minute hold (resolution
    /// blocks of 30 readings): one episode (one raised, one updated when it first recurred, one
    /// resolved an hour after the end), where resolving at once gives a new episode per excursion.
    func testAResidualGoingOutAndInWithinTheHoldIsOneEpisodeResolvedOnceAfterTheHold() {
        let series = readings(1_200, offsets: [600..<660, 720..<780, 840..<900])
        var monitor = DriftMonitor(settings: settings(), plans: Fixtures.plans(settings()))
        let alerts = monitor.run(series)
        XCTAssertEqual(alerts.map(\.status), [.raised, .updated, .resolved], describe(alerts))
        XCTAssertEqual(Set(alerts.map(\.alertId)).count, 1, describe(alerts))
        XCTAssertGreaterThanOrEqual(monitor.counters.residualFlaps, 2, "it went out again at least at 720 and 840 (\(describe(alerts)))")
        XCTAssertEqual(monitor.counters.dataFlaps, 0)
        guard let resolved = alerts.last, alerts.count == 3 else { return }
        XCTAssertEqual(resolved.story.map(\.step), ["detected", "recurred", "resolved"])
        XCTAssertTrue(alerts[1].story.last!.message.contains("further flaps are counted"), alerts[1].story.last!.message)
        let lastExcursionEnds = Fixtures.start + 900 * minute
        XCTAssertGreaterThanOrEqual(resolved.eventTime, lastExcursionEnds + 60 * minute, describe(alerts))
        XCTAssertLessThanOrEqual(resolved.eventTime, lastExcursionEnds + 130 * minute, "the edge's residual, the hold, and a block or two (\(describe(alerts)))")
        XCTAssertEqual(resolved.story.last?.details["flaps"]?.intValue, monitor.counters.residualFlaps)
        XCTAssertTrue(resolved.message.contains("Resolved after") && resolved.message.contains("one episode all along"), resolved.message)

        // Without the hold the same readings flap: a new episode each time the residual goes out again.
        var atOnce = DriftMonitor(settings: settings(holdMinutes: 0), plans: Fixtures.plans(settings(holdMinutes: 0)))
        let flapping = atOnce.run(series)
        XCTAssertGreaterThanOrEqual(Set(flapping.map(\.alertId)).count, 2, describe(flapping))
        XCTAssertEqual(atOnce.counters.residualFlaps, 0)
        print("flapping residual, seed \(Fixtures.seed): with a 60-min hold \(alerts.count) messages, 1 episode, \(monitor.counters.residualFlaps) flaps; "
              + "resolving at once \(flapping.count) messages, \(Set(flapping.map(\.alertId)).count) episodes")
    }

    /// The monitor service counts the flaps in `/metrics` (`twinstream_drift_alert_flaps_total{kind}`)
    /// and publishes three messages for the flapping episode.
    func testTheFlapsAreCountedInTheMetrics() {
        let s = settings()
        let metrics = MetricsRegistry()
        let plans = Fixtures.plans(s)
        let store = DriftMonitorStore(settings: s, plans: plans, directory: TwinDirectory(plans: plans), readState: nil,
                                      logger: Logger(service: "drift-monitor", sink: .discard), metrics: metrics)
        var published = 0
        for (k, r) in readings(1_200, offsets: [600..<660, 720..<780, 840..<900]).enumerated() {
            let e = TelemetryEnvelope(eventId: r.eventId, tenant: r.tenant, twinId: r.twinId, model: r.model, eventTime: r.eventTime, ingestTime: r.eventTime,
                                      source: .kafka(topic: Topic.telemetryRaw.name, partition: 0, offset: Int64(k)), values: r.values)
            let message = KafkaMessage(topic: Topic.telemetryValid.name, partition: 0, offset: Int64(k), key: Array(e.key.utf8), value: e.encoded(),
                                       headers: [KafkaHeader(MessageHeader.tenant, "acme")])
            published += store.process(message, now: r.eventTime + 1_000).filter { $0.topic == Topic.driftAlerts.name }.count
            _ = store.finishBatch(now: r.eventTime + 1_000)
        }
        let text = metrics.render()
        let flaps = text.split(separator: "\n").first { $0.hasPrefix(#"twinstream_drift_alert_flaps_total{kind="residual"} "#) }
        XCTAssertGreaterThanOrEqual(flaps.flatMap { Int($0.split(separator: " ").last!) } ?? 0, 2, text)
        XCTAssertTrue(text.contains(#"twinstream_drift_alert_flaps_total{kind="data"} 0"#), text)
        XCTAssertEqual(published, 3, "raised, updated (recurred), resolved")
    }

    /// One excursion, then clear for good: nothing resolves before the hold is over, then exactly
    /// one `resolved` at its end (the first resolution block past it), with no `updated`.
    func testAResidualThatStaysClearResolvesOnceAtTheEndOfTheHold() {
        let series = readings(1_000, offsets: [600..<700])
        var monitor = DriftMonitor(settings: settings(), plans: Fixtures.plans(settings()))
        let early = monitor.run(Array(series[..<765]))
        XCTAssertEqual(early.map(\.status), [.raised], "still within the hour's hold after the offset ended at 700: \(describe(early))")
        let rest = monitor.run(Array(series[765...]))
        XCTAssertEqual(rest.map(\.status), [.resolved], describe(rest))
        XCTAssertEqual(rest.first?.alertId, early.first?.alertId)
        guard let resolved = rest.first else { return }
        let clearMs = try! XCTUnwrap(resolved.story.last?.details["clearForMs"]?.intValue)
        XCTAssertGreaterThanOrEqual(clearMs, 60 * 60_000)
        XCTAssertLessThan(clearMs, 90 * 60_000, "resolved at the first block boundary past the hold")
        XCTAssertLessThanOrEqual(resolved.eventTime, Fixtures.start + 830 * minute, describe(rest))
        XCTAssertEqual(resolved.story.map(\.step), ["detected", "resolved"])
        XCTAssertEqual(monitor.counters.residualFlaps, 0)
    }

    /// The monitor restarts mid-hold (from the twin's `drift.state.v1` document): the restored one
    /// goes on exactly as the one that kept running (same episode, same resolve time, same flaps);
    /// a document written before holds existed (no `hold` in its watches) still restores.
    func testARestartMidHoldContinuesTheSameEpisode() throws {
        let series = readings(1_000, offsets: [600..<660, 720..<780])
        let s = settings()
        var original = DriftMonitor(settings: s, plans: Fixtures.plans(s))
        let before = original.run(Array(series[..<760]))
        XCTAssertEqual(before.map(\.status), [.raised, .updated], "out, in, out again: the hold is running (\(describe(before)))")
        _ = original.run(Array(series[760..<840]))  // out until 780, then clear: a new clear spell is under way
        let saved = try XCTUnwrap(original.document(key: key, now: 0)).encoded()
        guard case .object(let document) = try JSON(parsing: saved), case .object(let monitorObject)? = document["monitor"],
              case .array(let residuals)? = monitorObject["residuals"], case .object(let watch)? = residuals.first else { return XCTFail("no residual watch") }
        XCTAssertNotNil(watch["hold"], "the hold is saved with the twin")

        var restored = DriftMonitor(settings: s, plans: Fixtures.plans(s))
        try restored.restore(bytes: saved)
        let kept = original.run(Array(series[840...])), resumed = restored.run(Array(series[840...]))
        XCTAssertEqual(resumed, kept, "seed \(Fixtures.seed): the restored monitor goes on as the one that kept running")
        XCTAssertEqual(resumed.map(\.status), [.resolved], describe(resumed))
        XCTAssertEqual(resumed.first?.alertId, before.first?.alertId, "the same episode")

        // Older documents have no hold: the open episode restores and starts its hold afresh.
        var old = document, oldMonitor = monitorObject
        oldMonitor["residuals"] = .array(residuals.map { r in
            guard case .object(var o) = r else { return r }
            o["hold"] = nil
            return .object(o)
        })
        old["monitor"] = .object(oldMonitor)
        var fromOld = DriftMonitor(settings: s, plans: Fixtures.plans(s))
        try fromOld.restore(bytes: JSON.object(old).serialized())
        XCTAssertEqual(fromOld.openAlerts(key).map(\.alertId), [before[0].alertId])
        let later = fromOld.run(Array(series[840...]))
        XCTAssertEqual(later.map(\.status), [.resolved], describe(later))
        XCTAssertEqual(later.first?.alertId, before.first?.alertId)
    }

    /// Data drift holds the same way: a humidity sensor stuck, free, stuck again and free for good is
    /// one data episode, resolved once its windows have looked alike for the hold.
    func testADataEpisodeThatComesBackWithinTheHoldIsOneEpisode() {
        var s = DriftSettings()
        s.recalibration.defaultMode = .off
        s.window = 50
        s.evalEvery = 10
        s.resolveAfterMs = 90 * minute
        var monitor = DriftMonitor(settings: s, plans: Fixtures.plans(s))
        var random = SeededRandom(seed: Fixtures.seed &+ 12)
        var alerts: [DriftAlert] = []
        for k in 0..<900 {
            // Reference from reading 60 (the settle hour) to 110; stuck at 51 % for 200..<300 and 400..<460.
            let stuck = (200..<300).contains(k) || (400..<460).contains(k)
            let humidity = stuck ? 51 : 45 + 2 * random.normal()
            let r = Reading(tenant: "acme", twinId: "room-4", eventId: "e\(k)", eventTime: Fixtures.start + Int64(k) * minute, model: "room@1",
                            values: ["humidity": .double(humidity)])
            monitor.observe(r, now: r.eventTime, into: &alerts)
        }
        // Only the first episode is judged: a 50-value KS test may alarm falsely later on (5 %).
        let all = alerts.filter { $0.kind == .data && $0.property == "humidity" }
        let closed = (all.firstIndex { $0.status == .resolved } ?? all.count - 1) + 1
        let humidity = Array(all[..<min(closed, all.count)])
        XCTAssertEqual(humidity.map(\.status), [.raised, .updated, .resolved], describe(all))
        XCTAssertEqual(Set(humidity.map(\.alertId)).count, 1, describe(all))
        XCTAssertGreaterThanOrEqual(monitor.counters.dataFlaps, 1)
        XCTAssertGreaterThanOrEqual(humidity.last?.eventTime ?? 0, Fixtures.start + (460 + 90) * minute, describe(humidity))
        XCTAssertEqual(humidity.last?.story.map(\.step), ["detected", "recurred", "resolved"])
    }

    /// The hold's verdicts in isolation: clear spells, resolve at the hold's end, flaps.
    func testEpisodeHoldJudgesClearSpellsAndFlaps() {
        var hold: EpisodeHold?
        XCTAssertEqual(EpisodeHold.judge(&hold, clear: false, at: 0, holdMs: 100), .open, "out of band with no clear spell: nothing to count")
        XCTAssertNil(hold)
        XCTAssertEqual(EpisodeHold.judge(&hold, clear: true, at: 10, holdMs: 100), .open)
        XCTAssertEqual(EpisodeHold.judge(&hold, clear: true, at: 50, holdMs: 100), .open)
        XCTAssertEqual(EpisodeHold.judge(&hold, clear: false, at: 60, holdMs: 100), .recurred(clearMs: 50))
        XCTAssertEqual(hold, EpisodeHold(clearSince: nil, flaps: 1))
        XCTAssertEqual(EpisodeHold.judge(&hold, clear: true, at: 70, holdMs: 100), .open)
        XCTAssertEqual(EpisodeHold.judge(&hold, clear: true, at: 169, holdMs: 100), .open)
        XCTAssertEqual(EpisodeHold.judge(&hold, clear: true, at: 170, holdMs: 100), .resolve(clearMs: 100))
        var atOnce: EpisodeHold?
        XCTAssertEqual(EpisodeHold.judge(&atOnce, clear: true, at: 5, holdMs: 0), .resolve(clearMs: 0), "no hold: the first clear verdict resolves")
    }

    /// DRIFT_RESOLVE_AFTER: 10 minutes by default, 0 turns the hold off, nonsense is refused.
    func testTheResolveAfterSetting() throws {
        XCTAssertEqual(DriftSettings().resolveAfterMs, 600_000)
        XCTAssertEqual(try DriftSettings.fromEnvironment(EnvironmentReader(["DRIFT_RESOLVE_AFTER": "30m"])).resolveAfterMs, 1_800_000)
        XCTAssertEqual(try DriftSettings.fromEnvironment(EnvironmentReader(["DRIFT_RESOLVE_AFTER": "0"])).resolveAfterMs, 0)
        XCTAssertThrowsError(try DriftSettings.fromEnvironment(EnvironmentReader(["DRIFT_RESOLVE_AFTER": "soon"])))
    }
}
