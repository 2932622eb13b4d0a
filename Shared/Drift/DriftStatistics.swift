import Foundation

/// Two-sample drift statistics computed exactly as Evidently (with NumPy/SciPy) computes them, so that a
/// twin's data-drift verdict matches what a data scientist sees in an Evidently report on the same windows.
///
/// Every function takes plain arrays of finite values (the windows filter out the rest) in any order and
/// returns NaN if either sample is empty.
public enum DriftStatistics {
    /// Per-bin shares of the reference and current samples, binned as Evidently's `get_binned_data` does.
    public struct Binned: Sendable, Equatable {
        /// Share of the reference sample in each bin.
        public var reference: [Double]
        /// Share of the current sample in each bin.
        public var current: [Double]
        /// Bin edges (Sturges) or nil when the values themselves are the categories.
        public var edges: [Double]?
    }

    /// Evidently's binning of a numerical column.
    ///
    /// If the reference has more than `categoricalUniqueLimit` distinct values (Evidently: 20), bins are
    /// NumPy's Sturges bins over reference and current together (`np.histogram_bin_edges(concat, "sturges")`,
    /// i.e. ⌈range / (range / (log₂ N + 1))⌉ equal-width bins, right edge of the last bin included); otherwise
    /// every distinct value of either sample is its own category. With `fillZeroes` (used by PSI, not by
    /// Jensen–Shannon), empty bins get 1e-4, or the smallest non-zero share / 10⁶ if that share is ≤ 1e-4,
    /// so that the logarithms stay finite.
    public static func binned(reference: [Double], current: [Double], fillZeroes: Bool,
                              categoricalUniqueLimit: Int = 20) -> Binned {
        let ref = reference.sorted()
        let cur = current.sorted()
        var result: Binned
        if distinctCount(sorted: ref) > categoricalUniqueLimit {
            let edges = sturgesEdges(min: Swift.min(ref[0], cur[0]), max: Swift.max(ref[ref.count - 1], cur[cur.count - 1]),
                                     count: ref.count + cur.count)
            result = Binned(reference: histogramShares(sorted: ref, edges: edges),
                            current: histogramShares(sorted: cur, edges: edges), edges: edges)
        } else {
            var keys = Set(ref)
            keys.formUnion(cur)
            let sortedKeys = keys.sorted()
            result = Binned(reference: categoryShares(sorted: ref, keys: sortedKeys),
                            current: categoryShares(sorted: cur, keys: sortedKeys), edges: nil)
        }
        if fillZeroes {
            fillEmpty(&result.reference)
            fillEmpty(&result.current)
        }
        return result
    }

    /// NumPy's Sturges bin edges for data spanning [min, max] with `count` values.
    public static func sturgesEdges(min lo: Double, max hi: Double, count: Int) -> [Double] {
        var first = lo, last = hi
        if first == last {
            first -= 0.5
            last += 0.5
        }
        let width = (hi - lo) / (log2(Double(count)) + 1.0)
        let bins = width != 0 ? Int(((last - first) / width).rounded(.up)) : 1
        let delta = last - first
        let step = delta / Double(bins)
        var edges = [Double](repeating: 0, count: bins + 1)
        for i in 0...bins {
            edges[i] = step == 0 ? Double(i) / Double(bins) * delta + first : Double(i) * step + first
        }
        edges[bins] = last
        return edges
    }

    /// Population stability index, Evidently's `psi`: Σ (ref% − cur%) · ln(ref% / cur%) over `binned` shares
    /// with empty bins filled. Evidently's default drift threshold is 0.1.
    public static func populationStabilityIndex(reference: [Double], current: [Double],
                                                categoricalUniqueLimit: Int = 20) -> Double {
        guard !reference.isEmpty, !current.isEmpty else { return .nan }
        let b = binned(reference: reference, current: current, fillZeroes: true,
                       categoricalUniqueLimit: categoricalUniqueLimit)
        var psi = 0.0
        for i in b.reference.indices {
            psi += (b.reference[i] - b.current[i]) * log(b.reference[i] / b.current[i])
        }
        return psi
    }

    /// Jensen–Shannon distance between the `binned` shares (no zero filling), as
    /// `scipy.spatial.distance.jensenshannon(ref%, cur%, base)`. Evidently passes base 2 (range [0, 1]).
    public static func jensenShannonDistance(reference: [Double], current: [Double], base: Double = 2,
                                             categoricalUniqueLimit: Int = 20) -> Double {
        guard !reference.isEmpty, !current.isEmpty else { return .nan }
        let b = binned(reference: reference, current: current, fillZeroes: false,
                       categoricalUniqueLimit: categoricalUniqueLimit)
        let sp = b.reference.reduce(0, +), sq = b.current.reduce(0, +)
        var left = 0.0, right = 0.0
        for i in b.reference.indices {
            let p = b.reference[i] / sp, q = b.current[i] / sq
            let m = (p + q) / 2.0
            if p > 0 { left += p * log(p / m) }
            if q > 0 { right += q * log(q / m) }
        }
        var js = left + right
        if base.isFinite && base > 0 && base != M_E { js /= log(base) }
        return Swift.max(js / 2.0, 0).squareRoot()
    }

