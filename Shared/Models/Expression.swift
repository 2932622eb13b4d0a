import Foundation

/// A behaviour expression: arithmetic over named variables, parsed once into an AST.
///
/// Syntax (whitespace is free):
/// - numbers `2`, `0.5`, `.5`, `1e-3`; identifiers `[A-Za-z_][A-Za-z0-9_]*`;
/// - binary `+ - * / ^`, unary `-` and `+`, parentheses;
/// - comparisons `< <= > >= == !=`, which give 1 or 0 and do not chain (`a < b < c` is an error);
/// - functions `min(a, b, ...)`, `max(a, b, ...)`, `abs`, `exp`, `log` (natural), `sqrt`, `sin`,
///   `cos`, `pow(x, y)`, `clamp(x, lo, hi)` and `if(cond, a, b)` (`a` when `cond` is non-zero).
///
/// Precedence, loosest first: comparisons; `+ -`; `* /` (left-associative); unary minus;
/// `^` (right-associative). So `2^3^2` is `2^(3^2)` = 512 and `-2^2` is `-(2^2)` = -4, as in
/// mathematics and Python; an exponent may itself be negated: `2^-1` = 0.5.
///
/// Evaluation follows IEEE arithmetic: `1/0` is infinity, `sqrt(-1)` NaN; callers that need
/// finite results check them. `if` evaluates both branches (expressions have no side effects).
public struct Expression: Sendable, Hashable, CustomStringConvertible {
    /// The text it was parsed from.
    public let source: String
    /// The syntax tree.
    public let root: Node
    /// Every identifier used, in order of first appearance, with its 0-based offset in `source`.
    public let identifiers: [(name: String, position: Int)]

    /// A syntax tree node.
    public indirect enum Node: Sendable, Hashable {
        /// A literal.
        case number(Double)
        /// A variable, by name.
        case variable(String)
        /// Unary minus.
        case negate(Node)
        /// A binary operator.
        case binary(BinaryOperator, Node, Node)
        /// A built-in function call (arity checked at parse time).
        case call(Function, [Node])
    }

    /// Binary operators.
    public enum BinaryOperator: String, Sendable, Hashable {
        case add = "+", subtract = "-", multiply = "*", divide = "/", power = "^"
        case less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">=", equal = "==", notEqual = "!="
    }

    /// Built-in functions.
    public enum Function: String, Sendable, Hashable, CaseIterable {
        case min, max, abs, exp, log, sqrt, sin, cos, pow, clamp
        case `if`

        /// Allowed argument counts.
        var arity: ClosedRange<Int> {
            switch self {
            case .min, .max: return 1...64
            case .abs, .exp, .log, .sqrt, .sin, .cos: return 1...1
            case .pow: return 2...2
            case .clamp, .if: return 3...3
            }
        }
    }

    /// Parses `text`. Throws `ModelError` `.expressionSyntax` with the 0-based `position` of the
    /// problem and a message like `expected ")" at position 9`.
    public static func parse(_ text: String) throws(ModelError) -> Expression {
        var parser = ExpressionParser(text)
        let root = try parser.parseAll()
        return Expression(source: text, root: root, identifiers: parser.identifiers)
    }

    /// The names of every variable used, in order of first appearance.
    public var variableNames: [String] { identifiers.map(\.name) }

    /// Evaluates by name (slower than a `CompiledExpression`; for tests and one-off use).
    /// Throws `.unknownIdentifier` for a variable missing from `variables`.
    public func evaluate(_ variables: [String: Double]) throws(ModelError) -> Double {
        var slots: [String: Int] = [:]
        var values: [Double] = []
        for (name, value) in variables { slots[name] = values.count; values.append(value) }
        return try compile(slots: slots).evaluate(values)
    }

    /// Resolves every identifier to a slot index (`slots[name]`) and flattens the tree into a
    /// program, folding constant subexpressions. Throws `.unknownIdentifier` with the position
    /// of the first identifier that has no slot.
    public func compile(slots: [String: Int]) throws(ModelError) -> CompiledExpression {
        for (name, position) in identifiers where slots[name] == nil {
            throw ModelError(code: .unknownIdentifier, message: "unknown identifier \"\(name)\" at position \(position) in \"\(source)\"",
                             position: position)
        }
        return CompiledExpression(root: Expression.fold(root), slots: slots, source: source)
    }

    /// The expression as text with every operation parenthesised (shows how it was parsed).
    public var description: String { Expression.render(root) }

