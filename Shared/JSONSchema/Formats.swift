/// The `format` values this validator can assert; unknown formats are ignored, as the spec requires.
enum FormatKind: String, Sendable {
    case dateTime = "date-time", date, time, duration, email, idnEmail = "idn-email", hostname
    case idnHostname = "idn-hostname", ipv4, ipv6, uri, uriReference = "uri-reference", iri
    case iriReference = "iri-reference", uriTemplate = "uri-template", uuid, jsonPointer = "json-pointer"
    case relativeJSONPointer = "relative-json-pointer", regex
}

/// Format assertions (draft 2020-12 section 7.3), written against the RFCs the spec cites.
/// Everything is ASCII-strict where the RFC is: no Unicode digits, no surrounding whitespace.
enum FormatChecker {
    static func check(_ kind: FormatKind, _ s: String) -> Bool {
        let u = Array(s.unicodeScalars)
        switch kind {
        case .dateTime: return isDateTime(u)
        case .date: return isDate(u[...])
        case .time: return isTime(u[...])
        case .duration: return isDuration(u)
        case .email: return isEmail(u, international: false)
        case .idnEmail: return isEmail(u, international: true)
        case .hostname: return IDNA.isHostname(u, international: false)
        case .idnHostname: return IDNA.isHostname(u, international: true)
        case .ipv4: return isIPv4(u[...])
        case .ipv6: return isIPv6(u[...])
        case .uri: return URIGrammar.check(u, iri: false, reference: false)
        case .uriReference: return URIGrammar.check(u, iri: false, reference: true)
        case .iri: return URIGrammar.check(u, iri: true, reference: false)
        case .iriReference: return URIGrammar.check(u, iri: true, reference: true)
        case .uriTemplate: return isURITemplate(u)
        case .uuid: return isUUID(u)
        case .jsonPointer: return isJSONPointer(u[...])
        case .relativeJSONPointer: return isRelativeJSONPointer(u)
        case .regex: return (try? ECMARegex(s)) != nil
        }
    }

    // MARK: Small helpers

    @inline(__always) static func isDigit(_ c: Unicode.Scalar) -> Bool { c.value >= 48 && c.value <= 57 }
    @inline(__always) static func isAlpha(_ c: Unicode.Scalar) -> Bool { (c.value | 0x20) >= 97 && (c.value | 0x20) <= 122 }
    @inline(__always) static func isHex(_ c: Unicode.Scalar) -> Bool { isDigit(c) || ((c.value | 0x20) >= 97 && (c.value | 0x20) <= 102) }

    /// Parses exactly `count` ASCII digits.
    static func number(_ s: ArraySlice<Unicode.Scalar>, _ count: Int) -> Int? {
        guard s.count == count, s.allSatisfy(isDigit) else { return nil }
        return s.reduce(0) { $0 * 10 + Int($1.value - 48) }
    }

    // MARK: Dates and times (RFC 3339 section 5.6)

