import Contracts
import DriftMonitor
import Foundation
import JSON
import Models
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

/// The project's SplitMix64 with a Box–Muller normal: reproducible streams; failures print the seed.
struct SeededRandom {
    private var generator: SplitMix64
    private var spare: Double?
    init(seed: UInt64) { generator = SplitMix64(seed: seed) }

    mutating func next() -> UInt64 { generator.next() }

    mutating func normal() -> Double {
        if let s = spare { spare = nil; return s }
        let u1 = max(generator.nextUnit(), 1e-300), u2 = generator.nextUnit()
        let r = (-2 * log(u1)).squareRoot()
        spare = r * sin(2 * .pi * u2)
        return r * cos(2 * .pi * u2)
    }
}

/// A room reporting once a minute of event time: its real temperature follows
/// dT/dt = (Ta − T)/tau + P/C exactly (closed form between readings), its HVAC power changes
/// every 20–60 minutes among a few levels (so the temperature moves and tau matters), and its
/// sensor adds normal noise. The real `tau` becomes `tauAfter` from reading `changeAt` on.
struct SyntheticRoom {
    var twinId: String
    var tau = 7200.0
    var tauAfter = 7200.0
    var changeAt = Int.max
    var C = 5e6
    var Ta = 10.0
    var noise = 0.05
    var intervalMs: Int64 = 60_000
    var random: SeededRandom

    init(twinId: String, seed: UInt64, tau: Double = 7200, tauAfter: Double? = nil, changeAt: Int = .max) {
        self.twinId = twinId
        self.tau = tau
        let tauAfter = tauAfter ?? tau
        self.tauAfter = tauAfter
        self.changeAt = changeAt
        random = SeededRandom(seed: seed)
    }

    /// Readings 0..<count: (reading, event time).
    mutating func readings(_ count: Int, tenant: String = "acme") -> [Reading] {
        var out: [Reading] = []
        var T = 20.0
        var P = 6000.0
        var nextSwitch = 0
        for k in 0..<count {
            if k == nextSwitch {
                P = [4000.0, 6000, 8000, 10000][Int(random.next() % 4)]
                nextSwitch = k + 20 + Int(random.next() % 41)
            }
            let t = Fixtures.start + Int64(k) * intervalMs
            let observed = T + noise * random.normal()
            out.append(Reading(tenant: tenant, twinId: twinId, eventId: "\(twinId)-\(k)", eventTime: t, model: "room@1",
                               values: ["temperature": .double(observed), "hvacPower": .double(P)]))
            let tau = k >= changeAt ? tauAfter : self.tau
            let teq = Ta + P * tau / C
            T = teq + (T - teq) * exp(-Double(intervalMs) / 1000 / tau)
        }
        return out
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
