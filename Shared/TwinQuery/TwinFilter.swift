import Contracts

/// A parsed twin filter, e.g. `temperature>80 and model=pump` or
/// `not (metadata.site = "north yard" or stale)`.
///
/// Grammar (keywords `and`, `or`, `not`, `true`, `false` are case-insensitive; whitespace is
/// free between tokens):
///
///     filter     = or
///     or         = and { "or" and }
///     and        = unary { "and" unary }              // `and` binds tighter than `or`
///     unary      = "not" unary | "(" or ")" | comparison
///     comparison = field op value | "stale" | "missing" // bare `stale`/`missing` mean `= true`
///     field      = name { "." name }                   // name: letter or _ then letters, digits, _ or -
///     op         = "=" | "!=" | ">" | ">=" | "<" | "<=" | "~"
///     value      = quoted | word
///     quoted     = '"' chars '"' | "'" chars "'"       // escapes \" \' \\ \/ \n \r \t \uXXXX
///     word       = run of characters other than whitespace, ( ) " ' = ! < > ~
///
/// Fields: a bare `name` or `properties.name` is a property value; `model` (a value without
/// `@` matches the model id, `id@version` matches exactly); `twinId`; `version` (a number);
/// `updatedAt` (an RFC 3339 timestamp or epoch milliseconds); `stale` (`true`/`false`, only `=`
/// and `!=`); `missing` (only `=` and `!=`: `missing = true`, or bare `missing`, is a twin lacking
/// some required telemetry it never reported, `missing = false` a complete one, `missing = flow`
/// one lacking `flow`, `missing != flow` one that has reported it; a property named `missing` is
/// `properties.missing`); `metadata.k`, `desired.k`, `parameters.k`, where further `.k` segments walk into
/// nested objects.
///
/// Values: a word that is a decimal number (`-12`, `3.5`, `1e3`) is a number, `true`/`false` a
/// boolean, anything else (including timestamps) a string; a quoted value is always a string.
///
/// Semantics: numbers compare numerically, strings by UTF-8 bytes (so RFC 3339 timestamps in the
/// same format order by time), booleans only with `=`/`!=`. `~` is a case-sensitive substring
/// match on strings (a number on its right is taken as its text). A comparison whose two sides
/// have different types, or whose field is absent, is simply false — for every operator,
/// including `!=` — never an error; `not` inverts that.
///
/// Limits (`Limits`): length in characters, nesting depth (each `(` and `not` is one level)
/// and number of comparisons. Every error is a `QueryError` with the position of its token.
public struct TwinFilter: Sendable, Equatable {
    /// Bounds that keep parsing and evaluation cheap on hostile input.
    public struct Limits: Sendable, Equatable {
        public var maxLength: Int
        public var maxDepth: Int
        public var maxTerms: Int
        public init(maxLength: Int = 2_000, maxDepth: Int = 16, maxTerms: Int = 64) {
            self.maxLength = maxLength
            self.maxDepth = maxDepth
            self.maxTerms = maxTerms
        }
    }

    /// The text parsed.
    public let text: String
    /// The syntax tree.
    public let expression: FilterExpression

    /// Parses `text`; throws a `QueryError` (parameter `filter`) pointing at the offending token.
    public init(parsing text: String, limits: Limits = Limits()) throws(QueryError) {
        self.text = text
        var parser = FilterParser(text, limits: limits)
        expression = try parser.parse()
    }
}

/// A filter's syntax tree; `and`/`or` are n-ary (flattened).
public indirect enum FilterExpression: Sendable, Equatable {
    case comparison(FilterComparison)
    case and([FilterExpression])
    case or([FilterExpression])
    case not(FilterExpression)
}

/// `field op value`, with the position of the field in the filter text.
public struct FilterComparison: Sendable, Equatable {
    public var field: FilterField
    public var op: FilterOperator
    public var value: FilterLiteral
    public var position: Int
    public init(field: FilterField, op: FilterOperator, value: FilterLiteral, position: Int) {
        self.field = field
        self.op = op
        self.value = value
        self.position = position
    }
}

