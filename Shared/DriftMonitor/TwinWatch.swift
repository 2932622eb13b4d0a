import Contracts
import Drift

/// The readings a prediction starts from and runs over: a bounded ring of (event time, tracked
/// values), oldest first. At most one entry per `minimumSpacingMs` of event time is kept (a
/// reading closer to the last kept one is not stored; its inputs take effect at the next kept
/// one), so `capacity` entries always reach a horizon back whatever the reporting rate.
struct History: Codable, Equatable, Sendable {
    let capacity: Int
    let width: Int
    let minimumSpacingMs: Int64
    private(set) var times: [Int64] = []
    private(set) var values: [Double] = []
    private var head = 0

    init(capacity: Int, width: Int, minimumSpacingMs: Int64) {
        self.capacity = capacity
        self.width = width
        self.minimumSpacingMs = minimumSpacingMs
    }

    var count: Int { times.count }
    var isEmpty: Bool { times.isEmpty }

    private func physical(_ i: Int) -> Int {
        let p = head + i
        return p >= times.count ? p - times.count : p
    }

    /// Event time of logical entry `i` (0 is the oldest).
    func time(_ i: Int) -> Int64 { times[physical(i)] }

    /// The logical index after `i`, or -1.
    func next(_ i: Int) -> Int { i + 1 < times.count ? i + 1 : -1 }

    /// Calls `body` with entry `i`'s tracked values.
    func withEntry<R>(_ i: Int, _ body: (ArraySlice<Double>) -> R) -> R {
        let p = physical(i) * width
        return body(values[p..<(p + width)])
    }

    /// The newest entry's values, if any.
    var newest: ArraySlice<Double>? {
        guard !times.isEmpty else { return nil }
        let p = physical(times.count - 1) * width
        return values[p..<(p + width)]
    }

    /// The newest entry at or before `cutoff`: where a prediction for `cutoff + horizon` starts.
    func anchor(atOrBefore cutoff: Int64) -> Int? {
        var i = times.count - 1
        while i >= 0 {
            if time(i) <= cutoff { return i }
            i -= 1
        }
        return nil
    }

    /// Keeps a reading unless it is closer than `minimumSpacingMs` to the newest kept one.
    mutating func append(time: Int64, _ entry: [Double]) {
        if let last = times.isEmpty ? nil : self.time(times.count - 1), time - last < minimumSpacingMs { return }
        if times.count < capacity {
            times.append(time)
            values.append(contentsOf: entry)
        } else {
            times[head] = time
            values.replaceSubrange((head * width)..<((head + 1) * width), with: entry)
            head += 1
            if head == capacity { head = 0 }
        }
    }

    var estimatedBytes: Int { 64 + times.capacity * 8 + values.capacity * 8 }
}

/// The detector a model's standardised residuals go to.
enum ResidualDetector: Codable, Equatable, Sendable {
    case adwin(ADWIN)
    case cusum(CUSUM)
    case pageHinkley(PageHinkley)

    init(_ kind: DriftSettings.Detector) {
        switch kind {
        case .adwin: self = .adwin(ADWIN())
        case .cusum: self = .cusum(CUSUM())  // fed z-scores: no standardisation of its own
        case .pageHinkley: self = .pageHinkley(PageHinkley())
        }
    }

    var name: String {
        switch self {
        case .adwin: "adwin"
        case .cusum: "cusum"
        case .pageHinkley: "pageHinkley"
        }
    }

    mutating func update(_ z: Double) -> Bool {
        // `consume`: the detector moves out and back, so its buffers stay uniquely referenced and are
        // updated in place (a copy of the payload would make the next write copy them).
        switch consume self {
        case .adwin(var d): let r = d.update(z); self = .adwin(d); return r
        case .cusum(var d): let r = d.update(z); self = .cusum(d); return r
        case .pageHinkley(var d): let r = d.update(z); self = .pageHinkley(d); return r
        }
    }

    var statistic: Double {
        switch self {
        case .adwin(let d): d.statistic
        case .cusum(let d): d.statistic
        case .pageHinkley(let d): d.statistic
        }
    }

    var threshold: Double {
        switch self {
        case .adwin(let d): d.threshold
        case .cusum(let d): d.threshold
        case .pageHinkley(let d): d.threshold
        }
    }

