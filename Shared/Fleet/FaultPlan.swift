import Contracts
import JSON

/// Faults the simulated fleet injects, parsed from a compact text (`twinctl fleet --faults`,
/// `twinctl up --faults`), so a person can watch the drift monitor catch them on the local stack:
///
///     shift:room-3:tau=*0.5@10m;stuck:pump-2:temperature@5m;silent:pump-3@8m+5m;late:1%:30s;duplicate:1%;malformed:0.1%
///
/// Faults are separated by `;`, each `KIND:ARGUMENTS[@TIME[+DURATION]]`: active from `TIME` after
/// the fleet's start (in fleet time, default `0`) for `DURATION` (default: to the end).
/// - `shift:TWINS:PARAMETER=VALUE`: the twins' physics use another parameter value (`=0.9` sets it,
///   `=*0.5` scales the twin's own value, `=+300` / `=-300` adds); restored when the window ends.
/// - `stuck:TWINS:PROPERTY`: the property repeats the value it read when the fault began.
/// - `silent:TWINS`: the twins send nothing (they keep evolving; readings resume after the window).
/// - `late:RATE[:DELAY]`: a reading is held back `DELAY` (default 30s) and sent after newer ones.
/// - `duplicate:RATE`: a reading is sent twice (the same bytes, so the same deterministic event id).
/// - `malformed:RATE`: a reading is replaced by invalid JSON or by a value of the wrong type.
///
/// `TWINS` is one twin id or several separated by `,`; `RATE` is a percentage (`1%`) or a fraction
/// (`0.01`) of each twin's readings; times and durations are whole numbers with a unit (`500ms`,
/// `90s`, `10m`, `1h`). Which readings a rate fault hits is drawn from the fleet's seed, so a run
/// is reproducible.
public struct FaultPlan: Sendable, Equatable, CustomStringConvertible {
    /// What a fault does.
    public enum Kind: String, Sendable, CaseIterable {
        case shift, stuck, silent, late, duplicate, malformed
    }

    /// How a shift changes a parameter.
    public enum Change: Sendable, Equatable {
        case set(Double), scale(Double), add(Double)

        /// The shifted value of `base`.
        public func apply(to base: Double) -> Double {
            switch self {
            case .set(let v): v
            case .scale(let f): base * f
            case .add(let d): base + d
            }
        }
    }

    /// One fault of the plan.
    public struct Fault: Sendable, Equatable {
        public var kind: Kind
        /// The twins it hits; empty for rate faults (every twin).
        public var twins: [String] = []
        /// The parameter a shift changes, or the property a stuck sensor repeats.
        public var name: String?
        public var change: Change?
        /// Share of each twin's readings a rate fault hits (0...1).
        public var rate: Double = 0
        /// How long a late reading is held back (ms).
        public var delayMs: Int64 = 0
        /// Start, relative to the fleet's start, and length of the window (nil: to the end), in ms.
        public var atMs: Int64 = 0
        public var durationMs: Int64?
        /// The text it was parsed from (for messages and logs).
        public var text: String

        /// Whether the fault is active `offsetMs` after the fleet's start.
        public func isActive(atOffset offsetMs: Int64) -> Bool {
            offsetMs >= atMs && durationMs.map { offsetMs < atMs + $0 } ?? true
        }
    }

    /// A spec that does not parse: which fault, what is wrong, and what is expected.
    public struct SpecError: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    /// The faults, in the order given.
    public var faults: [Fault]

    /// The default time a late reading is held back.
    public static let defaultDelayMs: Int64 = 30_000

    /// A short grammar reminder for error messages and `--help`.
    public static let syntax = "KIND:ARGS[@TIME[+DURATION]] separated by ';' — shift:TWINS:PARAM=VALUE|*FACTOR|+DELTA, "
        + "stuck:TWINS:PROPERTY, silent:TWINS, late:RATE[:DELAY], duplicate:RATE, malformed:RATE "
        + "(TWINS: id[,id…]; RATE: 1% or 0.01; TIME, DURATION, DELAY: 500ms, 90s, 10m, 1h)"

    public init(faults: [Fault] = []) { self.faults = faults }

    /// Parses a spec (see the type's documentation); an empty text is an empty plan.
    public init(parsing text: String) throws(SpecError) {
        var faults: [Fault] = []
        for (index, part) in text.split(separator: ";").enumerated() {
            let item = part.trimmingCharacters(in: .whitespaces)
            if item.isEmpty { continue }
            do { faults.append(try Self.fault(item)) } catch {
                throw SpecError("fault \(index + 1) '\(item)': \(error.description); expected \(Self.syntax)")
            }
        }
        self.faults = faults
    }

    /// The spec text of the plan (faults as given, `;`-separated).
    public var description: String { faults.map(\.text).joined(separator: ";") }

    /// Faults of `kind`.
    public func faults(_ kind: Kind) -> [Fault] { faults.filter { $0.kind == kind } }

