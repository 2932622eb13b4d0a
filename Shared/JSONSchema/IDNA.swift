/// Host name validation: RFC 1123 host names for `hostname`, IDNA2008 (RFC 5890-5893) for
/// `idn-hostname`, and A-labels (`xn--`) in either are decoded and held to the IDNA rules.
///
/// The IDNA2008 derived property (RFC 5892) is computed from Swift's Unicode properties:
/// NFKC-casefold stability, default-ignorables and general categories, plus the RFC's exception
/// table and contextual rules. Swift exposes no Script or Bidi_Class property, so those rules use
/// code point ranges for the scripts they name (Greek, Hebrew, Arabic, Hiragana, Katakana, Han):
/// best effort, as the brief allows for idn-hostname.
enum IDNA {
    static let separators: [Unicode.Scalar] = [".", "\u{3002}", "\u{FF0E}", "\u{FF61}"]

    static func isHostname(_ u: [Unicode.Scalar], international: Bool) -> Bool {
        // Cheap bound first: no valid name has more than 253 code points (and Punycode work is quadratic).
        guard !u.isEmpty, u.count <= 253 else { return false }
        let labels = u.split(omittingEmptySubsequences: false) { international ? separators.contains($0) : $0 == "." }
        var total = labels.count - 1
        var uLabels: [[Unicode.Scalar]] = []
        for label in labels {
            guard !label.isEmpty else { return false }
            let lower = label.map { $0.value < 128 ? Unicode.Scalar(UInt8($0.value) | (FormatChecker.isAlpha($0) ? 0x20 : 0)) : $0 }
            if lower.allSatisfy({ $0.isASCII }) {
                guard lower.count <= 63 else { return false }
                total += lower.count
                guard lower.allSatisfy({ FormatChecker.isAlpha($0) || FormatChecker.isDigit($0) || $0 == "-" }),
                      lower.first != "-", lower.last != "-" else { return false }
                if lower.count >= 4 && lower[2] == "-" && lower[3] == "-" {
                    // Only A-labels may have hyphens in positions 3 and 4.
                    guard lower.starts(with: "xn--".unicodeScalars), let decoded = Punycode.decode(Array(lower[4...])),
                          !decoded.allSatisfy({ $0.isASCII }),
                          Punycode.encode(decoded).map({ "xn--" + $0 }) == String(String.UnicodeScalarView(lower)),
                          isValidULabel(decoded) else { return false }
                    uLabels.append(decoded)
                } else {
                    uLabels.append(lower)
                }
            } else {
                guard international, label.count <= 63, isValidULabel(Array(label)), let encoded = Punycode.encode(Array(label)),
                      encoded.utf8.count + 4 <= 63 else { return false }
                total += encoded.utf8.count + 4
                uLabels.append(Array(label))
            }
        }
        guard total <= 253 else { return false }
        return satisfiesBidi(uLabels)
    }

    // MARK: Derived property (RFC 5892)

    enum Validity { case pvalid, contextj, contexto, disallowed }

    static func validity(_ c: Unicode.Scalar) -> Validity {
        let v = c.value
        switch v {
        // Exceptions (RFC 5892 section 2.6)
        case 0x00DF, 0x03C2, 0x06FD, 0x06FE, 0x0F0B, 0x3007: return .pvalid
        case 0x00B7, 0x0375, 0x05F3, 0x05F4, 0x30FB: return .contexto
        case 0x0660...0x0669, 0x06F0...0x06F9: return .contexto
        case 0x0640, 0x07FA, 0x302E, 0x302F, 0x3031...0x3035, 0x303B: return .disallowed
        case 0x200C, 0x200D: return .contextj
        default: break
        }
        if (v >= 0x61 && v <= 0x7A) || (v >= 0x30 && v <= 0x39) || v == 0x2D { return .pvalid }
        let p = c.properties
        if p.generalCategory == .unassigned { return .disallowed }
        if p.changesWhenNFKCCaseFolded { return .disallowed }
        if p.isDefaultIgnorableCodePoint || p.isWhitespace || p.isNoncharacterCodePoint { return .disallowed }
        // Ignorable blocks and old Hangul jamo.
        if (0x20D0...0x20FF).contains(v) || (0x1D100...0x1D1FF).contains(v) || (0x1D200...0x1D24F).contains(v) { return .disallowed }
        if (0x1100...0x11FF).contains(v) || (0xA960...0xA97F).contains(v) || (0xD7B0...0xD7FF).contains(v) { return .disallowed }
        switch p.generalCategory {
        case .lowercaseLetter, .uppercaseLetter, .otherLetter, .decimalNumber, .modifierLetter, .nonspacingMark, .spacingMark:
            return .pvalid
        default:
            return .disallowed
        }
    }