/// What a comparison looks at.
public enum FilterField: Sendable, Hashable {
    /// A property's current value.
    case property(String)
    case model
    case twinId
    case version
    case updatedAt
    case stale
    /// `TwinState.missing`: `true`/`false` (incomplete or not) or a telemetry name.
    case missing
    /// A metadata member, then nested members.
    case metadata([String])
    case desired([String])
    case parameter([String])
}

/// Comparison operators.
public enum FilterOperator: String, Sendable, CaseIterable {
    case equal = "="
    case notEqual = "!="
    case greater = ">"
    case greaterOrEqual = ">="
    case less = "<"
    case lessOrEqual = "<="
    /// Case-sensitive substring match on strings.
    case contains = "~"
}

/// A comparison's right-hand side, typed for its field.
public enum FilterLiteral: Sendable, Equatable {
    case number(Double)
    case string(String)
    case bool(Bool)
    /// Epoch milliseconds (for `updatedAt`).
    case time(Int64)
}

/// Recursive descent over Unicode scalars, so positions are scalar offsets.
struct FilterParser {
    let s: [Unicode.Scalar]
    let limits: TwinFilter.Limits
    var i = 0
    var terms = 0

    init(_ text: String, limits: TwinFilter.Limits) {
        // Do not copy a huge input only to reject it.
        s = text.utf8.count > limits.maxLength * 4 ? Array(text.unicodeScalars.prefix(limits.maxLength + 1)) : Array(text.unicodeScalars)
        self.limits = limits
    }

    func fail(_ code: QueryError.Code, _ message: String, at position: Int, token: String? = nil) -> QueryError {
        QueryError(code, message, parameter: "filter", position: position, token: token ?? self.token(at: position))
    }

    mutating func parse() throws(QueryError) -> FilterExpression {
        if s.count > limits.maxLength {
            throw fail(.tooLong, "the filter is longer than \(limits.maxLength) characters", at: limits.maxLength, token: "")
        }
        skipSpace()
        if i == s.count { throw fail(.empty, "the filter is empty", at: 0, token: "") }
        let e = try parseOr(depth: 0)
        skipSpace()
        if i < s.count {
            if s[i] == ")" { throw fail(.unexpectedToken, "')' without a matching '('", at: i) }
            throw fail(.unexpectedToken, "expected 'and', 'or' or the end of the filter", at: i)
        }
        return e
    }

    mutating func parseOr(depth: Int) throws(QueryError) -> FilterExpression {
        var items = [try parseAnd(depth: depth)]
        while keyword("or") { items.append(try parseAnd(depth: depth)) }
        return items.count == 1 ? items[0] : .or(items.flatMap { if case .or(let inner) = $0 { inner } else { [$0] } })
    }

    mutating func parseAnd(depth: Int) throws(QueryError) -> FilterExpression {
        var items = [try parseUnary(depth: depth)]
        while keyword("and") { items.append(try parseUnary(depth: depth)) }
        return items.count == 1 ? items[0] : .and(items.flatMap { if case .and(let inner) = $0 { inner } else { [$0] } })
    }

    mutating func parseUnary(depth: Int) throws(QueryError) -> FilterExpression {
        skipSpace()
        guard i < s.count else { throw fail(.unexpectedEnd, "expected a comparison, 'not' or '('", at: i, token: "") }
        let start = i
        if keyword("not") {
            guard depth < limits.maxDepth else { throw fail(.tooDeep, "the filter nests deeper than \(limits.maxDepth) levels", at: start) }
            return .not(try parseUnary(depth: depth + 1))
        }
        if s[i] == "(" {
            guard depth < limits.maxDepth else { throw fail(.tooDeep, "the filter nests deeper than \(limits.maxDepth) levels", at: start) }
            i += 1
            let inner = try parseOr(depth: depth + 1)
            skipSpace()
            guard i < s.count else { throw fail(.unexpectedEnd, "missing ')' to close the '(' at \(start)", at: i, token: "") }
            guard s[i] == ")" else { throw fail(.unexpectedToken, "expected ')' to close the '(' at \(start), 'and' or 'or'", at: i) }
            i += 1
            return inner
        }
        return .comparison(try parseComparison())
    }

