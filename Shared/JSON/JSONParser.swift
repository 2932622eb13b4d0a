/// Parser limits. Passed to `JSON(parsing:options:)`.
public struct JSONParseOptions: Sendable, Hashable {
    /// Maximum nesting of arrays/objects. The parser recurses once per level, so this bounds
    /// stack use on hostile input (`[[[[...`); 256 is far beyond any real contract.
    public var maxDepth: Int

    /// Default limits (`maxDepth` 256).
    public init(maxDepth: Int = 256) {
        self.maxDepth = maxDepth
    }
}

extension JSON {
    /// Parses strict RFC 8259 JSON from bytes: one value, optional surrounding whitespace,
    /// well-formed UTF-8 only, no trailing data. Throws `JSONError` with the byte offset.
    ///
    /// Numbers: integer literals keep every digit; others become the nearest `Double`;
    /// a literal that overflows `Double` (e.g. `1e400`) is rejected with `.numberOutOfRange`
    /// rather than silently turned into infinity. Underflow (`1e-400`) rounds to 0.
    public init(parsing bytes: UnsafeRawBufferPointer, options: JSONParseOptions = JSONParseOptions()) throws {
        var parser = JSONParser(bytes.bindMemory(to: UInt8.self), maxDepth: options.maxDepth)
        self = try parser.parseDocument()
    }

    /// Parses strict RFC 8259 JSON from a byte array (see `init(parsing:options:)` for the rules).
    public init(parsing bytes: [UInt8], options: JSONParseOptions = JSONParseOptions()) throws {
        self = try bytes.withUnsafeBytes { try JSON(parsing: $0, options: options) }
    }

    /// Parses strict RFC 8259 JSON from any byte collection (e.g. `Data`, `ArraySlice<UInt8>`);
    /// contiguous collections are parsed in place, others are copied once.
    public init<C: Collection>(parsing bytes: C, options: JSONParseOptions = JSONParseOptions()) throws where C.Element == UInt8 {
        if let value = try bytes.withContiguousStorageIfAvailable({ try JSON(parsing: UnsafeRawBufferPointer($0), options: options) }) {
            self = value
        } else {
            self = try JSON(parsing: Array(bytes), options: options)
        }
    }

    /// Parses strict RFC 8259 JSON from a string's UTF-8.
    public init(parsing text: String, options: JSONParseOptions = JSONParseOptions()) throws {
        var text = text
        self = try text.withUTF8 { try JSON(parsing: UnsafeRawBufferPointer($0), options: options) }
    }
}

/// Recursive-descent parser over a contiguous buffer. Internal: the public surface is `JSON(parsing:)`.
struct JSONParser {
    let buf: UnsafeBufferPointer<UInt8>
    let end: Int
    var pos = 0
    let maxDepth: Int
    /// Reused buffer for strings containing escapes.
    var scratch: [UInt8] = []

    init(_ buf: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.buf = buf
        self.end = buf.count
        self.maxDepth = maxDepth
    }

    mutating func parseDocument() throws -> JSON {
        let value = try parseValue(depth: 0)
        skipWhitespace()
        if pos < end {
            throw JSONError(code: .trailingData, offset: pos,
                            message: "unexpected \(describe(pos)) after the JSON value at offset \(pos)")
        }
        return value
    }

    @inline(__always)
    mutating func skipWhitespace() {
        while pos < end {
            let b = buf[pos]
            if b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 { pos += 1 } else { return }
        }
    }

    /// Human description of the byte at `offset` for messages.
    func describe(_ offset: Int) -> String {
        guard offset < end else { return "end of input" }
        let b = buf[offset]
        if b >= 0x20 && b < 0x7F { return "character '\(Character(Unicode.Scalar(b)))'" }
        return "byte 0x\(String(b, radix: 16, uppercase: true))"
    }

    func unexpected(_ expectation: String) -> JSONError {
        if pos >= end {
            return JSONError(code: .unexpectedEndOfInput, offset: pos,
                             message: "unexpected end of input, expected \(expectation) at offset \(pos)")
        }
        return JSONError(code: .unexpectedCharacter, offset: pos,
                         message: "expected \(expectation) at offset \(pos), found \(describe(pos))")
    }

