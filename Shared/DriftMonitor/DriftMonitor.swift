import Contracts
import Drift
import Foundation
import JSON
import TwinQuery

/// One telemetry reading as the monitor reads it.
public struct Reading: Sendable {
    public var tenant: String
    public var twinId: String
    public var eventId: String
    public var eventTime: Int64
    /// The model the validator checked it against (`id@version`).
    public var model: String?
    public var values: JSONObject

    public init(tenant: String, twinId: String, eventId: String, eventTime: Int64, model: String?, values: JSONObject) {
        self.tenant = tenant
        self.twinId = twinId
        self.eventId = eventId
        self.eventTime = eventTime
        self.model = model
        self.values = values
    }

    public init(_ envelope: TelemetryEnvelope) {
        self.init(tenant: envelope.tenant, twinId: envelope.twinId, eventId: envelope.eventId, eventTime: envelope.eventTime,
                  model: envelope.model, values: envelope.values)
    }

    public var key: String { TwinKey(tenant: tenant, twinId: twinId).description }
}

/// The drift monitor's logic for the twins of one partition, pure (no Kafka, no clock of its own):
/// feed it readings with `observe`, the clock with `tick`, and it answers with `DriftAlert`s.
///
/// Per twin and watched property (a state or output of the twin's behaviour named like a
/// telemetry) the residual is observation − prediction, the prediction running the behaviour from
/// the twin's observed state a horizon earlier over the inputs observed since, with the twin's
/// current parameters. Residuals are centred and scaled by the mean and standard deviation of the
/// first `warmup` of them (frozen until a reset) and fed to the model's detector. Every numeric
/// telemetry is also compared with a reference window taken after the last reset (data drift), and
/// each twin is stale after `staleFactor` reporting intervals without a reading — the model's
/// interval, or the twin's observed one when it reports slower (`TwinWatch.expectedIntervalMs`).
///
/// Alerts have hysteresis: per twin, property and kind at most one episode is open; it is one
/// `raised` and one `resolved` message. A residual episode is clear when the mean standardised
/// residual over `resolveWindow` readings is back under `resolveLevel`, a data episode when an
/// evaluation no longer finds drift; either resolves once it has stayed clear for `resolveAfterMs`
/// of event time (going out again meanwhile is a flap of the same episode: `EpisodeHold`). A stale
/// one resolves when readings are fresh again, and residual and data episodes also at once when the
/// twin is reset (new parameters or model: a recalibration).
public struct DriftMonitor: Sendable {
    /// Why `observe` did what it did.
    public enum Outcome: String, Sendable, Equatable {
        /// Applied (residuals and data drift updated as far as the reading allows).
        case applied
        /// Older than the twin's newest processed reading: skipped and counted.
        case late
        /// An event id seen among the twin's last ones: skipped and counted.
        case repeated
        /// An input offset at or below the last one applied (a replay after a restart): skipped.
        case replayed
        /// The twin is decommissioned.
        case decommissioned
        /// Neither the twin nor the reading names a loaded model.
        case unknownModel
    }

    /// Totals since start, for metrics.
    public struct Counters: Sendable, Equatable {
        public var readings = 0
        public var late = 0
        public var repeated = 0
        public var replayed = 0
        public var decommissioned = 0
        public var unknownModel = 0
        /// Standardised residuals fed to detectors.
        public var detectorUpdates = 0
        /// Residuals skipped because the prediction was not finite.
        public var nonFinite = 0
        /// Data-drift evaluations.
        public var evaluations = 0
        public var resets = 0
        /// Open residual and data episodes that went out of band again during their hold (flaps).
        public var residualFlaps = 0
        public var dataFlaps = 0
    }

    public let settings: DriftSettings
    public let plans: ModelPlans
    var twins: [String: TwinWatch] = [:]
    private var heap = DeadlineHeap()
    public private(set) var counters = Counters()
    /// Twins whose `drift.state.v1` document is due.
    public internal(set) var due: Set<String> = []
    /// Scales frozen since the last `takeFrozenScales()`: (model, property, scale).
    private var frozenScales: [(String, String, Double)] = []
    /// Recalibration requests, commands and outcomes not yet taken (`takeOutbox`), and the twins
    /// waiting for a calibration result (Recalibration.swift).
    var outbox = RecalibrationOutbox()
    var awaiting: Set<String> = []
    // Scratch space of the residual path, reused reading after reading.
    private var predictions: [Double] = []
    private var observations: [Double] = []

    public init(settings: DriftSettings, plans: ModelPlans) {
        self.settings = settings
        self.plans = plans
    }

    // MARK: Readings