    /// Values the detector's decision rests on: ADWIN's window, else the values since creation.
    var window: Int {
        switch self {
        case .adwin(let d): d.width
        case .cusum(let d): d.acceptedCount
        case .pageHinkley(let d): d.acceptedCount
        }
    }

    /// ADWIN's estimate of where the change began (accepted-value index) and the new regime's mean.
    var cut: (index: Int, meanAfter: Double)? {
        if case .adwin(let d) = self, let c = d.lastCut { return (c.firstRetainedIndex, c.meanAfter) }
        return nil
    }

    var estimatedBytes: Int {
        switch self {
        case .adwin(let d): 160 + d.rows * 2 * (d.configuration.maxBuckets + 1) * 8 + 4 * 2 * 8
        case .cusum, .pageHinkley: 120
        }
    }
}

/// The residual watch of one property: warm-up scale, detector, the event times needed to place
/// a cut, and the running block mean that decides when an open episode resolves.
struct ResidualWatch: Codable, Equatable, Sendable {
    /// Event times of the last `recentTimes` residuals fed to the detector (to map ADWIN's cut, an
    /// index, to an event time); older cuts are interpolated from the first residual's time.
    static let recentTimes = 32

    var warmCount = 0
    var warmMean = 0.0
    var warmM2 = 0.0
    var center: Double?
    var scale: Double?
    var detector: ResidualDetector
    /// Residuals fed to the detector since the last reset (its accepted-value index).
    var fed = 0
    var firstTime: Int64?
    var times: [Int64] = []
    var detections = 0
    /// Exponentially weighted mean of z (span `DRIFT_RESOLVE_WINDOW`): the figure alerts quote.
    var recentMean = 0.0
    /// z summed over the current resolution block of an open episode.
    var blockSum = 0.0
    var blockCount = 0
    /// The open episode's hold (nil: none open, or never clear yet; absent in states written before it).
    var hold: EpisodeHold?

    init(detector: DriftSettings.Detector) {
        self.detector = ResidualDetector(detector)
    }

    /// Adds a warm-up residual; true when the scale has just been frozen.
    mutating func warm(_ r: Double, needed: Int) -> Bool {
        warmCount += 1
        let delta = r - warmMean
        warmMean += delta / Double(warmCount)
        warmM2 += delta * (r - warmMean)
        guard warmCount >= needed else { return false }
        center = warmMean
        let sd = (warmM2 / Double(max(1, warmCount - 1))).squareRoot()
        // A noiseless twin must not divide by zero: floor relative to the residual's size.
        scale = max(sd, 1e-9 * max(1, abs(warmMean)))
        return true
    }

    /// Event time of detector index `index` (exact for the last `recentTimes`, interpolated between
    /// the first residual's time and the oldest kept one before that).
    func time(ofIndex index: Int) -> Int64? {
        let oldestKept = fed - times.count
        if index >= oldestKept, index < fed { return times[index % Self.recentTimes] }
        guard let firstTime, !times.isEmpty, oldestKept > 0 else { return firstTime }
        let oldest = times[oldestKept % Self.recentTimes]
        return firstTime + Int64(Double(oldest - firstTime) * Double(max(0, index)) / Double(oldestKept))
    }

    /// Feeds a standardised residual of event time `time` to the detector; true on an alarm.
    mutating func feed(_ z: Double, at time: Int64, resolveWindow: Int) -> Bool {
        remember(time: time)
        let alarm = detector.update(z)
        fed += 1
        recentMean += (z - recentMean) * 2 / Double(resolveWindow + 1)
        if alarm { detections += 1 }
        return alarm
    }

    /// Records the event time of the residual about to be fed (index `fed`).
    mutating func remember(time: Int64) {
        if firstTime == nil { firstTime = time }
        if times.count < Self.recentTimes { times.append(time) } else { times[fed % Self.recentTimes] = time }
    }

    var estimatedBytes: Int { 160 + detector.estimatedBytes + times.capacity * 8 }
}

/// Where an open residual or data episode stands on its way to resolving: clear since when, and
/// how often it went out again while clear. Why: an episode resolved the moment its condition
/// cleared, so a twin hovering at the edge raised a new episode each time it went out again
/// (flapping); now it resolves only after `DRIFT_RESOLVE_AFTER` of event time clear, and going out
/// meanwhile continues the same episode.
struct EpisodeHold: Codable, Equatable, Sendable {
    /// Event time of the first clear verdict of the current clear spell; nil: out of band.
    var clearSince: Int64?
    /// Clear spells that ended out of band again (flaps) in this episode.
    var flaps = 0

