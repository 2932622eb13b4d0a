import Contracts
import JSON

/// What the filter, sort and relationship functions read from a twin. The query-api view
/// provides it; `QueryTwin` adapts a `TwinState`.
public protocol FilterableTwin {
    var twinId: String { get }
    /// `id@version`, if the twin has a model.
    var model: String? { get }
    var version: Int64 { get }
    var updatedAt: Int64 { get }
    /// The current value of a property (a JSON scalar), nil when absent.
    func propertyValue(_ name: String) -> JSON?
    func metadataValue(_ key: String) -> JSON?
    func desiredValue(_ key: String) -> JSON?
    func parameterValue(_ name: String) -> JSON?
    /// Sorted by name, then target.
    var relationships: [TwinState.Relationship] { get }
    /// Whether the twin's latest reading is too old (see `Freshness`).
    func isStale(now: Int64) -> Bool
    /// The model's required telemetry the twin has never reported (`TwinState.missing`).
    var missing: [String] { get }
}

/// When a twin is stale: its latest property event time is more than `factor` reporting
/// intervals before `now`. A twin whose model has no interval, or that has no reading yet, is
/// never stale (there is nothing to be late against).
public struct Freshness: Sendable, Equatable {
    /// How many reporting intervals may pass without a reading (default 3).
    public var factor: Double
    public init(factor: Double = 3) { self.factor = factor }

    /// `now - latestEventTime > factor × reportingIntervalMs`.
    @inlinable
    public func isStale(latestEventTime: Int64?, reportingIntervalMs: Int64?, now: Int64) -> Bool {
        guard let latestEventTime, let reportingIntervalMs, reportingIntervalMs > 0 else { return false }
        return Double(now) - Double(latestEventTime) > factor * Double(reportingIntervalMs)
    }

    /// The time after which a twin whose latest reading is at `latestEventTime` becomes stale.
    public func staleAfter(latestEventTime: Int64, reportingIntervalMs: Int64) -> Int64 {
        latestEventTime + Int64((factor * Double(reportingIntervalMs)).rounded(.down))
    }
}

/// A `TwinState` with what the query needs beside it: its model's reporting interval and the
/// freshness rule, and the latest property event time computed once. The state lives in one
/// shared box, so copying a record (as every filter and sort pass does) costs one reference
/// count, not one per field of the state.
public struct QueryTwin: FilterableTwin, Sendable, Equatable {
    /// Mutated only while uniquely referenced (`apply(_:)`, under the view's lock), so no reader
    /// ever sees it change: every holder of a shared one keeps it as it was.
    final class Storage: @unchecked Sendable {
        var state: TwinState
        var latestEventTime: Int64?
        // Names and values apart: a lookup then touches neither units nor event ids.
        let names: [String]
        var values: [JSON]
        let twinId: String
        let model: String?
        let metadata: JSONObject
        let desired: JSONObject
        let parameters: JSONObject
        /// Changes the state and the values in one access each (a class's stored properties are
        /// checked for exclusive access at every access), then the latest event time.
        func update(_ body: (inout TwinState, inout [JSON]) -> Void) {
            body(&state, &values)
            latestEventTime = state.properties.lazy.map(\.property.eventTime).max()
        }

        init(_ state: TwinState) {
            self.state = state
            twinId = state.twinId
            model = state.model
            metadata = state.metadata
            desired = state.desired
            parameters = state.parameters
            latestEventTime = state.properties.lazy.map(\.property.eventTime).max()
            names = state.properties.map(\.name)
            values = state.properties.map(\.property.value)
        }
    }

    var storage: Storage
    public let reportingIntervalMs: Int64?
    public let freshness: Freshness

    public init(_ state: TwinState, reportingIntervalMs: Int64? = nil, freshness: Freshness = Freshness()) {
        storage = Storage(state)
        self.reportingIntervalMs = reportingIntervalMs
        self.freshness = freshness
    }

    public var state: TwinState { storage.state }

    /// The twin after a `telemetry` change event of the next version (see `apply(_:)`); nil
    /// when the change does not apply exactly.
    public func applying(_ change: TwinChange) -> QueryTwin? {
        var next = self
        return next.apply(change) ? next : nil
    }