    /// Applies one reading of the twin `twin` (nil: not (yet) on `twin.state.v1`; the reading's
    /// model and default parameters apply), read from input offset `offset` at wall-clock `now`.
    /// Appends raised and resolved alerts to `alerts`.
    @discardableResult
    public mutating func observe(_ reading: Reading, twin: TwinInfo? = nil, offset: Int64? = nil, now: Int64, into alerts: inout [DriftAlert]) -> Outcome {
        let key = reading.key
        counters.readings += 1
        if twin?.decommissioned == true { counters.decommissioned += 1; return .decommissioned }
        guard let plan = plans.plan(twin?.model ?? reading.model) else { counters.unknownModel += 1; return .unknownModel }
        let parameters = (twin?.model == plan.ref ? twin?.vector : nil) ?? (twin.map { plan.parameters($0.parameters) } ?? plan.defaultParameters)
        // The table is moved out while one twin is modified in place through it (no copy of the
        // twin's buffers per reading; the rest of `self` stays free for counters and timers).
        var table = twins
        twins = [:]
        defer { twins = table }
        if table.index(forKey: key) == nil {
            var fresh = TwinWatch(plan: plan, parameters: parameters, settings: settings)
            fresh.stagger(key: key, settings: settings)
            table[key] = fresh
        }
        return apply(reading, key: key, to: &table[key]!, plan: plan, parameters: parameters, offset: offset, now: now, into: &alerts)
    }

    private mutating func apply(_ reading: Reading, key: String, to watch: inout TwinWatch, plan: ModelPlan, parameters: [Double], offset: Int64?,
                                now: Int64, into alerts: inout [DriftAlert]) -> Outcome {
        if let offset, offset <= watch.lastOffset { counters.replayed += 1; return .replayed }
        let t = reading.eventTime
        if let last = watch.lastEventTime, t < last {
            watch.late += 1; counters.late += 1
            if let offset { watch.lastOffset = offset }
            return .late
        }
        let idHash = TwinWatch.hash(reading.eventId)
        if watch.recentIds.contains(idHash) {
            watch.repeated += 1; counters.repeated += 1
            if let offset { watch.lastOffset = offset }
            return .repeated
        }
        let parameters = watch.reconcile(parameters)
        if watch.model != plan.ref || watch.parameters != parameters {
            let what = watch.model != plan.ref ? "the twin's model changed from \(watch.model) to \(plan.ref)"
                : "the twin's parameters changed (\(Self.describeChange(plan, from: watch.parameters, to: parameters)))"
            watch.model = plan.ref
            watch.parameters = parameters
            reset(&watch, key: key, plan: plan, at: t, reason: what, into: &alerts)
        }
        if let last = watch.lastEventTime {
            watch.note(gap: t - last)
        } else if watch.settleUntil == nil {
            // The twin's first reading: data drift's reference waits for the asset to settle.
            watch.settleUntil = t + settings.settleMs
        }
        watch.lastEventTime = t
        if let offset { watch.lastOffset = offset }
        if watch.recentIds.count < settings.recentEventIds { watch.recentIds.append(idHash) } else {
            watch.recentIds.removeFirst()
            watch.recentIds.append(idHash)
        }

        // Freshness: a reading makes a stale twin fresh again once it is recent by the same rule.
        let staleKey = TwinWatch.staleKey
        if !watch.open.isEmpty, let open = watch.open[staleKey], !isStale(watch, plan: plan, last: t, now: now) {
            resolve(&watch, staleKey, open, statistic: Double(max(0, now - t)), at: now,
                    message: "\(reading.twinId) reports again (a reading of \(Timestamp.format(t))); it had been silent since \(open.changeStartedAt.map(Timestamp.format) ?? "?").",
                    into: &alerts, key: key)
        }
        // Re-armed lazily (a reading moves only the last event time), except when the limit has
        // shrunk: a twin's first gaps bring its expected interval down from the first-reading floor.
        let deadline = staleAfter(watch, plan: plan, last: t)
        if watch.armedDeadline.map({ deadline < $0 }) ?? true {
            heap.push(deadline, key)
            watch.armedDeadline = deadline
        }

        let values = reading.values
        let current = plan.trackedValues({ values[$0]?.doubleValue }, previous: watch.history.newest)
        if plan.predicts, let anchor = watch.history.anchor(atOrBefore: t - plan.horizonMs) {
            if predictions.count < plan.watched.count {
                predictions = [Double](repeating: 0, count: plan.watched.count)
                observations = [Double](repeating: .nan, count: plan.watched.count)
            }
            var needed: UInt64 = 0
            for (w, watched) in plan.watched.enumerated() {
                let x = values[watched.name]?.doubleValue ?? .nan
                observations[w] = x
                if !x.isNaN { needed |= plan.needs[w] }
            }
            if needed != 0 {
                plan.predict(history: watch.history, anchor: anchor, to: t, current: current, parameters: watch.parameters, needed: needed, into: &predictions)
                for w in plan.watched.indices where !observations[w].isNaN {
                    residual(&watch, w, observations[w] - predictions[w], plan: plan, reading: reading, key: key, into: &alerts)
                }
            }
        }
        watch.history.append(time: t, current)
        if !watch.open.isEmpty || watch.recalibration != nil {
            followRecalibration(&watch, key: key, plan: plan, reading: reading, now: now, into: &alerts)
        }
        if settings.evalEvery > 0, t >= watch.settleUntil ?? .min {
            for (i, name) in watch.dataNames.enumerated() {
                guard let x = values[name]?.doubleValue else { continue }
                watch.data[i].add(x)
                if watch.data[i].sinceEvaluation >= settings.evalEvery {
                    evaluate(&watch, i, plan: plan, reading: reading, key: key, into: &alerts)
                }
            }
        }
        watch.sinceWrite += 1
        if watch.sinceWrite >= settings.stateEvery { due.insert(key) }
        return .applied
    }

