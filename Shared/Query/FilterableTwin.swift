import Contracts
import JSON

/// What the filter, sort and relationship functions read from a twin. The query-api view
/// provides it; `TwinRecord` adapts a `TwinState`.
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
/// freshness rule, and the latest property event time computed once.
public struct TwinRecord: FilterableTwin, Sendable, Equatable {
    public let state: TwinState
    public let reportingIntervalMs: Int64?
    public let freshness: Freshness
    /// The newest `eventTime` among the properties, nil without properties.
    public let latestEventTime: Int64?

    public init(_ state: TwinState, reportingIntervalMs: Int64? = nil, freshness: Freshness = Freshness()) {
        self.state = state
        self.reportingIntervalMs = reportingIntervalMs
        self.freshness = freshness
        latestEventTime = state.properties.lazy.map(\.property.eventTime).max()
    }

    public var twinId: String { state.twinId }
    public var model: String? { state.model }
    public var version: Int64 { state.version }
    public var updatedAt: Int64 { state.updatedAt }
    public var relationships: [TwinState.Relationship] { state.relationships }

    public func propertyValue(_ name: String) -> JSON? {
        let count = name.utf8.count
        for p in state.properties where p.name.utf8.count == count && JSON.utf8Equal(p.name, name) { return p.property.value }
        return nil
    }

    public func metadataValue(_ key: String) -> JSON? { state.metadata[key] }
    public func desiredValue(_ key: String) -> JSON? { state.desired[key] }
    public func parameterValue(_ name: String) -> JSON? { state.parameters[name] }

    public func isStale(now: Int64) -> Bool {
        freshness.isStale(latestEventTime: latestEventTime, reportingIntervalMs: reportingIntervalMs, now: now)
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
