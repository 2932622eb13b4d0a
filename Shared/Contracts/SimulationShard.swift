import Foundation
import JSON

/// `SimulationShard` v1 on `simulation.shards.v1` (key `simulationId/shard`): one contiguous range
/// of a large Monte Carlo request's samples (or a sweep's points) for any worker of the group to
/// run. It carries the whole request, so the worker that takes it needs nothing else (workers
/// keep no state). Schema: `Schemas/contracts/simulation-shard/v1.json`.
public struct SimulationShard: ContractDocument, Sendable, Equatable {
    public static let contract = "simulation-shard/1"

    /// Shard number, 0 ..< `shards`.
    public var shard: Int
    /// How many shards the request was split into.
    public var shards: Int
    /// Samples (or sweep points) `from ..< to`.
    public var from: Int
    public var to: Int
    /// When the coordinator published it (epoch ms).
    public var publishedAt: Int64
    /// The request, as the coordinator took it from `simulation.requests.v1`.
    public var request: SimulationRequest

    public init(shard: Int, shards: Int, from: Int, to: Int, publishedAt: Int64, request: SimulationRequest) {
        self.shard = shard
        self.shards = shards
        self.from = from
        self.to = to
        self.publishedAt = publishedAt
        self.request = request
    }

    public var simulationId: String { request.simulationId }
    public var tenant: String { request.tenant }
    /// `simulationId/shard`.
    public var key: String { "\(request.simulationId)/\(shard)" }

    public func encoded() -> [UInt8] {
        var w = JSONWriter(capacity: 1024)
        w.beginObject()
        w.field("simulationId", request.simulationId)
        w.field("tenant", request.tenant)
        w.field("shard", shard)
        w.field("shards", shards)
        w.field("from", from)
        w.field("to", to)
        w.field("publishedAt", time: publishedAt)
        w.key("request"); w.raw(request.encoded())
        w.endObject()
        return w.bytes
    }

    public init(json: JSON) throws(ContractError) {
        let f = try Fields(json)
        shard = Int(try f.int("shard"))
        shards = Int(try f.int("shards"))
        from = Int(try f.int("from"))
        to = Int(try f.int("to"))
        publishedAt = try f.time("publishedAt")
        do {
            request = try SimulationRequest(json: .object(try f.object("request")))
        } catch {
            throw ContractError(code: error.code, pointer: "/request" + error.pointer, message: error.message)
        }
        guard request.spec.kind == .monteCarlo || request.spec.kind == .sweep else {
            throw .invalidValue("/request/kind", "only monteCarlo and sweep requests are sharded", actual: request.spec.kind.rawValue)
        }
        guard shards >= 1, (0..<shards).contains(shard) else {
            throw .invalidValue("/shard", "shard must be in 0 ..< shards", actual: String(shard))
        }
        guard from >= 0, to > from else { throw .invalidValue("/to", "a shard's range from ..< to is not empty", actual: "\(from)..<\(to)") }
        guard try f.string("simulationId") == request.simulationId, try f.string("tenant") == request.tenant else {
            throw .invalidValue("/simulationId", "simulationId and tenant must be the request's", actual: try f.string("simulationId"))
        }
    }
}

/// `SimulationShardResult` v1 on `simulation.shard-results.v1` (key: the simulation id): what a
/// worker computed for one shard, in one message or — when it would not fit in a message — in
/// several parts, each mergeable on its own.
///
/// - Monte Carlo: `monteCarlo` is a piece of the shard's histogram accumulator (cells
///   `cells[0] ..< cells[1]`, the engine's binary form in base64; the piece whose cells start at 0
///   carries the shard's crossings and redraws).
/// - Sweep: `points`, each with its row-major `index`.
/// - `failed` (with `reason`): the shard could not be run (the coordinator fails the request).
///
/// Parts of the same shard computed twice (a redelivered shard) are identical; the coordinator
/// merges each cell range or point once. Schema: `Schemas/contracts/simulation-shard-result/v1.json`.
public struct SimulationShardResult: ContractDocument, Sendable, Equatable {
    public static let contract = "simulation-shard-result/1"

    public enum Status: String, Sendable, CaseIterable { case completed, failed }

    /// A piece of a Monte Carlo accumulator (see `MonteCarloPiece` in the engine).
    public struct MonteCarloPart: Sendable, Equatable {
        public var fingerprint: String
        public var cellsFrom: Int, cellsTo: Int
        public var crossings: Int, redraws: Int
        /// The engine's binary cell encoding (base64 on the wire).
        public var data: [UInt8]
        public init(fingerprint: String, cellsFrom: Int, cellsTo: Int, crossings: Int, redraws: Int, data: [UInt8]) {
            self.fingerprint = fingerprint; self.cellsFrom = cellsFrom; self.cellsTo = cellsTo
            self.crossings = crossings; self.redraws = redraws; self.data = data
        }
    }

    /// One sweep point with its row-major index.
    public struct Point: Sendable, Equatable {
        public var index: Int
        public var coordinates: [Double]
        public var final: Double, minimum: Double, maximum: Double
        public var secondsBeyond: Double?
        public init(index: Int, coordinates: [Double], final: Double, minimum: Double, maximum: Double, secondsBeyond: Double?) {
            self.index = index; self.coordinates = coordinates; self.final = final; self.minimum = minimum
            self.maximum = maximum; self.secondsBeyond = secondsBeyond
        }
    }