    private mutating func residual(_ watch: inout TwinWatch, _ w: Int, _ r: Double, plan: ModelPlan, reading: Reading, key twinKey: String,
                                   into alerts: inout [DriftAlert]) {
        let name = plan.watched[w].name
        // A prediction that overflowed (a model diverging under its parameters) says nothing: it must
        // not reach the warm-up, whose mean and scale it would turn into NaN for good.
        guard r.isFinite else { counters.nonFinite += 1; return }
        // The common case works on the watch in place: a copy would share the detector's and the event
        // times' buffers, and its first write would copy them (two allocations a reading).
        guard let center = watch.residuals[w].center, let scale = watch.residuals[w].scale else {
            if watch.residuals[w].warm(r, needed: settings.warmup) {
                frozenScales.append((plan.ref, name, watch.residuals[w].scale!))
                due.insert(twinKey)
            }
            return
        }
        let z = (r - center) / scale
        let t = reading.eventTime
        let alarm = watch.residuals[w].feed(z, at: t, resolveWindow: settings.resolveWindow)
        counters.detectorUpdates += 1
        guard alarm || !watch.open.isEmpty else { return }  // the common case: nothing to decide
        var rw = watch.residuals[w]
        defer { watch.residuals[w] = rw }
        let key = TwinWatch.key(.residual, name)
        let unit = plan.watched[w].unit.map { " " + $0 } ?? ""
        if let open = watch.open[key] {
            rw.blockSum += z
            rw.blockCount += 1
            guard rw.blockCount >= settings.resolveWindow else { return }
            let mean = rw.blockSum / Double(rw.blockCount)
            rw.blockSum = 0
            rw.blockCount = 0
            let window = settings.resolveWindow
            if let held = judge(&rw.hold, clear: abs(mean) < settings.resolveLevel, at: t, watch: &watch, key: twinKey, alertKey: key, open: open,
                                outOfBand: "its residual averages \(Self.sigma(mean)) over the last \(window) readings", into: &alerts) {
                resolve(&watch, key, open, statistic: mean, at: t,
                        message: "\(name) of \(reading.twinId) follows model \(plan.ref) again: over the last \(window) readings its residual averages \(Self.sigma(mean)), under ±\(Self.number(settings.resolveLevel))σ."
                            + cleared(held), details: held.details, into: &alerts, key: twinKey)
            }
        } else if alarm {
            let cut = rw.detector.cut
            let started = cut.flatMap { rw.time(ofIndex: $0.index) }
            let mean = cut?.meanAfter ?? rw.recentMean
            let since = started.map { ", since about \(Timestamp.format($0))" } ?? ""
            let message = "\(name) of \(reading.twinId) no longer follows model \(plan.ref)\(since): its residual averages \(Self.sigma(mean)) (\(Self.number(mean * scale))\(unit)) where it stayed within ±\(Self.number(scale))\(unit) while the model was right. "
                + "Check the asset (fouling, wear, a failed component, a moved or stuck sensor), then recalibrate the model's parameters so the twin tells the truth again."
            var details: JSONObject = ["detector": .string(rw.detector.name), "meanSigma": .double(mean), "scale": .double(scale),
                                       "center": .double(center), "residuals": .int(rw.fed)]
            if let started { details["cut"] = .string(Timestamp.format(started)) }
            if let cut { details["cutIndex"] = .int(cut.index) }
            raise(&watch, key: twinKey, kind: .residual, property: name, model: plan.ref, detector: rw.detector.name, statistic: mean,
                  threshold: settings.resolveLevel, window: rw.detector.window, started: started, at: t, message: message, scale: scale,
                  details: details, into: &alerts)
            rw.blockSum = 0
            rw.blockCount = 0
            rw.hold = nil
        }
    }

