import JSON

/// A sort order for twin listings: `twinId`, `updatedAt`, `version` or a property (`temperature`
/// or `properties.temperature`), `-` prefix for descending. Ties are broken by `twinId`
/// (ascending), so the order is total and cursor paging never skips or repeats a twin.
/// For a property, numbers sort before strings before booleans (descending reverses that);
/// twins without the property (or with a non-scalar value) come last in both directions.
public struct TwinSort: Sendable, Equatable {
    public enum Key: Sendable, Equatable {
        case twinId
        case updatedAt
        case version
        case property(String)
    }

    public var key: Key
    public var descending: Bool

    public init(_ key: Key, descending: Bool = false) {
        self.key = key
        self.descending = descending
    }

    /// `twinId` ascending.
    public static let `default` = TwinSort(.twinId)

    /// Parses `[-]field`; throws a `QueryError` for parameter `sort`.
    public init(parsing text: String) throws(QueryError) {
        var name = Substring(text)
        descending = name.first == "-"
        if descending { name = name.dropFirst() }
        switch name {
        case "twinId": key = .twinId
        case "updatedAt": key = .updatedAt
        case "version": key = .version
        default:
            if name.hasPrefix("properties.") { name = name.dropFirst("properties.".count) }
            guard let first = name.unicodeScalars.first, FilterParser.isNameStart(first),
                  name.unicodeScalars.allSatisfy(FilterParser.isNameChar) else {
                throw QueryError(.invalidSort, "sort by twinId, updatedAt, version or a property name, with '-' for descending",
                                 parameter: "sort", position: 0, token: text)
            }
            key = .property(String(name))
        }
    }

    /// The canonical text (`-updatedAt`, `temperature`).
    public var text: String {
        let name: String
        switch key {
        case .twinId: name = "twinId"
        case .updatedAt: name = "updatedAt"
        case .version: name = "version"
        case .property(let p): name = p
        }
        return (descending ? "-" : "") + name
    }

    func value<T: FilterableTwin>(of twin: T) -> SortValue {
        switch key {
        case .twinId: return .string(twin.twinId)
        case .updatedAt: return .number(Double(twin.updatedAt))
        case .version: return .number(Double(twin.version))
        case .property(let name):
            switch twin.propertyValue(name) {
            case .number(let n)?: return n.doubleValue.isNaN ? .missing : .number(n.doubleValue)
            case .string(let s)?: return .string(s)
            case .bool(let b)?: return .bool(b)
            default: return .missing
            }
        }
    }

    /// Strict "comes before" on (value, twinId).
    func precedes(_ a: SortValue, _ aId: String, _ b: SortValue, _ bId: String) -> Bool {
        let c = a.compare(b)
        if c != 0 {
            if a.isMissing || b.isMissing { return b.isMissing }
            return descending ? c > 0 : c < 0
        }
        return aId.utf8.lexicographicallyPrecedes(bId.utf8)
    }
}

/// A sort key value; strings compare by UTF-8 bytes.
enum SortValue: Sendable, Equatable {
    case number(Double)
    case string(String)
    case bool(Bool)
    case missing

    var isMissing: Bool { if case .missing = self { return true }; return false }

    var rank: Int {
        switch self {
        case .number: return 0
        case .string: return 1
        case .bool: return 2
        case .missing: return 3
        }
    }

    /// -1, 0 or 1.
    func compare(_ other: SortValue) -> Int {
        switch (self, other) {
        case (.number(let a), .number(let b)): return a < b ? -1 : (a > b ? 1 : 0)
        case (.string(let a), .string(let b)):
            if JSON.utf8Equal(a, b) { return 0 }
            return a.utf8.lexicographicallyPrecedes(b.utf8) ? -1 : 1
        case (.bool(let a), .bool(let b)): return a == b ? 0 : (!a ? -1 : 1)
        default: return rank < other.rank ? -1 : (rank > other.rank ? 1 : 0)
        }
    }
}

/// The opaque position after which the next page starts: base64url (no padding) of the JSON
/// array `[1, sort, fingerprint, kind, value, twinId]`. The fingerprint ties it to the filter
/// and relationship of the request that made it, so reusing it with another query is an error.
public struct TwinCursor: Sendable, Equatable {
    static let version = 1
    let sort: String
    let fingerprint: UInt64
    let value: SortValue
    let twinId: String

    /// The cursor's text.
    public var encoded: String {
        var w = JSONWriter(capacity: 64 + twinId.utf8.count)
        w.beginArray()
        w.value(Self.version)
        w.value(sort)
        w.value(hex(fingerprint))
        switch value {
        case .number(let d): w.value("n"); w.value(d.description)
        case .string(let s): w.value("s"); w.value(s)
        case .bool(let b): w.value("b"); w.value(b)
        case .missing: w.value("m"); w.value(JSON.null)
        }
        w.value(twinId)
        w.endArray()
        return Base64URL.encode(w.bytes)
    }

