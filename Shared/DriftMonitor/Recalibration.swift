import Contracts
import Durations
import Foundation
import JSON
import Models
import ServiceKit
import Simulator

// Closing the loop (issue 23): a residual episode leads to a calibration of the twin's model from
// its own readings after the change, and — when the fit is clearly better and plausible — to new
// parameters with the simulation id as their cause. The decisions here are pure; the store sends
// what `RecalibrationOutbox` collects and feeds results back through `DriftMonitor.apply(result:)`.

/// How the monitor recalibrates: `DRIFT_RECALIBRATE` and the `RECALIBRATE_*` settings.
public struct RecalibrationSettings: Sendable, Equatable {
    /// What a residual episode leads to.
    public enum Mode: String, Sendable, Codable, CaseIterable {
        /// Calibrate, and apply the fit when it is better.
        case auto
        /// Calibrate and put the fit in the alert; an operator applies it with one API call.
        case suggest
        /// Nothing.
        case off
    }

    /// Mode per model id; `defaultMode` for the rest.
    public var modes: [String: Mode] = [:]
    public var defaultMode = Mode.suggest
    /// Readings of the drifting property collected after detection before the calibration is requested.
    public var minPoints = 100
    /// Least relative drop of the property's RMS (`1 − rmsAfter/rmsBefore`) for a fit to be applied.
    public var minGain = 0.2
    /// At most one calibration request per twin per this much event time.
    public var minIntervalMs: Int64 = 3_600_000
    /// Wall-clock time a requested calibration may take before it counts as failed (`timeout`).
    public var timeoutMs: Int64 = 600_000

    public init() {}

    /// The mode of a model id.
    public func mode(model id: String) -> Mode { modes[id] ?? defaultMode }

    /// Reads `DRIFT_RECALIBRATE` and `RECALIBRATE_*`.
    public static func fromEnvironment(_ env: EnvironmentReader) throws -> RecalibrationSettings {
        var s = RecalibrationSettings()
        let text = env.string("DRIFT_RECALIBRATE", default: "suggest",
                              doc: "What a residual alert leads to: auto (calibrate and apply a better fit), suggest (calibrate; the alert carries the proposal for POST /v1/twins/{id}/recalibrations) or off, for all models or per model (e.g. suggest,room=auto).")
        (s.defaultMode, s.modes) = try parseModes(text)
        s.minPoints = try env.int("RECALIBRATE_MIN_POINTS", default: s.minPoints, range: 10...10_000,
                                  doc: "Readings collected after a residual alert before the calibration is requested (also the most held per twin).")
        s.minGain = try CalibrationVerdict.minGain(env)
        s.minIntervalMs = try env.duration("RECALIBRATE_MIN_INTERVAL", default: .seconds(3600), range: .zero ... .seconds(86_400 * 365),
                                           doc: "At most one calibration request per twin per this much event time.").milliseconds
        s.timeoutMs = try env.duration("RECALIBRATE_TIMEOUT", default: .seconds(600), range: .seconds(1) ... .seconds(86_400),
                                       doc: "Wall-clock time a requested calibration may take; later it counts as failed (timeout) and may be requested again.").milliseconds
        return s
    }

    /// `suggest` or `auto,pump=off,room=suggest`.
    public static func parseModes(_ text: String) throws -> (Mode, [String: Mode]) {
        var fallback = Mode.suggest
        var perModel: [String: Mode] = [:]
        for part in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !part.isEmpty {
            let pieces = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard let mode = Mode(rawValue: pieces.last!), pieces.allSatisfy({ !$0.isEmpty }) else {
                throw ConfigurationError(code: .invalidValue, variable: "DRIFT_RECALIBRATE", value: text,
                                         expected: "auto, suggest or off, optionally per model: suggest,room=auto")
            }
            if pieces.count == 2 { perModel[pieces[0]] = mode } else { fallback = mode }
        }
        return (fallback, perModel)
    }
}

/// A twin's recalibration in progress: collecting readings after the detection, then waiting for
/// the calibration's result. Part of the twin's `drift.state.v1` state, so it survives restarts.
struct PendingRecalibration: Codable, Equatable, Sendable {
    /// The open episode's key (`residual/<property>`) and property.
    var alertKey: String
    var property: String
    var mode: RecalibrationSettings.Mode
    /// Wall clock at detection (for the detection-to-applied histogram).
    var detectedWall: Int64
    /// History properties: the drifting property first, then the telemetry that drives inputs.
    var names: [String]
    /// Collected readings: event times and `names.count` values each (NaN: not in the reading).
    /// Never more than `minPoints` rows; emptied once the request is sent.
    var times: [Int64] = []
    var values: [Double] = []
    var fit: [String]
    /// Set once requested.
    var simulationId: String?
    var requestedWall: Int64?
    var points = 0

