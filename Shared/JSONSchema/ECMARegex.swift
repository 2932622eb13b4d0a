/// An ECMA-262 regular expression in Unicode (`u`) mode, as JSON Schema's `pattern`,
/// `patternProperties` and `format: "regex"` require.
///
/// Written here rather than wrapping `NSRegularExpression` because ICU's dialect differs from
/// ECMA-262 (`\d`/`\w` are Unicode-aware, different escape rules), and because a backtracking
/// matcher over a schema-supplied pattern must be bounded: `(a+)+$` against a long input would
/// otherwise hang a pipeline stage. Matching counts steps and gives up past `stepLimit`.
///
/// Supported: alternation, groups (capturing, `(?:)`, named `(?<n>)`), greedy/lazy quantifiers,
/// classes with ranges and escapes, `\d\D\w\W\s\S`, `\p{..}`/`\P{..}` (general categories and
/// common binary properties; not scripts), `^ $ \b \B`, look-ahead and look-behind (variable
/// width), backreferences (`\1`, `\k<n>`), `\cX \xHH \uHHHH \u{H..}` escapes. No flags: `^`/`$`
/// anchor the whole input, `.` excludes line terminators.
public struct ECMARegex: Sendable, CustomStringConvertible {
    /// The source pattern.
    public let pattern: String
    let program: RegexProgram
    /// Maximum VM steps per `matches` call before giving up (see `matches(_:)`).
    public var stepLimit: Int = 1_000_000

    /// Compiles `pattern`; throws `JSONSchemaError(.invalidRegex)` if it is not valid ECMA-262 (u mode)
    /// or would compile to an unreasonably large program (huge counted repetitions).
    public init(_ pattern: String) throws {
        self.pattern = pattern
        var parser = RegexParser(Array(pattern.unicodeScalars))
        let ast = try parser.parse()
        var compiler = RegexCompiler(groupCount: parser.groupCount, names: parser.groupNames)
        program = try compiler.compile(ast, pattern: pattern)
    }

    /// The pattern, for messages.
    public var description: String { pattern }

    /// True if the pattern matches anywhere in `string` (ECMA `RegExp.prototype.test`).
    /// Returns nil when matching exceeded `stepLimit` (catastrophic backtracking); callers treat
    /// that as a failure with its own message rather than guessing.
    public func matches(_ string: String) -> Bool? {
        if let literal = program.literal {
            // Plain-text pattern: a substring search needs no VM.
            return string.utf8.count >= literal.count && containsBytes(string, literal)
        }
        var s = string
        return s.withUTF8 { bytes in
            var vm = RegexVM(program: program, input: bytes, stepLimit: stepLimit)
            return vm.search()
        }
    }

    private func containsBytes(_ string: String, _ needle: [UInt8]) -> Bool {
        if needle.isEmpty { return true }
        var s = string
        return s.withUTF8 { hay in
            let n = needle.count
            guard hay.count >= n else { return false }
            let first = needle[0]
            var i = 0
            while i <= hay.count - n {
                if hay[i] == first {
                    var j = 1
                    while j < n && hay[i + j] == needle[j] { j += 1 }
                    if j == n { return true }
                }
                i += 1
            }
            return false
        }
    }
}

// MARK: - AST

indirect enum RegexNode {
    case empty
    case char(UInt32)
    case dot
    case set(CharSet)
    case seq([RegexNode])
    case alt([RegexNode])
    case group(RegexNode, capture: Int?)
    case repetition(RegexNode, min: Int, max: Int?, greedy: Bool)
    case lineStart, lineEnd
    case wordBoundary(negated: Bool)
    case look(RegexNode, ahead: Bool, negated: Bool)
    case backref(Int)
    case namedBackref(String)
}

/// A character class: explicit ranges plus property predicates, optionally negated.
struct CharSet: Sendable {
    var ranges: [ClosedRange<UInt32>] = []
    var properties: [(UnicodePropertyTest, Bool)] = []  // (test, negated)
    var negated = false
    /// Bitmap for ASCII, precomputed after construction for a fast path.
    var ascii: (UInt64, UInt64) = (0, 0)

    mutating func finish() {
        ascii = (0, 0)
        for c in 0..<128 as Range<UInt32> where rawContains(c) {
            if c < 64 { ascii.0 |= 1 << UInt64(c) } else { ascii.1 |= 1 << UInt64(c - 64) }
        }
    }