    mutating func parseValue(depth: Int) throws -> JSON {
        skipWhitespace()
        guard pos < end else { throw unexpected("a value") }
        switch buf[pos] {
        case UInt8(ascii: "\""):
            return .string(try parseString())
        case UInt8(ascii: "{"):
            return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["):
            return try parseArray(depth: depth + 1)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return .number(try parseNumber())
        case UInt8(ascii: "t"):
            try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"):
            try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"):
            try expectLiteral("null"); return .null
        default:
            throw unexpected("a value")
        }
    }

    mutating func expectLiteral(_ word: StaticString) throws {
        let start = pos
        let n = word.utf8CodeUnitCount
        let p = word.utf8Start
        for i in 0..<n {
            guard pos < end, buf[pos] == p[i] else {
                let e = unexpected("'\(word)'")
                throw JSONError(code: e.code, offset: e.offset,
                                message: "invalid literal at offset \(start): expected '\(word)'")
            }
            pos += 1
        }
    }

    func checkDepth(_ depth: Int) throws {
        if depth > maxDepth {
            throw JSONError(code: .depthLimitExceeded, offset: pos,
                            message: "nesting deeper than \(maxDepth) levels at offset \(pos)")
        }
    }

    mutating func parseArray(depth: Int) throws -> JSON {
        try checkDepth(depth)
        pos += 1  // '['
        var elements: [JSON] = []
        skipWhitespace()
        if pos < end && buf[pos] == UInt8(ascii: "]") { pos += 1; return .array(elements) }
        while true {
            elements.append(try parseValue(depth: depth))
            skipWhitespace()
            guard pos < end else { throw unexpected("',' or ']'") }
            let b = buf[pos]
            if b == UInt8(ascii: ",") { pos += 1; continue }
            if b == UInt8(ascii: "]") { pos += 1; return .array(elements) }
            throw unexpected("',' or ']'")
        }
    }

    mutating func parseObject(depth: Int) throws -> JSON {
        try checkDepth(depth)
        pos += 1  // '{'
        var object = JSONObject()
        skipWhitespace()
        guard pos < end else { throw unexpected("a string key or '}'") }
        if buf[pos] == UInt8(ascii: "}") { pos += 1; return .object(object) }
        guard buf[pos] == UInt8(ascii: "\"") else { throw unexpected("a string key or '}'") }
        object.entries.reserveCapacity(8)
        while true {
            let key = try parseString()
            skipWhitespace()
            guard pos < end, buf[pos] == UInt8(ascii: ":") else { throw unexpected("':' after object key") }
            pos += 1
            let value = try parseValue(depth: depth)
            // Last duplicate wins; the common no-duplicate case costs one scan of a small array.
            if let i = object.firstIndex(forKey: key) {
                object.entries[i].value = value
            } else {
                object.appendNew(key, value)
            }
            skipWhitespace()
            guard pos < end else { throw unexpected("',' or '}'") }
            let b = buf[pos]
            if b == UInt8(ascii: "}") { pos += 1; return .object(object) }
            guard b == UInt8(ascii: ",") else { throw unexpected("',' or '}'") }
            pos += 1
            skipWhitespace()
            guard pos < end, buf[pos] == UInt8(ascii: "\"") else { throw unexpected("a string key after ','") }
        }
    }

    // MARK: Strings

    /// Parses a string starting at the opening quote. Validates UTF-8 as it scans, so the
    /// final `String` construction is a plain copy.
    mutating func parseString() throws -> String {
        pos += 1  // opening quote
        let start = pos
        if try scanToQuoteOrEscape(stringStart: start) { return try parseEscapedString(from: start) }
        return String(decoding: UnsafeBufferPointer(rebasing: buf[start..<(pos - 1)]), as: UTF8.self)
    }

    /// Scans a string's bytes from `pos`, validating them: true at a backslash (`pos` on it),
    /// false at the closing quote (`pos` after it). The index lives in a local while scanning:
    /// stepping `pos` itself stored it to memory on every byte.
    @inline(__always)
    mutating func scanToQuoteOrEscape(stringStart start: Int) throws -> Bool {
        var i = pos
        while true {
            // Eight bytes at a time to the first one that needs a look: a quote, backslash,
            // control character or non-ASCII byte (the has-zero / has-less bit tricks; a borrow
            // can only mark bytes after a real hit, so the lowest mark is exact).
            while i + 8 <= end {
                let x = UInt64(littleEndian: UnsafeRawPointer(buf.baseAddress! + i).loadUnaligned(as: UInt64.self))
                let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
                let quote = x ^ (ones &* 0x22), backslash = x ^ (ones &* 0x5C)
                let control = (x &- ones &* 0x20) & ~x
                let special = (control | ((quote &- ones) & ~quote) | ((backslash &- ones) & ~backslash) | x) & highs
                if special != 0 {
                    i += special.trailingZeroBitCount &>> 3
                    break
                }
                i += 8
            }
            guard i < end else { break }
            let b = buf[i]
            if b == UInt8(ascii: "\"") { pos = i + 1; return false }
            if b == UInt8(ascii: "\\") { pos = i; return true }
            if b < 0x20 { pos = i; throw controlCharacter() }
            if b < 0x80 {
                i += 1
            } else {
                pos = i
                try validateUTF8Sequence()
                i = pos
            }
        }
        pos = i
        throw JSONError(code: .unexpectedEndOfInput, offset: pos,
                        message: "unterminated string starting at offset \(start - 1)")
    }

    func controlCharacter() -> JSONError {
        JSONError(code: .controlCharacterInString, offset: pos,
                  message: "unescaped control character 0x\(String(buf[pos], radix: 16, uppercase: true)) in string at offset \(pos)")
    }

    /// Slow path: copies into `scratch`, decoding escapes.
    mutating func parseEscapedString(from start: Int) throws -> String {
        try decodeEscapedString(from: start)
        return String(decoding: scratch, as: UTF8.self)
    }

    /// Decodes the string that began at `start` (after its quote) into `scratch`, through its
    /// closing quote; `pos` is at the first escape.
    mutating func decodeEscapedString(from start: Int) throws {
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeBufferPointer(rebasing: buf[start..<pos]))
        while pos < end {
            let b = buf[pos]
            if b == UInt8(ascii: "\"") {
                pos += 1
                return
            }
            if b == UInt8(ascii: "\\") {
                try parseEscape()
            } else if b < 0x20 {
                throw controlCharacter()
            } else if b < 0x80 {
                scratch.append(b); pos += 1
            } else {
                let s = pos
                try validateUTF8Sequence()
                scratch.append(contentsOf: UnsafeBufferPointer(rebasing: buf[s..<pos]))
            }
        }
        throw JSONError(code: .unexpectedEndOfInput, offset: pos,
                        message: "unterminated string starting at offset \(start - 1)")
    }

