/// An RFC 6901 JSON Pointer: a path of reference tokens such as `/values/temperature`.
///
/// Used for dead-letter reasons and schema error locations, so building one by appending tokens
/// must be cheap and `description` must always produce a valid, escaped pointer string.
public struct JSONPointer: Sendable, Hashable, Comparable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// Unescaped reference tokens, root first. The root pointer has none.
    public var tokens: [String]

    /// The root pointer (`""`), which refers to the whole document.
    public init() { tokens = [] }

    /// A pointer from already-unescaped tokens.
    public init(tokens: [String]) { self.tokens = tokens }

    /// Parses a pointer string (`""` or `/a/b~1c`); `~0` means `~`, `~1` means `/`.
    /// Throws `JSONError(.invalidPointer)` when it does not start with `/` or has a bad `~` escape.
    public init(parsing text: String) throws {
        tokens = []
        if text.isEmpty { return }
        guard text.hasPrefix("/") else {
            throw JSONError(code: .invalidPointer, offset: 0, message: "JSON pointer must be empty or start with '/': \"\(text)\"")
        }
        var offset = 1
        for raw in text.utf8.dropFirst().split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
            tokens.append(try JSONPointer.unescape(raw, offset: offset, text: text))
            offset += raw.count + 1
        }
    }

    /// Literal pointers in code, e.g. `let p: JSONPointer = "/values/temperature"`. Traps on an invalid literal.
    public init(stringLiteral value: String) {
        do { try self.init(parsing: value) } catch { preconditionFailure("invalid JSON pointer literal \"\(value)\": \(error)") }
    }

    static func unescape(_ raw: Substring.UTF8View.SubSequence, offset: Int, text: String) throws -> String {
        guard raw.contains(UInt8(ascii: "~")) else { return String(Substring(raw)) }
        var out: [UInt8] = []
        var it = raw.makeIterator()
        var i = offset
        while let b = it.next() {
            if b == UInt8(ascii: "~") {
                switch it.next() {
                case UInt8(ascii: "0"): out.append(UInt8(ascii: "~"))
                case UInt8(ascii: "1"): out.append(UInt8(ascii: "/"))
                default:
                    throw JSONError(code: .invalidPointer, offset: i, message: "invalid escape '~' at offset \(i) in JSON pointer \"\(text)\" (only ~0 and ~1 are allowed)")
                }
                i += 2
            } else {
                out.append(b); i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Escapes one token for use in a pointer string (`~` → `~0`, `/` → `~1`).
    public static func escape(_ token: String) -> String {
        guard token.utf8.contains(where: { $0 == UInt8(ascii: "~") || $0 == UInt8(ascii: "/") }) else { return token }
        var out = ""
        for c in token.unicodeScalars {
            switch c {
            case "~": out += "~0"
            case "/": out += "~1"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// The pointer string, escaped (`""` for the root).
    public var description: String {
        var s = ""
        for t in tokens { s += "/"; s += JSONPointer.escape(t) }
        return s
    }

    /// True for the root pointer.
    public var isRoot: Bool { tokens.isEmpty }

    /// The pointer with one more token.
    public func appending(_ token: String) -> JSONPointer {
        var p = self
        p.tokens.append(token)
        return p
    }

    /// The pointer with one more array index token.
    public func appending(index: Int) -> JSONPointer { appending(String(index)) }

    /// The pointer with all of `other`'s tokens appended.
    public func appending(_ other: JSONPointer) -> JSONPointer {
        var p = self
        p.tokens.append(contentsOf: other.tokens)
        return p
    }

    /// Appends a token in place.
    public mutating func append(_ token: String) { tokens.append(token) }

    /// The parent pointer (nil for the root).
    public var parent: JSONPointer? { tokens.isEmpty ? nil : JSONPointer(tokens: Array(tokens.dropLast())) }

    /// Resolves against a document: object members by key, array elements by decimal index
    /// (no leading zeros, `-` never resolves). Nil when any step is missing.
    public func resolve(in document: JSON) -> JSON? {
        var current = document
        for token in tokens {
            switch current {
            case .object(let o):
                guard let next = o[token] else { return nil }
                current = next
            case .array(let a):
                guard let i = JSONPointer.arrayIndex(token), i < a.count else { return nil }
                current = a[i]
            default:
                return nil
            }
        }
        return current
    }

    /// RFC 6901 array index: `0` or digits without a leading zero.
    public static func arrayIndex(_ token: String) -> Int? {
        let u = token.utf8
        guard let first = u.first, u.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        if first == 48 && u.count > 1 { return nil }
        return Int(token)
    }

    /// Orders by token sequence (useful for stable error listings).
    public static func < (lhs: JSONPointer, rhs: JSONPointer) -> Bool {
        lhs.tokens.lexicographicallyPrecedes(rhs.tokens)
    }
}

extension JSON {
    /// The value at `pointer`, or nil.
    public subscript(pointer pointer: JSONPointer) -> JSON? { pointer.resolve(in: self) }
}