    /// Applies a `telemetry` change event of the next version: its values replace the properties
    /// they name (late ones do not), as the state-updater's fold did, so the view can follow
    /// readings from `twin.changes.v1` without decoding each state document. False, with the
    /// twin unchanged, when the change cannot be applied exactly from this version: another
    /// version, not a reading, or a property the twin does not have yet (its unit and `missing`
    /// come with the state document). `sync` stays the previous document's (restore bookkeeping,
    /// which readers ignore). The state is updated in place when this record is its only holder
    /// (the view's, once readers let go), else copied first.
    public mutating func apply(_ change: TwinChange) -> Bool {
        guard change.kind == .telemetry, change.version == version + 1, let eventId = change.eventId else { return false }
        return change.changes.withUnsafeBufferPointer { entries in
            // Every entry checked, and its property found, before anything changes.
            withUnsafeTemporaryAllocation(of: Int.self, capacity: entries.count) { index in
                for k in entries.indices {
                    index[k] = -1
                    guard !entries[k].late else { continue }
                    guard entries[k].new != nil, entries[k].newTime ?? change.eventTime != nil,
                          let i = propertyIndex(entries[k].path) else { return false }
                    index[k] = i
                }
                if !isKnownUniquelyReferenced(&storage) { storage = Storage(storage.state) }
                storage.update { state, values in
                    for k in entries.indices where index[k] >= 0 {
                        let i = index[k], value = entries[k].new!
                        state.properties[i].property = TwinState.Property(value: value, unit: state.properties[i].property.unit,
                                                                          eventTime: entries[k].newTime ?? change.eventTime!,
                                                                          ingestTime: change.at, eventId: eventId)
                        values[i] = value
                    }
                    state.version = change.version
                    state.updatedAt = change.at
                }
                return true
            }
        }
    }

    /// The index of the property a change path (`/properties/<name>`) names; nil for another path.
    private func propertyIndex(_ path: String) -> Int? {
        TwinChange.withPropertyName(path) { JSON.index(of: $0, in: storage.names) } ?? nil
    }

    /// The newest `eventTime` among the properties, nil without properties.
    public var latestEventTime: Int64? { storage.latestEventTime }
    public var twinId: String { storage.twinId }
    public var model: String? { storage.model }
    public var version: Int64 { storage.state.version }
    public var updatedAt: Int64 { storage.state.updatedAt }
    public var relationships: [TwinState.Relationship] { storage.state.relationships }
    public var missing: [String] { storage.state.missing }

    public func propertyValue(_ name: String) -> JSON? {
        let names = storage.names
        var i = 0
        while i < names.count {
            if JSON.utf8Equal(names[i], name) { return storage.values[i] }
            i += 1
        }
        return nil
    }

    public func metadataValue(_ key: String) -> JSON? { storage.metadata[key] }
    public func desiredValue(_ key: String) -> JSON? { storage.desired[key] }
    public func parameterValue(_ name: String) -> JSON? { storage.parameters[name] }

    public func isStale(now: Int64) -> Bool {
        freshness.isStale(latestEventTime: storage.latestEventTime, reportingIntervalMs: reportingIntervalMs, now: now)
    }

    public static func == (a: QueryTwin, b: QueryTwin) -> Bool {
        (a.storage === b.storage || a.storage.state == b.storage.state)
            && a.reportingIntervalMs == b.reportingIntervalMs && a.freshness == b.freshness
    }
}

/// `relatedTo=<target>&rel=<name>`: twins with a relationship to `target`, named `name` when given.
public struct RelationshipFilter: Sendable, Equatable {
    public var target: String
    public var name: String?
    public init(target: String, name: String? = nil) {
        self.target = target
        self.name = name
    }

    /// Whether `twin` has a matching relationship.
    @inlinable
    public func matches<T: FilterableTwin>(_ twin: T) -> Bool {
        twin.relationships.contains { $0.target == target && (name == nil || $0.name == name!) }
    }
}
