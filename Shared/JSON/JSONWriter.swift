/// Streams JSON straight into a byte buffer without building a `JSON` value, for contract
/// encoders on hot paths (one reading encoded per message, hundreds of thousands per second).
///
/// Commas are inserted automatically; the writer does not otherwise check structure (it is a
/// hot-path tool, so a mismatched `endObject` is the caller's bug, caught by contract tests).
///
/// ```swift
/// var w = JSONWriter()
/// w.beginObject()
/// w.key("twinId"); w.value("pump-17")
/// w.key("values"); w.beginObject(); w.key("temperature"); w.value(71.5); w.endObject()
/// w.endObject()
/// let bytes = w.bytes
/// ```
public struct JSONWriter: Sendable {
    /// The JSON written so far.
    public var bytes: [UInt8]
    /// True when the next value/key in the current container needs a leading comma.
    @usableFromInline var needsComma = false

    /// A writer with an empty buffer (capacity reserved to avoid regrowth for typical messages).
    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// A writer that appends to an existing buffer (e.g. one reused across messages after `removeAll(keepingCapacity:)`).
    public init(appendingTo buffer: [UInt8]) {
        bytes = buffer
    }

    /// The output as a String.
    public var string: String { String(decoding: bytes, as: UTF8.self) }

    @inlinable @inline(__always)
    mutating func separator() {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
        needsComma = true
    }

    /// Opens an object (as a value: inside arrays or after `key`).
    @inlinable public mutating func beginObject() { separator(); bytes.append(UInt8(ascii: "{")); needsComma = false }
    /// Closes the current object.
    @inlinable public mutating func endObject() { bytes.append(UInt8(ascii: "}")); needsComma = true }
    /// Opens an array.
    @inlinable public mutating func beginArray() { separator(); bytes.append(UInt8(ascii: "[")); needsComma = false }
    /// Closes the current array.
    @inlinable public mutating func endArray() { bytes.append(UInt8(ascii: "]")); needsComma = true }

    /// Writes an object key; the next call must write its value.
    @inlinable
    public mutating func key(_ name: String) {
        separator()
        JSON.appendQuoted(name, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
        needsComma = false
    }

    /// Writes an object key spelled in the code (`knownKey("eventId")`): its bytes are copied
    /// as they are instead of scanned for characters to escape, which a name in the source never
    /// has (checked in debug builds). Use `key(_:)` for names that come from input.
    @inlinable
    public mutating func knownKey(_ name: StaticString) {
        separator()
        let text = UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
        assert(text.allSatisfy { $0 >= 0x20 && $0 != 0x22 && $0 != 0x5C && $0 < 0x80 }, "knownKey(\(name)) needs escaping")
        // `"name":` assembled on the stack and appended at once as typed bytes: one capacity check,
        // not four, and one copy (a raw buffer is appended byte by byte). Some thirty keys a document.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: text.count + 3) { out in
            out[0] = UInt8(ascii: "\"")
            _ = UnsafeMutableBufferPointer(rebasing: out[1..<(1 + text.count)]).initialize(fromContentsOf: text)
            out[1 + text.count] = UInt8(ascii: "\"")
            out[2 + text.count] = UInt8(ascii: ":")
            bytes.append(contentsOf: UnsafeBufferPointer(out))
        }
        needsComma = false
    }

    /// Writes a string value.
    @inlinable public mutating func value(_ s: String) { separator(); JSON.appendQuoted(s, to: &bytes) }
    /// Writes an integer value.
    @inlinable public mutating func value(_ i: Int) { separator(); JSONNumber.appendInteger(Int64(i), to: &bytes) }
    /// Writes an integer value.
    @inlinable public mutating func value(_ i: Int64) { separator(); JSONNumber.appendInteger(i, to: &bytes) }
    /// Writes a double in shortest round-trip form (integral values without `.0`; NaN/infinity as `null`).
    @inlinable public mutating func value(_ d: Double) { separator(); JSONNumber.appendDouble(d, to: &bytes) }
    /// Writes `true` or `false`.
    @inlinable public mutating func value(_ b: Bool) { separator(); bytes.append(contentsOf: b ? "true".utf8 : "false".utf8) }
    /// Writes a whole `JSON` value.
    public mutating func value(_ json: JSON, options: JSONWriteOptions = []) { separator(); json.append(to: &bytes, options: options) }
    /// Writes `null`.
    @inlinable public mutating func null() { separator(); bytes.append(contentsOf: "null".utf8) }

    /// Writes one value whose encoding `write` appends straight to the buffer, without building a
    /// string first (timestamps on hot paths). `write` must append exactly one JSON value.
    @inlinable
    public mutating func rawValue(_ write: (inout [UInt8]) -> Void) {
        separator()
        write(&bytes)
    }

    /// Writes pre-encoded JSON as one value (e.g. a payload forwarded unchanged). The bytes are
    /// not validated; they must be exactly one JSON value.
    @inlinable
    public mutating func raw<C: Collection>(_ json: C) where C.Element == UInt8 {
        separator()
        bytes.append(contentsOf: json)
    }

    /// Convenience: `key(name)` followed by a string value.
    @inlinable public mutating func field(_ name: String, _ v: String) { key(name); value(v) }
    /// `knownKey(name)` and a string value.
    @inlinable public mutating func knownField(_ name: StaticString, _ v: String) { knownKey(name); value(v) }
    /// Convenience: `key(name)` followed by a double value.
    @inlinable public mutating func field(_ name: String, _ v: Double) { key(name); value(v) }
    /// Convenience: `key(name)` followed by an integer value.
    @inlinable public mutating func field(_ name: String, _ v: Int) { key(name); value(v) }
    /// Convenience: `key(name)` followed by a boolean value.
    @inlinable public mutating func field(_ name: String, _ v: Bool) { key(name); value(v) }
}