    init(sort: String, fingerprint: UInt64, value: SortValue, twinId: String) {
        self.sort = sort
        self.fingerprint = fingerprint
        self.value = value
        self.twinId = twinId
    }

    /// Decodes and checks a cursor for this sort and fingerprint; anything else is a
    /// `QueryError` for parameter `cursor`.
    init(decoding text: String, sort: String, fingerprint: UInt64) throws(QueryError) {
        func invalid(_ why: String) -> QueryError {
            QueryError(.invalidCursor, "invalid cursor: \(why); start again without a cursor", parameter: "cursor", position: 0, token: text)
        }
        guard text.utf8.count <= 4096, let bytes = Base64URL.decode(text),
              let json = try? JSON(parsing: bytes, options: JSONParseOptions(maxDepth: 2)),
              case .array(let a)? = Optional(json), a.count == 6 else { throw invalid("not a cursor") }
        guard a[0].intValue == Self.version else { throw invalid("unknown cursor version") }
        guard a[1].stringValue == sort else { throw invalid("it was made for another sort order") }
        guard a[2].stringValue == hex(fingerprint) else { throw invalid("it was made for another filter") }
        guard let kind = a[3].stringValue, let id = a[5].stringValue else { throw invalid("not a cursor") }
        let v: SortValue
        switch (kind, a[4]) {
        case ("n", .string(let t)):
            guard let d = Double(t), d.isFinite else { throw invalid("bad number") }
            v = .number(d)
        case ("s", .string(let s)): v = .string(s)
        case ("b", .bool(let b)): v = .bool(b)
        case ("m", .null): v = .missing
        default: throw invalid("not a cursor")
        }
        self.init(sort: sort, fingerprint: fingerprint, value: v, twinId: id)
    }
}

/// One page of a listing.
public struct TwinPage<T> {
    public var items: [T]
    /// Present when more twins follow.
    public var nextCursor: String?
    /// How many twins match the filter in all (every page).
    public var total: Int
}

extension TwinPage: Sendable where T: Sendable {}

/// `GET /v1/twins` without HTTP: filter, relationship, sort, cursor and page size, parsed and
/// checked once, then run over any sequence of twins.
public struct TwinListQuery: Sendable {
    public static let defaultLimit = 100
    public static let maxLimit = 1_000

    public let filter: TwinFilter?
    public let relationship: RelationshipFilter?
    public let sort: TwinSort
    public let limit: Int
    let cursor: TwinCursor?
    let fingerprint: UInt64

    /// Parses the request's parameters; each problem is a `QueryError` naming its parameter.
    /// `rel` without `relatedTo` is an error; `limit` must be 1...`maxLimit` (default 100).
    public init(filter: String? = nil, relatedTo: String? = nil, rel: String? = nil, sort: String? = nil,
                cursor: String? = nil, limit: Int? = nil, filterLimits: TwinFilter.Limits = TwinFilter.Limits()) throws(QueryError) {
        self.filter = try filter.map { (text) throws(QueryError) in try TwinFilter(parsing: text, limits: filterLimits) }
        if let rel, !Self.isRelationshipName(rel) {
            throw QueryError(.invalidValue, "rel must be a relationship name: a letter or _, then up to 63 letters, digits or _",
                             parameter: "rel", token: rel)
        }
        if let relatedTo {
            relationship = RelationshipFilter(target: relatedTo, name: rel)
        } else if rel != nil {
            throw QueryError(.invalidValue, "rel needs relatedTo", parameter: "rel")
        } else {
            relationship = nil
        }
        self.sort = try sort.map { (text) throws(QueryError) in try TwinSort(parsing: text) } ?? .default
        let limit = limit ?? Self.defaultLimit
        guard (1...Self.maxLimit).contains(limit) else {
            throw QueryError(.invalidLimit, "limit must be between 1 and \(Self.maxLimit)", parameter: "limit", token: String(limit))
        }
        self.limit = limit
        var h = FNV1a()
        h.add(filter ?? "")
        h.add(relatedTo ?? "")
        h.add(rel ?? "")
        fingerprint = h.value
        let sortText = self.sort.text, print = h.value
        self.cursor = try cursor.map { (text) throws(QueryError) in try TwinCursor(decoding: text, sort: sortText, fingerprint: print) }
    }