    /// Two-sample Kolmogorov–Smirnov statistic D = sup |F_ref − F_cur| and its two-sided asymptotic p-value,
    /// exactly as `scipy.stats.ks_2samp(ref, cur, method="asymp")`: p = `kstwo.sf(D, round(m·n/(m+n)))`
    /// (rounding half to even, like NumPy).
    ///
    /// Note: Evidently calls `ks_2samp` with SciPy's default `method="auto"`, which is *exact* when both
    /// samples have at most 10,000 values; the asymptotic p-value differs from it mostly for small samples.
    public static func kolmogorovSmirnov(reference: [Double], current: [Double]) -> (statistic: Double, pValue: Double) {
        guard !reference.isEmpty, !current.isEmpty else { return (.nan, .nan) }
        let a = reference.sorted(), b = current.sorted()
        let n1 = Double(a.count), n2 = Double(b.count)
        var i = 0, j = 0
        var maxDiff = -Double.infinity, minDiff = Double.infinity
        while i < a.count || j < b.count {
            let v: Double
            if j >= b.count || (i < a.count && a[i] <= b[j]) { v = a[i] } else { v = b[j] }
            while i < a.count && a[i] <= v { i += 1 }
            while j < b.count && b[j] <= v { j += 1 }
            let diff = Double(i) / n1 - Double(j) / n2
            if diff > maxDiff { maxDiff = diff }
            if diff < minDiff { minDiff = diff }
        }
        let minS = Swift.min(Swift.max(-minDiff, 0), 1)
        let d = minS > maxDiff ? minS : maxDiff
        let m = Swift.max(n1, n2), n = Swift.min(n1, n2)
        let en = (m * n / (m + n)).rounded(.toNearestOrEven)
        let p = Kolmogorov.survival(n: Int(en), d: d)
        return (d, Swift.min(Swift.max(p, 0), 1))
    }

    /// First Wasserstein (earth mover's) distance between the two empirical distributions,
    /// `scipy.stats.wasserstein_distance(u, v)`: ∫ |F_u − F_v| dx.
    public static func wassersteinDistance(_ u: [Double], _ v: [Double]) -> Double {
        guard !u.isEmpty, !v.isEmpty else { return .nan }
        let a = u.sorted(), b = v.sorted()
        let na = Double(a.count), nb = Double(b.count)
        var i = 0, j = 0  // merge pointers
        var ca = 0, cb = 0  // counts ≤ current value
        var previous = 0.0
        var havePrevious = false
        var distance = 0.0
        while i < a.count || j < b.count {
            let x: Double
            if j >= b.count || (i < a.count && a[i] <= b[j]) { x = a[i]; i += 1 } else { x = b[j]; j += 1 }
            if havePrevious {
                distance += abs(Double(ca) / na - Double(cb) / nb) * (x - previous)
            }
            // Counts of values ≤ x (searchsorted 'right' of the merged value).
            while ca < a.count && a[ca] <= x { ca += 1 }
            while cb < b.count && b[cb] <= x { cb += 1 }
            previous = x
            havePrevious = true
        }
        return distance
    }

    /// Evidently's normalised Wasserstein distance: `wasserstein_distance(ref, cur) / max(std(ref), 0.001)`,
    /// with NumPy's default population standard deviation (ddof = 0). Evidently's default threshold is 0.1.
    public static func normalisedWasserstein(reference: [Double], current: [Double]) -> Double {
        guard !reference.isEmpty, !current.isEmpty else { return .nan }
        let norm = Swift.max(populationStandardDeviation(reference), 0.001)
        return wassersteinDistance(reference, current) / norm
    }

    /// Population standard deviation (ddof = 0, as `np.std`), two-pass for accuracy.
    public static func populationStandardDeviation(_ x: [Double]) -> Double {
        guard !x.isEmpty else { return .nan }
        let mean = x.reduce(0, +) / Double(x.count)
        var s = 0.0
        for v in x { s += (v - mean) * (v - mean) }
        return (s / Double(x.count)).squareRoot()
    }

    // MARK: - helpers

    static func distinctCount(sorted x: [Double]) -> Int {
        guard !x.isEmpty else { return 0 }
        var n = 1
        for i in 1..<x.count where x[i] != x[i - 1] { n += 1 }
        return n
    }

    /// First index whose value is ≥ v (NumPy `searchsorted(side="left")`).
    static func lowerBound(_ x: [Double], _ v: Double) -> Int {
        var lo = 0, hi = x.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if x[mid] < v { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// First index whose value is > v (NumPy `searchsorted(side="right")`).
    static func upperBound(_ x: [Double], _ v: Double) -> Int {
        var lo = 0, hi = x.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if x[mid] <= v { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// `np.histogram(x, edges)[0] / len(x)`: bins [eᵢ, eᵢ₊₁), the last one closed.
    static func histogramShares(sorted x: [Double], edges: [Double]) -> [Double] {
        let bins = edges.count - 1
        var cumulative = [Int](repeating: 0, count: edges.count)
        for i in 0..<bins { cumulative[i] = lowerBound(x, edges[i]) }
        cumulative[bins] = upperBound(x, edges[bins])
        let n = Double(x.count)
        return (0..<bins).map { Double(cumulative[$0 + 1] - cumulative[$0]) / n }
    }

    static func categoryShares(sorted x: [Double], keys: [Double]) -> [Double] {
        let n = Double(x.count)
        return keys.map { Double(upperBound(x, $0) - lowerBound(x, $0)) / n }
    }

    static func fillEmpty(_ shares: inout [Double]) {
        guard let smallest = shares.filter({ $0 != 0 }).min() else { return }
        let fill = smallest <= 0.0001 ? smallest / 1_000_000 : 0.0001
        for i in shares.indices where shares[i] == 0 { shares[i] = fill }
    }
}
