/// Reads a JSON document's objects member by member, without building them: the caller looks
/// at each key's bytes and reads the value it wants — a string's bytes, a whole value, or
/// nothing (`skipValue`). Decoders of fixed-shape contracts use it to avoid a `JSON` tree and a
/// `String` per field. Syntax is checked exactly as `JSON(parsing:)` checks it, skipped values
/// included, so a document read to its end with `finish()` is valid JSON.
///
///     try JSONMemberReader.read(bytes) { r in
///         try r.beginObject()
///         while let key = try r.nextKey() {
///             if key == "id" { id = try r.readString() } else { try r.skipValue() }
///         }
///         try r.finish()
///     }
///
/// Keys and strings come as `JSONStringBytes`, which point into the input: valid inside `read`.
public struct JSONMemberReader {
    var parser: JSONParser
    /// True right after `{`: the next member has no leading comma.
    var atFirstMember = false
    /// Objects and arrays opened by `beginObject`/`beginArray` and not yet closed by `nextKey` or
    /// `nextElement` returning nil/false (the nesting depth the limit is checked against).
    var openObjects = 0

    init(_ buffer: UnsafeBufferPointer<UInt8>, options: JSONParseOptions) {
        parser = JSONParser(buffer, maxDepth: options.maxDepth)
    }

    /// Lends a reader over `bytes` to `body`.
    public static func read<R>(_ bytes: [UInt8], options: JSONParseOptions = JSONParseOptions(),
                               _ body: (inout JSONMemberReader) throws -> R) throws -> R {
        try bytes.withUnsafeBufferPointer { buffer in
            var reader = JSONMemberReader(buffer, options: options)
            return try body(&reader)
        }
    }

    /// Enters the object that must come next (the document itself, or the value of the key just read).
    public mutating func beginObject() throws {
        try enter(UInt8(ascii: "{"), expecting: "an object")
    }

    /// Consumes the opening `bracket` of a container that must come next.
    private mutating func enter(_ bracket: UInt8, expecting what: String) throws {
        parser.skipWhitespace()
        guard parser.pos < parser.end, parser.buf[parser.pos] == bracket else { throw parser.unexpected(what) }
        openObjects += 1
        try parser.checkDepth(openObjects)
        parser.pos += 1
        atFirstMember = true
    }

    /// The next key of the innermost open object, its `:` consumed; nil once its `}` is read
    /// (the object is then closed). Escapes are decoded.
    public mutating func nextKey() throws -> JSONStringBytes? {
        guard let b = try nextOrClose(UInt8(ascii: "}"), first: "a string key or '}'", later: "',' or '}'") else { return nil }
        if atFirstMember {
            guard b == UInt8(ascii: "\"") else { throw parser.unexpected("a string key or '}'") }
        } else {
            guard b == UInt8(ascii: ",") else { throw parser.unexpected("',' or '}'") }
            parser.pos += 1
            parser.skipWhitespace()
            guard parser.pos < parser.end, parser.buf[parser.pos] == UInt8(ascii: "\"") else { throw parser.unexpected("a string key after ','") }
        }
        atFirstMember = false
        let key = try parser.parseStringBytes()
        parser.skipWhitespace()
        guard parser.pos < parser.end, parser.buf[parser.pos] == UInt8(ascii: ":") else { throw parser.unexpected("':' after object key") }
        parser.pos += 1
        return key
    }

    /// The next byte after whitespace; nil when it is `bracket`, which is then consumed and closes
    /// the innermost container (the enclosing one, if any, has just had a member). What was
    /// expected (`first` right after the opening bracket) is made a String only for the error:
    /// this runs for every key (as a call taking a String it cost 60 instructions more per key).
    @inline(__always)
    private mutating func nextOrClose(_ bracket: UInt8, first: StaticString, later: StaticString) throws -> UInt8? {
        parser.skipWhitespace()
        guard parser.pos < parser.end else { throw parser.unexpected("\(atFirstMember ? first : later)") }
        let b = parser.buf[parser.pos]
        guard b != bracket else {
            parser.pos += 1
            openObjects -= 1
            atFirstMember = false
            return nil
        }
        return b
    }

    /// Enters the array that must come next; its elements follow `nextElement` returning true.
    public mutating func beginArray() throws {
        try enter(UInt8(ascii: "["), expecting: "an array")
    }

    /// True when the innermost open array has another element (its `,` consumed): read it next,
    /// as a value or with `beginObject`. False once its `]` is read (the array is then closed).
    public mutating func nextElement() throws -> Bool {
        guard let b = try nextOrClose(UInt8(ascii: "]"), first: "a value or ']'", later: "',' or ']'") else { return false }
        if !atFirstMember {
            guard b == UInt8(ascii: ",") else { throw parser.unexpected("',' or ']'") }
            parser.pos += 1  // a `]` right after it is refused by the element's read, as the parser refuses `[1,]`
        }
        atFirstMember = false
        return true
    }

    /// True when the next value is an object (nothing is consumed).
    public mutating func nextValueIsObject() -> Bool { nextValueStarts(with: UInt8(ascii: "{")) }

    /// True when the next value is an array (nothing is consumed).
    public mutating func nextValueIsArray() -> Bool { nextValueStarts(with: UInt8(ascii: "[")) }