    /// `[A-Za-z_][A-Za-z0-9_]{0,63}`: the names models declare relationships with.
    static func isRelationshipName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...64).contains(bytes.count) else { return false }
        func letter(_ b: UInt8) -> Bool { (b | 0x20) >= UInt8(ascii: "a") && (b | 0x20) <= UInt8(ascii: "z") || b == UInt8(ascii: "_") }
        return letter(bytes[0]) && bytes.dropFirst().allSatisfy { letter($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
    }

    /// The page of `twins` (any order) after the cursor. Costs one filter evaluation per twin and
    /// O(n log limit) for the ordering, never a full sort.
    public func run<S: Sequence>(over twins: S, now: Int64) -> TwinPage<S.Element> where S.Element: FilterableTwin {
        let compiled = CompiledFilter<S.Element>(filter)
        var total = 0
        var after = 0
        // A max-heap (by sort order) of the `limit` first twins after the cursor.
        var heap = Heap<S.Element>(sort: sort, capacity: limit)
        for twin in twins {
            guard compiled.matches(twin, now: now), relationship?.matches(twin) ?? true else { continue }
            total += 1
            let value = sort.value(of: twin)
            if let cursor, !sort.precedes(cursor.value, cursor.twinId, value, twin.twinId) { continue }
            after += 1
            heap.offer((value, twin))
        }
        let entries = heap.sorted()
        var next: String?
        if after > limit, let last = entries.last {
            next = TwinCursor(sort: sort.text, fingerprint: fingerprint, value: last.0, twinId: last.1.twinId).encoded
        }
        return TwinPage(items: entries.map(\.1), nextCursor: next, total: total)
    }
}

/// Bounded max-heap keeping the `capacity` smallest entries in sort order.
struct Heap<T: FilterableTwin> {
    let sort: TwinSort
    let capacity: Int
    var items: [(SortValue, T)] = []

    init(sort: TwinSort, capacity: Int) {
        self.sort = sort
        self.capacity = capacity
        items.reserveCapacity(min(capacity, 1024))
    }

    func before(_ a: (SortValue, T), _ b: (SortValue, T)) -> Bool {
        sort.precedes(a.0, a.1.twinId, b.0, b.1.twinId)
    }

    mutating func offer(_ e: (SortValue, T)) {
        if items.count < capacity {
            items.append(e)
            var i = items.count - 1
            while i > 0 {
                let p = (i - 1) / 2
                guard before(items[p], items[i]) else { break }
                items.swapAt(p, i)
                i = p
            }
        } else if before(e, items[0]) {
            items[0] = e
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < items.count, before(items[m], items[l]) { m = l }
                if r < items.count, before(items[m], items[r]) { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
    }

    func sorted() -> [(SortValue, T)] { items.sorted(by: before) }
}

/// 64-bit FNV-1a over strings, each followed by a 0 byte (stable across runs, unlike `Hasher`).
struct FNV1a {
    var value: UInt64 = 0xcbf2_9ce4_8422_2325
    mutating func add(_ s: String) {
        for b in s.utf8 { value = (value ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        value = (value ^ 0) &* 0x0000_0100_0000_01b3
    }
}

func hex(_ v: UInt64) -> String {
    let t = String(v, radix: 16)
    return String(repeating: "0", count: 16 - t.count) + t
}

/// RFC 4648 §5 base64url without padding.
enum Base64URL {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i < bytes.count {
            let b0 = UInt32(bytes[i])
            let b1 = i + 1 < bytes.count ? UInt32(bytes[i + 1]) : 0
            let b2 = i + 2 < bytes.count ? UInt32(bytes[i + 2]) : 0
            let n = b0 << 16 | b1 << 8 | b2
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            if i + 1 < bytes.count { out.append(alphabet[Int(n >> 6 & 63)]) }
            if i + 2 < bytes.count { out.append(alphabet[Int(n & 63)]) }
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ text: String) -> [UInt8]? {
        var values = [UInt32]()
        values.reserveCapacity(text.utf8.count)
        for c in text.utf8 {
            switch c {
            case 65...90: values.append(UInt32(c - 65))
            case 97...122: values.append(UInt32(c - 71))
            case 48...57: values.append(UInt32(c + 4))
            case 45: values.append(62)
            case 95: values.append(63)
            default: return nil
            }
        }
        guard values.count % 4 != 1 else { return nil }
        var out = [UInt8]()
        var i = 0
        while i < values.count {
            let chunk = values[i..<min(i + 4, values.count)]
            var n: UInt32 = 0
            for (k, v) in chunk.enumerated() { n |= v << (18 - 6 * UInt32(k)) }
            out.append(UInt8(n >> 16 & 255))
            if chunk.count > 2 { out.append(UInt8(n >> 8 & 255)) }
            if chunk.count > 3 { out.append(UInt8(n & 255)) }
            i += 4
        }
        return out
    }
}
