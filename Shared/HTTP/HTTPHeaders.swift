/// Header fields in arrival order: case-insensitive lookup, duplicates preserved.
///
/// Names keep the case they were sent with; `values(for:)` returns every field line with
/// that name so list-valued headers (and deliberate duplicates) are never merged silently.
public struct HTTPHeaders: Sendable, Sequence, ExpressibleByDictionaryLiteral, Equatable, CustomStringConvertible {
    /// One header field line.
    public typealias Field = (name: String, value: String)

    @usableFromInline var fields: [Field]

    /// An empty set of headers.
    public init() { fields = [] }

    /// Headers from name/value pairs, in order.
    public init(_ fields: [(String, String)]) {
        self.fields = fields.map { (name: $0.0, value: $0.1) }
    }

    /// Headers from a literal such as `["Content-Type": "application/json"]`.
    public init(dictionaryLiteral elements: (String, String)...) {
        self.fields = elements.map { (name: $0.0, value: $0.1) }
    }

    /// Number of field lines.
    public var count: Int { fields.count }
    /// True when there are no fields.
    public var isEmpty: Bool { fields.isEmpty }

    /// The first value for `name` (case-insensitive), or nil.
    public subscript(_ name: String) -> String? {
        first(name)
    }

    /// The first value for `name` (case-insensitive), or nil.
    public func first(_ name: String) -> String? {
        for field in fields where HTTPHeaders.namesEqual(field.name, name) { return field.value }
        return nil
    }

    /// Every value for `name` in order (one per field line).
    public func values(for name: String) -> [String] {
        fields.compactMap { HTTPHeaders.namesEqual($0.name, name) ? $0.value : nil }
    }

    /// Every comma-separated element of every `name` field, trimmed, empty ones skipped.
    public func listValues(for name: String) -> [String] {
        values(for: name).flatMap { value in
            value.split(separator: ",").map { $0.trimmingHTTPWhitespace() }.filter { !$0.isEmpty }
        }
    }

    /// True when a field named `name` is present.
    public func contains(_ name: String) -> Bool { first(name) != nil }

    /// Appends a field line, keeping any existing ones.
    public mutating func add(_ name: String, _ value: String) {
        fields.append((name: name, value: value))
    }

    /// Replaces every `name` field with one line (or appends it).
    public mutating func set(_ name: String, _ value: String) {
        remove(name)
        fields.append((name: name, value: value))
    }

    /// Removes every `name` field.
    public mutating func remove(_ name: String) {
        fields.removeAll { HTTPHeaders.namesEqual($0.name, name) }
    }

    /// Iterates field lines in order.
    public func makeIterator() -> IndexingIterator<[Field]> { fields.makeIterator() }

    /// Same fields in the same order; names compared case-insensitively.
    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        lhs.fields.count == rhs.fields.count && zip(lhs.fields, rhs.fields).allSatisfy {
            namesEqual($0.name, $1.name) && $0.value == $1.value
        }
    }

    /// "Name: value" lines.
    public var description: String {
        fields.map { "\($0.name): \($0.value)" }.joined(separator: "\n")
    }

    /// ASCII case-insensitive comparison (header names are ASCII tokens).
    @inlinable
    public static func namesEqual(_ a: String, _ b: String) -> Bool {
        let a = a.utf8, b = b.utf8
        guard a.count == b.count else { return false }
        return a.elementsEqual(b) { x, y in
            x == y || (x | 0x20 == y | 0x20 && (x | 0x20) >= 0x61 && (x | 0x20) <= 0x7A)
        }
    }
}

extension StringProtocol {
    /// Drops leading and trailing spaces and tabs (HTTP's OWS), not other whitespace.
    func trimmingHTTPWhitespace() -> String {
        let utf8 = Array(self.utf8)
        var start = 0, end = utf8.count
        while start < end, utf8[start] == 0x20 || utf8[start] == 0x09 { start += 1 }
        while end > start, utf8[end - 1] == 0x20 || utf8[end - 1] == 0x09 { end -= 1 }
        return String(decoding: utf8[start..<end], as: UTF8.self)
    }

    /// ASCII case-insensitive equality.
    func equalsIgnoringCase(_ other: String) -> Bool {
        HTTPHeaders.namesEqual(String(self), other)
    }
}