    static func render(_ node: Node) -> String {
        switch node {
        case .number(let d): return d == d.rounded() && d.magnitude < 1e15 ? String(Int64(d)) : "\(d)"
        case .variable(let name): return name
        case .negate(let x): return "(-\(render(x)))"
        case .binary(let op, let a, let b): return "(\(render(a)) \(op.rawValue) \(render(b)))"
        case .call(let f, let args): return "\(f.rawValue)(\(args.map(render).joined(separator: ", ")))"
        }
    }

    /// Replaces every subtree without variables by its value.
    static func fold(_ node: Node) -> Node {
        switch node {
        case .number, .variable: return node
        case .negate(let x):
            let fx = fold(x)
            if case .number(let v) = fx { return .number(-v) }
            return .negate(fx)
        case .binary(let op, let a, let b):
            let fa = fold(a), fb = fold(b)
            if case .number(let x) = fa, case .number(let y) = fb { return .number(CompiledExpression.apply(op, x, y)) }
            return .binary(op, fa, fb)
        case .call(let f, let args):
            let folded = args.map(fold)
            let constants = folded.compactMap { n -> Double? in if case .number(let v) = n { return v }; return nil }
            if constants.count == folded.count { return .number(CompiledExpression.apply(f, constants)) }
            return .call(f, folded)
        }
    }

    public static func == (a: Expression, b: Expression) -> Bool { a.source == b.source && a.root == b.root }
    public func hash(into hasher: inout Hasher) { hasher.combine(source) }
}

/// Recursive descent over the UTF-8 bytes; positions are byte offsets (equal to character
/// offsets for the ASCII that expressions are written in).
struct ExpressionParser {
    let text: String
    let bytes: [UInt8]
    var pos = 0
    var depth = 0
    var identifiers: [(name: String, position: Int)] = []
    /// Nesting bound: the parser recurses once per level.
    static let maxDepth = 64
    /// Longest expression text accepted.
    static let maxLength = 4096

    init(_ text: String) {
        self.text = text
        self.bytes = Array(text.utf8)
    }

    func error(_ message: String, at position: Int) -> ModelError {
        ModelError(code: .expressionSyntax, message: "\(message) at position \(position) in \"\(text)\"", position: position)
    }

    mutating func skipSpace() {
        while pos < bytes.count, bytes[pos] == 0x20 || bytes[pos] == 0x09 || bytes[pos] == 0x0A || bytes[pos] == 0x0D { pos += 1 }
    }

    func describeCurrent() -> String {
        guard pos < bytes.count else { return "end of expression" }
        let character = String(decoding: bytes[pos...].prefix(4), as: UTF8.self).first.map(String.init) ?? "?"
        return "\"\(character)\""
    }

    mutating func parseAll() throws(ModelError) -> Expression.Node {
        // Long operator chains nest the tree one level per operator; later passes recurse over it.
        if bytes.count > ExpressionParser.maxLength {
            throw error("expression longer than \(ExpressionParser.maxLength) characters", at: ExpressionParser.maxLength)
        }
        skipSpace()
        if pos == bytes.count { throw error("empty expression", at: 0) }
        let node = try parseComparison()
        skipSpace()
        if pos < bytes.count { throw error("unexpected \(describeCurrent())", at: pos) }
        return node
    }

    /// Peeks a comparison operator at the current position.
    func comparisonOperator() -> (Expression.BinaryOperator, Int)? {
        guard pos < bytes.count else { return nil }
        let c = bytes[pos], next: UInt8 = pos + 1 < bytes.count ? bytes[pos + 1] : 0
        switch (c, next) {
        case (UInt8(ascii: "<"), UInt8(ascii: "=")): return (.lessOrEqual, 2)
        case (UInt8(ascii: ">"), UInt8(ascii: "=")): return (.greaterOrEqual, 2)
        case (UInt8(ascii: "="), UInt8(ascii: "=")): return (.equal, 2)
        case (UInt8(ascii: "!"), UInt8(ascii: "=")): return (.notEqual, 2)
        case (UInt8(ascii: "<"), _): return (.less, 1)
        case (UInt8(ascii: ">"), _): return (.greater, 1)
        default: return nil
        }
    }

    mutating func parseComparison() throws(ModelError) -> Expression.Node {
        let left = try parseAdditive()
        skipSpace()
        guard let (op, length) = comparisonOperator() else { return left }
        pos += length
        let right = try parseAdditive()
        skipSpace()
        if comparisonOperator() != nil {
            throw error("comparisons cannot be chained; use if() or parentheses", at: pos)
        }
        return .binary(op, left, right)
    }

    mutating func parseAdditive() throws(ModelError) -> Expression.Node {
        var left = try parseTerm()
        while true {
            skipSpace()
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-") else { return left }
            let op: Expression.BinaryOperator = bytes[pos] == UInt8(ascii: "+") ? .add : .subtract
            pos += 1
            left = .binary(op, left, try parseTerm())
        }
    }