    /// What an episode's hold came to when it resolved: clear for how long, after how many flaps.
    struct Held {
        var clearMs: Int64
        var flaps: Int
        var details: JSONObject { ["clearForMs": .int(Int(clearMs)), "flaps": .int(flaps)] }
    }

    /// Passes a verdict on an open residual or data episode (`clear`: its condition is back in band)
    /// through its hold. Going out of band during a clear spell is a flap: counted, and the first told
    /// in an `updated` step (`outOfBand` says how), later ones only in the resolve step. Returns
    /// non-nil when the episode resolves now. The hold travels with the twin's periodic state
    /// document, not one of its own: a flapping fleet would write a document per verdict, and a
    /// restart that loses the last few readings of a hold only resolves that much later.
    private mutating func judge(_ hold: inout EpisodeHold?, clear: Bool, at t: Int64, watch: inout TwinWatch, key: String, alertKey: String,
                                open: DriftAlert, outOfBand: @autoclosure () -> String, into alerts: inout [DriftAlert]) -> Held? {
        switch EpisodeHold.judge(&hold, clear: clear, at: t, holdMs: settings.resolveAfterMs) {
        case .open:
            return nil
        case .resolve(let clearMs):
            defer { hold = nil }
            return Held(clearMs: clearMs, flaps: hold?.flaps ?? 0)
        case .recurred(let clearMs):
            if open.kind == .data { counters.dataFlaps += 1 } else { counters.residualFlaps += 1 }
            guard hold?.flaps == 1 else { return nil }
            let what = (open.property.map { $0 + " of " } ?? "") + open.twinId
            update(&watch, key: key, alertKey, open, step: DriftAlert.Step(
                step: "recurred", at: t,
                message: "\(what) is out again after \(Self.duration(clearMs)) back in band: \(outOfBand()). The episode stays open until it has been clear for \(Self.duration(settings.resolveAfterMs)) (DRIFT_RESOLVE_AFTER); further flaps are counted, not told.",
                details: ["clearForMs": .int(Int(clearMs))]), into: &alerts)
            return nil
        }
    }

    /// How an episode's hold ended, for its resolve message ("" without a hold).
    private func cleared(_ held: Held) -> String {
        guard settings.resolveAfterMs > 0 else { return "" }
        let flaps = held.flaps == 0 ? "" : "; it went out again \(held.flaps) time\(held.flaps == 1 ? "" : "s") meanwhile, one episode all along"
        return " Resolved after \(Self.duration(held.clearMs)) clear\(flaps)."
    }

    private mutating func evaluate(_ watch: inout TwinWatch, _ i: Int, plan: ModelPlan, reading: Reading, key twinKey: String, into alerts: inout [DriftAlert]) {
        watch.data[i].sinceEvaluation = 0
        guard let report = watch.data[i].detector.evaluate() else { return }
        counters.evaluations += 1
        let t = reading.eventTime
        watch.data[i].lastMethod = report.method.rawValue
        watch.data[i].lastStatistic = report.statistic
        watch.data[i].lastThreshold = report.threshold
        watch.data[i].lastEvaluatedAt = t
        let name = watch.dataNames[i]
        let key = TwinWatch.key(.data, name)
        if let open = watch.open[key] {
            var hold = watch.data[i].hold
            let held = judge(&hold, clear: !report.driftDetected, at: t, watch: &watch, key: twinKey, alertKey: key, open: open,
                             outOfBand: "\(report.method.rawValue) \(Self.number(report.statistic)) against \(Self.number(report.threshold)), current mean \(Self.number(report.current.mean))",
                             into: &alerts)
            watch.data[i].hold = hold
            guard let held else { return }
            resolve(&watch, key, open, statistic: report.statistic, at: t,
                    message: "\(name) of \(reading.twinId) looks like its reference window again (\(report.method.rawValue) \(Self.number(report.statistic)); current mean \(Self.number(report.current.mean)), reference \(Self.number(report.reference.mean)))."
                        + cleared(held), details: held.details, into: &alerts, key: twinKey)
        } else if report.driftDetected {
            let relation = report.method == .kolmogorovSmirnov ? "p = \(Self.number(report.statistic)) ≤ \(Self.number(report.threshold))"
                : "\(Self.number(report.statistic)) ≥ \(Self.number(report.threshold))"
            let message = "\(name) of \(reading.twinId) no longer looks like its reference window (\(report.method.rawValue) \(relation)): its last \(report.current.count) values have mean \(Self.number(report.current.mean)) and spread \(Self.number(report.current.standardDeviation)) against \(Self.number(report.reference.mean)) and \(Self.number(report.reference.standardDeviation)) after the twin's last reset. "
                + "Check whether the asset's operation changed on purpose (then reset the twin to take a new reference) or its sensor drifts or sticks."
            let details: JSONObject = ["method": .string(report.method.rawValue), "psi": .double(report.psi), "ksStatistic": .double(report.ksStatistic),
                                       "ksPValue": .double(report.ksPValue), "wasserstein": .double(report.normalisedWasserstein),
                                       "jensenShannon": .double(report.jensenShannon), "referenceMean": .double(Self.finite(report.reference.mean)),
                                       "currentMean": .double(Self.finite(report.current.mean))]
            raise(&watch, key: twinKey, kind: .data, property: name, model: plan.ref, detector: report.method.rawValue, statistic: report.statistic,
                  threshold: report.threshold, window: report.current.count, started: nil, at: t, message: message, scale: nil,
                  details: details, into: &alerts)
            watch.data[i].hold = nil
        }
    }

