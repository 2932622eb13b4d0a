import JSON

/// `TwinChange` v1 on `twin.changes.v1` (key `tenant/twinId`): what one reading or command did to
/// a twin. One per accepted reading or command, in the twin's order; `(twinId, version)` is unique
/// for `telemetry` and `command` changes, so at-least-once delivery de-duplicates on it. A
/// `rejected` change carries the twin's unchanged version and the command id: de-duplicate those
/// on `commandId`. Schema: `Schemas/contracts/twin-change/v1.json`.
public struct TwinChange: ContractDocument, Sendable, Equatable {
    public static let contract = ContractName.twinChangeV1

    public enum Kind: String, Sendable {
        /// A reading was recorded (some properties may be late, see `Entry.late`).
        case telemetry
        /// A command was applied.
        case command
        /// A command was rejected; `reason` says why and the state is unchanged.
        case rejected
    }

    /// One changed path: `/properties/<name>`, `/metadata/<key>`, `/desired/<key>`,
    /// `/parameters/<name>`, `/relationships/<name>/<target>`, `/model` or `/lifecycle`.
    public struct Entry: Sendable, Equatable {
        public var path: String
        /// The value before (absent when there was none).
        public var old: JSON?
        /// The value after (absent when removed). For a late reading: the late value, which was
        /// recorded in history but did not replace `old`.
        public var new: JSON?
        /// Event times of the old and new property values (properties only).
        public var oldTime: Int64?
        public var newTime: Int64?
        /// The reading is older than the stored value: kept in history, not applied.
        public var late: Bool

        public init(path: String, old: JSON?, new: JSON?, oldTime: Int64? = nil, newTime: Int64? = nil, late: Bool = false) {
            self.path = path
            self.old = old
            self.new = new
            self.oldTime = oldTime
            self.newTime = newTime
            self.late = late
        }
    }

    public var tenant: String
    public var twinId: String
    public var model: String?
    public var version: Int64
    public var kind: Kind
    /// When the cause entered the platform: the reading's ingest time or the command's issue time.
    public var at: Int64
    /// The reading's event id and event time (`telemetry`).
    public var eventId: String?
    public var eventTime: Int64?
    /// The command's id and type (`command`, `rejected`).
    public var commandId: String?
    public var commandType: String?
    /// The command's `cause` (e.g. the simulation id of a recalibration): why the twin changed.
    public var cause: String?
    public var changes: [Entry]
    /// Why a command was rejected.
    public var reason: ContractError?

    public init(tenant: String, twinId: String, model: String?, version: Int64, kind: Kind, at: Int64, eventId: String? = nil,
                eventTime: Int64? = nil, commandId: String? = nil, commandType: String? = nil, cause: String? = nil, changes: [Entry] = [],
                reason: ContractError? = nil) {
        self.tenant = tenant
        self.twinId = twinId
        self.model = model
        self.version = version
        self.kind = kind
        self.at = at
        self.eventId = eventId
        self.eventTime = eventTime
        self.commandId = commandId
        self.commandType = commandType
        self.cause = cause
        self.changes = changes
        self.reason = reason
    }

    public var key: String { TwinKey(tenant: tenant, twinId: twinId).description }
    /// Whether any entry is late.
    public var late: Bool { changes.contains { $0.late } }

    public func encoded() -> [UInt8] {
        // Keys spelled here, times through a memo (a reading's event time is every entry's
        // `newTime`, the previous one most entries' `oldTime`): one change event per reading.
        var w = JSONWriter(capacity: 192 + changes.count * 128)
        var times = TimeTextMemo()
        w.beginObject()
        w.knownField("tenant", tenant)
        w.knownField("twinId", twinId)
        if let model { w.knownField("model", model) }
        w.knownKey("version"); w.value(version)
        w.knownField("kind", kind.rawValue)
        w.knownKey("at"); w.time(at, memo: &times)
        if let eventId { w.knownField("eventId", eventId) }
        if let eventTime { w.knownKey("eventTime"); w.time(eventTime, memo: &times) }
        if let commandId { w.knownField("commandId", commandId) }
        if let commandType { w.knownField("commandType", commandType) }
        if let cause { w.knownField("cause", cause) }
        w.knownKey("late"); w.value(late)
        w.knownKey("changes"); w.beginArray()
        for c in changes {
            w.beginObject()
            w.knownField("path", c.path)
            if let old = c.old { w.knownKey("old"); w.value(old) }
            if let new = c.new { w.knownKey("new"); w.value(new) }
            if let t = c.oldTime { w.knownKey("oldTime"); w.time(t, memo: &times) }
            if let t = c.newTime { w.knownKey("newTime"); w.time(t, memo: &times) }
            w.knownKey("late"); w.value(c.late)
            w.endObject()
        }
        w.endArray()
        if let reason { w.knownKey("reason"); reason.write(to: &w) }
        w.endObject()
        return w.bytes
    }