    /// What one verdict on an open episode leads to.
    enum Verdict: Equatable {
        /// Still open (out of band, or clear for less than the hold).
        case open
        /// Clear for the whole hold: resolve now, after `clearMs` clear.
        case resolve(clearMs: Int64)
        /// Out of band again after `clearMs` clear: the same episode goes on (a flap).
        case recurred(clearMs: Int64)
    }

    /// Takes a verdict (`clear`: the episode's condition is back in band) at event time `time`
    /// with a hold of `holdMs`; `hold` is the episode's, created on its first clear verdict.
    static func judge(_ hold: inout EpisodeHold?, clear: Bool, at time: Int64, holdMs: Int64) -> Verdict {
        if clear {
            let since = hold?.clearSince ?? time
            if hold == nil { hold = EpisodeHold() }
            hold!.clearSince = since
            return time - since >= holdMs ? .resolve(clearMs: time - since) : .open
        }
        guard let since = hold?.clearSince else { return .open }
        hold!.clearSince = nil
        hold!.flaps += 1
        return .recurred(clearMs: time - since)
    }
}

/// The data-drift watch of one property.
struct DataWatch: Codable, Equatable, Sendable {
    var detector: DataDriftDetector
    var sinceEvaluation = 0
    var lastMethod: String?
    var lastStatistic: Double?
    var lastThreshold: Double?
    var lastEvaluatedAt: Int64?
    /// The open episode's hold (nil: none open, or never clear yet; absent in states written before it).
    var hold: EpisodeHold?

    init(configuration: DataDriftDetector.Configuration) {
        detector = DataDriftDetector(configuration: configuration)
    }

    /// Reference first (the first `window` values after a reset), then the rolling current window.
    mutating func add(_ x: Double) {
        if detector.reference.isFull { detector.addCurrent(x) } else { detector.addReference(x) }
        sinceEvaluation += 1
    }

    var estimatedBytes: Int { 200 + 2 * detector.configuration.windowSize * 8 }
}

/// Everything the monitor keeps about one twin; its `Codable` form is `drift.state.v1`'s
/// `monitor` object (open alerts travel in the document's public `openAlerts`).
struct TwinWatch: Codable, Equatable, Sendable {
    var model: String
    /// The parameter vector the residuals are computed with; a different one resets the twin.
    var parameters: [Double]
    var lastEventTime: Int64?
    /// Offset of the newest input message applied: a replay at or below it is skipped silently.
    var lastOffset: Int64 = -1
    /// FNV-1a hashes of the last event ids.
    var recentIds: [UInt64] = []
    var history: History
    /// Per watched property, in the plan's order (names kept to detect a changed plan on restore).
    var watchedNames: [String]
    var residuals: [ResidualWatch]
    var dataNames: [String]
    var data: [DataWatch]
    /// Readings since the last `drift.state.v1` write.
    var sinceWrite = 0
    /// Readings skipped as late or repeated.
    var late = 0
    var repeated = 0
    /// Open episodes by `kind/property` (not encoded here: the document's `openAlerts` carry them).
    var open: [String: DriftAlert] = [:]
    /// The deadline of the twin's live entry on the stale timer heap (rebuilt on restore); nil: none.
    var armedDeadline: Int64?
    /// A recalibration in progress, the event time of the last calibration request, and
    /// parameters applied but not yet on `twin.state.v1` (Recalibration.swift).
    var recalibration: PendingRecalibration?
    var lastRecalibrationAt: Int64?
    var applied: AppliedParameters?
    /// The last `gapCount` gaps between the event times of consecutive readings (ms), oldest first:
    /// the twin's observed reporting interval. Optional in the document: states written before it
    /// restore without it.
    var gaps: [Int64]?
    /// Event time of the first reading data drift may use (`DriftSettings.settleMs` after the twin's
    /// first reading); nil: no settling (states written before it restore and go on as they were).
    var settleUntil: Int64?

    enum CodingKeys: String, CodingKey {
        case model, parameters, lastEventTime, lastOffset, recentIds, history, watchedNames, residuals, dataNames, data, late, repeated
        case recalibration, lastRecalibrationAt, applied, gaps, settleUntil
    }

