/// An ordered JSON object: keys keep insertion (document) order, lookup is by exact key.
///
/// Telemetry objects are small, so lookup is a linear scan of a contiguous array (cache
/// friendly, no hashing) until the object grows past `indexThreshold` keys, when a hash index is
/// built. Keys compare by their UTF-8 bytes (JSON compares code points, not Swift's canonical
/// equivalence), so `"é"` and `"e\u{301}"` are different keys.
///
/// Duplicate keys: setting an existing key replaces its value and keeps the key's original
/// position, so when parsing `{"a":1,"a":2}` the last value wins: `["a"] == 2`.
/// Equality ignores key order, as JSON Schema requires.
public struct JSONObject: Sendable, Hashable, RandomAccessCollection, ExpressibleByDictionaryLiteral, CustomStringConvertible {
    /// One key/value pair.
    public typealias Element = (key: String, value: JSON)
    /// Position of an entry (0-based insertion order).
    public typealias Index = Int

    /// Objects with more keys than this get a hash index; below it a linear scan is faster.
    public static let indexThreshold = 16

    @usableFromInline
    var entries: [Element]
    @usableFromInline
    var index: [ByteKey: Int]?

    /// An empty object.
    @inlinable
    public init() { entries = []; index = nil }

    /// An empty object with room for `capacity` entries (avoids regrowth while parsing).
    @inlinable
    public init(minimumCapacity capacity: Int) { entries = []; entries.reserveCapacity(capacity); index = nil }

    /// Builds from pairs in order; a repeated key replaces the earlier value (last one wins).
    public init<S: Sequence>(_ pairs: S) where S.Element == (String, JSON) {
        self.init()
        for (k, v) in pairs { self[k] = v }
    }

    /// Dictionary-literal syntax keeps the literal's order.
    public init(dictionaryLiteral elements: (String, JSON)...) {
        self.init(elements)
    }

    /// First entry position.
    @inlinable public var startIndex: Int { 0 }
    /// One past the last entry.
    @inlinable public var endIndex: Int { entries.count }
    /// Number of keys.
    @inlinable public var count: Int { entries.count }
    /// The entry at a position, in insertion order.
    @inlinable public subscript(position: Int) -> Element { entries[position] }

    /// Calls `body` with the entries' contiguous storage (insertion order) so hot loops can read
    /// keys and values without copying each pair out.
    @inlinable
    public func withUnsafeEntries<R>(_ body: (UnsafeBufferPointer<Element>) throws -> R) rethrows -> R {
        try entries.withUnsafeBufferPointer(body)
    }

    /// The keys in insertion order.
    public var keys: [String] { entries.map(\.key) }
    /// The values in insertion order.
    public var values: [JSON] { entries.map(\.value) }

    /// Position of `key`, or nil.
    @inlinable
    public func firstIndex(forKey key: String) -> Int? {
        if let index { return index[ByteKey(key)] }
        let count = key.utf8.count
        for i in entries.indices where JSONObject.sameKey(entries[i].key, key, count) { return i }
        return nil
    }

    /// Exact byte comparison with a cheap length check first (O(1) for native strings).
    @inlinable @inline(__always)
    static func sameKey(_ a: String, _ b: String, _ bCount: Int) -> Bool {
        let au = a.utf8
        guard au.count == bCount else { return false }
        return JSON.utf8Equal(a, b)
    }

    /// Value for `key`; assigning nil removes the key, assigning to an existing key keeps its position.
    @inlinable
    public subscript(key: String) -> JSON? {
        get {
            guard let i = firstIndex(forKey: key) else { return nil }
            return entries[i].value
        }
        set {
            if let i = firstIndex(forKey: key) {
                if let newValue { entries[i].value = newValue } else { remove(at: i) }
            } else if let newValue {
                appendNew(key, newValue)
            }
        }
    }

    /// Appends a key known not to be present (callers checked), maintaining the index.
    @usableFromInline
    mutating func appendNew(_ key: String, _ value: JSON) {
        entries.append((key: key, value: value))
        if index != nil {
            index![ByteKey(key)] = entries.count - 1
        } else if entries.count > JSONObject.indexThreshold {
            rebuildIndex()
        }
    }

    /// Removes the entry at `position`, keeping the order of the rest.
    public mutating func remove(at position: Int) {
        entries.remove(at: position)
        if index != nil { rebuildIndex() }
    }

    /// Removes `key` and returns its value, if present.
    @discardableResult
    public mutating func removeValue(forKey key: String) -> JSON? {
        guard let i = firstIndex(forKey: key) else { return nil }
        let v = entries[i].value
        remove(at: i)
        return v
    }

    @usableFromInline
    mutating func rebuildIndex() {
        if entries.count <= JSONObject.indexThreshold { index = nil; return }
        var idx = [ByteKey: Int](minimumCapacity: entries.count)
        for (i, e) in entries.enumerated() { idx[ByteKey(e.key)] = i }
        index = idx
    }

    /// Order-independent equality (JSON Schema: objects are equal when they have the same keys
    /// with equal values).
    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.count == rhs.count else { return false }
        for (k, v) in lhs.entries {
            guard let other = rhs[k], other == v else { return false }
        }
        return true
    }

    /// Order-independent hash, consistent with `==`.
    public func hash(into hasher: inout Hasher) {
        var acc = 0
        for (k, v) in entries {
            var h = Hasher()
            ByteKey(k).hash(into: &h)
            h.combine(v)
            acc = acc &+ h.finalize()
        }
        hasher.combine(entries.count)
        hasher.combine(acc)
    }

    /// Compact JSON text.
    public var description: String { JSON.object(self).description }
}

/// A string key that hashes and compares by UTF-8 bytes (no Unicode canonical equivalence).
@usableFromInline
struct ByteKey: Hashable, Sendable {
    @usableFromInline let string: String
    @inlinable init(_ string: String) { self.string = string }
    @inlinable static func == (a: ByteKey, b: ByteKey) -> Bool {
        JSONObject.sameKey(a.string, b.string, b.string.utf8.count)
    }
    @inlinable func hash(into hasher: inout Hasher) {
        var s = string
        s.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}