    public var simulationId: String
    public var tenant: String
    public var shard: Int
    public var shards: Int
    /// The shard's range `from ..< to`.
    public var from: Int
    public var to: Int
    /// Part `part` of `parts` of this shard's result.
    public var part: Int
    public var parts: Int
    public var status: Status
    public var reason: SimulationResult.Reason?
    /// The worker that computed it, and how long it took.
    public var worker: String?
    public var runSeconds: Double?
    public var monteCarlo: MonteCarloPart?
    public var points: [Point]?

    public init(simulationId: String, tenant: String, shard: Int, shards: Int, from: Int, to: Int, part: Int = 0, parts: Int = 1,
                status: Status, reason: SimulationResult.Reason? = nil, worker: String? = nil, runSeconds: Double? = nil,
                monteCarlo: MonteCarloPart? = nil, points: [Point]? = nil) {
        self.simulationId = simulationId; self.tenant = tenant; self.shard = shard; self.shards = shards
        self.from = from; self.to = to; self.part = part; self.parts = parts; self.status = status; self.reason = reason
        self.worker = worker; self.runSeconds = runSeconds; self.monteCarlo = monteCarlo; self.points = points
    }

    public func encoded() -> [UInt8] {
        var w = JSONWriter(capacity: 512 + (monteCarlo?.data.count ?? 0) * 4 / 3 + (points?.count ?? 0) * 120)
        w.beginObject()
        w.field("simulationId", simulationId)
        w.field("tenant", tenant)
        w.field("shard", shard)
        w.field("shards", shards)
        w.field("from", from)
        w.field("to", to)
        w.field("part", part)
        w.field("parts", parts)
        w.field("status", status.rawValue)
        if let reason { w.key("reason"); reason.write(to: &w) }
        if let worker { w.field("worker", worker) }
        if let runSeconds { w.field("runSeconds", runSeconds) }
        if let m = monteCarlo {
            w.key("monteCarlo"); w.beginObject()
            w.field("fingerprint", m.fingerprint)
            w.key("cells"); w.beginArray(); w.value(m.cellsFrom); w.value(m.cellsTo); w.endArray()
            w.field("crossings", m.crossings)
            w.field("redraws", m.redraws)
            w.field("data", Data(m.data).base64EncodedString())
            w.endObject()
        }
        if let points {
            w.key("points"); w.beginArray()
            for p in points {
                w.beginObject()
                w.field("index", p.index)
                w.key("coordinates"); SimulationResult.write(p.coordinates, to: &w)
                w.field("final", p.final); w.field("minimum", p.minimum); w.field("maximum", p.maximum)
                if let s = p.secondsBeyond { w.field("secondsBeyond", s) }
                w.endObject()
            }
            w.endArray()
        }
        w.endObject()
        return w.bytes
    }

    public init(json: JSON) throws(ContractError) {
        let f = try Fields(json)
        simulationId = try f.string("simulationId")
        tenant = try f.string("tenant")
        shard = Int(try f.int("shard"))
        shards = Int(try f.int("shards"))
        from = Int(try f.int("from"))
        to = Int(try f.int("to"))
        part = Int(try f.int("part"))
        parts = Int(try f.int("parts"))
        let s = try f.string("status")
        guard let status = Status(rawValue: s) else {
            throw ContractError(code: "invalid_value", pointer: "/status", message: "unknown status '\(s)'", expected: "completed|failed", actual: s)
        }
        self.status = status
        reason = try f.optionalObject("reason").map { (r) throws(ContractError) in try SimulationResult.Reason(object: r, pointer: "/reason") }
        if status == .failed && reason == nil { throw .missing("/reason", "reason") }
        worker = try f.optionalString("worker")
        runSeconds = try f.optionalDouble("runSeconds")
        if let m = try f.optionalObject("monteCarlo") {
            let mf = try Fields(.object(m), pointer: "/monteCarlo")
            guard let cells = m["cells"]?.arrayValue, cells.count == 2, let a = cells[0].intValue, let b = cells[1].intValue, a >= 0, b >= a else {
                throw .invalidValue("/monteCarlo/cells", "cells is [from, to] with 0 <= from <= to", actual: String(describing: m["cells"]))
            }
            guard let data = Data(base64Encoded: try mf.string("data")) else {
                throw ContractError(code: "invalid_value", pointer: "/monteCarlo/data", message: "not base64")
            }
            monteCarlo = MonteCarloPart(fingerprint: try mf.string("fingerprint"), cellsFrom: a, cellsTo: b,
                                        crossings: Int(try mf.int("crossings")), redraws: Int(try mf.int("redraws")), data: Array(data))
        }
        if let v = f.object["points"] {
            guard let array = v.arrayValue else { throw .wrongType("/points", expected: "array", actual: v) }
            var points: [Point] = []
            points.reserveCapacity(array.count)
            for (i, item) in array.enumerated() {
                let pf = try Fields(item, pointer: "/points/\(i)")
                guard let c = pf.object["coordinates"] else { throw .missing("/points/\(i)/coordinates", "coordinates") }
                points.append(Point(index: Int(try pf.int("index")), coordinates: try SimulationResult.numbers(c, "/points/\(i)/coordinates"),
                                    final: try pf.double("final"), minimum: try pf.double("minimum"), maximum: try pf.double("maximum"),
                                    secondsBeyond: try pf.optionalDouble("secondsBeyond")))
            }
            self.points = points
        }
        try SimulationIDs.check(simulationId, pointer: "/simulationId")
        guard shards >= 1, (0..<shards).contains(shard), parts >= 1, (0..<parts).contains(part), from >= 0, to > from else {
            throw .invalidValue("/shard", "shard in 0 ..< shards, part in 0 ..< parts and from < to", actual: "\(shard)/\(shards) part \(part)/\(parts)")
        }
    }
}