    static func daysInMonth(_ year: Int, _ month: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    static func isDate(_ s: ArraySlice<Unicode.Scalar>) -> Bool {
        guard s.count == 10 else { return false }
        let b = s.startIndex
        guard s[b + 4] == "-", s[b + 7] == "-",
              let y = number(s[b..<(b + 4)], 4), let m = number(s[(b + 5)..<(b + 7)], 2), let d = number(s[(b + 8)..<(b + 10)], 2)
        else { return false }
        return m >= 1 && m <= 12 && d >= 1 && d <= daysInMonth(y, m)
    }

    /// `full-time`: partial-time time-offset, with leap seconds only at 23:59:60 UTC.
    static func isTime(_ s: ArraySlice<Unicode.Scalar>) -> Bool {
        guard s.count >= 9 else { return false }
        let b = s.startIndex
        guard s[b + 2] == ":", s[b + 5] == ":",
              let h = number(s[b..<(b + 2)], 2), let m = number(s[(b + 3)..<(b + 5)], 2), let sec = number(s[(b + 6)..<(b + 8)], 2),
              h <= 23, m <= 59, sec <= 60 else { return false }
        var i = b + 8
        if s[i] == "." {
            i += 1
            let start = i
            while i < s.endIndex && isDigit(s[i]) { i += 1 }
            guard i > start else { return false }
        }
        guard i < s.endIndex else { return false }
        var offsetMinutes = 0
        if s[i] == "Z" || s[i] == "z" {
            guard i + 1 == s.endIndex else { return false }
        } else {
            guard s[i] == "+" || s[i] == "-", s.endIndex - i == 6, s[i + 3] == ":",
                  let oh = number(s[(i + 1)..<(i + 3)], 2), let om = number(s[(i + 4)..<(i + 6)], 2), oh <= 23, om <= 59
            else { return false }
            offsetMinutes = (oh * 60 + om) * (s[i] == "+" ? 1 : -1)
        }
        if sec == 60 {
            // A leap second is only valid at 23:59:60 UTC.
            let utc = ((h * 60 + m - offsetMinutes) % 1440 + 1440) % 1440
            return utc == 23 * 60 + 59
        }
        return true
    }

    static func isDateTime(_ u: [Unicode.Scalar]) -> Bool {
        guard u.count >= 20, u[10] == "T" || u[10] == "t" else { return false }
        return isDate(u[0..<10]) && isTime(u[11...])
    }

    /// ISO 8601 duration as in RFC 3339 appendix A: units in order without gaps
    /// (Y[M[D]] / M[D] / D), time H[M[S]] / M[S] / S, or weeks alone; integers only.
    static func isDuration(_ u: [Unicode.Scalar]) -> Bool {
        guard u.first == "P", u.count >= 3 else { return false }
        var i = 1
        // Parses digits followed by a unit letter; returns the letter.
        func component() -> Unicode.Scalar? {
            let start = i
            while i < u.count && isDigit(u[i]) { i += 1 }
            guard i > start, i < u.count else { return nil }
            let unit = u[i]
            i += 1
            return unit
        }
        func sequence(_ order: [Unicode.Scalar]) -> Bool {
            // Components must follow `order` consecutively, starting anywhere.
            var expected: Int? = nil
            var count = 0
            while i < u.count && u[i] != "T" {
                guard let unit = component(), let pos = order.firstIndex(of: unit) else { return false }
                if let e = expected, pos != e { return false }
                expected = pos + 1
                count += 1
            }
            return count > 0
        }
        if u.last == "W" {
            guard let unit = component(), unit == "W", i == u.count else { return false }
            return true
        }
        var hasDate = false
        if u[i] != "T" {
            guard sequence(["Y", "M", "D"]) else { return false }
            hasDate = true
        }
        if i < u.count {
            guard u[i] == "T" else { return false }
            i += 1
            guard i < u.count, sequence(["H", "M", "S"]), i == u.count else { return false }
            return true
        }
        return hasDate
    }

    // MARK: Network addresses

    /// Dotted-quad IPv4 (RFC 2673 section 3.2): four decimal octets, no leading zeros.
    static func isIPv4(_ s: ArraySlice<Unicode.Scalar>) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return false }
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy(isDigit), !(p.count > 1 && p.first == "0"),
                  let v = number(p, p.count), v <= 255 else { return false }
        }
        return true
    }

    /// RFC 4291 section 2.2 text forms, including `::` compression and a trailing dotted quad. No zone ids.
    static func isIPv6(_ s: ArraySlice<Unicode.Scalar>) -> Bool {
        guard s.count >= 2 else { return false }
        let text = Array(s)
        var groups = 0
        var sawDoubleColon = false
        var i = 0
        if text.starts(with: [":", ":"]) { sawDoubleColon = true; i = 2; if i == text.count { return true } }
        else if text[0] == ":" { return false }
        while i < text.count {
            // One group: hex digits, or a dotted quad at the very end.
            var j = i
            while j < text.count && isHex(text[j]) { j += 1 }
            if j < text.count && text[j] == "." {
                guard isIPv4(text[i...]) else { return false }
                groups += 2
                i = text.count
                break
            }
            guard j > i, j - i <= 4 else { return false }
            groups += 1
            i = j
            if i == text.count { break }
            guard text[i] == ":" else { return false }
            i += 1
            if i < text.count && text[i] == ":" {
                guard !sawDoubleColon else { return false }
                sawDoubleColon = true
                i += 1
                if i == text.count { break }
            } else if i == text.count {
                return false  // trailing single colon
            }
        }
        return sawDoubleColon ? groups <= 7 : groups == 8
    }

    // MARK: Email (RFC 5321 section 4.1.2, RFC 6531 for idn-email)

    static func isEmail(_ u: [Unicode.Scalar], international: Bool) -> Bool {
        guard let at = u.lastIndex(of: "@"), at > 0, at < u.count - 1 else { return false }
        let local = u[..<at]
        let domain = u[(at + 1)...]
        guard local.count <= 64 || international else { return false }
        // Local part: dot-string or quoted-string.
        if local.first == "\"" {
            guard local.count >= 2, local.last == "\"" else { return false }
            var i = local.startIndex + 1
            while i < local.endIndex - 1 {
                let c = local[i]
                if c == "\\" {
                    guard i + 1 < local.endIndex - 1, local[i + 1].value >= 32 && local[i + 1].value <= 126 else { return false }
                    i += 2
                    continue
                }
                guard (c.value >= 32 && c.value <= 126 && c != "\"") || (international && c.value >= 0x80) else { return false }
                i += 1
            }
        } else {
            let atext = "!#$%&'*+-/=?^_`{|}~"
            for word in local.split(separator: ".", omittingEmptySubsequences: false) {
                guard !word.isEmpty else { return false }
                for c in word {
                    let ok = isAlpha(c) || isDigit(c) || atext.unicodeScalars.contains(c) || (international && c.value >= 0x80)
                    guard ok else { return false }
                }
            }
        }
        // Domain: hostname or address literal.
        if domain.first == "[" {
            guard domain.last == "]" else { return false }
            let inner = domain.dropFirst().dropLast()
            if inner.starts(with: "IPv6:".unicodeScalars) { return isIPv6(inner.dropFirst(5)) }
            return isIPv4(inner)
        }
        return IDNA.isHostname(Array(domain), international: international)
    }

    // MARK: Identifiers and pointers

    static func isUUID(_ u: [Unicode.Scalar]) -> Bool {
        guard u.count == 36 else { return false }
        for (i, c) in u.enumerated() {
            if i == 8 || i == 13 || i == 18 || i == 23 { guard c == "-" else { return false } }
            else { guard isHex(c) else { return false } }
        }
        return true
    }

    /// RFC 6901: empty, or `/`-prefixed tokens where `~` is only followed by `0` or `1`.
    static func isJSONPointer(_ u: ArraySlice<Unicode.Scalar>) -> Bool {
        guard !u.isEmpty else { return true }
        guard u.first == "/" else { return false }
        var i = u.startIndex
        while i < u.endIndex {
            if u[i] == "~" {
                guard i + 1 < u.endIndex, u[i + 1] == "0" || u[i + 1] == "1" else { return false }
                i += 2
            } else {
                i += 1
            }
        }
        return true
    }

    /// draft-handrews-relative-json-pointer: a non-negative integer (no leading zeros), then `#` or a JSON pointer.
    static func isRelativeJSONPointer(_ u: [Unicode.Scalar]) -> Bool {
        var i = 0
        while i < u.count && isDigit(u[i]) { i += 1 }
        guard i > 0, !(i > 1 && u[0] == "0") else { return false }
        if i < u.count && u[i] == "#" { return i + 1 == u.count }
        return isJSONPointer(u[i...])
    }

    /// RFC 6570 level 4 syntax.
    static func isURITemplate(_ u: [Unicode.Scalar]) -> Bool {
        var i = 0
        func pctEncoded() -> Bool {
            guard i + 2 < u.count, u[i] == "%", isHex(u[i + 1]), isHex(u[i + 2]) else { return false }
            i += 3
            return true
        }
        while i < u.count {
            let c = u[i]
            if c == "{" {
                i += 1
                guard i < u.count else { return false }
                if "+#./;?&".unicodeScalars.contains(u[i]) { i += 1 }
                // variable-list = varspec *( "," varspec )
                while true {
                    // varname = varchar *( ["."] varchar )
                    var lastWasDot = true
                    var length = 0
                    while i < u.count {
                        let v = u[i]
                        if isAlpha(v) || isDigit(v) || v == "_" { i += 1; lastWasDot = false; length += 1 }
                        else if v == "%" { guard pctEncoded() else { return false }; lastWasDot = false; length += 1 }
                        else if v == "." { guard !lastWasDot else { return false }; lastWasDot = true; i += 1 }
                        else { break }
                    }
                    guard length > 0, !lastWasDot, i < u.count else { return false }
                    if u[i] == ":" {
                        i += 1
                        let start = i
                        while i < u.count && isDigit(u[i]) { i += 1 }
                        guard i > start, i - start <= 4, u[start] != "0" else { return false }
                    } else if u[i] == "*" {
                        i += 1
                    }
                    guard i < u.count else { return false }
                    if u[i] == "," { i += 1; continue }
                    if u[i] == "}" { i += 1; break }
                    return false
                }
            } else if c == "%" {
                guard pctEncoded() else { return false }
            } else {
                // literals: anything but CTL, SP, DQUOTE, "%", "<", ">", "\", "^", "`", "{", "|", "}"
                guard c.value > 0x20, c.value != 0x7F, !"\"<>\\^`{|}".unicodeScalars.contains(c) else { return false }
                i += 1
            }
        }
        return true
    }
}

