import Contracts
import JSON
import ServiceKit
@testable import Views
import XCTest

/// The alert view is bounded by bytes as well as by count: a storm of long stories cannot fill the
/// query API's memory (a flapping soak held ~600 MiB of episodes under the count bound alone).
final class AlertEpisodesTests: XCTestCase {
    /// A raised residual episode of twin `twinId` at `at`, its story `steps` steps long.
    func alert(_ n: Int, at: Int64, steps: Int = 3) -> DriftAlert {
        let text = String(repeating: "the residual of pump-\(n) averages +3σ; ", count: 4)
        return DriftAlert(alertId: "a\(n)", status: .raised, kind: .residual, tenant: "acme", twinId: "pump-\(n)", model: "pump@1",
                          property: "casingTemperature", detector: "adwin", statistic: 3, threshold: 0.5, window: 100, eventTime: at,
                          message: text, story: (0..<steps).map { _ in DriftAlert.Step(step: "detected", at: at, message: text, details: ["meanSigma": .double(3)]) })
    }

    func testAByteBudgetKeepsTheNewestEpisodesAndEvictsTheOldestFirstAndSaysSo() throws {
        let one = alert(0, at: 0).encoded()
        let perEpisode = AlertEpisodes.Episode(alert: alert(0, at: 0), bytes: one, raisedAt: 0).estimatedBytes
        XCTAssertGreaterThan(perEpisode, 2 * one.count, "the decoded alert is counted too, not only the message")
        var limits = QueryViews.Limits()
        limits.alertBytes = 10 * perEpisode + perEpisode / 2
        let views = QueryViews(limits: limits)
        let metrics = MetricsRegistry()
        views.registerMetrics(metrics)
        for n in 0..<25 {
            let a = alert(n, at: Int64(n) * 1_000)
            views.alerts.apply(a, bytes: a.encoded())
            XCTAssertLessThanOrEqual(views.alerts.sizes.bytes, limits.alertBytes, "after episode \(n)")
        }
        let sizes = views.alerts.sizes
        XCTAssertEqual(sizes.episodes, 10)
        XCTAssertEqual(sizes.evictedByBytes, 15)
        XCTAssertEqual(sizes.evictedByCount, 0)
        XCTAssertEqual(views.alerts.list(.init(tenant: "acme", limit: 100)).items.map(\.alert.alertId), (15..<25).reversed().map { "a\($0)" },
                       "the newest ten are kept, the oldest received went first")
        let text = metrics.render()
        XCTAssertTrue(text.contains("twinstream_view_alert_bytes \(sizes.bytes)"), text)
        XCTAssertTrue(text.contains(#"twinstream_view_alerts_evicted{reason="bytes"} 15"#), text)
        XCTAssertTrue(text.contains(#"twinstream_view_alerts_evicted{reason="count"} 0"#), text)

        // An episode whose story grows (an update) counts its new size, and may push out the oldest.
        let grown = alert(24, at: 24_000, steps: 12)
        views.alerts.apply(grown, bytes: grown.encoded())
        XCTAssertLessThanOrEqual(views.alerts.sizes.bytes, limits.alertBytes)
        XCTAssertEqual(views.alerts.list(.init(tenant: "acme", twinId: "pump-24")).items.first?.alert.story.count, 12)
        XCTAssertGreaterThan(views.alerts.sizes.evictedByBytes, 15)
        XCTAssertNil(views.alerts.list(.init(tenant: "acme", twinId: "pump-15")).items.first, "the oldest made room for it")
    }

    func testTheCountBoundStillHoldsAndAnEpisodeLargerThanTheBudgetIsStillShown() {
        let byCount = AlertEpisodes(capacity: 3, maxBytes: 1 << 30)
        for n in 0..<5 { let a = alert(n, at: Int64(n)); byCount.apply(a, bytes: a.encoded()) }
        XCTAssertEqual(byCount.sizes.episodes, 3)
        XCTAssertEqual(byCount.sizes.evictedByCount, 2)
        XCTAssertEqual(byCount.sizes.evictedByBytes, 0)
        XCTAssertEqual(byCount.list(.init(tenant: "acme")).items.map(\.alert.alertId), ["a4", "a3", "a2"])

        // A budget smaller than one episode still keeps the newest (an empty list would hide the storm).
        let tiny = AlertEpisodes(capacity: 100, maxBytes: 1_024)
        for n in 0..<3 { let a = alert(n, at: Int64(n)); tiny.apply(a, bytes: a.encoded()) }
        XCTAssertEqual(tiny.list(.init(tenant: "acme")).items.map(\.alert.alertId), ["a2"])
        XCTAssertEqual(tiny.sizes.evictedByBytes, 2)
    }
}