    var estimatedBytes: Int { 128 + names.count * 24 + fit.count * 24 + times.capacity * 8 + values.capacity * 8 }
}

/// New parameters the monitor applied, until `twin.state.v1` shows them: readings meanwhile are
/// judged with them (not with the old ones the directory still has, which would reset the twin again).
struct AppliedParameters: Codable, Equatable, Sendable {
    var from: [Double]
    var to: [Double]
}

/// What the monitor's recalibrations want sent, and what happened, for the store to publish and count.
public struct RecalibrationOutbox: Sendable {
    public var requests: [SimulationRequest] = []
    public var commands: [TwinCommand] = []
    /// Outcomes (`applied`, `not_improved`, `out_of_range`, `failed`, `suggested`) since the last take.
    public var outcomes: [String] = []
    /// Seconds from detection to applied parameters (wall clock), since the last take.
    public var appliedAfterSeconds: [Double] = []

    public var isEmpty: Bool { requests.isEmpty && commands.isEmpty && outcomes.isEmpty }
}

extension TwinWatch {
    /// The parameters readings are judged with: the directory's, unless the monitor applied new
    /// ones the directory does not show yet (then those, until it shows them or something else).
    mutating func reconcile(_ directory: [Double]) -> [Double] {
        guard let applied else { return directory }
        if directory == applied.from { return applied.to }
        self.applied = nil
        return directory
    }
}

extension DriftMonitor {
    /// The calibratable parameters of `plan` for `property`: the model's `calibrate` list, else the
    /// parameters the property's derivative (a state) or formula (an output) reads.
    static func calibratable(_ plan: ModelPlan, property: String) -> [String] {
        if let list = plan.model.calibrate, !list.isEmpty { return list }
        guard let b = plan.behaviour else { return [] }
        let names = b.states.first { $0.name == property }?.derivative.variableNames
            ?? b.outputs.first { $0.name == property }?.expression.variableNames ?? []
        let parameters = Set(plan.parameterNames)
        return names.filter { parameters.contains($0) }
    }

    /// The calibration's simulation id: deterministic (the same episode and readings give the same
    /// id, so a request sent again after a crash is recognisably the same).
    static func recalibrationId(alertId: String, firstTime: Int64) -> String {
        "recal-" + SHA256.hex(alertId + "\u{0}" + String(firstTime)).prefix(24)
    }

    /// The `setParameters` command applying a calibration: its id follows from the simulation id.
    static func recalibrationCommandId(_ simulationId: String) -> String { "cmd-" + simulationId }