    // MARK: Clock

    /// Raises stale alerts for twins silent for more than `staleFactor` reporting intervals at
    /// wall-clock `now`. While the monitor itself lags behind its input (`lagging`), nothing is
    /// judged: it would blame the twins for its own delay.
    public mutating func tick(now: Int64, lagging: Bool = false, into alerts: inout [DriftAlert]) {
        guard !lagging else { return }
        while let top = heap.peek, top.deadline < now {
            heap.pop()
            // An entry replaced by an earlier deadline is dropped when it comes up.
            guard var watch = twins[top.key], watch.armedDeadline == top.deadline else { continue }
            defer { twins[top.key] = watch }
            watch.armedDeadline = nil
            guard let plan = plans.plan(watch.model), let last = watch.lastEventTime else { continue }
            guard isStale(watch, plan: plan, last: last, now: now) else {
                let deadline = staleAfter(watch, plan: plan, last: last)
                heap.push(deadline, top.key)
                watch.armedDeadline = deadline
                continue
            }
            let key = TwinWatch.key(.stale, nil)
            guard watch.open[key] == nil, let twin = TwinKey(top.key) else { continue }
            let expected = expectedInterval(watch, plan: plan)
            let limit = staleLimit(watch, plan: plan)
            let pace = expected > plan.intervalMs ? "its own pace of \(Self.duration(expected)) (the model declares \(Self.duration(plan.intervalMs)))" : Self.duration(plan.intervalMs)
            let message = "\(twin.twinId) has sent no reading since \(Timestamp.format(last)) (\(Self.duration(now - last)), more than \(Self.number(settings.staleFactor)) reporting intervals of \(pace)): "
                + "check the device, its power, its network or its gateway; its twin shows old values meanwhile."
            raise(&watch, key: top.key, kind: .stale, property: nil, model: plan.ref, detector: "freshness", statistic: Double(now - last),
                  threshold: limit, window: Int(expected), started: last, at: now, message: message, scale: nil,
                  details: ["lastReading": .string(Timestamp.format(last)), "reportingIntervalMs": .int(Int(plan.intervalMs)),
                            "expectedIntervalMs": .int(Int(expected)), "staleFactor": .double(settings.staleFactor)], into: &alerts)
        }
    }

    /// The interval a twin's next reading is expected within (ms).
    func expectedInterval(_ watch: TwinWatch, plan: ModelPlan) -> Int64 {
        watch.expectedIntervalMs(model: plan.intervalMs, firstMs: settings.staleFirstIntervalMs)
    }

    /// Silence (ms) after which a twin is stale.
    func staleLimit(_ watch: TwinWatch, plan: ModelPlan) -> Double {
        watch.staleLimitMs(model: plan.intervalMs, factor: settings.staleFactor, firstMs: settings.staleFirstIntervalMs)
    }

    /// When a twin whose newest reading is at `last` becomes stale.
    func staleAfter(_ watch: TwinWatch, plan: ModelPlan, last: Int64) -> Int64 {
        last + Int64(staleLimit(watch, plan: plan).rounded(.down))
    }

    /// Whether a twin whose newest reading is at `last` is stale at `now` (a model without an
    /// interval: never).
    func isStale(_ watch: TwinWatch, plan: ModelPlan, last: Int64, now: Int64) -> Bool {
        guard plan.intervalMs > 0 else { return false }
        return Double(now) - Double(last) > staleLimit(watch, plan: plan)
    }