    public init(json: JSON) throws(ContractError) {
        let f = try Fields(json)
        tenant = try f.string("tenant")
        twinId = try f.string("twinId")
        model = try f.optionalString("model")
        version = try f.int("version")
        guard version >= 0 else {
            throw ContractError(code: "invalid_value", pointer: "/version", message: "version must be at least 0", expected: ">= 0", actual: String(version))
        }
        let kindText = try f.string("kind")
        guard let kind = Kind(rawValue: kindText) else {
            throw ContractError(code: "invalid_value", pointer: "/kind", message: "unknown change kind", expected: "telemetry|command|rejected", actual: kindText)
        }
        self.kind = kind
        at = try f.time("at")
        eventId = try f.optionalString("eventId")
        eventTime = try f.object["eventTime"] == nil ? nil : f.time("eventTime")
        commandId = try f.optionalString("commandId")
        commandType = try f.optionalString("commandType")
        cause = try f.optionalString("cause")
        _ = try f.bool("late")  // derived from the entries; required so readers need not derive it
        guard case .array(let items)? = f.object["changes"] else { throw .missing("/changes", "changes") }
        changes = try items.enumerated().map { (i, item) throws(ContractError) in
            let cf = try Fields(item, pointer: "/changes/\(i)")
            let path = try cf.string("path")
            guard path.hasPrefix("/") else {
                throw ContractError(code: "invalid_value", pointer: cf.path("path"), message: "a change path is a JSON pointer", expected: "/…", actual: path)
            }
            return Entry(path: path, old: cf.object["old"], new: cf.object["new"],
                         oldTime: try cf.object["oldTime"] == nil ? nil : cf.time("oldTime"),
                         newTime: try cf.object["newTime"] == nil ? nil : cf.time("newTime"),
                         late: try cf.bool("late"))
        }
        reason = try f.object["reason"].map { (r) throws(ContractError) in try ContractError(json: r, pointer: "/reason") }
        switch kind {
        case .telemetry where eventId == nil: throw .missing("/eventId", "eventId")
        case .telemetry where eventTime == nil: throw .missing("/eventTime", "eventTime")
        case .rejected where reason == nil: throw .missing("/reason", "reason")
        case .rejected where commandId == nil: throw .missing("/commandId", "commandId")
        default: break
        }
    }
}

extension TwinChange {
    /// The change read member by member, without a JSON tree (the query view reads one per
    /// reading). Nil for anything but the plain shape the state-updater writes — a `reason`, a
    /// null or wrong type where the contract wants a value, damaged JSON: `init(bytes:)` then
    /// decides, and names the problem. What it returns equals what `init(bytes:)` decodes
    /// (`ContractsTests.testTwinChangeReadDirectlyAgreesWithDecodingTheTree`).
    public static func readDirectly(_ bytes: [UInt8]) -> TwinChange? {
        var paths = StringInterner(capacity: 1)
        return readDirectly(bytes, paths: &paths)
    }

    /// `readDirectly(_:)` with the entries' paths taken from `paths` (the same few, change after
    /// change: no allocation per path).
    public static func readDirectly(_ bytes: [UInt8], paths: inout StringInterner) -> TwinChange? {
        try? JSONMemberReader.read(bytes) { r in
            var times = TimeMemo()
            var tenant: String?, twinId: String?, model: String?, version: Int64?, kind: Kind?, at: Int64?
            var eventId: String?, eventTime: Int64?, commandId: String?, commandType: String?, cause: String?
            var late: Bool?, changes: [Entry]?
            try r.beginObject()
            while let key = try r.nextKey() {
                if key == "tenant" { tenant = try r.requireString() }
                else if key == "twinId" { twinId = try r.requireString() }
                else if key == "version" { version = try r.requireInt64() }
                else if key == "kind" { kind = try r.requireKind() }
                else if key == "at" { at = try times.read(&r) }
                else if key == "eventId" { eventId = try r.requireOptionalString() }
                else if key == "eventTime" { eventTime = try times.read(&r) }
                else if key == "late" { late = try r.requireBool() }
                else if key == "changes" { changes = try r.requireEntries(paths: &paths, times: &times) }
                else if key == "model" { model = try r.requireOptionalString() }
                else if key == "commandId" { commandId = try r.requireOptionalString() }
                else if key == "commandType" { commandType = try r.requireOptionalString() }
                else if key == "cause" { cause = try r.requireOptionalString() }
                else if key == "reason" { throw NotDirectlyReadable() }  // rejected commands: rare, the tree reads them
                else { try r.skipValue() }
            }
            try r.finish()
            guard let tenant, let twinId, let version, version >= 0, let kind, let at, late != nil, let changes else { throw NotDirectlyReadable() }
            switch kind {
            case .telemetry where eventId == nil || eventTime == nil: throw NotDirectlyReadable()
            case .rejected: throw NotDirectlyReadable()  // needs a reason
            default: break
            }
            return TwinChange(tenant: tenant, twinId: twinId, model: model, version: version, kind: kind, at: at, eventId: eventId,
                              eventTime: eventTime, commandId: commandId, commandType: commandType, cause: cause, changes: changes)
        }
    }
}