    func rawContains(_ c: UInt32) -> Bool {
        for r in ranges where r.contains(c) { return true }
        if !properties.isEmpty, let scalar = Unicode.Scalar(c) {
            for (p, neg) in properties where p.test(scalar) != neg { return true }
        }
        return false
    }

    @inline(__always)
    func contains(_ c: UInt32) -> Bool {
        if c < 64 { return (ascii.0 >> UInt64(c)) & 1 == 1 ? !negated : negated }
        if c < 128 { return (ascii.1 >> UInt64(c - 64)) & 1 == 1 ? !negated : negated }
        return rawContains(c) != negated
    }

    static let digit: [ClosedRange<UInt32>] = [48...57]
    static let word: [ClosedRange<UInt32>] = [48...57, 65...90, 95...95, 97...122]
    /// ECMA-262 WhiteSpace and LineTerminator code points.
    static let space: [ClosedRange<UInt32>] = [9...13, 32...32, 0xA0...0xA0, 0x1680...0x1680, 0x2000...0x200A,
                                                0x2028...0x2029, 0x202F...0x202F, 0x205F...0x205F, 0x3000...0x3000, 0xFEFF...0xFEFF]
    /// Complement of sorted, non-overlapping ranges over the code point space.
    static func complement(_ ranges: [ClosedRange<UInt32>]) -> [ClosedRange<UInt32>] {
        var out: [ClosedRange<UInt32>] = []
        var next: UInt32 = 0
        for r in ranges {
            if r.lowerBound > next { out.append(next...(r.lowerBound - 1)) }
            next = r.upperBound + 1
        }
        if next <= 0x10FFFF { out.append(next...0x10FFFF) }
        return out
    }
}

/// A Unicode property usable in `\p{...}`.
enum UnicodePropertyTest: Sendable {
    case categories(Set<UInt8>)  // general categories by index into `allCategories`
    case alphabetic, lowercase, uppercase, whiteSpace, any, ascii, assigned, emoji, idStart, idContinue, hexDigit

    func test(_ s: Unicode.Scalar) -> Bool {
        let p = s.properties
        switch self {
        case .categories(let set): return set.contains(UnicodePropertyTest.index(of: p.generalCategory))
        case .alphabetic: return p.isAlphabetic
        case .lowercase: return p.isLowercase
        case .uppercase: return p.isUppercase
        case .whiteSpace: return p.isWhitespace
        case .any: return true
        case .ascii: return s.value < 128
        case .assigned: return p.generalCategory != .unassigned
        case .emoji: return p.isEmoji
        case .idStart: return p.isIDStart
        case .idContinue: return p.isIDContinue
        case .hexDigit: return p.isHexDigit
        }
    }

    static let allCategories: [(short: String, long: String, cat: Unicode.GeneralCategory)] = [
        ("Lu", "Uppercase_Letter", .uppercaseLetter), ("Ll", "Lowercase_Letter", .lowercaseLetter),
        ("Lt", "Titlecase_Letter", .titlecaseLetter), ("Lm", "Modifier_Letter", .modifierLetter),
        ("Lo", "Other_Letter", .otherLetter), ("Mn", "Nonspacing_Mark", .nonspacingMark),
        ("Mc", "Spacing_Mark", .spacingMark), ("Me", "Enclosing_Mark", .enclosingMark),
        ("Nd", "Decimal_Number", .decimalNumber), ("Nl", "Letter_Number", .letterNumber),
        ("No", "Other_Number", .otherNumber), ("Pc", "Connector_Punctuation", .connectorPunctuation),
        ("Pd", "Dash_Punctuation", .dashPunctuation), ("Ps", "Open_Punctuation", .openPunctuation),
        ("Pe", "Close_Punctuation", .closePunctuation), ("Pi", "Initial_Punctuation", .initialPunctuation),
        ("Pf", "Final_Punctuation", .finalPunctuation), ("Po", "Other_Punctuation", .otherPunctuation),
        ("Sm", "Math_Symbol", .mathSymbol), ("Sc", "Currency_Symbol", .currencySymbol),
        ("Sk", "Modifier_Symbol", .modifierSymbol), ("So", "Other_Symbol", .otherSymbol),
        ("Zs", "Space_Separator", .spaceSeparator), ("Zl", "Line_Separator", .lineSeparator),
        ("Zp", "Paragraph_Separator", .paragraphSeparator), ("Cc", "Control", .control),
        ("Cf", "Format", .format), ("Cs", "Surrogate", .surrogate), ("Co", "Private_Use", .privateUse),
        ("Cn", "Unassigned", .unassigned),
    ]
    static let groups: [(short: String, long: String)] = [
        ("L", "Letter"), ("M", "Mark"), ("N", "Number"), ("P", "Punctuation"), ("S", "Symbol"),
        ("Z", "Separator"), ("C", "Other"),
    ]

