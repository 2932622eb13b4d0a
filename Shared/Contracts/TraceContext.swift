import Synchronization

/// A W3C `traceparent` value: `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
public struct TraceContext: Sendable, Hashable, CustomStringConvertible {
    public var traceId: String
    public var parentId: String
    public var flags: String

    /// Parses a `traceparent` header; nil when it is not a valid version-00 value.
    public init?(traceparent: String) {
        // Byte-wise: this runs for every message a stage produces.
        var text = traceparent
        let parsed = text.withUTF8 { u -> (String, String, String)? in
            guard u.count == 55, u[0] == 0x30, u[1] == 0x30, u[2] == 0x2D, u[35] == 0x2D, u[52] == 0x2D else { return nil }
            func hexField(_ range: Range<Int>) -> (String, nonZero: Bool)? {
                var bytes = [UInt8](repeating: 0, count: range.count)
                var nonZero = false
                for (i, c) in u[range].enumerated() {
                    switch c {
                    case 0x30...0x39, 0x61...0x66: bytes[i] = c
                    case 0x41...0x46: bytes[i] = c + 32
                    default: return nil
                    }
                    if c != 0x30 { nonZero = true }
                }
                return (String(decoding: bytes, as: UTF8.self), nonZero)
            }
            guard let trace = hexField(3..<35), trace.nonZero, let parent = hexField(36..<52), parent.nonZero,
                  let flags = hexField(53..<55) else { return nil }
            return (trace.0, parent.0, flags.0)
        }
        guard let parsed else { return nil }
        (traceId, parentId, flags) = parsed
    }

    init(traceId: String, parentId: String, flags: String) {
        self.traceId = traceId
        self.parentId = parentId
        self.flags = flags
    }

    /// A new trace, sampled.
    public static func random() -> TraceContext {
        TraceContext(traceId: hex(nextSpanID(), 16) + hex(nextSpanID(), 16), parentId: hex(nextSpanID(), 16), flags: "01")
    }

    /// The same trace with a new span id: what a hop writes on the messages it produces.
    public func child() -> TraceContext {
        TraceContext(traceId: traceId, parentId: hex(nextSpanID(), 16), flags: flags)
    }

    /// Continues `header`'s trace when it is valid, else starts a new one.
    public static func continuing(_ header: String?) -> TraceContext {
        header.flatMap(TraceContext.init(traceparent:))?.child() ?? .random()
    }

    public var description: String { "00-\(traceId)-\(parentId)-\(flags)" }

    /// `continuing(header).description` as bytes, without building strings: what a stage writes
    /// on every message it produces, so it works on the header's bytes directly.
    public static func childHeader(of header: [UInt8]?) -> [UInt8] {
        if let header, header.count == 55 {
            let child = header.withUnsafeBufferPointer { u -> [UInt8]? in
                guard u[0] == 0x30, u[1] == 0x30, u[2] == 0x2D, u[35] == 0x2D, u[52] == 0x2D else { return nil }
                // Straight-line checks, no branch per byte: every id and flag byte must be a hex
                // digit; trace and parent ids must not be all zeros. Output is lower case.
                var invalid: UInt8 = 0, traceNonZero: UInt8 = 0, parentNonZero: UInt8 = 0
                // Built on the stack and copied once: `Array(UnsafeRawBufferPointer)` is specialised
                // here, where `[UInt8](unsafeUninitializedCapacity:)` and `repeating:count:` looked up
                // the array's generic metadata on every call (about 1% of the validator's CPU).
                return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 55) { out -> [UInt8]? in
                    func digit(_ i: Int) -> UInt8 {
                        let c = u[i], lower = c | 0x20
                        let isDigit = c &- 48 < 10, isHexLetter = lower &- 97 < 6
                        invalid |= (isDigit || isHexLetter) ? 0 : 1
                        out[i] = isDigit ? c : lower
                        return c ^ 48
                    }
                    out[0] = 0x30; out[1] = 0x30; out[2] = 0x2D; out[35] = 0x2D; out[52] = 0x2D
                    for i in 3..<35 { traceNonZero |= digit(i) }
                    for i in 36..<52 { parentNonZero |= digit(i) }
                    _ = digit(53); _ = digit(54)
                    guard invalid == 0 && traceNonZero != 0 && parentNonZero != 0 else { return nil }
                    writeHex(nextSpanID(), into: out, at: 36)
                    return Array(UnsafeRawBufferPointer(out))
                }
            }
            if let child { return child }
        }
        return Array(random().description.utf8)
    }
}

private func writeHex(_ value: UInt64, into out: UnsafeMutableBufferPointer<UInt8>, at start: Int) {
    for i in 0..<16 {
        let nibble = UInt8(truncatingIfNeeded: (value >> (4 * UInt64(15 - i))) & 15)
        out[start + i] = nibble < 10 ? 48 + nibble : 87 + nibble
    }
}

/// Ids need to be unique and unpredictable enough to tell spans apart, not secret: a per-process
/// random seed through SplitMix64 of a counter costs nanoseconds, a system random call per
/// message did not.
private let spanSeed: UInt64 = {
    var generator = SystemRandomNumberGenerator()
    return generator.next()
}()
private let spanCounter = Atomic<UInt64>(0)

private func nextSpanID() -> UInt64 {
    let z = SplitMix64.mix(spanSeed &+ spanCounter.wrappingAdd(0x9E37_79B9_7F4A_7C15, ordering: .relaxed).newValue)
    return z == 0 ? 1 : z  // all-zero ids are invalid
}

private func hex(_ value: UInt64, _ digits: Int) -> String {
    let table: [UInt8] = Array("0123456789abcdef".utf8)
    return String(unsafeUninitializedCapacity: digits) { buffer in
        for i in 0..<digits { buffer[digits - 1 - i] = table[Int((value >> (4 * UInt64(i))) & 15)] }
        return digits
    }
}