    /// Per reading of a twin with an open episode or a recalibration in progress: starts a
    /// recalibration for an open residual episode, collects readings, and requests the calibration.
    mutating func followRecalibration(_ watch: inout TwinWatch, key: String, plan: ModelPlan, reading: Reading, now: Int64,
                                      into alerts: inout [DriftAlert]) {
        if let pending = watch.recalibration, watch.open[pending.alertKey] == nil {
            // The episode closed (residuals settled, or a reset): its recalibration is moot.
            watch.recalibration = nil
            awaiting.remove(key)
        }
        if watch.recalibration == nil {
            // Most readings of a twin with an open episode (data, stale, or a residual one already
            // recalibrated) find nothing to start: decided on the keys, before any lookup or copy.
            guard watch.open.keys.contains(where: { $0.hasPrefix(Self.residualKeyPrefix) && Self.mayStart(watch.open[$0]!) }) else { return }
            let mode = settings.recalibration.mode(model: plan.model.id)
            guard mode != .off, plan.predicts else { return }
            if let last = watch.lastRecalibrationAt, reading.eventTime - last < settings.recalibration.minIntervalMs { return }
            guard let (alertKey, alert) = watch.open.sorted(by: { $0.key < $1.key }).first(where: { $0.value.kind == .residual && Self.mayStart($0.value) }),
                  let property = alert.property else { return }
            let fit = Self.calibratable(plan, property: property)
            guard !fit.isEmpty else { return }
            let drivers = plan.tracked.filter { !$0.isState && $0.telemetry != property }.map(\.telemetry)
            watch.recalibration = PendingRecalibration(alertKey: alertKey, property: property, mode: mode, detectedWall: now,
                                                       names: [property] + drivers, fit: fit)
            var updated = alert
            updated.recalibration = DriftAlert.Recalibration(mode: mode.rawValue, state: "collecting")
            watch.open[alertKey] = updated
            due.insert(key)
        }
        guard var pending = watch.recalibration, pending.simulationId == nil else { return }
        defer { watch.recalibration = pending }
        pending.times.append(reading.eventTime)
        for name in pending.names { pending.values.append(reading.values[name]?.doubleValue ?? .nan) }
        guard pending.times.count >= settings.recalibration.minPoints, var alert = watch.open[pending.alertKey], let twin = TwinKey(key) else { return }

        // Enough readings: the calibrate request, with the twin's current parameters as the start.
        let first = pending.times[0]
        var history: [String: [SimulationSpec.Point]] = [:]
        for (j, name) in pending.names.enumerated() {
            var points: [SimulationSpec.Point] = []
            for (i, t) in pending.times.enumerated() {
                let x = pending.values[i * pending.names.count + j]
                if x.isFinite { points.append(SimulationSpec.Point(Double(t - first) / 1000, x)) }
            }
            if !points.isEmpty { history[name] = points }
        }
        let id = Self.recalibrationId(alertId: alert.alertId, firstTime: first)
        var parameters: [String: Double] = [:]
        for (i, name) in plan.parameterNames.enumerated() where i < watch.parameters.count { parameters[name] = watch.parameters[i] }
        // A drifting state's starting value is fitted too: started at its first (noisy) observation,
        // an error decaying over one time constant would bias the parameters (seen: 2-7 standard errors).
        let startsFitted = plan.behaviour?.states.contains { $0.name == pending.property } == true ? [pending.property] : []
        let spec = SimulationSpec(kind: .calibrate, fit: pending.fit + startsFitted, properties: [pending.property], history: history)
        outbox.requests.append(SimulationRequest(simulationId: id, tenant: twin.tenant, twinId: twin.twinId, requestedAt: now, requestedBy: "drift-monitor",
                                                 deadline: now + settings.recalibration.timeoutMs, start: first,
                                                 twin: .init(model: plan.ref, parameters: parameters), spec: spec))
        let points = history[pending.property]?.count ?? 0
        pending.simulationId = id
        pending.requestedWall = now
        pending.points = points
        pending.times = []
        pending.values = []
        watch.lastRecalibrationAt = reading.eventTime
        awaiting.insert(key)
        let fitted = pending.fit.map { "\($0) \(Self.number(parameters[$0] ?? .nan))" }.joined(separator: ", ")
        let message = "Recalibration requested: simulation \(id) fits \(pending.fit.joined(separator: ", ")) (now \(fitted)) to the \(points) readings of \(pending.property) from \(Timestamp.format(first)) to \(Timestamp.format(reading.eventTime)) (mode \(pending.mode.rawValue))."
        alert.recalibration = DriftAlert.Recalibration(mode: pending.mode.rawValue, state: "requested", simulationId: id, points: points)
        update(&watch, key: key, pending.alertKey, alert, step: DriftAlert.Step(
            step: "requested", at: reading.eventTime, message: message,
            details: ["simulationId": .string(id), "points": .int(points), "from": .string(Timestamp.format(first)),
                      "to": .string(Timestamp.format(reading.eventTime)), "fit": .array(pending.fit.map { .string($0) })]), into: &alerts)
    }

    static let residualKeyPrefix = TwinWatch.key(.residual, nil)

    /// An episode starts a recalibration when it has none yet, or its last one came to nothing.
    static func mayStart(_ alert: DriftAlert) -> Bool {
        guard let r = alert.recalibration else { return true }
        return r.state == "notApplied" || r.state == "failed"
    }

    /// Simulation ids this monitor waits for, by twin key (for the store to look results up).
    public func awaitedSimulations() -> [(key: String, simulationId: String)] {
        awaiting.sorted().compactMap { key in twins[key]?.recalibration?.simulationId.map { (key, $0) } }
    }