/// RFC 3986 (URI) / RFC 3987 (IRI) grammar checks.
enum URIGrammar {
    static let unreserved = "-._~"
    static let subDelims = "!$&'()*+,;="

    static func isUcschar(_ c: Unicode.Scalar) -> Bool {
        let v = c.value
        return (v >= 0xA0 && v <= 0xD7FF) || (v >= 0xF900 && v <= 0xFDCF) || (v >= 0xFDF0 && v <= 0xFFEF)
            || (v >= 0x10000 && v <= 0xEFFFD && (v & 0xFFFE) != 0xFFFE)
    }

    static func isIprivate(_ c: Unicode.Scalar) -> Bool {
        let v = c.value
        return (v >= 0xE000 && v <= 0xF8FF) || (v >= 0xF0000 && v <= 0xFFFFD) || (v >= 0x100000 && v <= 0x10FFFD)
    }

    /// Checks characters of a component: unreserved / pct-encoded / sub-delims / `extra`.
    static func component(_ s: ArraySlice<Unicode.Scalar>, extra: String, iri: Bool, privateOK: Bool = false) -> Bool {
        var i = s.startIndex
        while i < s.endIndex {
            let c = s[i]
            if c == "%" {
                guard i + 2 < s.endIndex, FormatChecker.isHex(s[i + 1]), FormatChecker.isHex(s[i + 2]) else { return false }
                i += 3
                continue
            }
            let ok = FormatChecker.isAlpha(c) || FormatChecker.isDigit(c) || unreserved.unicodeScalars.contains(c)
                || subDelims.unicodeScalars.contains(c) || extra.unicodeScalars.contains(c)
                || (iri && isUcschar(c)) || (iri && privateOK && isIprivate(c))
            guard ok else { return false }
            i += 1
        }
        return true
    }