    mutating func parseTerm() throws(ModelError) -> Expression.Node {
        var left = try parseUnary()
        while true {
            skipSpace()
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: "*") || bytes[pos] == UInt8(ascii: "/") else { return left }
            let op: Expression.BinaryOperator = bytes[pos] == UInt8(ascii: "*") ? .multiply : .divide
            pos += 1
            left = .binary(op, left, try parseUnary())
        }
    }

    mutating func parseUnary() throws(ModelError) -> Expression.Node {
        skipSpace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "-") || bytes[pos] == UInt8(ascii: "+") {
            let negative = bytes[pos] == UInt8(ascii: "-")
            pos += 1
            try enter()
            defer { depth -= 1 }
            let operand = try parseUnary()
            return negative ? .negate(operand) : operand
        }
        return try parsePower()
    }

    mutating func parsePower() throws(ModelError) -> Expression.Node {
        let base = try parsePrimary()
        skipSpace()
        guard pos < bytes.count, bytes[pos] == UInt8(ascii: "^") else { return base }
        pos += 1
        try enter()
        defer { depth -= 1 }
        // Right-associative, and the exponent may carry a sign: 2^3^2 = 2^9, 2^-1 = 0.5.
        return .binary(.power, base, try parseUnary())
    }

    mutating func enter() throws(ModelError) {
        depth += 1
        if depth > ExpressionParser.maxDepth { throw error("expression nested too deeply", at: pos) }
    }

    static func isIdentifierStart(_ c: UInt8) -> Bool {
        (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 95
    }

    static func isDigit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }

    mutating func parsePrimary() throws(ModelError) -> Expression.Node {
        skipSpace()
        guard pos < bytes.count else { throw error("expected a number, a name or \"(\" but found the end of the expression", at: pos) }
        let start = pos
        let c = bytes[pos]
        if ExpressionParser.isDigit(c) || c == UInt8(ascii: ".") { return try parseNumber() }
        if ExpressionParser.isIdentifierStart(c) {
            while pos < bytes.count, ExpressionParser.isIdentifierStart(bytes[pos]) || ExpressionParser.isDigit(bytes[pos]) { pos += 1 }
            let name = String(decoding: bytes[start..<pos], as: UTF8.self)
            skipSpace()
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "(") {
                return try parseCall(name, at: start)
            }
            if !identifiers.contains(where: { $0.name == name }) { identifiers.append((name, start)) }
            return .variable(name)
        }
        if c == UInt8(ascii: "(") {
            try enter()
            pos += 1
            defer { depth -= 1 }
            let inner = try parseComparison()
            skipSpace()
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: ")") else {
                throw error("expected \")\" to close the \"(\" at position \(start) but found \(describeCurrent())", at: pos)
            }
            pos += 1
            return inner
        }
        throw error("expected a number, a name or \"(\" but found \(describeCurrent())", at: pos)
    }

    mutating func parseNumber() throws(ModelError) -> Expression.Node {
        let start = pos
        while pos < bytes.count, ExpressionParser.isDigit(bytes[pos]) { pos += 1 }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: ".") {
            pos += 1
            while pos < bytes.count, ExpressionParser.isDigit(bytes[pos]) { pos += 1 }
        }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E") {
            var p = pos + 1
            if p < bytes.count, bytes[p] == UInt8(ascii: "+") || bytes[p] == UInt8(ascii: "-") { p += 1 }
            guard p < bytes.count, ExpressionParser.isDigit(bytes[p]) else { throw error("malformed number exponent", at: pos) }
            pos = p
            while pos < bytes.count, ExpressionParser.isDigit(bytes[pos]) { pos += 1 }
        }
        let text = String(decoding: bytes[start..<pos], as: UTF8.self)
        guard let value = Double(text), value.isFinite else { throw error("malformed number \"\(text)\"", at: start) }
        if pos < bytes.count, ExpressionParser.isIdentifierStart(bytes[pos]) {
            throw error("unexpected \(describeCurrent()) after the number \"\(text)\" (write \"*\" to multiply)", at: pos)
        }
        return .number(value)
    }

    mutating func parseCall(_ name: String, at start: Int) throws(ModelError) -> Expression.Node {
        guard let function = Expression.Function(rawValue: name) else {
            let known = Expression.Function.allCases.map(\.rawValue).joined(separator: ", ")
            throw error("unknown function \"\(name)\" (known: \(known))", at: start)
        }
        pos += 1  // "("
        try enter()
        defer { depth -= 1 }
        var args: [Expression.Node] = []
        skipSpace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: ")") {
            pos += 1
        } else {
            while true {
                args.append(try parseComparison())
                skipSpace()
                guard pos < bytes.count else { throw error("expected \",\" or \")\" in the call of \(name) but found the end of the expression", at: pos) }
                if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                if bytes[pos] == UInt8(ascii: ")") { pos += 1; break }
                throw error("expected \",\" or \")\" in the call of \(name) but found \(describeCurrent())", at: pos)
            }
        }
        guard function.arity.contains(args.count) else {
            let n = function.arity.lowerBound
            let wanted = (n == function.arity.upperBound ? "" : "at least ") + "\(n) argument" + (n == 1 ? "" : "s")
            throw error("\(name) takes \(wanted), not \(args.count)", at: start)
        }
        return .call(function, args)
    }
}