    mutating func parseComparison() throws(QueryError) -> FilterComparison {
        let start = i
        guard Self.isNameStart(s[i]) else { throw fail(.unexpectedToken, "expected a field name", at: i) }
        var segments: [String] = []
        while true {
            var name = String.UnicodeScalarView()
            while i < s.count, Self.isNameChar(s[i]) { name.append(s[i]); i += 1 }
            segments.append(String(name))
            guard i < s.count, s[i] == "." else { break }
            i += 1
            guard i < s.count, Self.isNameStart(s[i]) else { throw fail(.unknownField, "expected a name after '.'", at: i) }
        }
        if segments.count == 1, ["and", "or"].contains(segments[0].lowercased()) {
            throw fail(.unexpectedToken, "expected a comparison, 'not' or '(' before '\(segments[0])'", at: start)
        }
        terms += 1
        if terms > limits.maxTerms {
            throw fail(.tooManyTerms, "the filter has more than \(limits.maxTerms) comparisons", at: start)
        }
        let field = try resolveField(segments, at: start)
        skipSpace()
        let opStart = i
        var run = String.UnicodeScalarView()
        while i < s.count, Self.isOperatorChar(s[i]) { run.append(s[i]); i += 1 }
        if run.isEmpty {
            if field == .stale || field == .missing, atTermEnd() { return FilterComparison(field: field, op: .equal, value: .bool(true), position: start) }
            if i == s.count { throw fail(.unexpectedEnd, "expected an operator (= != > >= < <= ~) after '\(segments.joined(separator: "."))'", at: i, token: "") }
            throw fail(.unexpectedToken, "expected an operator (= != > >= < <= ~) after '\(segments.joined(separator: "."))'", at: i)
        }
        let runText = String(run)
        guard let op = FilterOperator(rawValue: runText) else {
            // Point at the first character that makes it invalid (`>>` → the second `>`).
            var valid = 0
            for n in stride(from: min(2, run.count), through: 1, by: -1) where FilterOperator(rawValue: String(runText.unicodeScalars.prefix(n))) != nil {
                valid = n
                break
            }
            throw fail(.unknownOperator, "unknown operator '\(runText)'; use = != > >= < <= ~", at: opStart + valid,
                       token: String(String.UnicodeScalarView(runText.unicodeScalars.dropFirst(valid))))
        }
        skipSpace()
        let valueStart = i
        guard i < s.count else { throw fail(.unexpectedEnd, "expected a value after '\(runText)'", at: i, token: "") }
        let raw: String
        let quoted: Bool
        if s[i] == "\"" || s[i] == "'" {
            raw = try readQuoted()
            quoted = true
        } else {
            var word = String.UnicodeScalarView()
            while i < s.count, !Self.isWordStop(s[i]) { word.append(s[i]); i += 1 }
            guard !word.isEmpty else { throw fail(.unexpectedToken, "expected a value after '\(runText)'", at: i) }
            raw = String(word)
            quoted = false
        }
        let value = try literal(for: field, op: op, raw: raw, quoted: quoted, opStart: opStart, valueStart: valueStart)
        return FilterComparison(field: field, op: op, value: value, position: start)
    }