    static let gapCount = 8

    /// Notes the gap between the newest reading and the one before it.
    mutating func note(gap: Int64) {
        guard gap > 0 else { return }
        var g = gaps ?? []
        if g.count >= Self.gapCount { g.removeFirst() }
        g.append(gap)
        gaps = g
    }

    /// The interval the twin's next reading is expected within (ms): the model's, or the twin's
    /// observed one when longer. Observed: the second-longest of the last `gapCount` gaps, so one
    /// silence (already alerted on) does not stretch it, while a fleet slower than declared is judged
    /// by its own pace; with one gap, that gap up to `firstMs` (one gap may be a silence).
    func expectedIntervalMs(model: Int64, firstMs: Int64) -> Int64 {
        guard let g = gaps, !g.isEmpty else { return model }
        if g.count == 1 { return max(model, min(g[0], firstMs)) }
        var longest: Int64 = 0, second: Int64 = 0
        for x in g {
            if x > longest { second = longest; longest = x } else if x > second { second = x }
        }
        return max(model, second)
    }

    /// Silence (ms) after which the twin is stale: `factor` expected intervals; a twin seen only once
    /// has not shown its pace, so not before `firstMs` either.
    func staleLimitMs(model: Int64, factor: Double, firstMs: Int64) -> Double {
        let limit = factor * Double(expectedIntervalMs(model: model, firstMs: firstMs))
        return gaps?.isEmpty == false ? limit : max(limit, Double(firstMs))
    }

    init(plan: ModelPlan, parameters: [Double], settings: DriftSettings) {
        model = plan.ref
        self.parameters = parameters
        history = History(capacity: 20, width: plan.tracked.count, minimumSpacingMs: max(1, plan.horizonMs / 16))
        watchedNames = plan.watched.map(\.name)
        residuals = plan.watched.map { _ in ResidualWatch(detector: plan.detector) }
        dataNames = settings.evalEvery > 0 ? plan.dataProperties : []
        data = dataNames.map { _ in DataWatch(configuration: settings.dataDrift) }
    }

    /// Restarts every detector, scale and reference window (recalibration, a new model or parameters).
    mutating func resetWatches(plan: ModelPlan, settings: DriftSettings) {
        let fresh = TwinWatch(plan: plan, parameters: parameters, settings: settings)
        residuals = fresh.residuals
        data = fresh.data
        watchedNames = fresh.watchedNames
        dataNames = fresh.dataNames
        if history.width != plan.tracked.count { history = fresh.history }
    }

    static func key(_ kind: DriftAlert.Kind, _ property: String?) -> String { kind.rawValue + "/" + (property ?? "") }
    static let staleKey = key(.stale, nil)

    /// Where in its cycle of `period` readings the twin `key` starts (0..<period), the same on
    /// every replica and after every restart. Why: a fleet created or restored at once would
    /// otherwise write its state documents and evaluate its data drift in the same reading, a
    /// burst every `period` readings (10,000 twins' 12 KB documents at once lagged the monitor
    /// and the query view by 20,000 messages every few minutes in a soak).
    static func phase(of key: String, period: Int) -> Int {
        guard period > 1 else { return 0 }
        return Int(hash(key) % UInt64(period))
    }

    /// Spreads this twin's state writes and data-drift evaluations over their cycles (`phase`).
    mutating func stagger(key: String, settings: DriftSettings) {
        sinceWrite = Self.phase(of: key, period: settings.stateEvery)
        for i in data.indices where data[i].sinceEvaluation == 0 {
            data[i].sinceEvaluation = Self.phase(of: key + "/" + dataNames[i], period: settings.evalEvery)
        }
    }

    static func hash(_ eventId: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in eventId.utf8 {
            h ^= UInt64(byte)
            h = h &* 0x0000_0100_0000_01b3
        }
        return h
    }

    /// Bytes this twin's state holds, estimated from the capacities of its buffers.
    var estimatedBytes: Int {
        256 + model.utf8.count + parameters.capacity * 8 + recentIds.capacity * 8 + history.estimatedBytes
            + residuals.reduce(0) { $0 + $1.estimatedBytes } + data.reduce(0) { $0 + $1.estimatedBytes }
            + open.count * 1024 + (recalibration?.estimatedBytes ?? 0)
    }
}
