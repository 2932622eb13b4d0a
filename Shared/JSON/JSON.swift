/// A JSON value, exact enough for JSON Schema and cheap enough for telemetry hot paths.
///
/// - Numbers are `JSONNumber`: integers stay exact (`Int64`, or digits for bigger ones) and
///   `1 == 1.0` as JSON Schema requires.
/// - Objects are `JSONObject`: insertion-ordered, last duplicate key wins, order-independent equality.
/// - Strings compare by code points (UTF-8 bytes), not by Swift's canonical equivalence.
///
/// Parse with `JSON(parsing:)`, write with `serialized()` / `description`, or use `JSONWriter`
/// to emit JSON without building a value at all.
public enum JSON: Sendable, Hashable {
    /// `null`
    case null
    /// `true` / `false`
    case bool(Bool)
    /// Any JSON number.
    case number(JSONNumber)
    /// A string (always valid Unicode; parsing rejects unpaired surrogates).
    case string(String)
    /// An array.
    case array([JSON])
    /// An object.
    case object(JSONObject)

    /// A number from an integer.
    @inlinable public static func int(_ value: Int) -> JSON { .number(JSONNumber(value)) }
    /// A number from a double (integral values become exact integers).
    @inlinable public static func double(_ value: Double) -> JSON { .number(JSONNumber(value)) }

    // MARK: Accessors

    /// Member of an object, nil if this is not an object or the key is absent. Assigning sets or
    /// (with nil) removes the member; assigning on a non-object does nothing.
    @inlinable
    public subscript(key: String) -> JSON? {
        get {
            if case .object(let o) = self { return o[key] }
            return nil
        }
        set {
            guard case .object(var o) = self else { return }
            self = .null  // drop our reference so `o` is uniquely owned and mutates in place
            o[key] = newValue
            self = .object(o)
        }
    }

    /// Element of an array, nil if this is not an array or the index is out of range.
    @inlinable
    public subscript(index: Int) -> JSON? {
        if case .array(let a) = self, a.indices.contains(index) { return a[index] }
        return nil
    }

    /// The string, if this is a string.
    @inlinable public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    /// The number as a `Double` (big integers rounded), if this is a number.
    @inlinable public var doubleValue: Double? { if case .number(let n) = self { return n.doubleValue }; return nil }
    /// The number as an `Int` only when it is an integer that fits exactly; `1.0` gives 1, `1.5` gives nil.
    @inlinable public var intValue: Int? {
        if case .number(let n) = self, let i = n.int64Value { return Int(exactly: i) }
        return nil
    }
    /// The number, if this is a number.
    @inlinable public var numberValue: JSONNumber? { if case .number(let n) = self { return n }; return nil }
    /// The boolean, if this is a boolean.
    @inlinable public var boolValue: Bool? { if case .bool(let b) = self { return b }; return nil }
    /// The elements, if this is an array.
    @inlinable public var arrayValue: [JSON]? { if case .array(let a) = self { return a }; return nil }
    /// The object, if this is an object.
    @inlinable public var objectValue: JSONObject? { if case .object(let o) = self { return o }; return nil }
    /// True for `null`.
    @inlinable public var isNull: Bool { if case .null = self { return true }; return false }

    /// JSON Schema's name for the value's type ("null", "boolean", "integer", "number", "string",
    /// "array", "object"); `1.0` is "integer".
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .number(let n): return n.isInteger ? "integer" : "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    // MARK: Equality

    /// True when two strings have identical UTF-8 bytes (JSON compares code points; Swift's `==`
    /// would also equate canonically equivalent spellings). Compares contiguous buffers directly,
    /// which is several times faster than iterating `UTF8View`s.
    @inlinable
    public static func utf8Equal(_ a: String, _ b: String) -> Bool {
        // Identical representations hold identical bytes. Strings of up to 15 UTF-8 bytes (most
        // keys) are stored inline, so for them this one comparison settles equality.
        if MemoryLayout<String>.size == 16,
           unsafeBitCast(a, to: (UInt64, UInt64).self) == unsafeBitCast(b, to: (UInt64, UInt64).self) { return true }
        let au = a.utf8, bu = b.utf8
        guard au.count == bu.count else { return false }
        if let r = au.withContiguousStorageIfAvailable({ pa in
            bu.withContiguousStorageIfAvailable { pb -> Bool in
                pa.count == 0 || memcmpBytes(pa.baseAddress!, pb.baseAddress!, pa.count)
            }
        }), let r { return r }
        return au.elementsEqual(bu)
    }