    static func isGreek(_ v: UInt32) -> Bool { (0x0370...0x03FF).contains(v) || (0x1F00...0x1FFF).contains(v) }
    static func isHebrew(_ v: UInt32) -> Bool { (0x0590...0x05FF).contains(v) || (0xFB1D...0xFB4F).contains(v) }
    static func isKanaOrHan(_ v: UInt32) -> Bool {
        ((0x3040...0x30FF).contains(v) && v != 0x30FB) || (0x31F0...0x31FF).contains(v) || (0x3400...0x4DBF).contains(v)
            || (0x4E00...0x9FFF).contains(v) || (0xF900...0xFAFF).contains(v) || (0x20000...0x3134F).contains(v)
            || v == 0x3005 || v == 0x3006 || v == 0x3007
    }
    static func isVirama(_ c: Unicode.Scalar) -> Bool { c.properties.canonicalCombiningClass.rawValue == 9 }
    static func isArabicJoining(_ c: Unicode.Scalar) -> Bool {
        let v = c.value
        return ((0x0620...0x064A).contains(v) || (0x066E...0x06D3).contains(v) || (0x06FA...0x06FF).contains(v)
            || (0x0710...0x074F).contains(v) || (0x0750...0x077F).contains(v) || (0x08A0...0x08FF).contains(v))
            && c.properties.generalCategory == .otherLetter
    }

    static func isValidULabel(_ label: [Unicode.Scalar]) -> Bool {
        guard let first = label.first, label.last != "-", first != "-" else { return false }
        if label.count >= 4 && label[2] == "-" && label[3] == "-" { return false }
        switch first.properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark: return false
        default: break
        }
        let hasArabicIndic = label.contains { (0x0660...0x0669).contains($0.value) }
        let hasExtendedIndic = label.contains { (0x06F0...0x06F9).contains($0.value) }
        for (i, c) in label.enumerated() {
            switch validity(c) {
            case .pvalid: continue
            case .disallowed: return false
            case .contextj:
                if i > 0 && isVirama(label[i - 1]) { continue }
                guard c.value == 0x200C else { return false }
                // ZWNJ between joining letters: (L|D) T* ZWNJ T* (R|D), with Arabic letters as D and marks as T.
                var j = i - 1
                while j >= 0 && label[j].properties.generalCategory == .nonspacingMark { j -= 1 }
                var k = i + 1
                while k < label.count && label[k].properties.generalCategory == .nonspacingMark { k += 1 }
                guard j >= 0, k < label.count, isArabicJoining(label[j]), isArabicJoining(label[k]) else { return false }
            case .contexto:
                switch c.value {
                case 0x00B7:
                    guard i > 0, i + 1 < label.count, label[i - 1] == "l", label[i + 1] == "l" else { return false }
                case 0x0375:
                    guard i + 1 < label.count, isGreek(label[i + 1].value) else { return false }
                case 0x05F3, 0x05F4:
                    guard i > 0, isHebrew(label[i - 1].value) else { return false }
                case 0x30FB:
                    guard label.contains(where: { isKanaOrHan($0.value) }) else { return false }
                case 0x0660...0x0669:
                    guard !hasExtendedIndic else { return false }
                case 0x06F0...0x06F9:
                    guard !hasArabicIndic else { return false }
                default:
                    return false
                }
            }
        }
        return true
    }

    // MARK: Bidi rule (RFC 5893)

    enum BidiClass { case l, r, al, an, en, nsm, other }

    static func bidiClass(_ c: Unicode.Scalar) -> BidiClass {
        let v = c.value
        if (0x30...0x39).contains(v) || (0x06F0...0x06F9).contains(v) { return .en }
        if (0x0660...0x0669).contains(v) || v == 0x066B || v == 0x066C { return .an }
        let gc = c.properties.generalCategory
        if gc == .nonspacingMark || gc == .enclosingMark { return .nsm }
        if isHebrew(v) || (0x07C0...0x085F).contains(v) { return .r }
        if (0x0600...0x07BF).contains(v) || (0x0860...0x08FF).contains(v) || (0xFB50...0xFDFF).contains(v) || (0xFE70...0xFEFF).contains(v) {
            return .al
        }
        if v == 0x2D { return .other }
        switch gc {
        case .lowercaseLetter, .uppercaseLetter, .otherLetter, .modifierLetter, .titlecaseLetter, .spacingMark, .letterNumber:
            return .l
        default:
            return .other
        }
    }

    static func satisfiesBidi(_ labels: [[Unicode.Scalar]]) -> Bool {
        let classes = labels.map { $0.map(bidiClass) }
        // The rule applies only to domain names that contain right-to-left characters.
        guard classes.contains(where: { $0.contains { $0 == .r || $0 == .al || $0 == .an } }) else { return true }
        for label in classes {
            guard let first = label.first else { return false }
            let trimmed = label.reversed().drop { $0 == .nsm }
            guard let last = trimmed.first else { return false }
            switch first {
            case .r, .al:
                guard label.allSatisfy({ $0 != .l }) else { return false }
                guard [.r, .al, .en, .an].contains(last) else { return false }
                if label.contains(.en) && label.contains(.an) { return false }
            case .l:
                guard label.allSatisfy({ $0 != .r && $0 != .al && $0 != .an }) else { return false }
                guard last == .l || last == .en else { return false }
            default:
                return false
            }
        }
        return true
    }
}