    static func index(of cat: Unicode.GeneralCategory) -> UInt8 {
        for (i, c) in allCategories.enumerated() where c.cat == cat { return UInt8(i) }
        return 29
    }

    /// Looks up `\p{name}` / `\p{gc=value}` / `\p{General_Category=value}`.
    static func named(_ text: String) -> UnicodePropertyTest? {
        var name = text
        if let eq = text.firstIndex(of: "=") {
            let key = text[..<eq]
            guard key == "General_Category" || key == "gc" else { return nil }  // Script etc. unsupported
            name = String(text[text.index(after: eq)...])
            return category(name)
        }
        if let c = category(name) { return c }
        switch name {
        case "Alphabetic", "Alpha": return .alphabetic
        case "Lowercase", "Lower": return .lowercase
        case "Uppercase", "Upper": return .uppercase
        case "White_Space", "space": return .whiteSpace
        case "Any": return .any
        case "ASCII": return .ascii
        case "Assigned": return .assigned
        case "Emoji": return .emoji
        case "ID_Start", "IDS": return .idStart
        case "ID_Continue", "IDC": return .idContinue
        case "Hex_Digit", "Hex", "ASCII_Hex_Digit", "AHex": return .hexDigit
        default: return nil
        }
    }

    static func category(_ name: String) -> UnicodePropertyTest? {
        if name == "LC" || name == "Cased_Letter" { return .categories([0, 1, 2]) }
        for (i, c) in allCategories.enumerated() where c.short == name || c.long == name { return .categories([UInt8(i)]) }
        for g in groups where g.short == name || g.long == name {
            var set = Set<UInt8>()
            for (i, c) in allCategories.enumerated() where c.short.hasPrefix(g.short) { set.insert(UInt8(i)) }
            return .categories(set)
        }
        return nil
    }
}

// MARK: - Parser

struct RegexParser {
    let chars: [Unicode.Scalar]
    var pos = 0
    var groupCount = 0
    var groupNames: [String: Int] = [:]
    var namedBackrefs: [String] = []
    var maxBackref = 0
    /// Group nesting depth; parsing and compiling recurse per level, so hostile patterns
    /// (`((((...`) are refused instead of exhausting the stack.
    var depth = 0
    static let maxDepth = 100

    init(_ chars: [Unicode.Scalar]) { self.chars = chars }

    func error(_ message: String) -> JSONSchemaError {
        JSONSchemaError(code: .invalidRegex, location: "", message: "invalid regular expression: \(message) at position \(pos)")
    }

    var atEnd: Bool { pos >= chars.count }
    func peek(_ offset: Int = 0) -> Unicode.Scalar? { pos + offset < chars.count ? chars[pos + offset] : nil }

    mutating func parse() throws -> RegexNode {
        let node = try parseDisjunction()
        if !atEnd { throw error(chars[pos] == ")" ? "unmatched ')'" : "unexpected '\(chars[pos])'") }
        if maxBackref > groupCount { throw error("backreference \\\(maxBackref) to a group that does not exist") }
        for n in namedBackrefs where groupNames[n] == nil { throw error("backreference to unknown group name '\(n)'") }
        return node
    }

    mutating func parseDisjunction() throws -> RegexNode {
        depth += 1
        defer { depth -= 1 }
        if depth > RegexParser.maxDepth { throw error("groups nested more than \(RegexParser.maxDepth) deep") }
        var alternatives = [try parseAlternative()]
        while peek() == "|" {
            pos += 1
            alternatives.append(try parseAlternative())
        }
        return alternatives.count == 1 ? alternatives[0] : .alt(alternatives)
    }

    mutating func parseAlternative() throws -> RegexNode {
        var terms: [RegexNode] = []
        while let c = peek(), c != "|", c != ")" {
            terms.append(try parseTerm())
        }
        if terms.isEmpty { return .empty }
        return terms.count == 1 ? terms[0] : .seq(terms)
    }