/// An expression with identifiers resolved to slots, flattened into a small stack program.
/// Immutable and `Sendable`: compile once per model, evaluate from any thread.
public struct CompiledExpression: Sendable, Hashable {
    enum Instruction: Sendable, Hashable {
        case constant(Double)
        case load(Int)
        case negate
        case binary(Expression.BinaryOperator)
        case call(Expression.Function, Int)
    }

    let program: [Instruction]
    let stackSize: Int
    /// The highest slot index read (+1): `evaluate` needs at least this many variables.
    public let slotCount: Int
    /// The source text (for messages).
    public let source: String

    init(root: Expression.Node, slots: [String: Int], source: String) {
        var program: [Instruction] = []
        var depth = 0, maxDepth = 0, maxSlot = -1
        func emit(_ node: Expression.Node) {
            switch node {
            case .number(let v):
                program.append(.constant(v)); depth += 1
            case .variable(let name):
                let slot = slots[name]!
                maxSlot = Swift.max(maxSlot, slot)
                program.append(.load(slot)); depth += 1
            case .negate(let x):
                emit(x); program.append(.negate)
            case .binary(let op, let a, let b):
                emit(a); emit(b); program.append(.binary(op)); depth -= 1
            case .call(let f, let args):
                for a in args { emit(a) }
                program.append(.call(f, args.count)); depth -= args.count - 1
            }
            maxDepth = Swift.max(maxDepth, depth)
        }
        emit(root)
        self.program = program
        self.stackSize = Swift.max(maxDepth, 1)
        self.slotCount = maxSlot + 1
        self.source = source
    }

    /// Evaluates with `variables[slot]` as each variable's value. `variables.count` must be at
    /// least `slotCount` (checked).
    @inline(__always)
    public func evaluate(_ variables: UnsafeBufferPointer<Double>) -> Double {
        precondition(variables.count >= slotCount, "expression needs \(slotCount) variables, got \(variables.count)")
        // The program is walked through an unsafe buffer: iterating the array itself retained and
        // released it on every call (a tenth of the drift monitor's residual path).
        return program.withUnsafeBufferPointer { Self.run($0, stackSize: stackSize, variables) }
    }

    /// The interpreter loop over a borrowed program.
    @inline(__always)
    static func run(_ program: UnsafeBufferPointer<Instruction>, stackSize: Int, _ variables: UnsafeBufferPointer<Double>) -> Double {
        withUnsafeTemporaryAllocation(of: Double.self, capacity: stackSize) { stack -> Double in
            var top = -1
            for instruction in program {
                switch instruction {
                case .constant(let v):
                    top += 1; stack[top] = v
                case .load(let slot):
                    top += 1; stack[top] = variables[slot]
                case .negate:
                    stack[top] = -stack[top]
                case .binary(let op):
                    let b = stack[top]
                    top -= 1
                    stack[top] = CompiledExpression.apply(op, stack[top], b)
                case .call(let f, let n):
                    let base = top - n + 1
                    let result: Double
                    switch f {
                    case .min:
                        var m = stack[base]
                        for i in (base + 1)..<(base + n) where stack[i] < m || stack[i].isNaN { m = stack[i] }
                        result = m
                    case .max:
                        var m = stack[base]
                        for i in (base + 1)..<(base + n) where stack[i] > m || stack[i].isNaN { m = stack[i] }
                        result = m
                    case .abs: result = Swift.abs(stack[base])
                    case .exp: result = Foundation.exp(stack[base])
                    case .log: result = Foundation.log(stack[base])
                    case .sqrt: result = stack[base].squareRoot()
                    case .sin: result = Foundation.sin(stack[base])
                    case .cos: result = Foundation.cos(stack[base])
                    case .pow: result = Foundation.pow(stack[base], stack[base + 1])
                    case .clamp: result = Swift.min(Swift.max(stack[base], stack[base + 1]), stack[base + 2])
                    case .if: result = stack[base] != 0 ? stack[base + 1] : stack[base + 2]
                    }
                    top = base
                    stack[top] = result
                }
            }
            return stack[0]
        }
    }

