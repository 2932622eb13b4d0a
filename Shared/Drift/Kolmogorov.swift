import Foundation

/// The two-sided one-sample Kolmogorov–Smirnov distribution, as SciPy evaluates it.
///
/// `ks_2samp(method="asymp")` gives its two-sided p-value as `kstwo.sf(D, round(m·n/(m+n)))`, and SciPy's
/// `kstwo` (in `scipy.stats._ksstats.kolmogn`) picks one of several algorithms by the size of n and n·d²
/// (Simard & L'Ecuyer 2011). To reproduce its p-values to ~1e-12 relative we make the same choices with
/// the same cut-offs: Ruben–Gambino closed forms at the ends, the Durbin matrix method (Marsaglia–Tsang–
/// Wang), Pomeranz's recursion, the Pelz–Good asymptotic series, and 2× the one-sided Smirnov tail.
public enum Kolmogorov {
    private static let e128 = 128
    private static let ep128 = 0x1p128
    private static let em128 = 0x1p-128
    private static let sqrt2Pi = (2 * Double.pi).squareRoot()
    private static let log2Pi = log(2 * Double.pi)
    private static let minLog = -708.0
    private static let smirnovMinLog = -708.3964185322641  // cephes MINLOG = log(DBL_MIN)

    /// P(Dₙ ≥ d): survival function of the two-sided Kolmogorov–Smirnov statistic for sample size `n`
    /// (SciPy's `kstwo.sf(d, n)`). Returns NaN for NaN input or n < 1.
    public static func survival(n: Int, d: Double) -> Double {
        guard n >= 1, !d.isNaN else { return .nan }
        // rv_continuous.sf: at or below the support's lower end 1/(2n) the survival is 1, at or above 1 it is 0.
        if d >= 1.0 { return 0 }
        if d <= 0.5 / Double(n) { return 1 }
        return clip(kolmogn(n, d, cdf: false))
    }

    /// P(Dₙ ≤ d): the distribution function (SciPy's `kstwo.cdf(d, n)`).
    public static func distribution(n: Int, d: Double) -> Double {
        guard n >= 1, !d.isNaN else { return .nan }
        if d >= 1.0 { return 1 }
        if d <= 0.5 / Double(n) { return 0 }
        return clip(kolmogn(n, d, cdf: true))
    }

    @inline(__always) static func clip(_ p: Double) -> Double { min(max(p, 0), 1) }

    @inline(__always) static func select(_ cdfProb: Double, _ sfProb: Double, cdf: Bool) -> Double {
        clip(cdf ? cdfProb : sfProb)
    }

    /// log(n! / nⁿ) by Stirling's series with the n·log n term removed to avoid cancellation.
    static func logNFactorialOverNPowN(_ n: Int) -> Double {
        let coefficients: [Double] = [-2.955065359477124183e-2, 6.4102564102564102564e-3,
                                      -1.9175269175269175269e-3, 8.4175084175084175084e-4,
                                      -5.952380952380952381e-4, 7.9365079365079365079e-4,
                                      -2.7777777777777777778e-3, 8.3333333333333333333e-2]
        let nd = Double(n)
        let rn = 1.0 / nd
        let x = rn / nd
        var poly = 0.0
        for c in coefficients { poly = poly * x + c }
        return log(nd) / 2 - nd + log2Pi / 2 + rn * poly
    }

    /// SciPy's `_kolmogn`: the algorithm choice of Simard & L'Ecuyer.
    static func kolmogn(_ n: Int, _ x: Double, cdf: Bool) -> Double {
        if x >= 1.0 { return select(1.0, 0.0, cdf: cdf) }
        if x <= 0.0 { return select(0.0, 1.0, cdf: cdf) }
        let nd = Double(n)
        let t = nd * x
        if t <= 1.0 {
            if t <= 0.5 { return select(0.0, 1.0, cdf: cdf) }
            let prob: Double
            if n <= 140 {
                var p = 1.0
                let base = 2 * t - 1
                for i in 1...n { p *= Double(i) * (1.0 / nd) * base }
                prob = p
            } else {
                prob = exp(logNFactorialOverNPowN(n) + nd * log(2 * t - 1))
            }
            return select(prob, 1.0 - prob, cdf: cdf)
        }
        if t >= nd - 1 {
            let prob = 2 * pow(1.0 - x, nd)
            return select(1 - prob, prob, cdf: cdf)
        }
        if x >= 0.5 {
            let prob = 2 * smirnov(n, x)
            return select(1.0 - prob, prob, cdf: cdf)
        }
        let nxSquared = t * x
        if n <= 140 {
            if nxSquared <= 0.754693 {
                let prob = durbinMatrix(n, x)
                return select(prob, 1.0 - prob, cdf: cdf)
            }
            if nxSquared <= 4 {
                let prob = pomeranz(n, x)
                return select(prob, 1.0 - prob, cdf: cdf)
            }
            let prob = 2 * smirnov(n, x)
            return select(1.0 - prob, prob, cdf: cdf)
        }
        if !cdf {
            if nxSquared >= 370.0 { return 0.0 }
            if nxSquared >= 2.2 { return clip(2 * smirnov(n, x)) }
        }
        let cdfProb: Double
        if nxSquared >= 18.0 {
            cdfProb = 1.0
        } else if n <= 100_000 && nd * pow(x, 1.5) <= 1.4 {
            cdfProb = durbinMatrix(n, x)
        } else {
            cdfProb = pelzGood(n, x)
        }
        return select(cdfProb, 1.0 - cdfProb, cdf: cdf)
    }