    mutating func parseTerm() throws -> RegexNode {
        let c = chars[pos]
        var atom: RegexNode
        var quantifiable = true
        switch c {
        case "^": pos += 1; atom = .lineStart; quantifiable = false
        case "$": pos += 1; atom = .lineEnd; quantifiable = false
        case "\\":
            if peek(1) == "b" { pos += 2; atom = .wordBoundary(negated: false); quantifiable = false }
            else if peek(1) == "B" { pos += 2; atom = .wordBoundary(negated: true); quantifiable = false }
            else { pos += 1; atom = try parseAtomEscape() }
        case "(":
            pos += 1
            if peek() == "?" {
                switch peek(1) {
                case ":":
                    pos += 2
                    atom = .group(try parseDisjunction(), capture: nil)
                case "=", "!":
                    let negated = peek(1) == "!"
                    pos += 2
                    atom = .look(try parseDisjunction(), ahead: true, negated: negated)
                    quantifiable = false
                case "<" where peek(2) == "=" || peek(2) == "!":
                    let negated = peek(2) == "!"
                    pos += 3
                    atom = .look(try parseDisjunction(), ahead: false, negated: negated)
                    quantifiable = false
                case "<":
                    pos += 2
                    let name = try parseGroupName()
                    if groupNames[name] != nil { throw error("duplicate group name '\(name)'") }
                    groupCount += 1
                    let index = groupCount
                    groupNames[name] = index
                    atom = .group(try parseDisjunction(), capture: index)
                default:
                    throw error("invalid group syntax '(?'")
                }
            } else {
                groupCount += 1
                let index = groupCount
                atom = .group(try parseDisjunction(), capture: index)
            }
            guard peek() == ")" else { throw error("missing ')'") }
            pos += 1
        case ".": pos += 1; atom = .dot
        case "[": pos += 1; atom = .set(try parseClass())
        case "*", "+", "?": throw error("nothing to repeat")
        case "{":
            if (try? peekQuantifierBraces()) != nil { throw error("nothing to repeat") }
            throw error("lone '{'")
        case "}", "]": throw error("lone '\(c)'")
        default:
            pos += 1
            atom = .char(c.value)
        }
        return try parseQuantifier(atom, quantifiable: quantifiable)
    }

    /// Checks whether `{` at pos starts a valid `{n}`, `{n,}`, `{n,m}`; returns (min, max, length).
    func peekQuantifierBraces() throws -> (Int, Int?, Int)? {
        var i = pos + 1
        func digits() -> Int? {
            var v = 0, n = 0
            while i < chars.count, let d = chars[i].asDigit {
                v = min(v * 10 + d, 1_000_000); n += 1; i += 1
            }
            return n > 0 ? v : nil
        }
        guard let lo = digits() else { return nil }
        var hi: Int? = lo
        if i < chars.count && chars[i] == "," {
            i += 1
            hi = digits()
        }
        guard i < chars.count && chars[i] == "}" else { return nil }
        return (lo, hi, i + 1 - pos)
    }

    mutating func parseQuantifier(_ atom: RegexNode, quantifiable: Bool) throws -> RegexNode {
        guard let c = peek() else { return atom }
        var minCount = 0, maxCount: Int? = nil
        switch c {
        case "*": pos += 1
        case "+": pos += 1; minCount = 1
        case "?": pos += 1; maxCount = 1
        case "{":
            guard let (lo, hi, len) = try peekQuantifierBraces() else { throw error("lone '{'") }
            if let hi, hi < lo { throw error("numbers out of order in {} quantifier") }
            pos += len
            minCount = lo; maxCount = hi
        default:
            return atom
        }
        if !quantifiable { throw error("nothing to repeat") }
        var greedy = true
        if peek() == "?" { pos += 1; greedy = false }
        return .repetition(atom, min: minCount, max: maxCount, greedy: greedy)
    }

    mutating func parseGroupName() throws -> String {
        var name = ""
        while let c = peek(), c != ">" {
            let ok = name.isEmpty ? (c.properties.isIDStart || c == "$" || c == "_") : (c.properties.isIDContinue || c == "$" || c == "\u{200C}" || c == "\u{200D}")
            guard ok else { throw error("invalid group name") }
            name.unicodeScalars.append(c)
            pos += 1
        }
        guard peek() == ">", !name.isEmpty else { throw error("invalid group name") }
        pos += 1
        return name
    }

    /// After a backslash outside a class.
    mutating func parseAtomEscape() throws -> RegexNode {
        guard let c = peek() else { throw error("\\ at end of pattern") }
        if let d = c.asDigit, d != 0 {
            var n = 0
            while let x = peek(), let dx = x.asDigit { n = min(n * 10 + dx, 100_000); pos += 1 }
            maxBackref = max(maxBackref, n)
            return .backref(n)
        }
        if c == "k" {
            pos += 1
            guard peek() == "<" else { throw error("invalid named reference") }
            pos += 1
            let name = try parseGroupName()
            namedBackrefs.append(name)
            return .namedBackref(name)
        }
        if let set = try parseClassEscape() { return .set(set) }
        return .char(try parseCharacterEscape(inClass: false))
    }

