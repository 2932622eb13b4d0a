/// A JSON number that keeps integers exact.
///
/// JSON Schema equality says `1` and `1.0` are the same number and that `1.0` is an
/// integer, so the representation is canonical by value, not by spelling:
/// - every integral value that fits `Int64` is stored as an `Int64` (whether written
///   `1`, `1.0` or `1e0`), so `int64Value` is exact;
/// - an integer literal outside `Int64` keeps its exact decimal digits (round-trips as text);
/// - everything else is a `Double` (non-integral values, and integral values beyond `Int64`
///   that came from fractions/exponents).
/// Equality and hashing compare exact values across those forms. `-0` and `-0.0` are `0`.
public struct JSONNumber: Sendable, Hashable, Comparable, CustomStringConvertible {
    @usableFromInline
    enum Storage: Sendable {
        /// Exact integer in `Int64` range.
        case int(Int64)
        /// Any other finite (or, when built from code, non-finite) value; never integral inside `Int64` range.
        case double(Double)
        /// Exact integer outside `Int64` range: canonical decimal digits, optional leading '-'.
        case big(String)
    }

    @usableFromInline
    let storage: Storage

    /// An exact integer.
    @inlinable
    public init(_ value: Int64) { storage = .int(value) }

    /// An exact integer.
    @inlinable
    public init(_ value: Int) { storage = .int(Int64(value)) }

    /// A floating-point value; integral values inside `Int64` range become exact integers.
    /// NaN and infinities can be stored but serialize as `null` (see `JSON.serialized`).
    @inlinable
    public init(_ value: Double) {
        // 2^63 is exactly representable; values strictly below it (and >= -2^63) fit Int64.
        if value >= -9223372036854775808.0, value < 9223372036854775808.0, Double(Int64(value)) == value {
            storage = .int(Int64(value))
        } else {
            storage = .double(value)
        }
    }

    /// Parses the exact decimal spelling of an integer (`-?[0-9]+`), keeping every digit.
    /// Returns nil when `text` is not such a literal.
    public init?(integerLiteral text: String) {
        var utf8 = Array(text.utf8)
        var negative = false
        if utf8.first == UInt8(ascii: "-") { negative = true; utf8.removeFirst() }
        guard !utf8.isEmpty, utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        while utf8.count > 1 && utf8[0] == 48 { utf8.removeFirst() }
        self.init(digits: utf8, negative: negative)
    }

