import Contracts
import Foundation

/// The project's SplitMix64 with a Box–Muller normal: reproducible streams; failures print the seed.
public struct SeededRandom {
    private var generator: SplitMix64
    private var spare: Double?
    public init(seed: UInt64) { generator = SplitMix64(seed: seed) }

    public mutating func next() -> UInt64 { generator.next() }

    public mutating func normal() -> Double {
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
/// sensor adds normal noise. The real `tau` becomes `tauAfter` from reading `changeAt` on. The
/// drift monitor's tests feed it in process, the end-to-end tests publish it.
public struct SyntheticRoomSeries {
    /// One reading: event time (from `start`), observed temperature, HVAC power.
    public struct Point: Sendable {
        public var eventTime: Int64
        public var temperature: Double
        public var hvacPower: Double
    }

    public var tau: Double
    public var tauAfter: Double
    public var changeAt: Int
    public var C = 5e6
    public var Ta = 10.0
    public var noise = 0.05
    public var intervalMs: Int64 = 60_000
    public var random: SeededRandom

    public init(seed: UInt64, tau: Double = 7200, tauAfter: Double? = nil, changeAt: Int = .max) {
        self.tau = tau
        self.tauAfter = tauAfter ?? tau
        self.changeAt = changeAt
        random = SeededRandom(seed: seed)
    }

    /// Readings 0..<count from event time `start`.
    public mutating func points(_ count: Int, start: Int64) -> [Point] {
        var out: [Point] = []
        var T = 20.0
        var P = 6000.0
        var nextSwitch = 0
        for k in 0..<count {
            if k == nextSwitch {
                P = [4000.0, 6000, 8000, 10000][Int(random.next() % 4)]
                nextSwitch = k + 20 + Int(random.next() % 41)
            }
            out.append(Point(eventTime: start + Int64(k) * intervalMs, temperature: T + noise * random.normal(), hvacPower: P))
            let tau = k >= changeAt ? tauAfter : self.tau
            let teq = Ta + P * tau / C
            T = teq + (T - teq) * exp(-Double(intervalMs) / 1000 / tau)
        }
        return out
    }
}
