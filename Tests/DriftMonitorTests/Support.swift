import Contracts
import DriftMonitor
import Foundation
import JSON
import Models
import TestSupport
import XCTest

/// Models, seeded randomness and the synthetic room the monitor tests share.
enum Fixtures {
    static let modelsDirectory: String = {
        URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Schemas/models").path
    }()

    static let registry: ModelRegistry = {
        do { return try ModelRegistry(directory: modelsDirectory) } catch { fatalError("cannot load \(modelsDirectory): \(error)") }
    }()

    /// 2026-11-21T00:00:00Z.
    static let start: Int64 = 1_795_219_200_000

    /// One seed for every seeded test; `DRIFT_SEED` replays another.
    static let seed: UInt64 = ProcessInfo.processInfo.environment["DRIFT_SEED"].flatMap { UInt64($0) } ?? 20_261_121

    static func plans(_ settings: DriftSettings) -> ModelPlans { ModelPlans(registry: registry, settings: settings) }
}

/// `SyntheticRoomSeries` (TestSupport) as the monitor's readings of twin `twinId` (model room@1).
struct SyntheticRoom {
    var twinId: String
    var series: SyntheticRoomSeries

    init(twinId: String, seed: UInt64, tau: Double = 7200, tauAfter: Double? = nil, changeAt: Int = .max) {
        self.twinId = twinId
        series = SyntheticRoomSeries(seed: seed, tau: tau, tauAfter: tauAfter, changeAt: changeAt)
    }

    /// Readings 0..<count.
    mutating func readings(_ count: Int, tenant: String = "acme") -> [Reading] {
        series.points(count, start: Fixtures.start).enumerated().map { k, p in
            Reading(tenant: tenant, twinId: twinId, eventId: "\(twinId)-\(k)", eventTime: p.eventTime, model: "room@1",
                    values: ["temperature": .double(p.temperature), "hvacPower": .double(p.hvacPower)])
        }
    }
}

extension DriftMonitor {
    /// Feeds readings (clock = each reading's event time plus a second) and returns the alerts.
    mutating func run(_ readings: [Reading], directory: TwinDirectory? = nil) -> [DriftAlert] {
        var alerts: [DriftAlert] = []
        for r in readings { observe(r, twin: directory?.info(r.key), now: r.eventTime + 1_000, into: &alerts) }
        return alerts
    }
}