    func resolveField(_ segments: [String], at start: Int) throws(QueryError) -> FilterField {
        let name = segments.joined(separator: ".")
        let rest = Array(segments.dropFirst())
        switch segments[0] {
        case "model" where rest.isEmpty: return .model
        case "twinId" where rest.isEmpty: return .twinId
        case "version" where rest.isEmpty: return .version
        case "updatedAt" where rest.isEmpty: return .updatedAt
        case "stale" where rest.isEmpty: return .stale
        case "missing" where rest.isEmpty: return .missing
        case "metadata" where !rest.isEmpty: return .metadata(rest)
        case "desired" where !rest.isEmpty: return .desired(rest)
        case "parameters" where !rest.isEmpty: return .parameter(rest)
        case "properties" where rest.count == 1: return .property(rest[0])
        case "metadata", "desired", "parameters":
            throw fail(.unknownField, "'\(name)' needs a member name, e.g. \(name).site", at: start, token: name)
        case "properties":
            throw fail(.unknownField, "use properties.<name> for a property", at: start, token: name)
        default:
            if rest.isEmpty { return .property(segments[0]) }
            throw fail(.unknownField, "unknown field '\(name)'; fields are a property name, properties.<name>, model, twinId, version, updatedAt, stale, missing, metadata.<key>, desired.<key>, parameters.<name>",
                       at: start, token: name)
        }
    }

    func literal(for field: FilterField, op: FilterOperator, raw: String, quoted: Bool, opStart: Int, valueStart: Int) throws(QueryError) -> FilterLiteral {
        func unsupported(_ what: String) -> QueryError {
            fail(.unsupportedOperator, "'\(op.rawValue)' cannot be used with \(what)", at: opStart, token: op.rawValue)
        }
        let number = quoted ? nil : Self.number(raw)
        switch field {
        case .model, .twinId:
            return .string(raw)
        case .version:
            if op == .contains { throw unsupported("version") }
            guard let number else { throw fail(.invalidValue, "version is compared with a number", at: valueStart) }
            return .number(number)
        case .updatedAt:
            if op == .contains { throw unsupported("updatedAt") }
            if let number { return .time(Int64(exactly: number.rounded()) ?? (number < 0 ? Int64.min : Int64.max)) }
            guard let t = Timestamp.parse(raw) else {
                throw fail(.invalidValue, "updatedAt is compared with an RFC 3339 timestamp (2026-11-21T08:00:00Z) or epoch milliseconds", at: valueStart)
            }
            return .time(t)
        case .stale:
            guard op == .equal || op == .notEqual else { throw unsupported("stale (use = or !=)") }
            guard !quoted, let b = Self.bool(raw) else { throw fail(.invalidValue, "stale is compared with true or false", at: valueStart) }
            return .bool(b)
        case .missing:
            guard op == .equal || op == .notEqual else { throw unsupported("missing (use = or !=)") }
            if !quoted, let b = Self.bool(raw) { return .bool(b) }
            return .string(raw)
        case .property, .metadata, .desired, .parameter:
            if quoted || op == .contains { return .string(raw) }
            if let number { return .number(number) }
            if let b = Self.bool(raw) { return .bool(b) }
            return .string(raw)
        }
    }

    mutating func readQuoted() throws(QueryError) -> String {
        let open = i
        let quote = s[i]
        i += 1
        var out = String.UnicodeScalarView()
        while i < s.count {
            let c = s[i]
            if c == quote { i += 1; return String(out) }
            if c == "\\" {
                guard i + 1 < s.count else { break }
                let e = s[i + 1]
                switch e {
                case "\"", "'", "\\", "/": out.append(e)
                case "n": out.append("\n")
                case "r": out.append("\r")
                case "t": out.append("\t")
                case "u":
                    var v: UInt32 = 0
                    var ok = i + 6 <= s.count
                    if ok {
                        for k in 2..<6 {
                            guard let d = Self.hexValue(s[i + k]) else { ok = false; break }
                            v = v * 16 + d
                        }
                    }
                    guard ok, let scalar = Unicode.Scalar(v) else {
                        throw fail(.invalidEscape, "\\u needs four hex digits of a valid character", at: i,
                                   token: String(String.UnicodeScalarView(s[i..<min(i + 6, s.count)])))
                    }
                    out.append(scalar)
                    i += 6
                    continue
                default:
                    throw fail(.invalidEscape, "unknown escape; use \\\" \\' \\\\ \\/ \\n \\r \\t or \\uXXXX", at: i, token: "\\" + String(e))
                }
                i += 2
                continue
            }
            out.append(c)
            i += 1
        }
        throw fail(.unterminatedString, "the string starting here is not closed", at: open, token: String(quote))
    }