    // MARK: Resets and forgetting

    /// Restarts a twin's detectors, scales and reference windows (after a recalibration) and
    /// resolves its open residual and data episodes; `reason` goes into their story.
    public mutating func reset(key: String, at time: Int64, reason: String, into alerts: inout [DriftAlert]) {
        guard var watch = twins[key], let plan = plans.plan(watch.model) else { return }
        reset(&watch, key: key, plan: plan, at: time, reason: reason, into: &alerts)
        twins[key] = watch
    }

    mutating func reset(_ watch: inout TwinWatch, key: String, plan: ModelPlan, at time: Int64, reason: String, into alerts: inout [DriftAlert]) {
        counters.resets += 1
        noteProposalApplied(&watch, at: time)
        watch.resetWatches(plan: plan, settings: settings)
        for (openKey, open) in watch.open.sorted(by: { $0.key < $1.key }) where open.kind != .stale {
            resolve(&watch, openKey, open, statistic: 0, at: time, step: "reset",
                    message: "Resolved by a reset: \(reason); detectors, scales and reference windows start again.", into: &alerts, key: key)
        }
        due.insert(key)
    }

    /// Forgets a decommissioned twin: resolves every open episode and drops its state. True when
    /// the twin was held (its `drift.state.v1` document becomes a tombstone).
    @discardableResult
    public mutating func forget(key: String, at time: Int64, into alerts: inout [DriftAlert]) -> Bool {
        guard var watch = twins.removeValue(forKey: key) else { return false }
        for (openKey, open) in watch.open.sorted(by: { $0.key < $1.key }) {
            resolve(&watch, openKey, open, statistic: 0, at: time, step: "resolved",
                    message: "Resolved: the twin was decommissioned.", into: &alerts, key: key)
        }
        due.remove(key)
        awaiting.remove(key)
        return true
    }

    // MARK: Alerts

    private mutating func raise(_ watch: inout TwinWatch, key: String, kind: DriftAlert.Kind, property: String?, model: String, detector: String,
                                statistic: Double, threshold: Double, window: Int, started: Int64?, at time: Int64, message: String,
                                scale: Double?, details: JSONObject, into alerts: inout [DriftAlert]) {
        guard let twin = TwinKey(key) else { return }
        let alert = DriftAlert(alertId: DriftAlert.id(tenant: twin.tenant, twinId: twin.twinId, kind: kind, property: property, raisedAt: time),
                               status: .raised, kind: kind, tenant: twin.tenant, twinId: twin.twinId, model: model, property: property,
                               detector: detector, statistic: Self.finite(statistic), threshold: threshold, window: window, changeStartedAt: started,
                               eventTime: time, message: message, scale: scale,
                               story: [DriftAlert.Step(step: "detected", at: time, message: message, details: details)])
        watch.open[TwinWatch.key(kind, property)] = alert
        alerts.append(alert)
        due.insert(key)
    }

    private mutating func resolve(_ watch: inout TwinWatch, _ openKey: String, _ open: DriftAlert, statistic: Double, at time: Int64, step: String = "resolved",
                                  message: String, details: JSONObject = [:], into alerts: inout [DriftAlert], key: String) {
        var alert = open
        alert.status = .resolved
        alert.statistic = Self.finite(statistic)
        alert.eventTime = time
        alert.message = message
        if var r = alert.recalibration, r.state == "collecting" || r.state == "requested" {
            // The episode closed before its calibration was applied: the story says so, and the
            // pending recalibration is dropped with the episode (followRecalibration).
            r.state = "notApplied"
            r.reason = "episode_resolved"
            alert.recalibration = r
            alert.story.append(DriftAlert.Step(step: "notApplied", at: time,
                                               message: "Recalibration dropped: the episode closed before a calibration was applied.",
                                               details: ["reason": .string("episode_resolved")]))
        }
        var stepDetails = details
        stepDetails["statistic"] = .double(Self.finite(statistic))
        alert.story.append(DriftAlert.Step(step: step, at: time, message: message, details: stepDetails))
        if step != "resolved" {
            alert.story.append(DriftAlert.Step(step: "resolved", at: time, message: "Episode closed."))
        }
        watch.open[openKey] = nil
        alerts.append(alert)
        due.insert(key)
    }

    // MARK: State documents

    /// Takes the set of twins whose `drift.state.v1` document is due.
    public mutating func takeDue() -> Set<String> {
        defer { due = [] }
        for key in due { twins[key]?.sinceWrite = 0 }
        return due
    }

    /// Takes the scales frozen since the last call, for the residual-scale metric.
    public mutating func takeFrozenScales() -> [(model: String, property: String, scale: Double)] {
        defer { frozenScales = [] }
        return frozenScales.map { ($0.0, $0.1, $0.2) }
    }

