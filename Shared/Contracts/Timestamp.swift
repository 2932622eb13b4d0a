import Foundation
import JSON

/// Event and ingest times: milliseconds since the Unix epoch, written as RFC 3339 UTC with
/// milliseconds (`2026-11-21T08:00:00.250Z`). Parsing and formatting are hand-written because
/// they run for every reading and Foundation's formatters are far too slow for that.
public enum Timestamp {
    /// The wall clock in epoch milliseconds.
    public static var now: Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }

    /// Formats epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    public static func format(_ ms: Int64) -> String {
        var bytes = [UInt8]()
        bytes.reserveCapacity(24)
        append(ms, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends the RFC 3339 form of `ms` to `bytes` (no quotes).
    public static func append(_ ms: Int64, to bytes: inout [UInt8]) {
        let seconds = floorDiv(ms, 1000)
        let millis = Int(ms - seconds * 1000)
        let days = floorDiv(seconds, 86_400)
        let secOfDay = Int(seconds - days * 86_400)
        let (y, m, d) = civil(fromDays: days)
        guard (0...9999).contains(y) else {
            // Outside four-digit years (never for a valid reading): the plain, slower way.
            bytes.append(contentsOf: Array(String(y).utf8))
            appendTime(m, d, secOfDay, millis, to: &bytes)
            return
        }
        // Formatted into 24 bytes on the stack and appended at once: one capacity check instead
        // of one per character (two times in every envelope).
        let year = Int(y)
        var text: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &text) { out in
            out[0] = digit(year / 1000); out[1] = digit(year / 100 % 10); out[2] = digit(year / 10 % 10); out[3] = digit(year % 10)
            writeTime(m, d, secOfDay, millis, to: out)
        }
        // As typed bytes: a raw buffer is appended byte by byte, a typed one copied at once.
        withUnsafeBytes(of: &text) { $0.withMemoryRebound(to: UInt8.self) { bytes.append(contentsOf: $0) } }
    }

    /// `-MM-DDTHH:MM:SS.mmmZ`.
    private static func appendTime(_ m: Int, _ d: Int, _ secOfDay: Int, _ millis: Int, to bytes: inout [UInt8]) {
        var text: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &text) { writeTime(m, d, secOfDay, millis, to: $0) }
        withUnsafeBytes(of: &text) { bytes.append(contentsOf: $0[4...]) }
    }

    /// Writes `-MM-DDTHH:MM:SS.mmmZ` to bytes 4..<24 of `out`.
    @inline(__always)
    private static func writeTime(_ m: Int, _ d: Int, _ secOfDay: Int, _ millis: Int, to out: UnsafeMutableRawBufferPointer) {
        func two(_ v: Int, at i: Int) { out[i] = digit(v / 10); out[i + 1] = digit(v % 10) }
        out[4] = UInt8(ascii: "-"); two(m, at: 5); out[7] = UInt8(ascii: "-"); two(d, at: 8)
        out[10] = UInt8(ascii: "T")
        two(secOfDay / 3600, at: 11); out[13] = UInt8(ascii: ":"); two(secOfDay / 60 % 60, at: 14)
        out[16] = UInt8(ascii: ":"); two(secOfDay % 60, at: 17)
        out[19] = UInt8(ascii: "."); out[20] = digit(millis / 100); two(millis % 100, at: 21); out[23] = UInt8(ascii: "Z")
    }

    @inline(__always) private static func digit(_ v: Int) -> UInt8 { UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: v) }

    /// Parses an RFC 3339 date-time (`T` or space, fractional seconds of any length, `Z` or
    /// `±hh:mm`) to epoch milliseconds; nil when it is not one. Sub-millisecond digits truncate.
    public static func parse(_ text: String) -> Int64? {
        var text = text
        return text.withUTF8 { parse(bytes: $0) }
    }

    static func parse(bytes s: UnsafeBufferPointer<UInt8>) -> Int64? {
        var i = 0
        func digits(_ n: Int) -> Int? {
            guard i + n <= s.count else { return nil }
            var v = 0
            for _ in 0..<n {
                let c = s[i]
                guard c >= 48 && c <= 57 else { return nil }
                v = v * 10 + Int(c - 48)
                i += 1
            }
            return v
        }
        func expect(_ c: UInt8) -> Bool {
            guard i < s.count, s[i] == c else { return false }
            i += 1
            return true
        }
        guard let year = digits(4), expect(45), let month = digits(2), expect(45), let day = digits(2) else { return nil }
        guard i < s.count, s[i] == 84 || s[i] == 116 || s[i] == 32 else { return nil }  // T, t, space
        i += 1
        guard let hour = digits(2), expect(58), let minute = digits(2), expect(58), let second = digits(2) else { return nil }
        guard (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year),
              hour < 24, minute < 60, second <= 60 else { return nil }
        var millis = 0
        if i < s.count && s[i] == 46 {  // '.'
            i += 1
            var n = 0
            while i < s.count, s[i] >= 48, s[i] <= 57 {
                if n < 3 { millis = millis * 10 + Int(s[i] - 48) }
                n += 1
                i += 1
            }
            guard n > 0 else { return nil }
            // Fewer than 3 digits scale up; more (micro-, nanoseconds) are truncated above.
            // (`for _ in n..<3 where n < 3` built the range first and trapped when n > 3.)
            for _ in 0..<max(0, 3 - n) { millis *= 10 }
        }
        var offsetMinutes = 0
        guard i < s.count else { return nil }
        switch s[i] {
        case 90, 122: i += 1  // Z z
        case 43, 45:
            let sign = s[i] == 45 ? -1 : 1
            i += 1
            guard let oh = digits(2), expect(58), let om = digits(2), oh < 24, om < 60 else { return nil }
            offsetMinutes = sign * (oh * 60 + om)
        default: return nil
        }
        guard i == s.count else { return nil }
        let days = days(fromCivil: Int64(year), month, day)
        let secs = days * 86_400 + Int64(hour * 3600 + minute * 60 + min(second, 59)) - Int64(offsetMinutes * 60)
        return secs * 1000 + Int64(millis)
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    // Howard Hinnant's days-from-civil algorithms, valid for the proleptic Gregorian calendar.
    static func days(fromCivil y0: Int64, _ m: Int, _ d: Int) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = floorDiv(y, 400)
        let yoe = y - era * 400
        let mp = Int64((m + 9) % 12)
        let doy = (153 * mp + 2) / 5 + Int64(d) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civil(fromDays z0: Int64) -> (Int64, Int, Int) {
        let z = z0 + 719_468
        let era = floorDiv(z, 146_097)
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = Int(doy - (153 * mp + 2) / 5 + 1)
        let m = Int(mp < 10 ? mp + 3 : mp - 9)
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    private static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }
}