    /// `\d \D \w \W \s \S \p{..} \P{..}` (pos at the letter); nil if not a class escape.
    mutating func parseClassEscape() throws -> CharSet? {
        guard let c = peek() else { return nil }
        var set = CharSet()
        switch c {
        case "d": set.ranges = CharSet.digit
        case "D": set.ranges = CharSet.complement(CharSet.digit)
        case "w": set.ranges = CharSet.word
        case "W": set.ranges = CharSet.complement(CharSet.word)
        case "s": set.ranges = CharSet.space
        case "S": set.ranges = CharSet.complement(CharSet.space)
        case "p", "P":
            pos += 1
            guard peek() == "{" else { throw error("invalid property escape") }
            pos += 1
            var name = ""
            while let x = peek(), x != "}" { name.unicodeScalars.append(x); pos += 1 }
            guard peek() == "}", let test = UnicodePropertyTest.named(name) else { throw error("unknown Unicode property '\(name)'") }
            set.properties = [(test, c == "P")]
            pos += 1
            set.finish()
            return set
        default: return nil
        }
        pos += 1
        set.finish()
        return set
    }

    /// A CharacterEscape after `\` (pos at the escape letter); returns the code point.
    mutating func parseCharacterEscape(inClass: Bool) throws -> UInt32 {
        let c = chars[pos]
        pos += 1
        switch c {
        case "f": return 0x0C
        case "n": return 0x0A
        case "r": return 0x0D
        case "t": return 0x09
        case "v": return 0x0B
        case "b" where inClass: return 0x08
        case "-" where inClass: return 0x2D
        case "c":
            guard let l = peek(), l.isASCII, (l >= "a" && l <= "z") || (l >= "A" && l <= "Z") else { throw error("invalid control escape") }
            pos += 1
            return l.value % 32
        case "0":
            if let n = peek(), n.asDigit != nil { throw error("invalid decimal escape") }
            return 0
        case "x":
            guard let h = hex(2) else { throw error("invalid \\x escape") }
            return h
        case "u":
            if peek() == "{" {
                pos += 1
                var v: UInt32 = 0, n = 0
                while let x = peek(), let d = x.hexValue { v = v * 16 + d; n += 1; pos += 1; if v > 0x10FFFF { throw error("code point out of range") } }
                guard n > 0, peek() == "}" else { throw error("invalid \\u{} escape") }
                pos += 1
                return v
            }
            guard let v = hex(4) else { throw error("invalid \\u escape") }
            // A surrogate pair written as two escapes is one code point in u mode.
            if v >= 0xD800 && v < 0xDC00, peek() == "\\", peek(1) == "u" {
                let save = pos
                pos += 2
                if let lo = hex(4), lo >= 0xDC00 && lo < 0xE000 { return 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00) }
                pos = save
            }
            return v
        default:
            // u mode: only syntax characters and '/' may be escaped.
            if "^$\\.*+?()[]{}|/".unicodeScalars.contains(c) { return c.value }
            throw error("invalid escape '\\\(c)'")
        }
    }

    mutating func hex(_ count: Int) -> UInt32? {
        var v: UInt32 = 0
        for i in 0..<count {
            guard let x = peek(i), let d = x.hexValue else { return nil }
            v = v * 16 + d
        }
        pos += count
        return v
    }

    /// After `[`.
    mutating func parseClass() throws -> CharSet {
        var set = CharSet()
        if peek() == "^" { set.negated = true; pos += 1 }
        while true {
            guard let c = peek() else { throw error("missing ']'") }
            if c == "]" { pos += 1; break }
            let lo = try parseClassAtom()
            if peek() == "-", let next = peek(1), next != "]" {
                pos += 1
                let hi = try parseClassAtom()
                guard case .single(let a) = lo, case .single(let b) = hi else { throw error("invalid character class range") }
                guard a <= b else { throw error("range out of order in character class") }
                set.ranges.append(a...b)
            } else {
                switch lo {
                case .single(let a): set.ranges.append(a...a)
                case .set(let s):
                    // Class escapes inside a class: merge their ranges/properties (negated properties kept as such).
                    set.ranges.append(contentsOf: s.ranges)
                    set.properties.append(contentsOf: s.properties)
                }
            }
        }
        set.ranges = CharSet.normalize(set.ranges)
        set.finish()
        return set
    }

    enum ClassAtom { case single(UInt32), set(CharSet) }

    mutating func parseClassAtom() throws -> ClassAtom {
        let c = chars[pos]
        if c == "\\" {
            pos += 1
            guard !atEnd else { throw error("\\ at end of pattern") }
            if let s = try parseClassEscape() { return .set(s) }
            if let d = chars[pos].asDigit, d != 0 { throw error("backreference inside a character class") }
            return .single(try parseCharacterEscape(inClass: true))
        }
        pos += 1
        return .single(c.value)
    }
}