    /// Evaluates with `variables[slot]` as each variable's value.
    public func evaluate(_ variables: [Double]) -> Double {
        variables.withUnsafeBufferPointer { evaluate($0) }
    }

    @inline(__always)
    static func apply(_ op: Expression.BinaryOperator, _ a: Double, _ b: Double) -> Double {
        switch op {
        case .add: return a + b
        case .subtract: return a - b
        case .multiply: return a * b
        case .divide: return a / b
        case .power: return b == 2 ? a * a : Foundation.pow(a, b)
        case .less: return a < b ? 1 : 0
        case .lessOrEqual: return a <= b ? 1 : 0
        case .greater: return a > b ? 1 : 0
        case .greaterOrEqual: return a >= b ? 1 : 0
        case .equal: return a == b ? 1 : 0
        case .notEqual: return a != b ? 1 : 0
        }
    }

    static func apply(_ f: Expression.Function, _ args: [Double]) -> Double {
        let program: [Instruction] = args.indices.map { .load($0) } + [.call(f, args.count)]
        let e = CompiledExpression(program: program, stackSize: args.count, slotCount: args.count, source: "")
        return args.withUnsafeBufferPointer { e.evaluate($0) }
    }

    private init(program: [Instruction], stackSize: Int, slotCount: Int, source: String) {
        self.program = program
        self.stackSize = stackSize
        self.slotCount = slotCount
        self.source = source
    }
}

/// Several compiled expressions (a behaviour's derivatives, or its outputs) in one instruction
/// buffer, evaluated without copying any of them. Why: taking a `CompiledExpression` out of an array
/// per call copied it — a retain and release of its program and of its source text each time — which
/// was a quarter of the drift monitor's residual path and of every simulation's right-hand side.
public struct ProgramSet: Sendable {
    let code: [CompiledExpression.Instruction]
    /// Program i is `code[bounds[i] ..< bounds[i + 1]]`.
    let bounds: [Int]
    let stackSize: Int
    /// The highest slot index any program reads (+1): the variables must be at least this many.
    public let slotCount: Int

    /// The programs of `expressions`, in order.
    public init(_ expressions: [CompiledExpression]) {
        var code: [CompiledExpression.Instruction] = []
        var bounds = [0]
        for e in expressions {
            code.append(contentsOf: e.program)
            bounds.append(code.count)
        }
        self.code = code
        self.bounds = bounds
        stackSize = expressions.map(\.stackSize).max() ?? 1
        slotCount = expressions.map(\.slotCount).max() ?? 0
    }

    /// Number of programs.
    public var count: Int { bounds.count - 1 }

    /// Calls `body` with an evaluator of these programs, valid only during the call (it borrows the
    /// instruction buffer instead of retaining it).
    @inline(__always)
    public func withEvaluator<R>(_ body: (Evaluator) throws -> R) rethrows -> R {
        try code.withUnsafeBufferPointer { code in
            try bounds.withUnsafeBufferPointer { bounds in
                try body(Evaluator(code: code, bounds: bounds, stackSize: stackSize, slotCount: slotCount))
            }
        }
    }

    /// Evaluates the programs of a `ProgramSet` inside its `withEvaluator`.
    public struct Evaluator {
        let code: UnsafeBufferPointer<CompiledExpression.Instruction>
        let bounds: UnsafeBufferPointer<Int>
        let stackSize: Int
        let slotCount: Int

        /// Program `i` with `variables[slot]` as each variable's value (`variables.count` is checked
        /// against every program's slots).
        @inline(__always)
        public func evaluate(_ i: Int, _ variables: UnsafeBufferPointer<Double>) -> Double {
            precondition(variables.count >= slotCount, "expressions need \(slotCount) variables, got \(variables.count)")
            return CompiledExpression.run(UnsafeBufferPointer(rebasing: code[bounds[i]..<bounds[i + 1]]), stackSize: stackSize, variables)
        }

        /// Evaluates every program in order, program i into `variables[first + i]` (each sees the ones
        /// before it: outputs in file order).
        @inline(__always)
        public func evaluateAll(into variables: UnsafeMutableBufferPointer<Double>, from first: Int) {
            for i in 0..<(bounds.count - 1) { variables[first + i] = evaluate(i, UnsafeBufferPointer(variables)) }
        }
    }
}
