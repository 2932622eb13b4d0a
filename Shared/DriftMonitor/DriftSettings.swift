import Drift
import Durations
import ServiceKit

/// What the drift monitor watches and how: every `DRIFT_*` setting and `STALE_FACTOR`, typed, with
/// the defaults. Read once at start-up (`fromEnvironment`); tests build it directly.
public struct DriftSettings: Sendable, Equatable {
    /// The detector fed with a model's standardised residuals.
    public enum Detector: String, Sendable, Codable, CaseIterable {
        case adwin, cusum, pageHinkley
    }

    /// Fixed prediction horizon; nil: `horizonIntervals` reporting intervals of the twin's model,
    /// at least `minimumHorizonMs` (a one-step prediction hardly moves when a time constant halves).
    public var horizonMs: Int64?
    public var horizonIntervals = 10
    public var minimumHorizonMs: Int64 = 300_000
    /// Longest integration step; nil: `defaultStep` (the model's reporting interval, or a
    /// `horizonSteps`th of the horizon when that is longer).
    public var stepMs: Int64?
    /// Steps a prediction takes over the horizon at least, by default: a pump reporting every second
    /// has a 5-minute horizon, and 300 steps of its interval were most of the monitor's cost; a
    /// sixteenth of it is the history's own resolution (one kept reading per sixteenth).
    public var horizonSteps: Int64 = 16
    /// Residuals the standardising scale is estimated from (then frozen until a reset).
    public var warmup = 200
    /// Detector per model id; `defaultDetector` for the rest.
    public var detectors: [String: Detector] = [:]
    public var defaultDetector = Detector.adwin
    /// Which numeric telemetry of a model gets a data-drift watch.
    public enum DataProperties: Sendable, Equatable {
        /// What the model computes or observes: every numeric telemetry except those its behaviour
        /// takes as an input (a model without behaviour: all of them). Why the default: an input such
        /// as a room's `hvacPower` is switched by a controller, so its distribution moves whenever the
        /// controller acts, and Evidently's rule alerted on it thousands of times on a healthy fleet;
        /// the model already accounts for its inputs in the residuals.
        case modelled
        /// Every numeric telemetry, inputs included.
        case all
        /// Exactly these telemetry names.
        case named(Set<String>)
    }

    /// Data-drift properties per model id; `defaultDataProperties` for the rest.
    public var dataProperties: [String: DataProperties] = [:]
    public var defaultDataProperties = DataProperties.modelled
    /// Readings between data-drift evaluations of a property; 0 turns data drift off.
    public var evalEvery = 50
    /// Values in each data-drift window (reference and current).
    public var window = 100
    /// The deciding data-drift statistic and its thresholds (Evidently's defaults).
    public var dataMethod = DataDriftMethod.evidentlyDefault
    public var ksPValueThreshold = 0.05
    public var wassersteinThreshold = 0.1
    public var psiThreshold = 0.1
    public var jensenShannonThreshold = 0.1
    /// A residual episode resolves when the mean standardised residual over this many readings is
    /// back under `resolveLevel` (in σ).
    public var resolveWindow = 50
    public var resolveLevel = 0.5
    /// Event time an open residual or data episode's condition must stay clear before it resolves;
    /// going out again meanwhile continues the same episode (a flap, counted). 0: resolve at once.
    /// Why 10 minutes: a twin hovering at the resolve level otherwise raised and resolved a new
    /// episode every few minutes (75k episodes in 7 minutes in a soak); Prometheus' `keep_firing_for`
    /// and Grafana's recovering period do the same, and 10 minutes is about ten resolution blocks of
    /// a twin reporting every second, long enough to outlast the flaps seen and short enough that a
    /// fixed asset's episode closes within a shift's glance.
    public var resolveAfterMs: Int64 = 600_000
    /// Stale after this many reporting intervals without a reading (the query API's `stale` flag uses
    /// the same factor); the interval is the model's, or the twin's observed one when it is longer.
    public var staleFactor = 3.0
    /// Least silence before a twin seen only once is stale (it has not shown its pace yet), and the
    /// most one gap counts as its pace. Why: a fleet that reports slower than its model declares
    /// would otherwise raise and resolve a stale episode on every twin at start.
    public var staleFirstIntervalMs: Int64 = 60_000
    /// Event time after a twin's first reading that data drift waits before it takes its reference
    /// window. Why: a fleet started from cold warms up meanwhile (a pump's casing by ~8 K with a
    /// 10-minute time constant: after 30 minutes 0.4 K, four times its sensor noise, is still to
    /// come; after an hour 0.02 K), and a reference taken then made data drift fire on every twin.
    public var settleMs: Int64 = 3_600_000
    /// A twin's monitor state goes to `drift.state.v1` after this many readings (and at once when an
    /// alert opens or closes).
    public var stateEvery = 60
    /// Event ids remembered per twin to skip repeated readings.
    public var recentEventIds = 8
    /// What a residual episode leads to (Recalibration.swift).
    public var recalibration = RecalibrationSettings()