    /// The twin's `drift.state.v1` document at wall-clock `now`; nil when the twin is not held.
    public func document(key: String, now: Int64) -> DriftState? {
        guard let watch = twins[key], let twin = TwinKey(key) else { return nil }
        var properties: [String: DriftState.Property] = [:]
        for (w, name) in watch.watchedNames.enumerated() {
            let rw = watch.residuals[w]
            properties[name, default: .init()].residual = DriftState.Residual(
                detector: rw.detector.name, statistic: Self.finite(rw.detector.statistic), threshold: rw.detector.threshold, window: rw.detector.window,
                residuals: rw.fed, warmup: rw.warmCount, warmupNeeded: settings.warmup, center: rw.center, scale: rw.scale, detections: rw.detections)
        }
        for (i, name) in watch.dataNames.enumerated() {
            let d = watch.data[i]
            properties[name, default: .init()].data = DriftState.Data(
                reference: Self.summary(d.detector.reference.summary), current: Self.summary(d.detector.current.summary), method: d.lastMethod,
                statistic: d.lastStatistic, threshold: d.lastThreshold, evaluatedAt: d.lastEvaluatedAt)
        }
        let monitor = (try? StateCoding.encode(watch)) ?? Array("{}".utf8)
        return DriftState(tenant: twin.tenant, twinId: twin.twinId, model: watch.model, updatedAt: now, lastEventTime: watch.lastEventTime,
                          stale: watch.open[TwinWatch.key(.stale, nil)] != nil,
                          properties: properties.sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
                          openAlerts: watch.open.sorted { $0.key < $1.key }.map(\.value), monitorFormat: Self.monitorFormat, monitor: monitor)
    }

    /// Version of the `monitor` object this code writes and reads.
    public static let monitorFormat = 1

    /// Restores a twin from its `drift.state.v1` document (on partition assignment): its detectors
    /// continue exactly, and its open episodes stay open (so none is lost or raised again).
    public mutating func restore(_ document: DriftState) throws {
        try restore(key: document.key, format: document.monitorFormat, openAlerts: document.openAlerts) {
            try StateCoding.decode(TwinWatch.self, from: document.monitor)
        }
    }

    /// Restores a twin from the bytes of its `drift.state.v1` document, as `restore(_:)` does, parsing
    /// them once. Why: `DriftState` keeps its `monitor` object as text, so going through it parsed
    /// the monitor twice and wrote it once in between, most of a restore's cost; the document's
    /// public part (summaries for the query API) is not read here.
    public mutating func restore(bytes: [UInt8]) throws {
        let json: JSON
        do { json = try JSON(parsing: bytes) } catch {
            throw ContractError(code: "invalid_json", pointer: "", message: "the drift.state document does not parse: \(error)")
        }
        guard case .object(let o) = json, case .string(let tenant)? = o["tenant"], case .string(let twinId)? = o["twinId"],
              let format = o["monitorFormat"]?.intValue, case .array(let alerts)? = o["openAlerts"], let monitor = o["monitor"] else {
            throw ContractError(code: "invalid_value", pointer: "", message: "a drift.state document needs tenant, twinId, monitorFormat, openAlerts and monitor")
        }
        let openAlerts = try alerts.enumerated().map { (i, a) throws(ContractError) in try DriftAlert(json: a, pointer: "/openAlerts/\(i)") }
        try restore(key: TwinKey(tenant: tenant, twinId: twinId).description, format: format, openAlerts: openAlerts) {
            try StateCoding.decode(TwinWatch.self, from: monitor)
        }
    }

    private mutating func restore(key: String, format: Int, openAlerts: [DriftAlert], watch decode: () throws -> TwinWatch) throws {
        guard format == Self.monitorFormat else {
            throw ContractError(code: "unsupported_format", pointer: "/monitorFormat", message: "monitor format \(format) is not \(Self.monitorFormat)")
        }
        var watch: TwinWatch
        do {
            watch = try decode()
        } catch {
            throw ContractError(code: "invalid_value", pointer: "/monitor", message: "the monitor state does not decode: \(error)")
        }
        for alert in openAlerts where alert.status.isOpen {
            watch.open[TwinWatch.key(alert.kind, alert.property)] = alert
        }
        if let plan = plans.plan(watch.model), watch.watchedNames != plan.watched.map(\.name) || watch.history.width != plan.tracked.count {
            // The model file changed under the saved state: keep the episodes, restart the watches.
            watch.resetWatches(plan: plan, settings: settings)
        }
        watch.armedDeadline = nil
        if let last = watch.lastEventTime, let plan = plans.plan(watch.model) {
            let deadline = staleAfter(watch, plan: plan, last: last)
            heap.push(deadline, key)
            watch.armedDeadline = deadline
        }
        if watch.recalibration?.simulationId != nil { awaiting.insert(key) }
        // Not saved: a restored fleet starts its cycles spread, as a new one does.
        watch.sinceWrite = TwinWatch.phase(of: key, period: settings.stateEvery)
        twins[key] = watch
    }