    /// Builds from canonical digits (no leading zeros unless the value is 0).
    @usableFromInline
    init(digits: [UInt8], negative: Bool) {
        if digits.count <= 19 {
            var magnitude: UInt64 = 0
            for d in digits { magnitude = magnitude &* 10 &+ UInt64(d &- 48) }
            if !negative, magnitude <= UInt64(Int64.max) { storage = .int(Int64(magnitude)); return }
            if negative, magnitude <= UInt64(Int64.max) + 1 {
                storage = .int(magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude))
                return
            }
        }
        storage = .big((negative ? "-" : "") + String(decoding: digits, as: UTF8.self))
    }

    /// True when the value is mathematically an integer (JSON Schema's `integer` type).
    @inlinable
    public var isInteger: Bool {
        switch storage {
        case .int, .big: return true
        case .double(let d): return JSONNumber.isIntegral(d)
        }
    }

    /// The exact value when it fits `Int64`, nil otherwise (never a rounded or truncated value).
    @inlinable
    public var int64Value: Int64? {
        if case .int(let i) = storage { return i }
        return nil
    }

    /// The nearest `Double` (exact for most values; big integers are rounded).
    @inlinable
    public var doubleValue: Double {
        switch storage {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .big(let s): return Double(s) ?? (s.hasPrefix("-") ? -.infinity : .infinity)
        }
    }

    /// True for finite values (false only for NaN/infinity built from code).
    public var isFinite: Bool {
        if case .double(let d) = storage { return d.isFinite }
        return true
    }

    /// The exact decimal digits of an integer outside `Int64` range, when that is how it is held.
    public var bigIntegerText: String? {
        if case .big(let s) = storage { return s }
        return nil
    }

    /// JSON text for the number: integers without `.0`, doubles in shortest round-trip form,
    /// `null` for NaN/infinity (JSON cannot express them; JavaScript's `JSON.stringify` does the same).
    public var description: String {
        var out: [UInt8] = []
        appendJSON(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends the JSON text of the number to a byte buffer (no intermediate String for integers).
    @inlinable
    public func appendJSON(to out: inout [UInt8]) {
        switch storage {
        case .int(let i): JSONNumber.appendInteger(i, to: &out)
        case .double(let d): JSONNumber.appendDouble(d, to: &out)
        case .big(let s): out.append(contentsOf: s.utf8)
        }
    }

    /// Writes an `Int64` as decimal digits.
    @inlinable
    public static func appendInteger(_ value: Int64, to out: inout [UInt8]) {
        if value >= 0 && value < 10 { out.append(UInt8(truncatingIfNeeded: value) &+ 48); return }
        // As typed bytes: a raw buffer is appended byte by byte, a typed one copied at once.
        withDigits(of: value) { $0.withMemoryRebound(to: UInt8.self) { out.append(contentsOf: $0) } }
    }

    /// Lends `value`'s decimal digits (with a leading `-` when negative) to `body`, from the stack.
    @inlinable
    public static func withDigits<R>(of value: Int64, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        var magnitude = value.magnitude
        var tmp: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes of scratch, enough for 20 digits and a sign
        return withUnsafeMutableBytes(of: &tmp) { raw -> R in
            var n = 0
            repeat {
                raw[23 - n] = UInt8(truncatingIfNeeded: magnitude % 10) &+ 48
                magnitude /= 10
                n += 1
            } while magnitude > 0
            if value < 0 {
                raw[23 - n] = UInt8(ascii: "-")
                n += 1
            }
            return body(UnsafeRawBufferPointer(rebasing: raw[(24 - n)...]))
        }
    }

    /// Writes a `Double`: integral values below 1e21 as plain digits (like JavaScript), others in
    /// Swift's shortest round-trip form, non-finite as `null`.
    @usableFromInline
    static func appendDouble(_ d: Double, to out: inout [UInt8]) {
        guard d.isFinite else { out.append(contentsOf: "null".utf8); return }
        if JSONNumber.isIntegral(d), d.magnitude < 1e21 {
            if d.magnitude < 9223372036854775808.0 {
                appendInteger(Int64(d), to: &out)
            } else {
                out.append(contentsOf: JSONNumber.exactIntegerDigits(d).utf8)
            }
            return
        }
        var text = d.description
        text.withUTF8 { out.append(contentsOf: $0) }
    }

    /// True for finite doubles with no fractional part (every double of magnitude >= 2^52 is integral).
    @inlinable @inline(__always)
    public static func isIntegral(_ d: Double) -> Bool {
        guard d.isFinite else { return false }
        if d.magnitude >= 4503599627370496.0 { return true }
        return Double(Int64(d)) == d
    }

    /// Exact decimal expansion of an integral, finite double (used for equality with big
    /// integers and for printing integral doubles without an exponent).
    static func exactIntegerDigits(_ d: Double) -> String {
        precondition(JSONNumber.isIntegral(d))
        if d.magnitude < 9223372036854775808.0 { return String(Int64(d)) }
        // d = significand * 2^exponent with an integral 53-bit significand.
        let exponent = Int(d.exponent) - 52
        var limbs: [UInt32] = []  // little-endian base 1e9
        var sig = d.significandBitPattern | (1 << 52)
        while sig > 0 { limbs.append(UInt32(sig % 1_000_000_000)); sig /= 1_000_000_000 }
        for _ in 0..<max(0, exponent) {
            var carry: UInt64 = 0
            for i in limbs.indices {
                let v = UInt64(limbs[i]) * 2 + carry
                limbs[i] = UInt32(v % 1_000_000_000)
                carry = v / 1_000_000_000
            }
            if carry > 0 { limbs.append(UInt32(carry)) }
        }
        var text = d < 0 ? "-" : ""
        text += String(limbs.last!)
        for limb in limbs.dropLast().reversed() {
            let s = String(limb)
            text += String(repeating: "0", count: 9 - s.count) + s
        }
        return text
    }

    /// Exact equality by value across storage forms.
    public static func == (lhs: JSONNumber, rhs: JSONNumber) -> Bool {
        switch (lhs.storage, rhs.storage) {
        case (.int(let a), .int(let b)): return a == b
        case (.double(let a), .double(let b)): return a == b
        case (.big(let a), .big(let b)): return a == b
        case (.big(let a), .double(let b)), (.double(let b), .big(let a)):
            return JSONNumber.isIntegral(b) && exactIntegerDigits(b) == a
        default: return false  // int vs double/big can never be equal by construction
        }
    }

    /// Hashes consistently with `==` (integral doubles beyond `Int64` hash as their digits).
    public func hash(into hasher: inout Hasher) {
        switch storage {
        case .int(let i): hasher.combine(0 as UInt8); hasher.combine(i)
        case .double(let d):
            if JSONNumber.isIntegral(d) {
                hasher.combine(2 as UInt8); hasher.combine(JSONNumber.exactIntegerDigits(d))
            } else {
                hasher.combine(1 as UInt8); hasher.combine(d)
            }
        case .big(let s): hasher.combine(2 as UInt8); hasher.combine(s)
        }
    }

    /// Numeric order; exact for `Int64`s and across `Int64`/`Double`, digit-exact for big integers.
    @inlinable
    public static func < (lhs: JSONNumber, rhs: JSONNumber) -> Bool {
        // Inlined fast paths for the common same-kind comparisons (schema bounds on hot paths).
        if case .int(let a) = lhs.storage, case .int(let b) = rhs.storage { return a < b }
        if case .double(let a) = lhs.storage, case .double(let b) = rhs.storage { return a < b }
        // Integers below 2^53 convert to Double exactly, so mixed comparisons stay exact.
        if case .int(let a) = lhs.storage, case .double(let b) = rhs.storage, a.magnitude < (1 << 53) { return Double(a) < b }
        if case .double(let a) = lhs.storage, case .int(let b) = rhs.storage, b.magnitude < (1 << 53) { return a < Double(b) }
        return lessThanSlow(lhs, rhs)
    }

    @usableFromInline
    static func lessThanSlow(_ lhs: JSONNumber, _ rhs: JSONNumber) -> Bool {
        switch (lhs.storage, rhs.storage) {
        case (.int(let a), .int(let b)): return a < b
        case (.int(let a), .double(let b)): return JSONNumber.compare(a, b) < 0
        case (.double(let a), .int(let b)): return JSONNumber.compare(b, a) > 0
        // A big integer lies outside Int64 range, so its sign alone orders it against an Int64.
        case (.big(let a), .int): return a.hasPrefix("-")
        case (.int, .big(let b)): return !b.hasPrefix("-")
        default:
            if lhs == rhs { return false }
            return lhs.doubleValue < rhs.doubleValue || (lhs.doubleValue == rhs.doubleValue && lhs.bigLess(rhs))
        }
    }

    /// Tie-break for big integers that round to the same `Double`: compare the digits.
    private func bigLess(_ other: JSONNumber) -> Bool {
        guard case .big(let a) = storage, case .big(let b) = other.storage else {
            // One side is an exact big integer, the other a double rounding to the same value.
            if case .big(let a) = storage {
                let d = other.doubleValue
                guard JSONNumber.isIntegral(d) else { return false }
                return JSONNumber.compareDigits(a, JSONNumber.exactIntegerDigits(d)) < 0
            }
            if case .big(let b) = other.storage {
                let d = doubleValue
                guard JSONNumber.isIntegral(d) else { return false }
                return JSONNumber.compareDigits(JSONNumber.exactIntegerDigits(d), b) < 0
            }
            return false
        }
        return JSONNumber.compareDigits(a, b) < 0
    }

    /// Compares canonical signed decimal integer strings.
    static func compareDigits(_ a: String, _ b: String) -> Int {
        let an = a.hasPrefix("-"), bn = b.hasPrefix("-")
        if an != bn { return an ? -1 : 1 }
        let am = an ? a.dropFirst() : Substring(a), bm = bn ? b.dropFirst() : Substring(b)
        var c: Int
        if am.count != bm.count { c = am.count < bm.count ? -1 : 1 } else { c = am < bm ? -1 : (am == bm ? 0 : 1) }
        return an ? -c : c
    }

    /// Exact three-way comparison of an `Int64` with a `Double`.
    @usableFromInline
    static func compare(_ a: Int64, _ b: Double) -> Int {
        if b.isNaN { return 1 }
        if b >= 9223372036854775808.0 { return -1 }
        if b < -9223372036854775808.0 { return 1 }
        // Truncate toward zero, then step down for negative fractions to get floor(b) without libm.
        var ti = Int64(b)
        if Double(ti) > b { ti -= 1 }
        if a < ti { return -1 }
        if a > ti { return 1 }
        return Double(ti) == b ? 0 : -1
    }
}
