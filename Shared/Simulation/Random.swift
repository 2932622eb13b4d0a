#if canImport(Glibc)
import Glibc
#else
import Foundation
#endif

/// The per-sample random generator: xoshiro256** (Blackman & Vigna) with its state filled by
/// SplitMix64 from a hash of `(seed, index)`. Sample `i` of a Monte Carlo draws from its own
/// generator, so any shard can compute any sample without the ones before it, and a run is
/// reproducible bit for bit from its seed. Not for secrets.
public struct SampleRandom: RandomNumberGenerator, Sendable {
    private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64

    /// The generator of sample `index` of the run seeded with `seed`.
    public init(seed: UInt64, index: Int) {
        var sm = SampleRandom.mix(seed ^ SampleRandom.mix(UInt64(truncatingIfNeeded: index) &+ 0x6A09_E667_F3BC_C909))
        func next() -> UInt64 {
            sm &+= 0x9E37_79B9_7F4A_7C15
            return SampleRandom.mix(sm)
        }
        s0 = next(); s1 = next(); s2 = next(); s3 = next()
        if s0 | s1 | s2 | s3 == 0 { s0 = 1 }
    }

    /// SplitMix64's output function.
    @inline(__always)
    static func mix(_ z: UInt64) -> UInt64 {
        var z = z
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Next 64 random bits.
    public mutating func next() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = s3 << 45 | s3 >> 19
        return result
    }

    /// Uniform in the open interval (0, 1) (never 0, so `log` is safe).
    public mutating func unit() -> Double { (Double(next() >> 11) + 0.5) * 0x1p-53 }

    /// Standard normal by Box–Muller (one value per pair of uniforms: simpler to keep
    /// reproducible under redraws than caching the second value).
    public mutating func normal() -> Double {
        let u1 = unit(), u2 = unit()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }
}

/// A distribution of an uncertain parameter, input or initial state.
public enum Distribution: Sendable, Codable, Equatable {
    /// Normal with mean and standard deviation (`normal: [mean, sd]`).
    case normal(mean: Double, sd: Double)
    /// Uniform on [low, high] (`uniform: [low, high]`).
    case uniform(low: Double, high: Double)
    /// exp(N(mu, sigma²)): `mu` and `sigma` of the underlying normal (`lognormal: [mu, sigma]`).
    case lognormal(mu: Double, sigma: Double)

    /// Throws `invalid_distribution` for non-finite arguments, sd/sigma < 0 or low > high.
    public func validate(_ name: String) throws(SimulationError) {
        let ok: Bool
        switch self {
        case .normal(let m, let s): ok = m.isFinite && s.isFinite && s >= 0
        case .uniform(let lo, let hi): ok = lo.isFinite && hi.isFinite && lo <= hi
        case .lognormal(let m, let s): ok = m.isFinite && s.isFinite && s >= 0
        }
        if !ok { throw SimulationError(.invalidDistribution, "distribution of \"\(name)\" is invalid: \(self)") }
    }

    /// One draw.
    @inline(__always)
    func draw(_ g: inout SampleRandom) -> Double {
        switch self {
        case .normal(let m, let s): return m + s * g.normal()
        case .uniform(let lo, let hi): return lo + (hi - lo) * g.unit()
        case .lognormal(let m, let s): return exp(m + s * g.normal())
        }
    }

    /// Probability that a draw lies in [lo, hi] (nil ends unbounded): a planner refuses a
    /// distribution that lies almost entirely outside the model's range before running anything.
    public func mass(min lo: Double?, max hi: Double?) -> Double {
        func cdf(_ x: Double?, _ upper: Bool) -> Double {
            guard let x else { return upper ? 1 : 0 }
            switch self {
            case .normal(let m, let s):
                if s == 0 { return x >= m ? 1 : 0 }
                return 0.5 * erfc(-(x - m) / (s * 2.0.squareRoot()))
            case .uniform(let a, let b):
                if a == b { return x >= a ? 1 : 0 }
                return Swift.min(1, Swift.max(0, (x - a) / (b - a)))
            case .lognormal(let m, let s):
                if x <= 0 { return 0 }
                if s == 0 { return log(x) >= m ? 1 : 0 }
                return 0.5 * erfc(-(log(x) - m) / (s * 2.0.squareRoot()))
            }
        }
        let point: Double?
        switch self {
        case .normal(let m, let s): point = s == 0 ? m : nil
        case .uniform(let a, let b): point = a == b ? a : nil
        case .lognormal(let m, let s): point = s == 0 ? exp(m) : nil
        }
        if let p = point { return (lo.map { p >= $0 } ?? true) && (hi.map { p <= $0 } ?? true) ? 1 : 0 }
        return Swift.max(0, cdf(hi, true) - cdf(lo, false))
    }
}
