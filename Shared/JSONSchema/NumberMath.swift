import JSON

/// Exact `multipleOf` for JSON numbers. Binary floating point gets `0.0075 multipleOf 0.0001`
/// wrong (the quotient is 74.99999999999999), so both numbers are taken as the decimals they
/// were written as (shortest round-trip text) and divided exactly.
enum NumberMath {
    static func isMultiple(_ value: JSONNumber, of divisor: JSONNumber) -> Bool {
        if let a = value.int64Value, let b = divisor.int64Value {
            if b == 0 { return false }
            if b == -1 { return true }
            return a % b == 0
        }
        let (da, ea) = decimal(value)
        let (db, eb) = decimal(divisor)
        if db.allSatisfy({ $0 == 0 }) { return false }
        if da.allSatisfy({ $0 == 0 }) { return true }
        let e = min(ea, eb)
        let divisorZeros = eb - e
        let valueZeros = ea - e
        // Divisor as an exact UInt64 (its digits plus zeros); beyond 18 digits fall back to doubles.
        guard db.count + divisorZeros <= 18, valueZeros <= 100_000 else {
            let q = value.doubleValue / divisor.doubleValue
            return q.isFinite && JSONNumber.isIntegral(q)
        }
        var d: UInt64 = 0
        for digit in db { d = d * 10 + UInt64(digit) }
        for _ in 0..<divisorZeros { d *= 10 }
        var r: UInt64 = 0
        for digit in da { r = (r * 10 + UInt64(digit)) % d }
        for _ in 0..<valueZeros { r = (r * 10) % d }
        return r == 0
    }

    /// Decimal digits (no sign, no leading zeros) and exponent: value = digits × 10^exponent.
    static func decimal(_ n: JSONNumber) -> ([UInt8], Int) {
        let text = n.description.utf8
        var digits: [UInt8] = []
        var exponent = 0
        var fraction = 0
        var inFraction = false
        var it = text.makeIterator()
        while let c = it.next() {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                if !(digits.isEmpty && c == UInt8(ascii: "0")) { digits.append(c - 48) }
                if inFraction { fraction += 1 }
            case UInt8(ascii: "."): inFraction = true
            case UInt8(ascii: "e"), UInt8(ascii: "E"):
                var rest: [UInt8] = []
                while let x = it.next() { rest.append(x) }
                exponent = Int(String(decoding: rest, as: UTF8.self)) ?? 0
            default: break  // sign
            }
        }
        if digits.isEmpty { digits = [0] }
        return (digits, exponent - fraction)
    }
}