/// RFC 3492 Punycode, for A-labels.
enum Punycode {
    static let base = 36, tMin = 1, tMax = 26, skew = 38, damp = 700, initialBias = 72, initialN = 128

    static func adapt(_ delta: Int, _ numPoints: Int, _ first: Bool) -> Int {
        var delta = first ? delta / damp : delta / 2
        delta += delta / numPoints
        var k = 0
        while delta > ((base - tMin) * tMax) / 2 {
            delta /= base - tMin
            k += base
        }
        return k + (base - tMin + 1) * delta / (delta + skew)
    }

    static func digitValue(_ c: Unicode.Scalar) -> Int? {
        switch c.value {
        case 0x30...0x39: return Int(c.value) - 22
        case 0x41...0x5A: return Int(c.value) - 0x41
        case 0x61...0x7A: return Int(c.value) - 0x61
        default: return nil
        }
    }

    static func digit(_ d: Int) -> Unicode.Scalar {
        Unicode.Scalar(UInt8(d < 26 ? d + 0x61 : d + 22))
    }

    static func decode(_ input: [Unicode.Scalar]) -> [Unicode.Scalar]? {
        var output: [Unicode.Scalar] = []
        var rest = input[...]
        if let lastDash = input.lastIndex(of: "-") {
            for c in input[..<lastDash] {
                guard c.isASCII else { return nil }
                output.append(c)
            }
            rest = input[(lastDash + 1)...]
        }
        var n = initialN, i = 0, bias = initialBias
        var it = rest.makeIterator()
        var pending = rest.count
        while pending > 0 {
            let oldI = i
            var w = 1
            var k = base
            while true {
                guard let c = it.next(), let d = digitValue(c) else { return nil }
                pending -= 1
                let (mul, o1) = d.multipliedReportingOverflow(by: w)
                let (sum, o2) = i.addingReportingOverflow(mul)
                guard !o1, !o2, sum < Int(Int32.max) else { return nil }
                i = sum
                let t = k <= bias ? tMin : (k >= bias + tMax ? tMax : k - bias)
                if d < t { break }
                guard pending > 0 else { return nil }
                w *= base - t
                guard w < Int(Int32.max) else { return nil }
                k += base
            }
            bias = adapt(i - oldI, output.count + 1, oldI == 0)
            n += i / (output.count + 1)
            i %= output.count + 1
            guard n <= 0x10FFFF, let scalar = Unicode.Scalar(UInt32(n)) else { return nil }
            output.insert(scalar, at: i)
            i += 1
        }
        return output
    }

    static func encode(_ input: [Unicode.Scalar]) -> String? {
        var output = String(String.UnicodeScalarView(input.filter { $0.isASCII }))
        let basicCount = output.unicodeScalars.count
        var handled = basicCount
        if basicCount > 0 { output += "-" }
        var n = initialN, delta = 0, bias = initialBias
        while handled < input.count {
            guard let m = input.map({ Int($0.value) }).filter({ $0 >= n }).min() else { return nil }
            delta += (m - n) * (handled + 1)
            n = m
            for c in input {
                let v = Int(c.value)
                if v < n { delta += 1 }
                if v == n {
                    var q = delta
                    var k = base
                    while true {
                        let t = k <= bias ? tMin : (k >= bias + tMax ? tMax : k - bias)
                        if q < t { break }
                        output.unicodeScalars.append(digit(t + (q - t) % (base - t)))
                        q = (q - t) / (base - t)
                        k += base
                    }
                    output.unicodeScalars.append(digit(q))
                    bias = adapt(delta, handled + 1, handled == basicCount)
                    delta = 0
                    handled += 1
                }
            }
            delta += 1
            n += 1
        }
        return output
    }
}