    /// Applies a calibration result (at wall clock `now`): once per simulation id (a result for a
    /// twin not waiting for exactly that id — a replay, another instance's twin — is ignored).
    /// True when it was this monitor's to apply.
    @discardableResult
    public mutating func apply(result: SimulationResult, now: Int64, into alerts: inout [DriftAlert]) -> Bool {
        let key = result.key
        guard result.status.isFinal, var watch = twins[key], let pending = watch.recalibration, pending.simulationId == result.simulationId,
              var alert = watch.open[pending.alertKey], let plan = plans.plan(watch.model) else { return false }
        defer { twins[key] = watch }
        watch.recalibration = nil
        awaiting.remove(key)
        let at = max(watch.lastEventTime ?? 0, alert.eventTime)
        let verdict = CalibrationVerdict.judge(result, property: pending.property, model: plan.model, minGain: settings.recalibration.minGain)
        var r = DriftAlert.Recalibration(mode: pending.mode.rawValue, state: "failed", simulationId: result.simulationId, points: pending.points)
        if let fit = result.fit {
            r.parameters = fit.parameters
            r.standardErrors = fit.standardErrors
            r.rmsBefore = fit.rmsBefore[pending.property]
            r.rmsAfter = fit.rmsAfter[pending.property]
            alert.story.append(Self.resultStep(result.simulationId, fit, property: pending.property, old: watch.parameters, plan: plan, at: at))
        }
        switch verdict {
        case .better where pending.mode == .auto:
            let commandId = Self.recalibrationCommandId(result.simulationId)
            let fit = result.fit!
            var values: JSONObject = [:]
            for (name, value) in fit.parameters { values[name] = .double(value) }
            guard let twin = TwinKey(key) else { return false }
            outbox.commands.append(TwinCommand(commandId: commandId, tenant: twin.tenant, twinId: twin.twinId, kind: .setParameters, issuedAt: now,
                                               issuedBy: "drift-monitor", parameters: values, cause: result.simulationId))
            outbox.outcomes.append("applied")
            outbox.appliedAfterSeconds.append(Double(max(0, now - pending.detectedWall)) / 1000)
            var vector = watch.parameters
            for (i, name) in plan.parameterNames.enumerated() where i < vector.count { if let x = fit.parameters[name] { vector[i] = x } }
            let change = Self.describeChange(plan, from: watch.parameters, to: vector)
            watch.applied = AppliedParameters(from: watch.parameters, to: vector)
            watch.parameters = vector
            r.state = "applied"
            r.commandId = commandId
            alert.recalibration = r
            alert.story.append(DriftAlert.Step(step: "applied", at: at,
                                               message: "Applied: command \(commandId) sets \(change) with cause \(result.simulationId).",
                                               details: ["commandId": .string(commandId), "simulationId": .string(result.simulationId)]))
            watch.open[pending.alertKey] = alert
            reset(&watch, key: key, plan: plan, at: at, reason: "recalibrated by simulation \(result.simulationId) (\(change))", into: &alerts)
            return true
        case .better:
            outbox.outcomes.append("suggested")
            r.state = "suggested"
            alert.recalibration = r
            update(&watch, key: key, pending.alertKey, alert, step: DriftAlert.Step(
                step: "suggested", at: at,
                message: "Proposed, not applied (DRIFT_RECALIBRATE suggest): apply it with POST /v1/twins/\(alert.twinId)/recalibrations {\"simulationId\": \"\(result.simulationId)\"}.",
                details: ["simulationId": .string(result.simulationId)]), into: &alerts)
        case .notImproved(let reason, let message):
            outbox.outcomes.append(verdict.outcome)
            notApplied(&watch, key: key, pending.alertKey, alert, r, reason: reason, message: message, at: at, into: &alerts)
        case .outOfRange(let message):
            outbox.outcomes.append(verdict.outcome)
            notApplied(&watch, key: key, pending.alertKey, alert, r, reason: "out_of_range", message: message, at: at, into: &alerts)
        case .failed(let reason, let message):
            outbox.outcomes.append(verdict.outcome)
            r.reason = reason
            alert.recalibration = r
            update(&watch, key: key, pending.alertKey, alert, step: DriftAlert.Step(
                step: "failed", at: at, message: "Recalibration failed: \(message).",
                details: ["simulationId": .string(result.simulationId), "reason": .string(reason)]), into: &alerts)
        }
        return true
    }