    /// Drops every twin (a revoked partition).
    public mutating func removeAll() {
        twins = [:]
        heap = DeadlineHeap()
        due = []
        awaiting = []
    }

    // MARK: Introspection

    public var twinCount: Int { twins.count }
    /// Whether the twin is held.
    public func holds(_ key: String) -> Bool { twins[key] != nil }
    /// Event time of the newest reading of a twin.
    public func lastEventTime(_ key: String) -> Int64? { twins[key]?.lastEventTime }
    /// Open episodes of one twin.
    public func openAlerts(_ key: String) -> [DriftAlert] { twins[key]?.open.sorted { $0.key < $1.key }.map(\.value) ?? [] }
    /// Open episodes by kind.
    public var openByKind: [DriftAlert.Kind: Int] {
        var counts: [DriftAlert.Kind: Int] = [:]
        for watch in twins.values { for alert in watch.open.values { counts[alert.kind, default: 0] += 1 } }
        return counts
    }
    /// Estimated bytes held per twin and in all.
    public var estimatedBytes: Int { twins.values.reduce(0) { $0 + $1.estimatedBytes } }

    // MARK: Formatting

    static func finite(_ x: Double) -> Double { x.isFinite ? x : 0 }

    static func summary(_ s: WindowSummary) -> JSONObject {
        var o: JSONObject = ["count": .int(s.count)]
        for (name, v) in [("mean", s.mean), ("standardDeviation", s.standardDeviation), ("min", s.min), ("max", s.max), ("p05", s.p05),
                          ("p25", s.p25), ("median", s.median), ("p75", s.p75), ("p95", s.p95)] where v.isFinite {
            o[name] = .double(v)
        }
        return o
    }

    static func number(_ x: Double) -> String {
        guard x.isFinite else { return "n/a" }
        if x != 0 && (abs(x) >= 1e6 || abs(x) < 1e-3) { return String(format: "%.3g", x) }
        var text = String(format: "%.3f", x)
        while text.hasSuffix("0") { text.removeLast() }
        if text.hasSuffix(".") { text.removeLast() }
        return text
    }

    static func sigma(_ z: Double) -> String { (z >= 0 ? "+" : "") + number(z) + "σ" }

    static func duration(_ ms: Int64) -> String {
        if ms % 3_600_000 == 0 && ms >= 3_600_000 { return "\(ms / 3_600_000) h" }
        if ms % 60_000 == 0 && ms >= 60_000 { return "\(ms / 60_000) min" }
        if ms >= 1_000 { return number(Double(ms) / 1000) + " s" }
        return "\(ms) ms"
    }

    static func describeChange(_ plan: ModelPlan, from old: [Double], to new: [Double]) -> String {
        var parts: [String] = []
        for (i, name) in plan.parameterNames.enumerated() where i < old.count && i < new.count && old[i] != new[i] {
            parts.append("\(name) \(number(old[i])) → \(number(new[i]))")
        }
        return parts.isEmpty ? "new parameters" : parts.joined(separator: ", ")
    }
}

/// Twins by the time they go stale: a binary min-heap with one live entry per watched twin, re-armed
/// lazily (a reading only moves the twin's last event time; the entry is checked and pushed again
/// when it comes due), so a reading costs no heap operation (unless its twin's limit shrank: a
/// replaced entry is dropped when it comes up) and a million twins cost about a million entries.
struct DeadlineHeap: Sendable {
    private(set) var entries: [(deadline: Int64, key: String)] = []

    var peek: (deadline: Int64, key: String)? { entries.first }
    var count: Int { entries.count }

    mutating func push(_ deadline: Int64, _ key: String) {
        entries.append((deadline, key))
        var i = entries.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard entries[i].deadline < entries[parent].deadline else { break }
            entries.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() {
        guard !entries.isEmpty else { return }
        entries.swapAt(0, entries.count - 1)
        entries.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var smallest = i
            if l < entries.count && entries[l].deadline < entries[smallest].deadline { smallest = l }
            if r < entries.count && entries[r].deadline < entries[smallest].deadline { smallest = r }
            guard smallest != i else { break }
            entries.swapAt(i, smallest)
            i = smallest
        }
    }
}