extension JSONWriter {
    /// Writes epoch milliseconds as a quoted RFC 3339 string, formatted in place.
    @inlinable
    public mutating func time(_ ms: Int64) {
        rawValue { bytes in
            bytes.append(UInt8(ascii: "\""))
            Timestamp.append(ms, to: &bytes)
            bytes.append(UInt8(ascii: "\""))
        }
    }

    /// Writes epoch milliseconds as `time(ms)` does, reusing the text `memo` kept of a recent
    /// time: a reading's times repeat in every entry of its change event and state document.
    @inlinable
    public mutating func time(_ ms: Int64, memo: inout TimeTextMemo) {
        rawValue { memo.appendQuoted(ms, to: &$0) }
    }

    /// `key(name)` followed by `time(ms)`.
    @inlinable
    public mutating func field(_ name: String, time ms: Int64) {
        key(name)
        time(ms)
    }
}

/// The quoted RFC 3339 text of the two times written last, for writers that write the same few
/// times many times over (one format instead of one per entry).
public struct TimeTextMemo: Sendable {
    @usableFromInline var times: (Int64, Int64) = (.min, .min)
    /// `"YYYY-MM-DDTHH:MM:SS.mmmZ"` (26 bytes) of each time, in 32.
    @usableFromInline var texts: ((UInt64, UInt64, UInt64, UInt64), (UInt64, UInt64, UInt64, UInt64)) = ((0, 0, 0, 0), (0, 0, 0, 0))
    /// Which slot the next new time replaces.
    @usableFromInline var next = 0

    public init() {}

    /// Appends `"` `Timestamp.append(ms)` `"`.
    @inlinable
    public mutating func appendQuoted(_ ms: Int64, to bytes: inout [UInt8]) {
        // `.min` marks an empty slot (and is no time of a four-digit year, so never kept).
        // Typed bytes: a raw buffer is appended byte by byte, a typed one copied at once.
        if ms != .min, times.0 == ms { return withUnsafeBytes(of: &texts.0) { $0.withMemoryRebound(to: UInt8.self) { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: $0[0..<26])) } } }
        if ms != .min, times.1 == ms { return withUnsafeBytes(of: &texts.1) { $0.withMemoryRebound(to: UInt8.self) { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: $0[0..<26])) } } }
        let start = bytes.count
        bytes.append(UInt8(ascii: "\""))
        Timestamp.append(ms, to: &bytes)
        bytes.append(UInt8(ascii: "\""))
        // Years outside 0...9999 are longer than the slot: written, not kept.
        guard bytes.count - start == 26 else { return }
        var packed: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        bytes.withUnsafeBytes { written in
            withUnsafeMutableBytes(of: &packed) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: written[start..<(start + 26)])) }
        }
        if next == 0 { (times.0, texts.0) = (ms, packed) } else { (times.1, texts.1) = (ms, packed) }
        next ^= 1
    }
}
