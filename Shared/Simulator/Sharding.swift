import Contracts
import Models
import Simulation

/// How a large Monte Carlo request (samples) or sweep (points) is split into shards — the pure
/// part of sharding, shared by the coordinator and the tests.
///
/// A request above `shardSize` samples (or points) becomes ⌈count / shardSize⌉ shards, rounded up
/// to a multiple of the partition count so that consecutive shards, placed on consecutive
/// partitions, give every partition (and so every worker of a balanced group) the same number
/// of shards. Ranges are as equal as integers allow. Each Monte Carlo shard recomputes the
/// 64-sample pilot that fixes the histogram bins (that is what makes every split merge to the
/// same bytes), so a shard costs its samples plus 64.
public struct ShardLayout: Sendable, Equatable {
    /// Samples or points of the request.
    public let count: Int
    /// Shard `i`'s range.
    public let ranges: [Range<Int>]

    /// The layout for `count` items, or nil when the request is not split (`count <= shardSize`).
    public init?(count: Int, shardSize: Int, partitions: Int) {
        guard shardSize > 0, count > shardSize else { return nil }
        var shards = (count + shardSize - 1) / shardSize
        let p = max(1, partitions)
        shards = min(count, ((shards + p - 1) / p) * p)
        self.count = count
        ranges = (0..<shards).map { i in (i * count / shards)..<((i + 1) * count / shards) }
    }

    /// Number of shards.
    public var shards: Int { ranges.count }

    /// What a plan splits: its samples (Monte Carlo) or points (sweep); nil for other kinds.
    public static func items(of plan: SimulationPlan) -> Int? {
        switch plan.job {
        case .monteCarlo(let r): r.samples
        case .sweep(let r): r.axes.map(\.values.count).reduce(1, *)
        default: nil
        }
    }
}

/// Runs one shard on the engine and cuts its result into messages: the pure part of a shard
/// worker (no Kafka, no clock but the run time it is given).
public enum ShardRunner {
    /// Largest encoded Monte Carlo piece: base64 makes it 800 KB, under a Kafka message's 1 MB
    /// with the envelope. A constant, not a setting: two runs of one shard must cut the same parts.
    public static let maxPieceBytes = 600_000
    /// Sweep points per part (a point's JSON is at most about 250 bytes).
    public static let maxPointsPerPart = 3_000

    /// Runs `shard` (whose request `plan` was built from) and returns its result parts; an engine
    /// failure is returned as the error (`cancelled` when `control.shouldStop` said so).
    public static func run(_ shard: SimulationShard, plan: SimulationPlan, control: RunControl = .none, worker: String? = nil,
                           maxPieceBytes: Int = maxPieceBytes, maxPointsPerPart: Int = maxPointsPerPart) -> Result<[SimulationShardResult], SimulationError> {
        let template = SimulationShardResult(simulationId: shard.simulationId, tenant: shard.tenant, shard: shard.shard, shards: shard.shards,
                                             from: shard.from, to: shard.to, status: .completed, worker: worker)
        do throws(SimulationError) {
            var parts: [SimulationShardResult] = []
            switch plan.job {
            case .monteCarlo(let request):
                let engine = try MonteCarlo(model: plan.model, request: request, control: control)
                var accumulator = engine.makeAccumulator()
                try engine.accumulate(shard.from..<shard.to, into: &accumulator, control: control)
                for piece in try accumulator.pieces(maxBytes: maxPieceBytes) {
                    var r = template
                    r.monteCarlo = .init(fingerprint: piece.fingerprint, cellsFrom: piece.cells.lowerBound, cellsTo: piece.cells.upperBound,
                                         crossings: piece.crossings, redraws: piece.redraws, data: piece.bytes)
                    parts.append(r)
                }
            case .sweep(let request):
                let engine = try Sweep(model: plan.model, request: request)
                let points = try engine.run(points: shard.from..<shard.to, control: control)
                for start in stride(from: 0, to: points.count, by: max(1, maxPointsPerPart)) {
                    var r = template
                    r.points = points[start..<min(points.count, start + max(1, maxPointsPerPart))].map {
                        .init(index: $0.index, coordinates: $0.coordinates, final: $0.final, minimum: $0.minimum, maximum: $0.maximum, secondsBeyond: $0.secondsBeyond)
                    }
                    parts.append(r)
                }
            default:
                throw SimulationError(.invalidRequest, "only Monte Carlo and sweep requests are sharded")
            }
            for i in parts.indices { parts[i].part = i; parts[i].parts = parts.count }
            return .success(parts)
        } catch {
            return .failure(error)
        }
    }

    /// The single part that reports a shard the worker could not run.
    public static func failed(_ shard: SimulationShard, reason: SimulationResult.Reason, worker: String? = nil) -> SimulationShardResult {
        SimulationShardResult(simulationId: shard.simulationId, tenant: shard.tenant, shard: shard.shard, shards: shard.shards,
                              from: shard.from, to: shard.to, status: .failed, reason: reason, worker: worker)
    }
}