    static func fault(_ item: String) throws(SpecError) -> Fault {
        // The window: everything after the first '@'.
        var body = Substring(item), atMs: Int64 = 0, durationMs: Int64?
        if let at = item.firstIndex(of: "@") {
            body = item[..<at]
            let window = item[item.index(after: at)...].split(separator: "+", maxSplits: 1, omittingEmptySubsequences: false)
            atMs = try duration(window[0], what: "the start after '@'", zero: true)
            if window.count == 2 { durationMs = try duration(window[1], what: "the duration after '+'", zero: false) }
        }
        let fields = body.split(separator: ":", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard let kind = Kind(rawValue: fields[0]) else {
            throw SpecError("unknown kind '\(fields[0])' (one of \(Kind.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        var fault = Fault(kind: kind, atMs: atMs, durationMs: durationMs, text: item)
        func expect(_ count: ClosedRange<Int>, _ form: String) throws(SpecError) {
            guard count.contains(fields.count), !fields.contains(where: \.isEmpty) else { throw SpecError("\(kind) takes \(form)") }
        }
        switch kind {
        case .shift:
            try expect(3...3, "TWINS:PARAMETER=VALUE (e.g. shift:room-3:tau=*0.5@10m)")
            fault.twins = try twins(fields[1])
            let assignment = fields[2].split(separator: "=", maxSplits: 1).map(String.init)
            guard assignment.count == 2, !assignment[0].isEmpty else { throw SpecError("'\(fields[2])' is not PARAMETER=VALUE") }
            fault.name = assignment[0]
            fault.change = try change(assignment[1])
        case .stuck:
            try expect(3...3, "TWINS:PROPERTY (e.g. stuck:pump-2:temperature@5m)")
            fault.twins = try twins(fields[1])
            fault.name = fields[2]
        case .silent:
            try expect(2...2, "TWINS (e.g. silent:pump-3@8m+5m)")
            fault.twins = try twins(fields[1])
        case .late:
            try expect(2...3, "RATE[:DELAY] (e.g. late:1%:30s)")
            fault.rate = try rate(fields[1])
            fault.delayMs = fields.count == 3 ? try duration(Substring(fields[2]), what: "the delay", zero: false) : defaultDelayMs
        case .duplicate, .malformed:
            try expect(2...2, "RATE (e.g. \(kind):1%)")
            fault.rate = try rate(fields[1])
        }
        return fault
    }

    static func twins(_ text: String) throws(SpecError) -> [String] {
        let ids = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard !ids.contains(where: \.isEmpty) else { throw SpecError("'\(text)' is not a list of twin ids (room-3 or room-3,room-4)") }
        return ids
    }

    static func change(_ text: String) throws(SpecError) -> Change {
        let number = { (t: Substring) throws(SpecError) -> Double in
            guard let v = Double(t), v.isFinite else { throw SpecError("'\(text)' is not a number, *FACTOR, +DELTA or -DELTA") }
            return v
        }
        switch text.first {
        case "*": return .scale(try number(text.dropFirst()))
        case "+": return .add(try number(text.dropFirst()))
        case "-": return .add(-(try number(text.dropFirst())))
        default: return .set(try number(Substring(text)))
        }
    }

    static func rate(_ text: String) throws(SpecError) -> Double {
        let percent = text.hasSuffix("%")
        guard let v = Double(percent ? text.dropLast() : Substring(text)), v.isFinite else {
            throw SpecError("'\(text)' is not a rate (a percentage such as 1% or a fraction such as 0.01)")
        }
        let r = percent ? v / 100 : v
        guard (0...1).contains(r) else { throw SpecError("rate '\(text)' is outside 0%...100%") }
        return r
    }

    static func duration(_ text: Substring, what: String, zero: Bool) throws(SpecError) -> Int64 {
        let t = text.trimmingCharacters(in: .whitespaces)
        if zero && t == "0" { return 0 }
        // A bare number would read as milliseconds (`DurationText`), which nobody means by "@10".
        guard t.last?.isLetter == true, let ms = DurationText.milliseconds(t) else {
            throw SpecError("\(what) '\(t)' is not a whole number with a unit (500ms, 90s, 10m, 1h)")
        }
        return ms
    }
}

/// A fault that fired: written as a JSON line when it happens (`FleetSimulator.tick`).
public struct FaultEvent: Sendable, Equatable {
    /// `start` and `end` of a window fault; `hit` for one reading hit by a rate fault.
    public enum Phase: String, Sendable { case start, end, hit }

    public var twinId: String
    public var kind: FaultPlan.Kind
    public var phase: Phase
    /// Fleet (event) time, epoch ms: when the window began or ended, or the reading's time.
    public var time: Int64
    /// What changed: a shift's parameter with `from` and `to`, a stuck property and its value, a
    /// late reading's delay, a malformed reading's variant.
    public var details: [String: JSON] = [:]

    public init(twinId: String, kind: FaultPlan.Kind, phase: Phase, time: Int64, details: [String: JSON] = [:]) {
        self.twinId = twinId; self.kind = kind; self.phase = phase; self.time = time; self.details = details
    }

    /// A JSON log line (no newline): `ts` (wall clock), `level`, `msg`, `fault`, `phase`, `twinId`,
    /// `time` (fleet time) and the details.
    public func logLine(now: Int64) -> [UInt8] {
        var w = JSONWriter(capacity: 192)
        w.beginObject()
        w.field("ts", Timestamp.format(now))
        w.field("level", "info")
        w.field("service", "twinctl-fleet")
        w.field("msg", "fault \(kind.rawValue) \(phase.rawValue)")
        w.field("fault", kind.rawValue)
        w.field("phase", phase.rawValue)
        w.field("twinId", twinId)
        w.field("time", Timestamp.format(time))
        for key in details.keys.sorted() { w.key(key); w.value(details[key]!) }
        w.endObject()
        return w.bytes
    }
}
