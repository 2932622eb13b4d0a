/// A W3C `traceparent` value: `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
public struct TraceContext: Sendable, Hashable, CustomStringConvertible {
    public var traceId: String
    public var parentId: String
    public var flags: String

    /// Parses a `traceparent` header; nil when it is not a valid version-00 value.
    public init?(traceparent: String) {
        let parts = traceparent.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "00", parts[1].count == 32, parts[2].count == 16, parts[3].count == 2,
              parts.dropFirst().allSatisfy({ $0.allSatisfy(\.isHexDigit) }),
              parts[1].contains(where: { $0 != "0" }), parts[2].contains(where: { $0 != "0" }) else { return nil }
        traceId = parts[1].lowercased()
        parentId = parts[2].lowercased()
        flags = parts[3].lowercased()
    }

    init(traceId: String, parentId: String, flags: String) {
        self.traceId = traceId
        self.parentId = parentId
        self.flags = flags
    }

    /// A new trace, sampled.
    public static func random() -> TraceContext {
        var generator = SystemRandomNumberGenerator()
        return TraceContext(traceId: hex(generator.next(), 16) + hex(generator.next(), 16),
                            parentId: hex(generator.next(), 16), flags: "01")
    }

    /// The same trace with a new span id: what a hop writes on the messages it produces.
    public func child() -> TraceContext {
        var generator = SystemRandomNumberGenerator()
        return TraceContext(traceId: traceId, parentId: hex(generator.next(), 16), flags: flags)
    }

    /// Continues `header`'s trace when it is valid, else starts a new one.
    public static func continuing(_ header: String?) -> TraceContext {
        header.flatMap(TraceContext.init(traceparent:))?.child() ?? .random()
    }

    public var description: String { "00-\(traceId)-\(parentId)-\(flags)" }
}

private func hex(_ value: UInt64, _ digits: Int) -> String {
    let s = String(value, radix: 16)
    return String(repeating: "0", count: max(0, digits - s.count)) + s
}