extension CharSet {
    static func normalize(_ ranges: [ClosedRange<UInt32>]) -> [ClosedRange<UInt32>] {
        let sorted = ranges.sorted { $0.lowerBound < $1.lowerBound }
        var out: [ClosedRange<UInt32>] = []
        for r in sorted {
            if let last = out.last, r.lowerBound <= last.upperBound &+ 1 {
                out[out.count - 1] = last.lowerBound...max(last.upperBound, r.upperBound)
            } else {
                out.append(r)
            }
        }
        return out
    }
}

extension Unicode.Scalar {
    var asDigit: Int? { value >= 48 && value <= 57 ? Int(value - 48) : nil }
    var hexValue: UInt32? {
        switch value {
        case 48...57: return value - 48
        case 65...70: return value - 55
        case 97...102: return value - 87
        default: return nil
        }
    }
}

// MARK: - Program

enum RegexInst: Sendable {
    case char(UInt32)
    case dot
    case set(Int)
    case split(Int, Int)       // try first, on failure resume at second
    case jump(Int)
    case save(Int)             // capture slot := pos
    case mark(Int)             // register := pos (loop entry)
    case progress(Int)         // fail if pos == register (empty iteration)
    case lineStart, lineEnd
    case wordBoundary(Bool)
    case look(Int, ahead: Bool, negated: Bool)  // sub-program index
    case backref(Int)
    case assertAt              // lookbehind body must end exactly at the lookbehind's position
    case match
}

/// Compiled program; a class so copies of `ECMARegex` (inside keywords) share it with one retain.
final class RegexProgram: @unchecked Sendable {
    // Filled by the compiler, read-only afterwards: no dynamic exclusivity checks needed.
    @exclusivity(unchecked) var insts: [RegexInst] = []
    @exclusivity(unchecked) var sets: [CharSet] = []
    @exclusivity(unchecked) var subprograms: [[RegexInst]] = []
    @exclusivity(unchecked) var slotCount = 2
    @exclusivity(unchecked) var registerCount = 0
    @exclusivity(unchecked) var anchoredStart = false
    /// Set when the pattern is a plain string with no special characters.
    @exclusivity(unchecked) var literal: [UInt8]?
}

struct RegexCompiler {
    let groupCount: Int
    var program = RegexProgram()
    let names: [String: Int]
    static let maxInstructions = 20_000

    init(groupCount: Int, names: [String: Int]) {
        self.groupCount = groupCount
        self.names = names
    }

    mutating func compile(_ ast: RegexNode, pattern: String) throws -> RegexProgram {
        program.slotCount = (groupCount + 1) * 2
        if case .some(let lit) = literalText(ast) { program.literal = Array(lit.utf8) }
        var main: [RegexInst] = [.save(0)]
        try emit(ast, into: &main)
        main.append(.save(1))
        main.append(.match)
        program.insts = main
        if case .seq(let items) = ast, case .lineStart = items.first { program.anchoredStart = true }
        if case .lineStart = ast { program.anchoredStart = true }
        return program
    }

    func literalText(_ ast: RegexNode) -> String? {
        switch ast {
        case .char(let c): return Unicode.Scalar(c).map { String(Character($0)) }
        case .seq(let items):
            var s = ""
            for i in items { guard case .char(let c) = i, let u = Unicode.Scalar(c) else { return nil }; s.unicodeScalars.append(u) }
            return s
        default: return nil
        }
    }