    /// True when the next value is a string (nothing is consumed).
    public mutating func nextValueIsString() -> Bool { nextValueStarts(with: UInt8(ascii: "\"")) }

    private mutating func nextValueStarts(with byte: UInt8) -> Bool {
        parser.skipWhitespace()
        return parser.pos < parser.end && parser.buf[parser.pos] == byte
    }

    /// The next value as a tree.
    public mutating func readValue() throws -> JSON {
        try parser.parseValue(depth: openObjects)
    }

    /// The next value's bytes when it is a string (escapes decoded); nil, with the value
    /// consumed, when it is anything else.
    public mutating func readStringBytes() throws -> JSONStringBytes? {
        guard nextValueIsString() else {
            try skipValue()
            return nil
        }
        return try parser.parseStringBytes()
    }

    /// The next value when it is a string; nil, with the value consumed, when it is anything else.
    public mutating func readString() throws -> String? {
        try readStringBytes()?.string
    }

    /// The next value when it is an object; nil, with the value consumed, when it is anything else.
    public mutating func readObject() throws -> JSONObject? {
        guard case .object(let object) = try readValue() else { return nil }
        return object
    }

    /// Consumes the next value, checking its syntax.
    public mutating func skipValue() throws {
        _ = try readValue()
    }

    /// Checks that the document ends after the outermost object (whitespace only).
    public mutating func finish() throws {
        guard openObjects == 0 else { throw parser.unexpected("',' or '}'") }
        parser.skipWhitespace()
        if parser.pos < parser.end {
            throw JSONError(code: .trailingData, offset: parser.pos,
                            message: "unexpected \(parser.describe(parser.pos)) after the JSON value at offset \(parser.pos)")
        }
    }
}

/// A JSON string's UTF-8 bytes as `JSONMemberReader` read them: in place in the input when the
/// string had no escapes (no copy), decoded into their own array when it had.
public struct JSONStringBytes {
    @usableFromInline
    enum Storage {
        case input(UnsafeBufferPointer<UInt8>)
        case decoded([UInt8])
    }
    @usableFromInline let storage: Storage

    @usableFromInline init(storage: Storage) { self.storage = storage }

    /// Lends the bytes to `body`.
    @inlinable
    public func withBytes<R>(_ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        switch storage {
        case .input(let bytes): return try body(bytes)
        case .decoded(let bytes): return try bytes.withUnsafeBufferPointer(body)
        }
    }

    @inlinable
    public var count: Int {
        switch storage {
        case .input(let bytes): bytes.count
        case .decoded(let bytes): bytes.count
        }
    }

    public var string: String { withBytes { String(decoding: $0, as: UTF8.self) } }

    /// The bytes where they stand in the input (valid inside `read`); nil when escapes were
    /// decoded into a buffer the next read reuses.
    @inlinable
    public var inPlace: UnsafeBufferPointer<UInt8>? {
        if case .input(let bytes) = storage { return bytes }
        return nil
    }

    /// True when the bytes are exactly `name`'s UTF-8.
    @inlinable
    public static func == (bytes: JSONStringBytes, name: StaticString) -> Bool {
        guard bytes.count == name.utf8CodeUnitCount else { return false }
        return bytes.withBytes { b in
            b.isEmpty || memcmpBytes(b.baseAddress!, name.utf8Start, b.count)
        }
    }
}

extension JSONParser {
    /// A string's bytes, starting at its opening quote: in place when it has no escapes.
    mutating func parseStringBytes() throws -> JSONStringBytes {
        pos += 1  // opening quote
        let start = pos
        if try scanToQuoteOrEscape(stringStart: start) {
            try decodeEscapedString(from: start)
            return JSONStringBytes(storage: .decoded(scratch))
        }
        return JSONStringBytes(storage: .input(UnsafeBufferPointer(rebasing: buf[start..<(pos - 1)])))
    }
}

/// Strings read before, handed out again instead of a new `String` per read: fixed-shape
/// documents repeat the same strings (a change event's `/properties/<name>` paths), and one
/// longer than the 15 bytes Swift stores inline would cost an allocation each time. Looks from
/// where the last hit was, since they tend to come in the same order; holds at most `capacity`.
public struct StringInterner: Sendable {
    private var known: [(bytes: [UInt8], string: String)] = []
    private var next = 0
    public let capacity: Int

    public init(capacity: Int = 64) { self.capacity = max(1, capacity) }

    /// The string of `bytes` (valid UTF-8: what `JSONMemberReader` hands out).
    public mutating func string(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
        let n = known.count
        var k = 0
        while k < n {
            let i = next + k < n ? next + k : next + k - n
            let hit = known[i].bytes.withUnsafeBufferPointer { JSON.bytesEqual($0, bytes) }
            if hit {
                next = i + 1 < n ? i + 1 : 0
                return known[i].string
            }
            k += 1
        }
        let string = String(decoding: bytes, as: UTF8.self)
        if n < capacity {
            known.append((Array(bytes), string))
        } else {
            known[next] = (Array(bytes), string)
            next = next + 1 < n ? next + 1 : 0
        }
        return string
    }
}

extension JSONMemberReader {
    /// The next value when it is a string, through `interner`; nil, with the value consumed, when
    /// it is anything else.
    public mutating func readString(interning interner: inout StringInterner) throws -> String? {
        try readStringBytes()?.withBytes { interner.string($0) }
    }
}
