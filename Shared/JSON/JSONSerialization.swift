/// How `JSON.serialized(options:)` lays out its output.
public struct JSONWriteOptions: OptionSet, Sendable, Hashable {
    /// Raw option bits.
    public let rawValue: Int
    /// Creates options from raw bits.
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// Object keys in ascending UTF-8 byte order (= code point order), for deterministic
    /// output that can be hashed or diffed; otherwise keys keep insertion order.
    public static let sortedKeys = JSONWriteOptions(rawValue: 1 << 0)
    /// Two-space indentation and newlines, for humans; the default is compact.
    public static let prettyPrinted = JSONWriteOptions(rawValue: 1 << 1)
}

extension JSON {
    /// Serializes to UTF-8 JSON bytes. Compact by default. NaN and infinities (only reachable by
    /// building numbers from code) are written as `null`, as JavaScript's `JSON.stringify` does,
    /// so serialization never fails.
    public func serialized(options: JSONWriteOptions = []) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128)
        append(to: &out, options: options)
        return out
    }

    /// Serializes to a JSON string (see `serialized(options:)`).
    public func serializedString(options: JSONWriteOptions = []) -> String {
        String(decoding: serialized(options: options), as: UTF8.self)
    }

    /// Appends the serialized value to an existing buffer (avoids an intermediate array when
    /// embedding a value inside hand-written output).
    public func append(to out: inout [UInt8], options: JSONWriteOptions = []) {
        if options.contains(.prettyPrinted) {
            appendPretty(to: &out, sorted: options.contains(.sortedKeys), indent: 0)
        } else {
            appendCompact(to: &out, sorted: options.contains(.sortedKeys))
        }
    }

    func appendCompact(to out: inout [UInt8], sorted: Bool) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: b ? "true".utf8 : "false".utf8)
        case .number(let n): n.appendJSON(to: &out)
        case .string(let s): JSON.appendQuoted(s, to: &out)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            for (i, e) in a.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                e.appendCompact(to: &out, sorted: sorted)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            out.append(UInt8(ascii: "{"))
            JSON.forEachEntry(of: o, sorted: sorted) { index, entry in
                if index > 0 { out.append(UInt8(ascii: ",")) }
                JSON.appendQuoted(entry.key, to: &out)
                out.append(UInt8(ascii: ":"))
                entry.value.appendCompact(to: &out, sorted: sorted)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// Calls `body` with each entry of `o` and its position in the output, in key order when
    /// `sorted`. A small unsorted object (a reading's values, hashed on every ingest) is ordered
    /// through a stack buffer of indices rather than a sorted copy of its entries.
    static func forEachEntry(of o: JSONObject, sorted: Bool, _ body: (Int, JSONObject.Element) -> Void) {
        let entries = o.entries
        guard sorted, !isSortedByKey(entries) else {
            for (i, entry) in entries.enumerated() { body(i, entry) }
            return
        }
        guard entries.count <= 32 else {
            for (i, entry) in entries.sorted(by: { JSON.utf8Less($0.key, $1.key) }).enumerated() { body(i, entry) }
            return
        }
        withUnsafeTemporaryAllocation(of: Int.self, capacity: entries.count) { order in
            // Insertion sort of indices: few entries, and no entry is copied or retained.
            for i in 0..<entries.count {
                var j = i
                while j > 0, JSON.utf8Less(entries[i].key, entries[order[j - 1]].key) {
                    order[j] = order[j - 1]
                    j -= 1
                }
                order[j] = i
            }
            for i in 0..<entries.count { body(i, entries[order[i]]) }
        }
    }

    func appendPretty(to out: inout [UInt8], sorted: Bool, indent: Int) {
        func newline(_ level: Int) {
            out.append(0x0A)
            out.append(contentsOf: repeatElement(UInt8(ascii: " "), count: level * 2))
        }
        switch self {
        case .array(let a) where !a.isEmpty:
            out.append(UInt8(ascii: "["))
            for (i, e) in a.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                newline(indent + 1)
                e.appendPretty(to: &out, sorted: sorted, indent: indent + 1)
            }
            newline(indent)
            out.append(UInt8(ascii: "]"))
        case .object(let o) where !o.isEmpty:
            out.append(UInt8(ascii: "{"))
            JSON.forEachEntry(of: o, sorted: sorted) { index, entry in
                if index > 0 { out.append(UInt8(ascii: ",")) }
                newline(indent + 1)
                JSON.appendQuoted(entry.key, to: &out)
                out.append(contentsOf: ": ".utf8)
                entry.value.appendPretty(to: &out, sorted: sorted, indent: indent + 1)
            }
            newline(indent)
            out.append(UInt8(ascii: "}"))
        default:
            appendCompact(to: &out, sorted: sorted)
        }
    }

    /// True when the keys are already in byte order (then sorting would copy for nothing).
    private static func isSortedByKey(_ entries: [JSONObject.Element]) -> Bool {
        guard entries.count > 1 else { return true }
        for i in 1..<entries.count where !JSON.utf8Less(entries[i - 1].key, entries[i].key) { return false }
        return true
    }

    /// Appends `s` as a quoted JSON string: escapes `"` and `\`, control characters as
    /// `\n`-style or `\u00XX`; everything else (including non-ASCII) is written as UTF-8.
    @inlinable
    public static func appendQuoted(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { bytes in
            var runStart = 0
            let first = firstByteToEscape(bytes)
            if first == bytes.count {
                // Most strings (ids, names, units) need no escape: one copy, no per-byte branch.
                out.append(contentsOf: bytes)
                out.append(UInt8(ascii: "\""))
                return
            }
            for i in first..<bytes.count {
                let b = bytes[i]
                guard b < 0x20 || b == 0x22 || b == 0x5C else { continue }
                if runStart < i { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<i])) }
                runStart = i + 1
                out.append(UInt8(ascii: "\\"))
                switch b {
                case 0x22: out.append(0x22)
                case 0x5C: out.append(0x5C)
                case 0x0A: out.append(UInt8(ascii: "n"))
                case 0x0D: out.append(UInt8(ascii: "r"))
                case 0x09: out.append(UInt8(ascii: "t"))
                case 0x08: out.append(UInt8(ascii: "b"))
                case 0x0C: out.append(UInt8(ascii: "f"))
                default:
                    let hex: StaticString = "0123456789abcdef"
                    out.append(contentsOf: [UInt8(ascii: "u"), 0x30, 0x30,
                                            hex.utf8Start[Int(b >> 4)], hex.utf8Start[Int(b & 0xF)]])
                }
            }
            if runStart < bytes.count { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart...])) }
            out.append(UInt8(ascii: "\""))
        }
    }

    /// The index of the first byte of `bytes` a JSON string must escape (`"`, `\\`, below 0x20),
    /// or at least the start of the eight-byte word holding it; `bytes.count` when there is none.
    /// Eight bytes at a time: a word has such a byte exactly when one of the three "has a byte
    /// less than / equal to" tests sets a high bit (their borrows spread only upward from a real
    /// match, so a clean word is never flagged).
    @inlinable
    static func firstByteToEscape(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        @inline(__always) func flagged(_ w: UInt64) -> Bool {
            let quote = w ^ (ones &* 0x22), backslash = w ^ (ones &* 0x5C)
            let control = (w &- ones &* 0x20) & ~w, isQuote = (quote &- ones) & ~quote, isBackslash = (backslash &- ones) & ~backslash
            return (control | isQuote | isBackslash) & highs != 0
        }
        guard let base = bytes.baseAddress else { return 0 }
        var i = 0
        while i + 8 <= bytes.count {
            if flagged(UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self).littleEndian) { return i }
            i += 8
        }
        if i < bytes.count {
            // The tail in a word padded with 'A', which needs no escape.
            var w: UInt64 = ones &* 0x41
            withUnsafeMutableBytes(of: &w) { $0.baseAddress!.copyMemory(from: base + i, byteCount: bytes.count - i) }
            if flagged(w.littleEndian) { return i }
        }
        return bytes.count
    }
}