    mutating func emit(_ node: RegexNode, into code: inout [RegexInst]) throws {
        if code.count > RegexCompiler.maxInstructions {
            throw JSONSchemaError(code: .invalidRegex, location: "", message: "regular expression is too large to compile")
        }
        switch node {
        case .empty: break
        case .char(let c): code.append(.char(c))
        case .dot: code.append(.dot)
        case .set(let s):
            program.sets.append(s)
            code.append(.set(program.sets.count - 1))
        case .seq(let items): for i in items { try emit(i, into: &code) }
        case .alt(let alternatives):
            // split L1, next ; L1: a ; jump end ; next: split L2, next2 ...
            var jumps: [Int] = []
            for (i, a) in alternatives.enumerated() {
                if i < alternatives.count - 1 {
                    let split = code.count
                    code.append(.split(0, 0))
                    try emit(a, into: &code)
                    jumps.append(code.count)
                    code.append(.jump(0))
                    code[split] = .split(split + 1, code.count)
                } else {
                    try emit(a, into: &code)
                }
            }
            for j in jumps { code[j] = .jump(code.count) }
        case .group(let inner, let cap):
            if let cap { code.append(.save(cap * 2)) }
            try emit(inner, into: &code)
            if let cap { code.append(.save(cap * 2 + 1)) }
        case .repetition(let inner, let minCount, let maxCount, let greedy):
            for _ in 0..<minCount { try emit(inner, into: &code) }
            if let maxCount {
                // Nested optionals: (x(x(x)?)?)? for the remaining max-min copies.
                var exits: [Int] = []
                for _ in 0..<(maxCount - minCount) {
                    let split = code.count
                    code.append(.split(0, 0))
                    exits.append(split)
                    try emit(inner, into: &code)
                    if code.count > RegexCompiler.maxInstructions { break }
                }
                if code.count > RegexCompiler.maxInstructions {
                    throw JSONSchemaError(code: .invalidRegex, location: "", message: "regular expression is too large to compile")
                }
                for s in exits { code[s] = greedy ? .split(s + 1, code.count) : .split(code.count, s + 1) }
            } else {
                let reg = program.registerCount
                program.registerCount += 1
                let loop = code.count
                code.append(.split(0, 0))
                code.append(.mark(reg))
                try emit(inner, into: &code)
                code.append(.progress(reg))
                code.append(.jump(loop))
                code[loop] = greedy ? .split(loop + 1, code.count) : .split(code.count, loop + 1)
            }
        case .lineStart: code.append(.lineStart)
        case .lineEnd: code.append(.lineEnd)
        case .wordBoundary(let negated): code.append(.wordBoundary(negated))
        case .look(let inner, let ahead, let negated):
            var sub: [RegexInst] = []
            try emit(inner, into: &sub)
            if !ahead { sub.append(.assertAt) }
            sub.append(.match)
            program.subprograms.append(sub)
            code.append(.look(program.subprograms.count - 1, ahead: ahead, negated: negated))
        case .backref(let n): code.append(.backref(n))
        case .namedBackref(let name):
            code.append(.backref(groupIndex(name)))
        }
    }

    func groupIndex(_ name: String) -> Int { names[name] ?? 0 }
}

// MARK: - VM

/// Backtracking matcher with an explicit stack (no recursion per character, so long inputs
/// cannot overflow the thread stack) and a step budget.
struct RegexVM {
    let program: RegexProgram
    let input: UnsafeBufferPointer<UInt8>
    var steps = 0
    let stepLimit: Int
    var slots: [Int]
    var registers: [Int]

    enum Backtrack {
        case resume(pc: Int, pos: Int)
        case restoreSlot(Int, Int)
        case restoreRegister(Int, Int)
    }
    var stack: [Backtrack] = []

    init(program: RegexProgram, input: UnsafeBufferPointer<UInt8>, stepLimit: Int) {
        self.program = program
        self.input = input
        self.stepLimit = stepLimit
        slots = Array(repeating: -1, count: program.slotCount)
        registers = Array(repeating: -1, count: program.registerCount)
    }

    /// Unanchored search. nil = budget exhausted.
    mutating func search() -> Bool? {
        var start = 0
        while true {
            for i in slots.indices { slots[i] = -1 }
            switch run(program.insts, at: start, endAt: nil) {
            case .some(true): return true
            case .none: return nil
            case .some(false): break
            }
            if program.anchoredStart || start >= input.count { return false }
            start = next(start)
        }
    }

    @inline(__always)
    func next(_ pos: Int) -> Int {
        let b = input[pos]
        if b < 0x80 { return pos + 1 }
        if b < 0xE0 { return pos + 2 }
        if b < 0xF0 { return pos + 3 }
        return pos + 4
    }