    mutating func parseEscape() throws {
        let escapeStart = pos
        pos += 1
        guard pos < end else {
            throw JSONError(code: .unexpectedEndOfInput, offset: pos, message: "unterminated escape at offset \(escapeStart)")
        }
        let c = buf[pos]
        pos += 1
        switch c {
        case UInt8(ascii: "\""): scratch.append(0x22)
        case UInt8(ascii: "\\"): scratch.append(0x5C)
        case UInt8(ascii: "/"): scratch.append(0x2F)
        case UInt8(ascii: "b"): scratch.append(0x08)
        case UInt8(ascii: "f"): scratch.append(0x0C)
        case UInt8(ascii: "n"): scratch.append(0x0A)
        case UInt8(ascii: "r"): scratch.append(0x0D)
        case UInt8(ascii: "t"): scratch.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = try parseHex4(escapeStart)
            if scalar >= 0xD800 && scalar < 0xDC00 {
                // A high surrogate must be followed by an escaped low surrogate.
                guard pos + 1 < end, buf[pos] == UInt8(ascii: "\\"), buf[pos + 1] == UInt8(ascii: "u") else {
                    throw JSONError(code: .invalidUnicodeEscape, offset: escapeStart,
                                    message: "unpaired high surrogate \\u\(String(scalar, radix: 16, uppercase: true)) at offset \(escapeStart)")
                }
                let lowStart = pos
                pos += 2
                let low = try parseHex4(lowStart)
                guard low >= 0xDC00 && low < 0xE000 else {
                    throw JSONError(code: .invalidUnicodeEscape, offset: escapeStart,
                                    message: "high surrogate at offset \(escapeStart) is not followed by a low surrogate")
                }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if scalar >= 0xDC00 && scalar < 0xE000 {
                throw JSONError(code: .invalidUnicodeEscape, offset: escapeStart,
                                message: "unpaired low surrogate \\u\(String(scalar, radix: 16, uppercase: true)) at offset \(escapeStart)")
            }
            appendUTF8(scalar)
        default:
            throw JSONError(code: .invalidEscape, offset: escapeStart,
                            message: "invalid escape '\\\(Character(Unicode.Scalar(c)))' at offset \(escapeStart)")
        }
    }

    mutating func parseHex4(_ escapeStart: Int) throws -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard pos < end else {
                throw JSONError(code: .unexpectedEndOfInput, offset: pos, message: "unterminated \\u escape at offset \(escapeStart)")
            }
            let c = buf[pos]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - 48)
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - 87)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - 55)
            default:
                throw JSONError(code: .invalidEscape, offset: escapeStart,
                                message: "invalid \\u escape at offset \(escapeStart): expected 4 hex digits")
            }
            v = v << 4 | d
            pos += 1
        }
        return v
    }

    mutating func appendUTF8(_ s: UInt32) {
        if s < 0x80 {
            scratch.append(UInt8(s))
        } else if s < 0x800 {
            scratch.append(UInt8(0xC0 | (s >> 6)))
            scratch.append(UInt8(0x80 | (s & 0x3F)))
        } else if s < 0x10000 {
            scratch.append(UInt8(0xE0 | (s >> 12)))
            scratch.append(UInt8(0x80 | ((s >> 6) & 0x3F)))
            scratch.append(UInt8(0x80 | (s & 0x3F)))
        } else {
            scratch.append(UInt8(0xF0 | (s >> 18)))
            scratch.append(UInt8(0x80 | ((s >> 12) & 0x3F)))
            scratch.append(UInt8(0x80 | ((s >> 6) & 0x3F)))
            scratch.append(UInt8(0x80 | (s & 0x3F)))
        }
    }

    /// Validates one multi-byte UTF-8 sequence at `pos` (Unicode Table 3-7: no overlongs,
    /// no surrogates, nothing above U+10FFFF) and advances past it.
    @inline(__always)
    mutating func validateUTF8Sequence() throws {
        let b0 = buf[pos]
        var n: Int
        var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
        switch b0 {
        case 0xC2...0xDF: n = 1
        case 0xE0: n = 2; lo = 0xA0
        case 0xE1...0xEC, 0xEE, 0xEF: n = 2
        case 0xED: n = 2; hi = 0x9F
        case 0xF0: n = 3; lo = 0x90
        case 0xF1...0xF3: n = 3
        case 0xF4: n = 3; hi = 0x8F
        default: throw invalidUTF8(pos)
        }
        let start = pos
        guard pos + n < end else { throw invalidUTF8(start) }
        let b1 = buf[pos + 1]
        guard b1 >= lo && b1 <= hi else { throw invalidUTF8(start) }
        if n >= 2 { guard buf[pos + 2] & 0xC0 == 0x80 else { throw invalidUTF8(start) } }
        if n == 3 { guard buf[pos + 3] & 0xC0 == 0x80 else { throw invalidUTF8(start) } }
        pos += n + 1
    }

    func invalidUTF8(_ offset: Int) -> JSONError {
        JSONError(code: .invalidUTF8, offset: offset, message: "invalid UTF-8 at offset \(offset)")
    }

    // MARK: Numbers

    /// Exact powers of ten representable in a Double (for the Clinger fast path).
    static let powersOfTen: [Double] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                                        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22]

    @inline(__always)
    func isDigit(_ i: Int) -> Bool { i < end && buf[i] &- 48 < 10 }

    mutating func parseNumber() throws -> JSONNumber {
        let start = pos
        var negative = false
        if buf[pos] == UInt8(ascii: "-") { negative = true; pos += 1 }
        guard isDigit(pos) else {
            throw JSONError(code: pos < end ? .invalidNumber : .unexpectedEndOfInput, offset: pos,
                            message: "invalid number at offset \(start): expected a digit after '-'")
        }
        var mantissa: UInt64 = 0
        var significantDigits = 0  // digits accumulated into mantissa (after leading zeros)
        var droppedDigits = 0       // integer digits beyond 19 that did not fit the mantissa
        let intStart = pos
        if buf[pos] == UInt8(ascii: "0") {
            pos += 1
            if isDigit(pos) {
                throw JSONError(code: .invalidNumber, offset: start,
                                message: "invalid number at offset \(start): leading zeros are not allowed")
            }
        } else {
            while isDigit(pos) {
                if significantDigits < 19 {
                    mantissa = mantissa &* 10 &+ UInt64(buf[pos] &- 48); significantDigits += 1
                } else {
                    droppedDigits += 1
                }
                pos += 1
            }
        }
        let intEnd = pos
        var isPlainInteger = true
        var fractionDigits = 0
        if pos < end && buf[pos] == UInt8(ascii: ".") {
            isPlainInteger = false
            pos += 1
            guard isDigit(pos) else {
                throw JSONError(code: pos < end ? .invalidNumber : .unexpectedEndOfInput, offset: pos,
                                message: "invalid number at offset \(start): expected a digit after '.'")
            }
            while isDigit(pos) {
                let d = UInt64(buf[pos] &- 48)
                if significantDigits < 19 {
                    if mantissa != 0 || d != 0 { significantDigits += 1 }
                    mantissa = mantissa &* 10 &+ d
                    fractionDigits += 1
                } else {
                    droppedDigits += 1  // only matters for the fast-path decision below
                }
                pos += 1
            }
        }
        var exponent = 0
        if pos < end && (buf[pos] | 0x20) == UInt8(ascii: "e") {
            isPlainInteger = false
            pos += 1
            var expNegative = false
            if pos < end && (buf[pos] == UInt8(ascii: "+") || buf[pos] == UInt8(ascii: "-")) {
                expNegative = buf[pos] == UInt8(ascii: "-"); pos += 1
            }
            guard isDigit(pos) else {
                throw JSONError(code: pos < end ? .invalidNumber : .unexpectedEndOfInput, offset: pos,
                                message: "invalid number at offset \(start): expected a digit in the exponent")
            }
            while isDigit(pos) {
                if exponent < 100_000 { exponent = exponent * 10 + Int(buf[pos] &- 48) }
                pos += 1
            }
            if expNegative { exponent = -exponent }
        }

        if isPlainInteger {
            if droppedDigits == 0 && intEnd - intStart <= 18 {
                let v = Int64(bitPattern: mantissa)
                return JSONNumber(negative ? -v : v)
            }
            return JSONNumber(digits: Array(UnsafeBufferPointer(rebasing: buf[intStart..<intEnd])), negative: negative)
        }

        // Clinger's fast path: exact mantissa and exact power of ten give a correctly rounded result.
        let e10 = exponent - fractionDigits
        if droppedDigits == 0 && mantissa <= (1 << 53) && e10 >= -22 && e10 <= 22 {
            var d = Double(mantissa)
            d = e10 < 0 ? d / JSONParser.powersOfTen[-e10] : d * JSONParser.powersOfTen[e10]
            return JSONNumber(negative ? -d : d)
        }
        // Slow path: the standard library's correctly rounded decimal conversion.
        let text = String(decoding: UnsafeBufferPointer(rebasing: buf[start..<pos]), as: UTF8.self)
        guard let d = Double(text), d.isFinite else {
            throw JSONError(code: .numberOutOfRange, offset: start,
                            message: "number at offset \(start) is too large to represent")
        }
        return JSONNumber(d)
    }
}
