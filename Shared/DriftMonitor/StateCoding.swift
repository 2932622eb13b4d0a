import JSON

/// `Codable` to and from JSON through the project's own writer and parser, for the monitor's
/// state in `drift.state.v1`.
///
/// Why not Foundation's `JSONEncoder`: a room twin's state (detectors, two data-drift windows per
/// property) took 1.4 ms to encode and 1.6 ms to decode with it, so writing each twin's state
/// every 60 readings cost more than the whole residual path. This encoder streams straight into a
/// `JSONWriter` (containers are closed when a shallower one writes next). A double is written as
/// the integer of its IEEE 754 bit pattern: exact by construction, and integers print and parse
/// several times faster than shortest round-trip decimals (this is internal state; the document's
/// public part carries the readable figures).
enum StateCoding {
    /// The JSON text of `value`.
    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let state = EncodingState()
        try value.encode(to: StreamingEncoder(state: state, depth: 0))
        state.close(to: 0)
        return state.writer.bytes
    }

    /// Decodes `type` from JSON text.
    static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try T(from: TreeDecoder(value: try JSON(parsing: bytes)))
    }

    /// Decodes `type` from a parsed JSON value.
    static func decode<T: Decodable>(_ type: T.Type, from json: JSON) throws -> T {
        try T(from: TreeDecoder(value: json))
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }
}

// MARK: Encoding

final class EncodingState {
    var writer = JSONWriter(capacity: 8192)
    /// Open containers, innermost last: true for an object.
    var open: [Bool] = []

    /// Closes containers until `depth` remain open.
    func close(to depth: Int) {
        while open.count > depth {
            if open.removeLast() { writer.endObject() } else { writer.endArray() }
        }
    }

    func begin(object: Bool, at depth: Int) {
        close(to: depth)
        if object { writer.beginObject() } else { writer.beginArray() }
        open.append(object)
    }

    func write(_ value: some Encodable, depth: Int) throws {
        switch value {
        case let v as Double: writer.value(Int64(bitPattern: v.bitPattern))
        case let v as Int: writer.value(v)
        case let v as Int64: writer.value(v)
        case let v as Bool: writer.value(v)
        case let v as String: writer.value(v)
        case let v as UInt64: writer.rawValue { $0.append(contentsOf: String(v).utf8) }
        case let v as Int32: writer.value(Int(v))
        case let v as Float: writer.value(Double(v))
        default: try value.encode(to: StreamingEncoder(state: state(), depth: depth))
        }
    }

    private func state() -> EncodingState { self }
}

struct StreamingEncoder: Encoder {
    let state: EncodingState
    let depth: Int
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        state.begin(object: true, at: depth)
        return KeyedEncodingContainer(KeyedWriter<Key>(state: state, depth: depth + 1))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        state.begin(object: false, at: depth)
        return UnkeyedWriter(state: state, depth: depth + 1)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { SingleWriter(state: state, depth: depth) }
}

struct KeyedWriter<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let state: EncodingState
    let depth: Int
    var codingPath: [any CodingKey] { [] }

    private func key(_ key: Key) {
        state.close(to: depth)
        state.writer.key(key.stringValue)
    }

    mutating func encodeNil(forKey key: Key) throws { self.key(key); state.writer.null() }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { self.key(key); try state.write(value, depth: depth) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { self.key(key); state.writer.value(value) }
    mutating func encode(_ value: String, forKey key: Key) throws { self.key(key); state.writer.value(value) }
    mutating func encode(_ value: Double, forKey key: Key) throws { self.key(key); state.writer.value(Int64(bitPattern: value.bitPattern)) }
    mutating func encode(_ value: Int, forKey key: Key) throws { self.key(key); state.writer.value(value) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { self.key(key); state.writer.value(value) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        self.key(key)
        state.begin(object: true, at: depth)
        return KeyedEncodingContainer(KeyedWriter<NestedKey>(state: state, depth: depth + 1))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        self.key(key)
        state.begin(object: false, at: depth)
        return UnkeyedWriter(state: state, depth: depth + 1)
    }

    mutating func superEncoder() -> any Encoder { StreamingEncoder(state: state, depth: depth) }
    mutating func superEncoder(forKey key: Key) -> any Encoder { self.key(key); return StreamingEncoder(state: state, depth: depth) }
}

struct UnkeyedWriter: UnkeyedEncodingContainer {
    let state: EncodingState
    let depth: Int
    var codingPath: [any CodingKey] { [] }
    var count = 0

    mutating func encodeNil() throws { state.close(to: depth); state.writer.null(); count += 1 }
    mutating func encode<T: Encodable>(_ value: T) throws { state.close(to: depth); try state.write(value, depth: depth); count += 1 }
    mutating func encode(_ value: Double) throws { state.close(to: depth); state.writer.value(Int64(bitPattern: value.bitPattern)); count += 1 }
    mutating func encode(_ value: Int) throws { state.close(to: depth); state.writer.value(value); count += 1 }
    mutating func encode(_ value: Int64) throws { state.close(to: depth); state.writer.value(value); count += 1 }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        count += 1
        state.begin(object: true, at: depth)
        return KeyedEncodingContainer(KeyedWriter<NestedKey>(state: state, depth: depth + 1))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        count += 1
        state.begin(object: false, at: depth)
        return UnkeyedWriter(state: state, depth: depth + 1)
    }

    mutating func superEncoder() -> any Encoder { StreamingEncoder(state: state, depth: depth) }
}

struct SingleWriter: SingleValueEncodingContainer {
    let state: EncodingState
    let depth: Int
    var codingPath: [any CodingKey] { [] }

    mutating func encodeNil() throws { state.close(to: depth); state.writer.null() }
    mutating func encode<T: Encodable>(_ value: T) throws { state.close(to: depth); try state.write(value, depth: depth) }
}