    // MARK: - Durbin matrix (Marsaglia, Tsang & Wang 2003)

    /// P(Dₙ ≤ d) via the k-th diagonal entry of Hⁿ, scaled to avoid overflow.
    static func durbinMatrix(_ n: Int, _ d: Double) -> Double {
        if d >= 1.0 { return 1.0 }
        let nd = Double(n) * d
        if nd <= 0.5 { return 0.0 }
        let k = Int(nd.rounded(.up))
        let h = Double(k) - nd
        let m = 2 * k - 1
        var v = [Double](repeating: 0, count: m)
        var w = [Double](repeating: 0, count: m)
        var fac = 1.0
        for j in 1...m {
            v[j - 1] = 1.0 - pow(h, Double(j))
            w[j - 1] = fac
            fac /= Double(j)
            v[j - 1] *= fac
        }
        let tt = pow(max(2 * h - 1.0, 0), Double(m)) - 2 * pow(h, Double(m))
        v[m - 1] = (1.0 + tt) * fac
        var H = [Double](repeating: 0, count: m * m)
        for i in 1..<max(m, 1) {
            for r in (i - 1)..<m { H[r * m + i] = w[r - (i - 1)] }
        }
        for r in 0..<m { H[r * m] = v[r] }
        for c in 0..<m { H[(m - 1) * m + c] = v[m - 1 - c] }

        var power = [Double](repeating: 0, count: m * m)
        for i in 0..<m { power[i * m + i] = 1 }
        var scratch = [Double](repeating: 0, count: m * m)
        var nn = n
        var exponent = 0
        var hExponent = 0
        while nn > 0 {
            if nn % 2 == 1 {
                multiply(power, H, into: &scratch, m)
                swap(&power, &scratch)
                exponent += hExponent
            }
            multiply(H, H, into: &scratch, m)
            swap(&H, &scratch)
            hExponent *= 2
            if abs(H[(k - 1) * m + (k - 1)]) > ep128 {
                for i in 0..<(m * m) { H[i] /= ep128 }
                hExponent += e128
            }
            nn /= 2
        }
        var p = power[(k - 1) * m + (k - 1)]
        let nDouble = Double(n)
        for i in 1...n {
            p = Double(i) * p / nDouble
            if abs(p) < em128 {
                p *= ep128
                exponent -= e128
            }
        }
        if exponent != 0 { p = scalbn(p, exponent) }
        return clip(p)
    }