    /// True when `bytes` are exactly `string`'s UTF-8: one memory comparison, where
    /// `elementsEqual` walked the string's UTF-8 view a byte at a time.
    @inlinable
    public static func utf8Equal(_ bytes: some Collection<UInt8>, _ string: String) -> Bool {
        var string = string
        return string.withUTF8 { s in
            guard bytes.count == s.count else { return false }
            return bytes.withContiguousStorageIfAvailable { b in b.isEmpty || memcmpBytes(b.baseAddress!, s.baseAddress!, b.count) }
                ?? bytes.elementsEqual(s)
        }
    }

    /// True when `a`'s UTF-8 sorts before `b`'s (byte order = code point order), comparing
    /// memory rather than walking `UTF8View`s.
    @inlinable
    public static func utf8Less(_ a: String, _ b: String) -> Bool {
        var a = a, b = b
        return a.withUTF8 { pa in
            b.withUTF8 { pb in
                let n = min(pa.count, pb.count)
                for i in 0..<n where pa[i] != pb[i] { return pa[i] < pb[i] }
                return pa.count < pb.count
            }
        }
    }

    /// Structural equality as JSON Schema defines it (numbers by value, objects unordered,
    /// strings by code points).
    public static func == (lhs: JSON, rhs: JSON) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.number(let a), .number(let b)): return a == b
        case (.string(let a), .string(let b)): return JSON.utf8Equal(a, b)
        case (.array(let a), .array(let b)): return a == b
        case (.object(let a), .object(let b)): return a == b
        default: return false
        }
    }

    /// Hash consistent with `==`.
    public func hash(into hasher: inout Hasher) {
        switch self {
        case .null: hasher.combine(0 as UInt8)
        case .bool(let b): hasher.combine(1 as UInt8); hasher.combine(b)
        case .number(let n): hasher.combine(2 as UInt8); hasher.combine(n)
        case .string(let s): hasher.combine(3 as UInt8); ByteKey(s).hash(into: &hasher)
        case .array(let a): hasher.combine(4 as UInt8); hasher.combine(a)
        case .object(let o): hasher.combine(5 as UInt8); hasher.combine(o)
        }
    }
}

// MARK: Literals

extension JSON: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    /// `nil` literal is `null`.
    public init(nilLiteral: ()) { self = .null }
    /// `true` / `false`.
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    /// Integer literal, exact.
    public init(integerLiteral value: Int) { self = .number(JSONNumber(value)) }
    /// Float literal (an integral one such as `2.0` becomes the integer 2).
    public init(floatLiteral value: Double) { self = .number(JSONNumber(value)) }
    /// String literal.
    public init(stringLiteral value: String) { self = .string(value) }
    /// Array literal.
    public init(arrayLiteral elements: JSON...) { self = .array(elements) }
    /// Object literal, keeping the literal's key order.
    public init(dictionaryLiteral elements: (String, JSON)...) { self = .object(JSONObject(elements)) }
}

extension JSON: CustomStringConvertible {
    /// Compact JSON text (non-finite numbers as `null`).
    public var description: String { serializedString() }
}

/// Byte comparison without importing libc (this module has no dependencies).
@inlinable @inline(__always) @usableFromInline
func memcmpBytes(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
    var i = 0
    // Eight bytes at a time, then the tail.
    while i + 8 <= n {
        if UnsafeRawPointer(a + i).loadUnaligned(as: UInt64.self) != UnsafeRawPointer(b + i).loadUnaligned(as: UInt64.self) { return false }
        i += 8
    }
    while i < n {
        if a[i] != b[i] { return false }
        i += 1
    }
    return true
}

extension JSON {
    /// Whether two byte runs are equal (eight bytes at a time): for readers that compare what
    /// they read with what they hold without making Strings.
    @inlinable
    public static func bytesEqual(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        a.count == b.count && (a.isEmpty || memcmpBytes(a.baseAddress!, b.baseAddress!, a.count))
    }

    /// The index of the first of `strings` whose UTF-8 is `bytes`, by byte compares (for a few
    /// names, cheaper than hashing them into a dictionary).
    @inlinable
    public static func index(of bytes: UnsafeBufferPointer<UInt8>, in strings: [String]) -> Int? {
        var i = 0
        while i < strings.count {
            var s = strings[i]
            if s.withUTF8({ bytesEqual($0, bytes) }) { return i }
            i += 1
        }
        return nil
    }
}