/// The coordinator's state for one sharded request: the merged Monte Carlo accumulator (or the
/// sweep's points so far), which shards are finished, and the final result once all are.
///
/// Memory is bounded whatever the number of shards: Monte Carlo parts are merged into the one
/// accumulator as they arrive (its size is fixed by the grid, the series and the bins, at most
/// `MonteCarlo.maxCells` counts), sweep points are kept once each (the result must hold them
/// anyway, within `SIM_MAX_RESULT_VALUES`). Duplicates — a shard run twice, a part read again by a
/// new coordinator — are recognised by shard and cell range (Monte Carlo) or point index (sweep)
/// and merged once.
public struct ShardMerge: Sendable {
    /// What applying a shard-result message did.
    public enum Applied: Sendable, Equatable {
        /// Merged; `finishedShard` when it completed its shard.
        case merged(finishedShard: Bool)
        /// Already merged (a repeated or re-read part).
        case duplicate
        /// The shard failed: the request fails with this reason.
        case failed(SimulationResult.Reason)
        /// Not a part of this request's layout (another split, or malformed); ignored.
        case ignored(String)
    }

    public let plan: SimulationPlan
    public let layout: ShardLayout
    private var accumulator: MonteCarloAccumulator?
    private let sweep: Sweep?
    private var points: [Int: SweepPoint] = [:]
    /// Monte Carlo: cell ranges merged per shard. Sweep: points received per shard.
    private var mergedCells: [Int: [Range<Int>]] = [:]
    private var pointCounts: [Int: Int] = [:]
    private var done: Set<Int> = []

    /// Builds the engine's empty state for `plan` (a Monte Carlo runs its pilot here, as every
    /// shard does). Throws the engine's error (a pilot sample that fails fails the request).
    public init(plan: SimulationPlan, layout: ShardLayout, control: RunControl = .none) throws(SimulationError) {
        self.plan = plan
        self.layout = layout
        switch plan.job {
        case .monteCarlo(let request):
            accumulator = try MonteCarlo(model: plan.model, request: request, control: control).makeAccumulator()
            sweep = nil
        case .sweep(let request):
            sweep = try Sweep(model: plan.model, request: request)
            accumulator = nil
        default:
            throw SimulationError(.invalidRequest, "only Monte Carlo and sweep requests are sharded")
        }
    }

    /// Shards whose every part has been merged.
    public var finished: Int { done.count }
    /// Whether every shard is finished.
    public var isComplete: Bool { done.count == layout.shards }
    /// Shards not finished yet, in order.
    public var missing: [Int] { (0..<layout.shards).filter { !done.contains($0) } }
    /// Whether shard `i` is finished.
    public func isFinished(_ shard: Int) -> Bool { done.contains(shard) }

    /// Merges one part of a shard's result.
    public mutating func apply(_ r: SimulationShardResult) -> Applied {
        guard r.simulationId == plan.request.simulationId, r.tenant == plan.request.tenant else { return .ignored("another simulation") }
        guard r.shards == layout.shards, (0..<layout.shards).contains(r.shard), layout.ranges[r.shard] == r.from..<r.to else {
            return .ignored("shard \(r.shard)/\(r.shards) \(r.from)..<\(r.to) is not in this layout")
        }
        if r.status == .failed {
            return .failed(r.reason ?? .init(code: "shard_failed", message: "shard \(r.shard) failed"))
        }
        if done.contains(r.shard) { return .duplicate }
        if var accumulator {
            guard let m = r.monteCarlo else { return .ignored("a Monte Carlo shard result without its accumulator") }
            let cells = m.cellsFrom..<m.cellsTo
            let merged = mergedCells[r.shard, default: []]
            if merged.contains(where: { $0.lowerBound <= cells.lowerBound && cells.upperBound <= $0.upperBound }) { return .duplicate }
            if merged.contains(where: { $0.overlaps(cells) }) { return .ignored("cells \(cells) overlap another split of shard \(r.shard)") }
            let piece = MonteCarloPiece(fingerprint: m.fingerprint, samples: r.from..<r.to, cells: cells, crossings: m.crossings, redraws: m.redraws, bytes: m.data)
            do { try accumulator.merge(piece) } catch { return .ignored(error.message) }
            self.accumulator = accumulator
            var ranges = merged + [cells]
            ranges.sort { $0.lowerBound < $1.lowerBound }
            var coalesced: [Range<Int>] = []
            for c in ranges {
                if let last = coalesced.last, last.upperBound == c.lowerBound { coalesced[coalesced.count - 1] = last.lowerBound..<c.upperBound } else { coalesced.append(c) }
            }
            mergedCells[r.shard] = coalesced
            if coalesced == [0..<accumulator.cellCount] {
                done.insert(r.shard)
                mergedCells[r.shard] = nil
                return .merged(finishedShard: true)
            }
            return .merged(finishedShard: false)
        }
        guard let incoming = r.points else { return .ignored("a sweep shard result without points") }
        var added = 0
        for p in incoming where (r.from..<r.to).contains(p.index) && points[p.index] == nil {
            points[p.index] = SweepPoint(index: p.index, coordinates: p.coordinates, final: p.final, minimum: p.minimum, maximum: p.maximum, secondsBeyond: p.secondsBeyond)
            added += 1
        }
        guard added > 0 else { return .duplicate }
        pointCounts[r.shard, default: 0] += added
        if pointCounts[r.shard] == r.to - r.from {
            done.insert(r.shard)
            pointCounts[r.shard] = nil
            return .merged(finishedShard: true)
        }
        return .merged(finishedShard: false)
    }

    /// The completed result (payload as an unsharded run writes it); nil until `isComplete`.
    public func result() throws(SimulationError) -> SimulationResult? {
        guard isComplete else { return nil }
        if let accumulator { return SimulationRunner.completed(plan, monteCarlo: accumulator.finish()) }
        guard let sweep else { return nil }
        return SimulationRunner.completed(plan, sweep: try sweep.merge([points.values.sorted { $0.index < $1.index }]))
    }
}