extension JSONMemberReader {
    /// A change kind's name.
    fileprivate mutating func requireKind() throws -> TwinChange.Kind {
        guard let name = try readStringBytes() else { throw NotDirectlyReadable() }
        if name == "telemetry" { return .telemetry }
        if name == "command" { return .command }
        if name == "rejected" { return .rejected }
        throw NotDirectlyReadable()
    }

    /// `path.hasPrefix("/")` as the tree path checks it (by Character), settled from the bytes
    /// when the `/` is followed by nothing or an ASCII byte (which never joins it in one Character).
    private static func isPointer(_ path: String) -> Bool {
        var path = path
        let settled: Bool? = path.withUTF8 { p in
            guard p.first == UInt8(ascii: "/") else { return false }
            return p.count == 1 || p[1] < 0x80 ? true : nil
        }
        return settled ?? path.hasPrefix("/")
    }

    /// The `changes` array, each entry as `TwinChange.init(json:)` reads it.
    fileprivate mutating func requireEntries(paths: inout StringInterner, times: inout TimeMemo) throws -> [TwinChange.Entry] {
        try beginArray()
        var entries: [TwinChange.Entry] = []
        entries.reserveCapacity(8)
        while try nextElement() {
            try beginObject()
            var path: String?, old: JSON?, new: JSON?, oldTime: Int64?, newTime: Int64?, late: Bool?
            while let key = try nextKey() {
                if key == "path" {
                    guard let read = try readString(interning: &paths) else { throw NotDirectlyReadable() }
                    path = read
                }
                else if key == "new" { new = try readValue() }
                else if key == "old" { old = try readValue() }
                else if key == "newTime" { newTime = try times.read(&self) }
                else if key == "oldTime" { oldTime = try times.read(&self) }
                else if key == "late" { late = try requireBool() }
                else { try skipValue() }
            }
            guard let path, Self.isPointer(path), let late else { throw NotDirectlyReadable() }
            entries.append(TwinChange.Entry(path: path, old: old, new: new, oldTime: oldTime, newTime: newTime, late: late))
        }
        return entries
    }
}

/// The last two times read from one document, by their text where it stands in the input: a
/// change's times repeat (each entry's `newTime` is the reading's `eventTime`, its `oldTime`
/// mostly the previous reading's), and a compare costs a fraction of a parse.
private struct TimeMemo {
    var last: (text: UnsafeBufferPointer<UInt8>, ms: Int64)?
    var before: (text: UnsafeBufferPointer<UInt8>, ms: Int64)?

    /// An RFC 3339 time as ms since the epoch (as `JSONMemberReader.requireTime` reads it).
    mutating func read(_ r: inout JSONMemberReader) throws -> Int64 {
        guard let text = try r.readStringBytes() else { throw NotDirectlyReadable() }
        guard let inPlace = text.inPlace else {
            guard let ms = text.withBytes({ Timestamp.parse(bytes: $0) }) else { throw NotDirectlyReadable() }
            return ms
        }
        if let last, JSON.bytesEqual(last.text, inPlace) { return last.ms }
        if let before, JSON.bytesEqual(before.text, inPlace) { return before.ms }
        guard let ms = Timestamp.parse(bytes: inPlace) else { throw NotDirectlyReadable() }
        (before, last) = (last, (inPlace, ms))
        return ms
    }
}

extension TwinChange {
    /// Lends the name of the property a `/properties/<name>` path names (its UTF-8 bytes, not
    /// empty) to `body`; nil for any other path. A byte compare: the generic
    /// `utf8.starts(with:)` cost more than the rest of a history insert.
    @inlinable
    public static func withPropertyName<R>(_ path: String, _ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R? {
        var path = path
        return try path.withUTF8 { p -> R? in
            let prefix: StaticString = "/properties/"
            let n = prefix.utf8CodeUnitCount
            guard p.count > n else { return nil }
            let q = prefix.utf8Start
            var i = 0
            while i < n {
                if p[i] != q[i] { return nil }
                i += 1
            }
            return try body(UnsafeBufferPointer(rebasing: p[n...]))
        }
    }
}

extension TwinChange.Entry {
    /// Whether the path is `/properties/<name>`.
    @inlinable
    public var isProperty: Bool { TwinChange.withPropertyName(path) { _ in true } ?? false }
}