    /// Requested calibrations without a result after `RECALIBRATE_TIMEOUT` (wall clock) fail.
    public mutating func expireRecalibrations(now: Int64, into alerts: inout [DriftAlert]) {
        for (key, id) in awaitedSimulations() {
            guard let requested = twins[key]?.recalibration?.requestedWall, now - requested > settings.recalibration.timeoutMs,
                  let twin = TwinKey(key) else { continue }
            var result = SimulationResult(simulationId: id, tenant: twin.tenant, twinId: twin.twinId, kind: .calibrate, status: .failed, start: requested)
            result.reason = .init(code: "timeout", message: "no result within RECALIBRATE_TIMEOUT (\(Self.duration(settings.recalibration.timeoutMs)))")
            apply(result: result, now: now, into: &alerts)
        }
    }

    /// Takes what the recalibrations want sent and counted.
    public mutating func takeOutbox() -> RecalibrationOutbox {
        defer { outbox = RecalibrationOutbox() }
        return outbox
    }

    /// A reset that installs the parameters an open episode proposed (an operator applied a
    /// suggestion) says so in that episode's story before it resolves.
    mutating func noteProposalApplied(_ watch: inout TwinWatch, at time: Int64) {
        for (openKey, open) in watch.open where open.recalibration?.state == "suggested" {
            guard let r = open.recalibration, let proposed = r.parameters, let plan = plans.plan(watch.model),
                  proposed.allSatisfy({ name, value in
                      plan.parameterNames.firstIndex(of: name).map { $0 < watch.parameters.count && abs(watch.parameters[$0] - value) <= 1e-9 * max(1, abs(value)) } ?? true
                  }) else { continue }
            var alert = open
            alert.recalibration?.state = "applied"
            alert.story.append(DriftAlert.Step(step: "applied", at: time, message: "The proposal of simulation \(r.simulationId ?? "?") was applied to the twin.",
                                               details: ["simulationId": .string(r.simulationId ?? "")]))
            watch.open[openKey] = alert
        }
    }

    private mutating func notApplied(_ watch: inout TwinWatch, key: String, _ alertKey: String, _ alert: DriftAlert, _ r: DriftAlert.Recalibration,
                                     reason: String, message: String, at: Int64, into alerts: inout [DriftAlert]) {
        var alert = alert
        var r = r
        r.state = "notApplied"
        r.reason = reason
        alert.recalibration = r
        update(&watch, key: key, alertKey, alert, step: DriftAlert.Step(
            step: "notApplied", at: at, message: "Not applied: \(message). The twin keeps its parameters; the alert stays open.",
            details: ["simulationId": .string(r.simulationId ?? ""), "reason": .string(reason)]), into: &alerts)
    }

    static func resultStep(_ id: String, _ fit: SimulationResult.Fit, property: String, old: [Double], plan: ModelPlan, at: Int64) -> DriftAlert.Step {
        var parts: [String] = []
        for name in fit.parameters.keys.sorted() {
            let before = plan.parameterNames.firstIndex(of: name).flatMap { $0 < old.count ? old[$0] : nil }
            let se = fit.standardErrors?[name].map { " ± \(number($0))" } ?? ""
            parts.append("\(name) \(before.map(number) ?? "?") → \(number(fit.parameters[name]!))\(se)")
        }
        let before = fit.rmsBefore[property] ?? .nan, after = fit.rmsAfter[property] ?? .nan
        let message = "Calibration \(id): \(parts.joined(separator: ", ")); RMS of \(property) \(number(before)) → \(number(after)) over \(fit.points) points, "
            + (fit.converged ? "converged" : "not converged") + " after \(fit.iterations) iterations."
        var details: JSONObject = ["simulationId": .string(id), "rmsBefore": .double(finite(before)), "rmsAfter": .double(finite(after)),
                                   "converged": .bool(fit.converged), "iterations": .int(fit.iterations), "points": .int(fit.points)]
        details["parameters"] = .object(JSONObject(fit.parameters.sorted { $0.key < $1.key }.map { ($0.key, JSON.double(finite($0.value))) }))
        if let se = fit.standardErrors {
            details["standardErrors"] = .object(JSONObject(se.sorted { $0.key < $1.key }.map { ($0.key, JSON.double(finite($0.value))) }))
        }
        return DriftAlert.Step(step: "result", at: at, message: message, details: details)
    }

    /// Publishes an open episode again with one more step (`updated`).
    mutating func update(_ watch: inout TwinWatch, key: String, _ alertKey: String, _ alert: DriftAlert, step: DriftAlert.Step,
                         into alerts: inout [DriftAlert]) {
        var alert = alert
        alert.status = .updated
        alert.eventTime = step.at
        alert.story.append(step)
        watch.open[alertKey] = alert
        alerts.append(alert)
        due.insert(key)
    }
}