    public init() {}

    /// The prediction horizon of a model with reporting interval `intervalMs`.
    public func horizon(intervalMs: Int64) -> Int64 {
        horizonMs ?? max(Int64(horizonIntervals) * intervalMs, minimumHorizonMs)
    }

    /// The default longest integration step of a model: its interval, or a `horizonSteps`th of
    /// the horizon when that is longer.
    public func defaultStep(intervalMs: Int64, horizonMs: Int64) -> Int64 {
        max(intervalMs, horizonMs / horizonSteps)
    }

    /// The detector of a model id.
    public func detector(model id: String) -> Detector { detectors[id] ?? defaultDetector }

    /// The data-drift properties of a model id.
    public func dataProperties(model id: String) -> DataProperties { dataProperties[id] ?? defaultDataProperties }

    /// Data-drift configuration.
    public var dataDrift: DataDriftDetector.Configuration {
        DataDriftDetector.Configuration(windowSize: window, method: dataMethod, ksPValueThreshold: ksPValueThreshold,
                                        wassersteinThreshold: wassersteinThreshold, psiThreshold: psiThreshold,
                                        jensenShannonThreshold: jensenShannonThreshold, minimumCount: min(30, window))
    }

    /// Reads `DRIFT_*` and `STALE_FACTOR`.
    public static func fromEnvironment(_ env: EnvironmentReader) throws -> DriftSettings {
        var s = DriftSettings()
        s.horizonMs = try optionalDuration(env, "DRIFT_HORIZON",
                                           doc: "Prediction horizon of the residual (e.g. 10m); default 10 reporting intervals of the twin's model, at least 5 minutes.")
        s.stepMs = try optionalDuration(env, "DRIFT_STEP", doc: "Longest integration step of the prediction (e.g. 30s); default the model's reporting interval or a sixteenth of the horizon, whichever is longer (RK4, or the L-stable ROS2 where RK4 would be unstable at that step).")
        s.warmup = try env.int("DRIFT_WARMUP", default: s.warmup, range: 2...1_000_000, doc: "Residuals a property's scale is estimated from, then frozen until the twin is reset.")
        let detectorText = env.string("DRIFT_DETECTOR", default: "adwin",
                                      doc: "Residual detector: adwin, cusum or pageHinkley, for all models or per model (e.g. adwin,room=cusum).")
        (s.defaultDetector, s.detectors) = try parseDetectors(detectorText)
        let propertiesText = env.string("DRIFT_DATA_PROPERTIES", default: "modelled",
                                        doc: "Telemetry with data drift: modelled (all but the behaviour's inputs, e.g. not a room's hvacPower), all, or names joined by +; for all models or per model (e.g. modelled,room=temperature+hvacPower).")
        (s.defaultDataProperties, s.dataProperties) = try parseDataProperties(propertiesText)
        s.evalEvery = try env.int("DRIFT_EVAL_EVERY", default: s.evalEvery, range: 0...1_000_000, doc: "Readings between data-drift evaluations of a property (0: no data drift).")
        s.window = try env.int("DRIFT_WINDOW", default: s.window, range: 10...100_000, doc: "Values in each data-drift window (reference and current) per twin and property.")
        s.dataMethod = try env.choice("DRIFT_DATA_METHOD", default: s.dataMethod,
                                      doc: "Data-drift decision: evidentlyDefault (KS p-value up to 1,000 reference values, else normalised Wasserstein), kolmogorovSmirnov, wasserstein, populationStabilityIndex, jensenShannon.")
        s.ksPValueThreshold = try env.double("DRIFT_KS_P", default: s.ksPValueThreshold, range: 0...1, doc: "Data drift when the KS p-value is at most this.")
        s.wassersteinThreshold = try env.double("DRIFT_WASSERSTEIN", default: s.wassersteinThreshold, range: 0...1e9, doc: "Data drift when the normalised Wasserstein distance is at least this.")
        s.psiThreshold = try env.double("DRIFT_PSI", default: s.psiThreshold, range: 0...1e9, doc: "Data drift when the population stability index is at least this.")
        s.jensenShannonThreshold = try env.double("DRIFT_JENSEN_SHANNON", default: s.jensenShannonThreshold, range: 0...1, doc: "Data drift when the Jensen-Shannon distance is at least this.")
        s.resolveWindow = try env.int("DRIFT_RESOLVE_WINDOW", default: s.resolveWindow, range: 1...1_000_000,
                                      doc: "Readings over which a residual alert's mean standardised residual must be back under DRIFT_RESOLVE_LEVEL to resolve.")
        s.resolveLevel = try env.double("DRIFT_RESOLVE_LEVEL", default: s.resolveLevel, range: 0.01...100, doc: "Mean standardised residual (in sigma) under which a residual alert resolves.")
        s.resolveAfterMs = try durationOrZero(env, "DRIFT_RESOLVE_AFTER", default: s.resolveAfterMs,
                                              doc: "Event time a residual or data alert's condition must stay clear before it resolves (default 10m; 0: at once); going out again meanwhile continues the same episode (a flap, counted in twinstream_drift_alert_flaps_total).")
        s.staleFactor = try env.staleFactor()
        s.staleFirstIntervalMs = try optionalDuration(env, "DRIFT_STALE_FIRST_INTERVAL",
                                                      doc: "Least silence before a twin seen only once is stale (default 1m), and the most its first gap counts as its pace; afterwards the twin's observed interval counts when it is longer than the model's.") ?? s.staleFirstIntervalMs
        s.settleMs = try durationOrZero(env, "DRIFT_SETTLE", default: s.settleMs,
                                        doc: "Event time after a twin's first reading before data drift takes its reference window (default 1h: a fleet started from cold warms up meanwhile; 0: at once).")
        s.stateEvery = try env.int("DRIFT_STATE_EVERY", default: s.stateEvery, range: 1...1_000_000,
                                   doc: "Readings of a twin between writes of its monitor state to drift.state.v1 (written at once when an alert opens or closes).")
        s.recalibration = try RecalibrationSettings.fromEnvironment(env)
        return s
    }