    private static func multiply(_ a: [Double], _ b: [Double], into c: inout [Double], _ m: Int) {
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                c.withUnsafeMutableBufferPointer { c in
                    for i in 0..<m {
                        for j in 0..<m { c[i * m + j] = 0 }
                        for l in 0..<m {
                            let ail = a[i * m + l]
                            if ail == 0 { continue }
                            for j in 0..<m { c[i * m + j] += ail * b[l * m + j] }
                        }
                    }
                }
            }
        }
    }

    // MARK: - Pomeranz (1974)

    private static func pomeranzBounds(_ i: Int, _ n: Int, _ ll: Int, _ ceilf: Int, _ roundf: Int) -> (Int, Int) {
        var j1: Int, j2: Int
        if i == 0 {
            j1 = -ll - ceilf - 1
            j2 = ll + ceilf - 1
        } else {
            let ip1div2 = (i + 1) / 2, ip1mod2 = (i + 1) % 2
            if ip1mod2 == 0 {
                if ip1div2 == n + 1 {
                    j1 = n - ll - ceilf - 1
                    j2 = n + ll + ceilf - 1
                } else {
                    j1 = ip1div2 - 1 - ll - roundf - 1
                    j2 = ip1div2 + ll - 1 + ceilf - 1
                }
            } else {
                j1 = ip1div2 - 1 - ll - 1
                j2 = ip1div2 + ll + roundf - 1
            }
        }
        return (max(j1 + 2, 0), min(j2, n))
    }

    /// P(Dₙ ≤ x) by Pomeranz's recursion (only for n ≤ 140, as in SciPy).
    static func pomeranz(_ n: Int, _ x: Double) -> Double {
        let nd = Double(n)
        let t = nd * x
        let ll = Int(t.rounded(.down))
        let f = t - Double(ll)
        let g = min(f, 1.0 - f)
        let ceilf = f > 0 ? 1 : 0
        let roundf = f > 0.5 ? 1 : 0
        let npwrs = 2 * (ll + 1)
        var gpower = [Double](repeating: 0, count: npwrs)
        var twogpower = [Double](repeating: 0, count: npwrs)
        var onem2gpower = [Double](repeating: 0, count: npwrs)
        gpower[0] = 1; twogpower[0] = 1; onem2gpower[0] = 1
        var exponent = 0
        let gOverN = g / nd, twoGOverN = 2 * g / nd, oneMinusTwoGOverN = (1 - 2 * g) / nd
        for m in 1..<npwrs {
            gpower[m] = gpower[m - 1] * gOverN / Double(m)
            twogpower[m] = twogpower[m - 1] * twoGOverN / Double(m)
            onem2gpower[m] = onem2gpower[m - 1] * oneMinusTwoGOverN / Double(m)
        }
        var v0 = [Double](repeating: 0, count: npwrs)
        var v1 = [Double](repeating: 0, count: npwrs)
        v1[0] = 1
        var v0s = 0, v1s = 0
        var (j1, j2) = pomeranzBounds(0, n, ll, ceilf, roundf)
        var conv = [Double](repeating: 0, count: 2 * npwrs)
        for i in 1..<(2 * n + 2) {
            let k1 = j1
            swap(&v0, &v1)
            swap(&v0s, &v1s)
            for q in 0..<npwrs { v1[q] = 0 }
            (j1, j2) = pomeranzBounds(i, n, ll, ceilf, roundf)
            let powers: [Double]
            if i == 1 || i == 2 * n + 1 {
                powers = gpower
            } else {
                powers = i % 2 == 1 ? twogpower : onem2gpower
            }
            let ln2 = j2 - k1 + 1
            if ln2 > 0 {
                // NumPy slices clip at the array's end; mirror that.
                let aStart = max(k1 - v0s, 0)
                let aEnd = min(k1 - v0s + ln2, npwrs)
                let aLen = max(aEnd - aStart, 0)
                let bLen = min(ln2, npwrs)
                let convLen = aLen + bLen - 1
                if convLen > conv.count { conv = [Double](repeating: 0, count: convLen) }
                for q in 0..<max(convLen, 0) { conv[q] = 0 }
                for p in 0..<aLen {
                    let a = v0[aStart + p]
                    if a == 0 { continue }
                    for q in 0..<bLen { conv[p + q] += a * powers[q] }
                }
                let convStart = j1 - k1
                let count = j2 - j1 + 1
                var maxV = 0.0
                if count > 0 {
                    for q in 0..<count where convStart + q < convLen && convStart + q >= 0 {
                        v1[q] = conv[convStart + q]
                        if v1[q] > maxV { maxV = v1[q] }
                    }
                }
                if maxV > 0 && maxV < em128 {
                    for q in 0..<npwrs { v1[q] *= ep128 }
                    exponent -= e128
                }
                v1s = v0s + j1 - k1
            }
        }
        var answer = v1[n - v1s]
        for m in 1...n {
            if abs(answer) > ep128 {
                answer *= em128
                exponent += e128
            }
            answer *= Double(m)
        }
        if exponent != 0 { answer = scalbn(answer, exponent) }
        return clip(answer)
    }

    // MARK: - Pelz–Good (1976)

    /// P(Dₙ ≤ x) by the Pelz–Good asymptotic series (Li-Chien/Korolyuk terms via Jacobi theta functions).
    static func pelzGood(_ n: Int, _ x: Double) -> Double {
        if x <= 0.0 { return 0.0 }
        if x >= 1.0 { return 1.0 }
        let pi2 = Double.pi * Double.pi
        let pi4 = pi2 * pi2
        let pi6 = pi4 * pi2
        let nd = Double(n)
        let z = nd.squareRoot() * x
        let z2 = z * z, z3 = z * z * z, z4 = z2 * z2, z6 = pow(z, 6)
        let qlog = -pi2 / 8 / z2
        if qlog < minLog { return 0.0 }
        var q = exp(qlog)
        let k1a = -z2
        let k1b = pi2 / 4
        let k2a = 6 * z6 + 2 * z4
        let k2b = (2 * z4 - 5 * z2) * pi2 / 4
        let k2c = pi4 * (1 - 2 * z2) / 16
        let k3d = pi6 * (5 - 30 * z2) / 64
        let k3c = pi4 * (-60 * z2 + 212 * z4) / 16
        let k3b = pi2 * (135 * z4 - 96 * z6) / 4
        let k3a = -30 * z6 - 90 * pow(z, 8)
        var K = [0.0, 0.0, 0.0, 0.0]
        let maxk = Int((16 * z / Double.pi).rounded(.up))
        var kk = maxk
        while kk >= 1 {
            let m = Double(2 * kk - 1)
            let m2 = m * m, m4 = pow(m, 4), m6 = pow(m, 6)
            let qpower = pow(q, Double(8 * kk))
            let coeffs = [1.0, k1a + k1b * m2, k2a + k2b * m2 + k2c * m4,
                          k3a + k3b * m2 + k3c * m4 + k3d * m6]
            for i in 0..<4 { K[i] = K[i] * qpower + coeffs[i] }
            kk -= 1
        }
        for i in 0..<4 { K[i] *= q; K[i] *= sqrt2Pi }
        let divisors = [z, 6 * z4, 72 * pow(z, 7), 6480 * pow(z, 10)]
        for i in 0..<4 { K[i] /= divisors[i] }
        q = exp(-pi2 / 2 / z2)
        let sqrt3z = 3.0.squareRoot() * z
        var k2extra = 0.0
        var k3extra = 0.0
        kk = maxk
        while kk >= 1 {
            let kd = Double(kk)
            let ksq = kd * kd
            let qp = pow(q, ksq)
            let kspi = Double.pi * kd
            k2extra += ksq * qp
            k3extra += (sqrt3z + kspi) * (sqrt3z - kspi) * ksq * qp
            kk -= 1
        }
        k2extra *= pi2 * sqrt2Pi / (-36 * z3)
        K[2] += k2extra
        k3extra *= pi2 * sqrt2Pi / (216 * z6)
        K[3] += k3extra
        for i in 0..<4 { K[i] /= pow(nd, Double(i) / 2.0) }
        return K[0] + K[1] + K[2] + K[3]
    }

    // MARK: - Smirnov one-sided tail

    /// P(Dₙ⁺ ≥ x) by the Smirnov–Birnbaum–Tingey sum of positive terms (what SciPy's `smirnov(n, x)`
    /// evaluates in double-double; plain doubles in log space are accurate to ~1e-12 here).
    public static func smirnov(_ n: Int, _ x: Double) -> Double {
        guard n > 0, x >= 0, x <= 1, !x.isNaN else { return .nan }
        if n == 1 { return 1 - x }
        if x == 0 { return 1 }
        if x == 1 { return 0 }
        let nd = Double(n)
        // floor(n·x) and its remainder, exactly (the product's rounding error is recovered by an FMA).
        let nx = nd * x
        let err = (-nx).addingProduct(nd, x)
        var nxFloor = nx.rounded(.down)
        var alpha = (nx - nxFloor) + err
        if alpha < 0 { nxFloor -= 1; alpha += 1 }
        if alpha >= 1 { nxFloor += 1; alpha -= 1 }
        let nxfl = Int(nxFloor)
        let lastLowerTerm = n - nxfl - 1  // n1mxfl in SciPy, whether or not alpha is 0
        if nxfl == 0 || (nxfl == 1 && alpha == 0) {
            let t = pow(1 + x, nd - 1)
            return 1 - x * t
        }
        if -2 * nd * x * x < smirnovMinLog { return 0 }
        if nxfl >= n - 1 { return pow(1 - x, nd) }
        if n > 1_000_000 {
            let logp = -pow(6.0 * nd * x + 1, 2) / 18.0 / nd
            return logp < -M_LN2 ? exp(logp) : 1 - (-expm1(logp))
        }
        // Lower sum: x · Σ_{j=0}^{n1mxfl} C(n,j) (1 − x − j/n)^(n−j) (x + j/n)^(j−1).
        let nTerms = lastLowerTerm + 1
        var sum = pow(1 - x, nd) / x  // j = 0
        var logBinomial = 0.0  // log C(n, j), updated incrementally
        let vmid = n / 2
        var j = 1
        while j < nTerms {
            logBinomial += log(Double(n - j + 1) / Double(j))
            let b2 = Double(n - j) / nd - x
            let b1 = Double(j) / nd + x
            var term = 0.0
            if b2 > 0 {
                term = exp(logBinomial + Double(n - j) * log(b2) + Double(j - 1) * log(b1))
            }
            if term.isFinite && term != 0 { sum += term }
            if term != 0 {
                if 4 * Double(nTerms - j) * abs(term) < Double.ulpOfOne * sum && j != nTerms - 1 { break }
            } else if j > vmid {
                break
            }
            j += 1
        }
        return clip(x * sum)
    }
}