    @inline(__always)
    func decode(_ pos: Int) -> (UInt32, Int) {
        let b0 = UInt32(input[pos])
        if b0 < 0x80 { return (b0, 1) }
        if b0 < 0xE0 { return ((b0 & 0x1F) << 6 | UInt32(input[pos + 1] & 0x3F), 2) }
        if b0 < 0xF0 { return ((b0 & 0x0F) << 12 | UInt32(input[pos + 1] & 0x3F) << 6 | UInt32(input[pos + 2] & 0x3F), 3) }
        return ((b0 & 0x07) << 18 | UInt32(input[pos + 1] & 0x3F) << 12 | UInt32(input[pos + 2] & 0x3F) << 6 | UInt32(input[pos + 3] & 0x3F), 4)
    }

    func isWord(_ pos: Int) -> Bool {
        guard pos >= 0 && pos < input.count else { return false }
        let b = input[pos]
        return (b >= 48 && b <= 57) || (b >= 65 && b <= 90) || b == 95 || (b >= 97 && b <= 122)
    }

    func isLineTerminator(_ c: UInt32) -> Bool { c == 0x0A || c == 0x0D || c == 0x2028 || c == 0x2029 }

    /// Runs `code` from `pos`. `endAt` constrains `assertAt` (look-behind). Returns nil when out of budget.
    mutating func run(_ code: [RegexInst], at startPos: Int, endAt: Int?) -> Bool? {
        let base = stack.count
        var pc = 0
        var pos = startPos
        defer { stack.removeSubrange(base...) }
        while true {
            steps += 1
            if steps > stepLimit { return nil }
            var fail = false
            switch code[pc] {
            case .char(let c):
                if pos < input.count {
                    let (v, n) = decode(pos)
                    if v == c { pos += n; pc += 1 } else { fail = true }
                } else { fail = true }
            case .dot:
                if pos < input.count {
                    let (v, n) = decode(pos)
                    if !isLineTerminator(v) { pos += n; pc += 1 } else { fail = true }
                } else { fail = true }
            case .set(let i):
                if pos < input.count {
                    let (v, n) = decode(pos)
                    if program.sets[i].contains(v) { pos += n; pc += 1 } else { fail = true }
                } else { fail = true }
            case .split(let a, let b):
                stack.append(.resume(pc: b, pos: pos))
                pc = a
            case .jump(let t): pc = t
            case .save(let s):
                stack.append(.restoreSlot(s, slots[s]))
                slots[s] = pos
                pc += 1
            case .mark(let r):
                stack.append(.restoreRegister(r, registers[r]))
                registers[r] = pos
                pc += 1
            case .progress(let r):
                if registers[r] == pos { fail = true } else { pc += 1 }
            case .lineStart:
                if pos == 0 { pc += 1 } else { fail = true }
            case .lineEnd:
                if pos == input.count { pc += 1 } else { fail = true }
            case .wordBoundary(let negated):
                let atBoundary = isWord(pos - 1) != isWord(pos)
                if atBoundary != negated { pc += 1 } else { fail = true }
            case .look(let index, let ahead, let negated):
                let sub = program.subprograms[index]
                var matched = false
                if ahead {
                    let saved = slots
                    guard let r = run(sub, at: pos, endAt: nil) else { return nil }
                    matched = r
                    if !matched || negated { slots = saved }
                } else {
                    // Variable-width look-behind: try every start position ending here.
                    var s = pos
                    let saved = slots
                    while true {
                        guard let r = run(sub, at: s, endAt: pos) else { return nil }
                        if r { matched = true; break }
                        if s == 0 { break }
                        s -= 1
                        while s > 0 && input[s] & 0xC0 == 0x80 { s -= 1 }
                    }
                    if !matched || negated { slots = saved }
                }
                if matched != negated { pc += 1 } else { fail = true }
            case .backref(let n):
                let a = slots[n * 2], b = slots[n * 2 + 1]
                if a < 0 || b < 0 {
                    pc += 1  // an unset group matches empty
                } else {
                    let len = b - a
                    if pos + len <= input.count && (0..<len).allSatisfy({ input[a + $0] == input[pos + $0] }) {
                        pos += len; pc += 1
                    } else { fail = true }
                }
            case .assertAt:
                if pos == endAt { pc += 1 } else { fail = true }
            case .match:
                return true
            }
            if fail {
                // Pop until a resume point, undoing slot/register writes on the way.
                var resumed = false
                while stack.count > base {
                    switch stack.removeLast() {
                    case .resume(let p, let q): pc = p; pos = q; resumed = true
                    case .restoreSlot(let s, let v): slots[s] = v
                    case .restoreRegister(let r, let v): registers[r] = v
                    }
                    if resumed { break }
                }
                if !resumed { return false }
            }
        }
    }
}