    /// A positive duration in milliseconds, or nil when the variable is unset.
    static func optionalDuration(_ env: EnvironmentReader, _ name: String, doc: String) throws -> Int64? {
        guard let text = env.optionalString(name, doc: doc) else { return nil }
        guard let d = EnvironmentReader.parseDuration(text), d > .zero else {
            throw ConfigurationError(code: .invalidValue, variable: name, value: text, expected: "a positive duration such as 30s, 10m or 1h")
        }
        return d.milliseconds
    }

    /// A duration in milliseconds, 0 allowed (`0` or `0s`), `fallback` when the variable is unset.
    static func durationOrZero(_ env: EnvironmentReader, _ name: String, default fallback: Int64, doc: String) throws -> Int64 {
        guard let text = env.optionalString(name, doc: doc) else { return fallback }
        if text == "0" { return 0 }
        guard let d = EnvironmentReader.parseDuration(text), d >= .zero else {
            throw ConfigurationError(code: .invalidValue, variable: name, value: text, expected: "a duration such as 0, 30s, 10m or 1h")
        }
        return d.milliseconds
    }

    /// `modelled`, `all`, or `temperature+humidity`, each for all models or per model:
    /// `modelled,room=temperature+hvacPower,pump=all`.
    static func parseDataProperties(_ text: String) throws -> (DataProperties, [String: DataProperties]) {
        func invalid() -> ConfigurationError {
            ConfigurationError(code: .invalidValue, variable: "DRIFT_DATA_PROPERTIES", value: text,
                               expected: "modelled, all or telemetry names joined by +, optionally per model: modelled,room=temperature+hvacPower")
        }
        func scope(_ word: String) throws -> DataProperties {
            switch word {
            case "modelled": return .modelled
            case "all": return .all
            default:
                let names = word.split(separator: "+", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
                guard !names.isEmpty, names.allSatisfy({ !$0.isEmpty && !$0.contains("=") }) else { throw invalid() }
                return .named(Set(names))
            }
        }
        var fallback = DataProperties.modelled
        var perModel: [String: DataProperties] = [:]
        for part in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !part.isEmpty {
            let pieces = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            if pieces.count == 2 {
                guard !pieces[0].isEmpty else { throw invalid() }
                perModel[pieces[0]] = try scope(pieces[1])
            } else {
                fallback = try scope(pieces[0])
            }
        }
        return (fallback, perModel)
    }

    /// `adwin` or `adwin,room=cusum,pump=pageHinkley`.
    static func parseDetectors(_ text: String) throws -> (Detector, [String: Detector]) {
        var fallback = Detector.adwin
        var perModel: [String: Detector] = [:]
        for part in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !part.isEmpty {
            let pieces = part.split(separator: "=", maxSplits: 1).map(String.init)
            guard let detector = Detector(rawValue: pieces.last!) else {
                throw ConfigurationError(code: .invalidValue, variable: "DRIFT_DETECTOR", value: text, expected: "adwin, cusum or pageHinkley, optionally per model: adwin,room=cusum")
            }
            if pieces.count == 2 { perModel[pieces[0]] = detector } else { fallback = detector }
        }
        return (fallback, perModel)
    }
}