// MARK: Decoding

struct TreeDecoder: Decoder {
    let value: JSON
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let o) = value else { throw StateCoding.Failure(description: "expected an object, found \(value.typeName)") }
        return KeyedDecodingContainer(KeyedReader<Key>(object: o))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let a) = value else { throw StateCoding.Failure(description: "expected an array, found \(value.typeName)") }
        return UnkeyedReader(array: a)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { SingleReader(value: value) }
}

/// Reads one JSON value as `T`: primitives and arrays of numbers directly, everything else through
/// its `Decodable`. Why the direct paths: restoring a partition decodes thousands of twins, each with
/// arrays of hundreds of doubles (detector buckets, data-drift windows, history); one element at a
/// time through an unkeyed container and a dynamic cast per value made a restore cost about as much
/// as the JSON parse. The checks compare metatypes, so the casts below are between identical types.
func decodeValue<T: Decodable>(_ type: T.Type, _ value: JSON) throws -> T {
    func fail() -> StateCoding.Failure { StateCoding.Failure(description: "expected \(T.self), found \(value.typeName)") }
    if T.self == Double.self { return unsafeBitCast(try StateCoding.double(value, fail), to: T.self) }
    if T.self == Int.self { return unsafeBitCast(Int(try StateCoding.int64(value, fail)), to: T.self) }
    if T.self == Int64.self { return unsafeBitCast(try StateCoding.int64(value, fail), to: T.self) }
    if T.self == [Double].self { return unsafeBitCast(try StateCoding.array(value, fail) { try StateCoding.double($0, fail) }, to: T.self) }
    if T.self == [Int].self { return unsafeBitCast(try StateCoding.array(value, fail) { Int(try StateCoding.int64($0, fail)) }, to: T.self) }
    if T.self == [Int64].self { return unsafeBitCast(try StateCoding.array(value, fail) { try StateCoding.int64($0, fail) }, to: T.self) }
    if T.self == [UInt64].self { return unsafeBitCast(try StateCoding.array(value, fail) { try StateCoding.uint64($0, fail) }, to: T.self) }
    switch type {
    case is UInt64.Type:
        return try StateCoding.uint64(value, fail) as! T
    case is Bool.Type:
        guard case .bool(let b) = value else { throw fail() }
        return b as! T
    case is String.Type:
        guard case .string(let s) = value else { throw fail() }
        return s as! T
    default:
        return try T(from: TreeDecoder(value: value))
    }
}

extension StateCoding {
    /// A double written as the integer of its bit pattern.
    @inline(__always)
    static func double(_ value: JSON, _ fail: () -> Failure) throws -> Double {
        guard case .number(let n) = value, let bits = n.int64Value else { throw fail() }
        return Double(bitPattern: UInt64(bitPattern: bits))
    }

    @inline(__always)
    static func int64(_ value: JSON, _ fail: () -> Failure) throws -> Int64 {
        guard case .number(let n) = value, let i = n.int64Value else { throw fail() }
        return i
    }

    static func uint64(_ value: JSON, _ fail: () -> Failure) throws -> UInt64 {
        guard case .number(let n) = value else { throw fail() }
        if let i = n.int64Value, i >= 0 { return UInt64(i) }
        guard let text = n.bigIntegerText, let u = UInt64(text) else { throw fail() }
        return u
    }

    @inline(__always)
    static func array<E>(_ value: JSON, _ fail: () -> Failure, _ element: (JSON) throws -> E) throws -> [E] {
        guard case .array(let items) = value else { throw fail() }
        var out: [E] = []
        out.reserveCapacity(items.count)
        for item in items { out.append(try element(item)) }
        return out
    }
}

struct KeyedReader<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let object: JSONObject
    var codingPath: [any CodingKey] { [] }
    var allKeys: [Key] { object.keys.compactMap { Key(stringValue: $0) } }

    func contains(_ key: Key) -> Bool { object[key.stringValue] != nil }

    private func value(_ key: Key) throws -> JSON {
        guard let v = object[key.stringValue] else { throw StateCoding.Failure(description: "missing \(key.stringValue)") }
        return v
    }

    func decodeNil(forKey key: Key) throws -> Bool { object[key.stringValue]?.isNull ?? true }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try decodeValue(type, value(key)) }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try TreeDecoder(value: value(key)).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer { try TreeDecoder(value: value(key)).unkeyedContainer() }
    func superDecoder() throws -> any Decoder { TreeDecoder(value: .object(object)) }
    func superDecoder(forKey key: Key) throws -> any Decoder { TreeDecoder(value: try value(key)) }
}

struct UnkeyedReader: UnkeyedDecodingContainer {
    let array: [JSON]
    var codingPath: [any CodingKey] { [] }
    var count: Int? { array.count }
    var isAtEnd: Bool { currentIndex >= array.count }
    var currentIndex = 0

    init(array: [JSON]) { self.array = array }

    private mutating func next() throws -> JSON {
        guard currentIndex < array.count else { throw StateCoding.Failure(description: "array ended") }
        defer { currentIndex += 1 }
        return array[currentIndex]
    }

    mutating func decodeNil() throws -> Bool {
        guard currentIndex < array.count, array[currentIndex].isNull else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try decodeValue(type, next()) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try TreeDecoder(value: next()).container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer { try TreeDecoder(value: next()).unkeyedContainer() }
    mutating func superDecoder() throws -> any Decoder { TreeDecoder(value: try next()) }
}

struct SingleReader: SingleValueDecodingContainer {
    let value: JSON
    var codingPath: [any CodingKey] { [] }
    func decodeNil() -> Bool { value.isNull }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try decodeValue(type, value) }
}