    static func check(_ u: [Unicode.Scalar], iri: Bool, reference: Bool) -> Bool {
        var rest = u[...]
        // Scheme, if any: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":"
        var hasScheme = false
        if let colon = rest.firstIndex(of: ":"), !rest[..<colon].contains("/"), !rest[..<colon].contains("?"), !rest[..<colon].contains("#") {
            let scheme = rest[..<colon]
            if let f = scheme.first, FormatChecker.isAlpha(f),
               scheme.allSatisfy({ FormatChecker.isAlpha($0) || FormatChecker.isDigit($0) || $0 == "+" || $0 == "-" || $0 == "." }) {
                hasScheme = true
                rest = rest[(colon + 1)...]
            } else if !reference {
                return false
            }
            // In a relative reference a colon in the first segment is not allowed (checked below).
        }
        guard hasScheme || reference else { return false }
        if let hash = rest.firstIndex(of: "#") {
            guard component(rest[(hash + 1)...], extra: ":@/?", iri: iri) else { return false }
            rest = rest[..<hash]
        }
        if let q = rest.firstIndex(of: "?") {
            guard component(rest[(q + 1)...], extra: ":@/?", iri: iri, privateOK: true) else { return false }
            rest = rest[..<q]
        }
        var path = rest
        if rest.starts(with: ["/", "/"]) {
            let afterSlashes = rest.dropFirst(2)
            let end = afterSlashes.firstIndex(of: "/") ?? afterSlashes.endIndex
            guard authority(afterSlashes[..<end], iri: iri) else { return false }
            path = afterSlashes[end...]
        } else if !hasScheme {
            // relative-path: first segment must not contain ':'
            let firstSegment = path.prefix { $0 != "/" }
            if firstSegment.contains(":") { return false }
        }
        return component(path, extra: ":@/", iri: iri)
    }

    static func authority(_ a: ArraySlice<Unicode.Scalar>, iri: Bool) -> Bool {
        var hostPort = a
        if let at = a.firstIndex(of: "@") {
            guard component(a[..<at], extra: ":", iri: iri) else { return false }
            hostPort = a[(at + 1)...]
        }
        var host = hostPort
        if hostPort.first == "[" {
            guard let close = hostPort.firstIndex(of: "]") else { return false }
            let literal = hostPort[(hostPort.startIndex + 1)..<close]
            if literal.first == "v" || literal.first == "V" {
                // IPvFuture: "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
                guard let dot = literal.firstIndex(of: "."), dot > literal.startIndex + 1,
                      literal[(literal.startIndex + 1)..<dot].allSatisfy(FormatChecker.isHex), dot + 1 < literal.endIndex,
                      component(literal[(dot + 1)...], extra: ":", iri: false), !literal.contains("%") else { return false }
            } else {
                guard FormatChecker.isIPv6(literal) else { return false }
            }
            host = hostPort[..<(close + 1)]
            let after = hostPort[(close + 1)...]
            if !after.isEmpty {
                guard after.first == ":", after.dropFirst().allSatisfy(FormatChecker.isDigit) else { return false }
            }
            return true
        }
        if let colon = hostPort.lastIndex(of: ":") {
            guard hostPort[(colon + 1)...].allSatisfy(FormatChecker.isDigit) else { return false }
            host = hostPort[..<colon]
        }
        return component(host, extra: "", iri: iri)
    }
}