    /// Consumes `word` when it is the next token (case-insensitive, whole word).
    mutating func keyword(_ word: String) -> Bool {
        skipSpace()
        var j = i
        for w in word.unicodeScalars {
            guard j < s.count, Self.lower(s[j]) == w else { return false }
            j += 1
        }
        if j < s.count, Self.isNameChar(s[j]) || s[j] == "." { return false }
        i = j
        return true
    }

    /// After a bare `stale` or `missing`: the end, `)`, `and` or `or` follows.
    mutating func atTermEnd() -> Bool {
        if i == s.count || s[i] == ")" { return true }
        let save = i
        defer { i = save }
        return keyword("and") || keyword("or")
    }

    mutating func skipSpace() {
        while i < s.count, s[i].properties.isWhitespace { i += 1 }
    }

    /// The token at `position` for error messages: a name, an operator run or one character.
    func token(at position: Int) -> String {
        guard position < s.count else { return "" }
        let c = s[position]
        var j = position
        if Self.isNameChar(c) {
            while j < s.count, Self.isNameChar(s[j]) || s[j] == "." { j += 1 }
        } else if Self.isOperatorChar(c) {
            while j < s.count, Self.isOperatorChar(s[j]) { j += 1 }
        } else if !Self.isWordStop(c) {
            while j < s.count, !Self.isWordStop(s[j]) { j += 1 }
        } else {
            j += 1
        }
        return String(String.UnicodeScalarView(s[position..<j]))
    }

    static func isNameStart(_ c: Unicode.Scalar) -> Bool {
        c == "_" || (c.isASCII ? (("a"..."z").contains(c) || ("A"..."Z").contains(c)) : c.properties.isAlphabetic)
    }

    static func isNameChar(_ c: Unicode.Scalar) -> Bool {
        isNameStart(c) || ("0"..."9").contains(c) || c == "-"
    }

    static func isOperatorChar(_ c: Unicode.Scalar) -> Bool {
        c == "=" || c == "!" || c == "<" || c == ">" || c == "~"
    }

    static func isWordStop(_ c: Unicode.Scalar) -> Bool {
        c.properties.isWhitespace || c == "(" || c == ")" || c == "\"" || c == "'" || isOperatorChar(c)
    }

    static func lower(_ c: Unicode.Scalar) -> Unicode.Scalar {
        ("A"..."Z").contains(c) ? Unicode.Scalar(c.value + 32)! : c
    }

    static func hexValue(_ c: Unicode.Scalar) -> UInt32? {
        switch c {
        case "0"..."9": return c.value - 48
        case "a"..."f": return c.value - 87
        case "A"..."F": return c.value - 55
        default: return nil
        }
    }

    static func bool(_ raw: String) -> Bool? {
        switch raw.lowercased() {
        case "true": return true
        case "false": return false
        default: return nil
        }
    }

    /// A decimal number `-?digits[.digits][(e|E)[+-]digits]` (no `inf`, `nan`, hex).
    static func number(_ raw: String) -> Double? {
        let u = Array(raw.utf8)
        var j = 0
        func digits() -> Int {
            let from = j
            while j < u.count, u[j] >= 48, u[j] <= 57 { j += 1 }
            return j - from
        }
        if j < u.count, u[j] == 45 || u[j] == 43 { j += 1 }
        guard digits() > 0 else { return nil }
        if j < u.count, u[j] == 46 { j += 1; guard digits() > 0 else { return nil } }
        if j < u.count, u[j] == 101 || u[j] == 69 {
            j += 1
            if j < u.count, u[j] == 45 || u[j] == 43 { j += 1 }
            guard digits() > 0 else { return nil }
        }
        guard j == u.count, let d = Double(raw), d.isFinite else { return nil }
        return d
    }
}
