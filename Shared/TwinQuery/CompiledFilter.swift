import JSON

/// A `TwinFilter` turned once into a tree of closures specialised for its fields, operators and
/// literal types, so that evaluating it per twin does no parsing, no dispatch on the AST and no
/// allocation.
public struct CompiledFilter<T: FilterableTwin>: @unchecked Sendable {
    // @unchecked: the closures capture only immutable values (literals, field names).
    @usableFromInline let test: (T, Int64) -> Bool

    /// Compiles `filter` (nil matches every twin).
    public init(_ filter: TwinFilter?) {
        test = filter.map { Self.compile($0.expression) } ?? { _, _ in true }
    }

    /// Whether `twin` matches at time `now` (epoch ms, for `stale`).
    @inlinable
    public func matches(_ twin: T, now: Int64) -> Bool { test(twin, now) }

    static func compile(_ e: FilterExpression) -> (T, Int64) -> Bool {
        switch e {
        case .comparison(let c): return compile(c)
        case .not(let inner):
            let f = compile(inner)
            return { t, now in !f(t, now) }
        case .and(let items):
            // A chain of two-way closures is cheaper to call than a loop over an array of them.
            var f = compile(items[items.count - 1])
            for item in items.dropLast().reversed() {
                let a = compile(item), b = f
                f = { t, now in a(t, now) && b(t, now) }
            }
            return f
        case .or(let items):
            var f = compile(items[items.count - 1])
            for item in items.dropLast().reversed() {
                let a = compile(item), b = f
                f = { t, now in a(t, now) || b(t, now) }
            }
            return f
        }
    }

    static func compile(_ c: FilterComparison) -> (T, Int64) -> Bool {
        switch c.field {
        case .stale:
            guard case .bool(let b) = c.value else { return { _, _ in false } }
            let want = c.op == .equal ? b : !b
            return { t, now in t.isStale(now: now) == want }
        case .missing:
            // `!=` inverts: a twin not missing `flow` has reported it (or its model does not require it).
            switch c.value {
            case .bool(let b):
                let want = c.op == .equal ? b : !b
                return { t, _ in !t.missing.isEmpty == want }
            case .string(let name):
                let want = c.op == .equal
                return { t, _ in t.missing.contains(name) == want }
            case .number, .time:
                return { _, _ in false }
            }
        case .twinId:
            guard case .string(let s) = c.value else { return { _, _ in false } }
            let test: (String) -> Bool = stringTest(c.op, s)
            return { t, _ in test(t.twinId) }
        case .model:
            guard case .string(let s) = c.value else { return { _, _ in false } }
            if s.utf8.contains(UInt8(ascii: "@")) {
                let test: (String) -> Bool = stringTest(c.op, s)
                return { t, _ in
                    guard let m = t.model else { return false }
                    return test(m)
                }
            }
            let test: (Substring) -> Bool = stringTest(c.op, s)
            return { t, _ in
                guard let m = t.model else { return false }
                return test(modelId(m))
            }
        case .version:
            guard case .number(let x) = c.value, let test = orderTest(c.op, x) else { return { _, _ in false } }
            return { t, _ in test(Double(t.version)) }
        case .updatedAt:
            guard case .time(let x) = c.value else { return { _, _ in false } }
            let test = orderTest(c.op, x) ?? { _ in false }
            return { t, _ in test(t.updatedAt) }
        case .property(let name):
            return valueTest(c) { $0.propertyValue(name) }
        case .metadata(let path):
            let key = path[0], rest = Array(path.dropFirst())
            return valueTest(c) { walk($0.metadataValue(key), rest) }
        case .desired(let path):
            let key = path[0], rest = Array(path.dropFirst())
            return valueTest(c) { walk($0.desiredValue(key), rest) }
        case .parameter(let path):
            let key = path[0], rest = Array(path.dropFirst())
            return valueTest(c) { walk($0.parameterValue(key), rest) }
        }
    }

    /// A comparison of a JSON value against the literal: different types are false.
    static func valueTest(_ c: FilterComparison, _ get: @escaping (T) -> JSON?) -> (T, Int64) -> Bool {
        switch c.value {
        case .number(let x):
            guard let test = orderTest(c.op, x) else { return { _, _ in false } }
            return { t, _ in
                if case .number(let n)? = get(t) { return test(n.doubleValue) }
                return false
            }
        case .string(let s):
            let test: (String) -> Bool = stringTest(c.op, s)
            return { t, _ in
                if case .string(let v)? = get(t) { return test(v) }
                return false
            }
        case .bool(let b):
            guard c.op == .equal || c.op == .notEqual else { return { _, _ in false } }
            let want = c.op == .equal
            return { t, _ in
                if case .bool(let v)? = get(t) { return (v == b) == want }
                return false
            }
        case .time:
            return { _, _ in false }
        }
    }
}

@inline(__always)
func walk(_ value: JSON?, _ rest: [String]) -> JSON? {
    guard !rest.isEmpty else { return value }
    var v = value
    for k in rest { v = v?[k] }
    return v
}

/// The model id of `id@version`.
@inline(__always)
func modelId(_ model: String) -> Substring {
    guard let at = model.utf8.firstIndex(of: UInt8(ascii: "@")) else { return Substring(model) }
    return model[..<at]
}

/// The comparison `op` against `x`; nil for `contains`, which orders nothing.
func orderTest<T: Comparable>(_ op: FilterOperator, _ x: T) -> ((T) -> Bool)? {
    switch op {
    case .equal: return { $0 == x }
    case .notEqual: return { $0 != x }
    case .greater: return { $0 > x }
    case .greaterOrEqual: return { $0 >= x }
    case .less: return { $0 < x }
    case .lessOrEqual: return { $0 <= x }
    case .contains: return nil
    }
}

/// String comparisons by UTF-8 bytes.
func stringTest<S: StringProtocol>(_ op: FilterOperator, _ x: String) -> (S) -> Bool {
    let bytes = Array(x.utf8)
    switch op {
    case .equal: return { $0.utf8.elementsEqual(bytes) }
    case .notEqual: return { !$0.utf8.elementsEqual(bytes) }
    case .greater: return { bytes.lexicographicallyPrecedes($0.utf8) }
    case .greaterOrEqual: return { !$0.utf8.lexicographicallyPrecedes(bytes) }
    case .less: return { $0.utf8.lexicographicallyPrecedes(bytes) }
    case .lessOrEqual: return { !bytes.lexicographicallyPrecedes($0.utf8) }
    case .contains: return { containsBytes($0.utf8, bytes) }
    }
}

func containsBytes<C: Collection>(_ haystack: C, _ needle: [UInt8]) -> Bool where C.Element == UInt8 {
    guard let first = needle.first else { return true }
    if let r = haystack.withContiguousStorageIfAvailable({ h -> Bool in
        guard h.count >= needle.count else { return false }
        var i = 0
        while i + needle.count <= h.count {
            if h[i] == first {
                var k = 1
                while k < needle.count, h[i + k] == needle[k] { k += 1 }
                if k == needle.count { return true }
            }
            i += 1
        }
        return false
    }) { return r }
    return containsBytes(Array(haystack), needle)
}
