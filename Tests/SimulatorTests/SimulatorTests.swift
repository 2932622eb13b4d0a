import Contracts
import Foundation
import JSON
import Models
import Simulation
import Simulator
import Synchronization
import XCTest

/// The worker's pure logic: a request becomes an engine run and a result, or a refusal with a
/// pointer; results are deterministic by seed; cancellation stops a run.
final class SimulatorTests: XCTestCase {
    static let registry: ModelRegistry = {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Schemas/models").path
        return try! ModelRegistry(directory: dir)
    }()
    static var room: TwinModel { registry.model(referencedBy: "room@1")! }
    static let now: Int64 = 1_795_248_000_000

    /// A request for room-1 observed at 25 °C with the HVAC delivering 1 kW.
    static func request(_ body: String, values: [String: Double] = ["temperature": 25, "hvacPower": 1000, "humidity": 50],
                 parameters: [String: Double] = [:], id: String = "sim-1", model: String = "room@1", deadline: Int64? = nil) throws -> SimulationRequest {
        let spec = try SimulationSpec(object: try XCTUnwrap(JSON(parsing: body).objectValue), strict: true)
        return SimulationRequest(simulationId: id, tenant: "acme", twinId: "room-1", requestedAt: Self.now, deadline: deadline, start: Self.now,
                                 twin: .init(model: model, version: 9, values: values, parameters: parameters), spec: spec)
    }

    func plan(_ request: SimulationRequest, limits: SimulatorLimits = SimulatorLimits()) throws -> SimulationPlan {
        try SimulationPlan(request, model: Self.registry.model(referencedBy: request.twin.model), limits: limits, now: Self.now)
    }

    func run(_ body: String, values: [String: Double] = ["temperature": 25, "hvacPower": 1000, "humidity": 50],
             parameters: [String: Double] = [:], id: String = "sim-1") throws -> SimulationResult {
        let outcome = SimulationRunner.run(try plan(try Self.request(body, values: values, parameters: parameters, id: id)))
        return try outcome.get()
    }

    /// The result without what may differ between two runs (id and timings).
    func deterministicBytes(_ r: SimulationResult) -> [UInt8] {
        var r = r
        r.simulationId = "x"
        r.timings = .init()
        return r.encoded()
    }

    static func exact(_ t: Double, T0: Double, Ta: Double, P: Double, tau: Double = 7200, C: Double = 5e6) -> Double {
        let teq = Ta + P * tau / C
        return teq + (T0 - teq) * exp(-t / tau)
    }

    func testForecastStartsFromTheObservedStateAndHoldsBoundInputsAtTheirLastValue() throws {
        let r = try run(#"{"kind":"forecast","horizon":"2h","step":"1m"}"#, parameters: ["tau": 9000])
        XCTAssertEqual(r.status, .completed)
        XCTAssertEqual(r.times?.count, 121)
        XCTAssertEqual(r.times?.last, 7200)
        XCTAssertEqual(r.parameters?["tau"], 9000, "the twin's parameters are used")
        XCTAssertEqual(r.parameters?["C"], 5e6, "defaults for the rest")
        XCTAssertEqual(r.model, "room@1")
        XCTAssertEqual(r.twinVersion, 9)
        let t = try XCTUnwrap(r.series?["temperature"])
        XCTAssertEqual(t.first, 25, "observed values are the initial states")
        for (i, time) in try XCTUnwrap(r.times).enumerated() {
            XCTAssertEqual(t[i], Self.exact(time, T0: 25, Ta: 10, P: 1000, tau: 9000), accuracy: 1e-5, "hvacPower holds P at 1000 W")
        }
        XCTAssertEqual(r.series?["humidity"]?.first, 50)
        XCTAssertEqual(r.series?["co2"]?.first, 420, "unobserved states start at the model's initial value")
    }

    func testWhatIfOverridesParametersInputsAndInitialStates() throws {
        let r = try run(#"{"kind":"whatIf","horizon":"6h","step":"5m","parameters":{"tau":9000},"inputs":{"Ta":5,"P":0},"initial":{"temperature":21},"series":["temperature"]}"#)
        let t = try XCTUnwrap(r.series?["temperature"])
        XCTAssertEqual(Array(r.series!.keys), ["temperature"])
        XCTAssertEqual(t.first, 21)
        for (i, time) in try XCTUnwrap(r.times).enumerated() {
            XCTAssertEqual(t[i], Self.exact(time, T0: 21, Ta: 5, P: 0, tau: 9000), accuracy: 1e-5)
        }
        // A schedule, as in the issue's example: power switches on after an hour.
        let s = try run(#"{"kind":"forecast","horizon":"2h","step":"30m","inputs":{"Ta":5,"P":{"schedule":[[0,0],[3600,2000]],"interpolation":"previous"}},"parameters":{"tau":7200},"initial":{"temperature":21}}"#)
        let ts = try XCTUnwrap(s.series?["temperature"])
        XCTAssertEqual(ts[2], Self.exact(3600, T0: 21, Ta: 5, P: 0), accuracy: 1e-5)
        XCTAssertEqual(ts[4], Self.exact(3600, T0: ts[2], Ta: 5, P: 2000), accuracy: 1e-5)
    }

    func testMonteCarloBandsProbabilityAndDeterminismBySeed() throws {
        let body = #"{"kind":"monteCarlo","horizon":"6h","step":"15m","samples":300,"seed":7,"uncertain":{"tau":{"normal":[7200,600]},"Ta":{"uniform":[0,10]}},"threshold":{"series":"temperature","below":8}}"#
        print("seed 7")
        let a = try run(body, id: "sim-a"), b = try run(body, id: "sim-b")
        XCTAssertEqual(deterministicBytes(a), deterministicBytes(b), "same request and seed: same bytes")
        XCTAssertEqual(a.seed, 7)
        XCTAssertEqual(a.samples, 300)
        let band = try XCTUnwrap(a.bands?["temperature"])
        XCTAssertEqual(Array(a.bands!.keys), ["temperature"], "the threshold's series is banded by default")
        XCTAssertEqual(a.series?["temperature"], band.p50, "series holds the median")
        for i in band.p5.indices { XCTAssertLessThanOrEqual(band.p5[i], band.p50[i]); XCTAssertLessThanOrEqual(band.p50[i], band.p95[i]) }
        XCTAssertGreaterThan(band.p95.last! - band.p5.last!, 1, "the uncertainty spreads the outcome")
        let p = try XCTUnwrap(a.probability)
        XCTAssertTrue(p.low <= p.value && p.value <= p.high, "\(p)")
        XCTAssertEqual(p.samples, 300)
        XCTAssertEqual(a.threshold, .init(series: "temperature", above: false, level: 8))
        XCTAssertTrue(p.value > 0 && p.value < 1, "some samples fall below 8 °C, some do not: \(p)")
        let other = try run(body.replacingOccurrences(of: #""seed":7"#, with: #""seed":8"#))
        XCTAssertNotEqual(deterministicBytes(a), deterministicBytes(other), "another seed draws other samples")
        // Without a seed, the simulation id decides it: a redelivered request gives the same bytes.
        let unseeded = body.replacingOccurrences(of: #""seed":7,"#, with: "")
        XCTAssertEqual(deterministicBytes(try run(unseeded, id: "sim-z")), deterministicBytes(try run(unseeded, id: "sim-z")))
        XCTAssertEqual(try run(unseeded, id: "sim-z").seed, SimulationPlan.seed(for: "sim-z"))
    }

    func testSweepListsPointsRowByRowWithBothCoordinates() throws {
        let r = try run(#"{"kind":"sweep","horizon":"6h","step":"5m","sweep":{"P":[0,1000,2000],"tau":[3600,7200]},"threshold":{"series":"temperature","above":22}}"#)
        XCTAssertEqual(r.axes, ["P", "tau"])
        XCTAssertEqual(r.quantity, "temperature")
        let points = try XCTUnwrap(r.points)
        XCTAssertEqual(points.map { $0.coordinates.map(\.value) }, [[0, 3600], [0, 7200], [1000, 3600], [1000, 7200], [2000, 3600], [2000, 7200]])
        XCTAssertEqual(points[0].coordinates.map(\.name), ["P", "tau"])
        for p in points {
            let P = p.coordinates[0].value, tau = p.coordinates[1].value
            XCTAssertEqual(p.final, Self.exact(21_600, T0: 25, Ta: 10, P: P, tau: tau), accuracy: 1e-4)
            XCTAssertLessThanOrEqual(p.minimum, p.final)
            XCTAssertNotNil(p.secondsBeyond)
        }
        XCTAssertGreaterThan(points[5].secondsBeyond!, points[0].secondsBeyond!, "more power stays above 22 °C longer")
    }

    func testCalibrationRecoversTheTimeConstantFromANoisyHistory() throws {
        // 4 h at one minute of a room with tau = 9000 s heated by 1.5 kW, 0.05 K of noise.
        var rng = SampleRandom(seed: 42, index: 0)
        print("seed 42")
        var temperature: [String] = [], power: [String] = []
        for i in 0...240 {
            let t = Double(i * 60)
            let T = Self.exact(t, T0: 18, Ta: 10, P: 1500, tau: 9000) + 0.05 * rng.normal()
            temperature.append("[\(t),\(T)]")
            power.append("[\(t),1500]")
        }
        let body = #"{"kind":"calibrate","fit":["tau"],"properties":["temperature"],"history":{"temperature":[\#(temperature.joined(separator: ","))],"hvacPower":[\#(power.joined(separator: ","))]}}"#
        let r = try run(body)
        let fit = try XCTUnwrap(r.fit)
        XCTAssertTrue(fit.improved, fit.message)
        XCTAssertTrue(fit.converged)
        XCTAssertEqual(fit.points, 241)
        let se = try XCTUnwrap(fit.standardErrors?["tau"])
        XCTAssertEqual(fit.parameters["tau"]!, 9000, accuracy: 4 * se + 1)
        XCTAssertLessThan(fit.rmsAfter["temperature"]!, fit.rmsBefore["temperature"]!)
        XCTAssertEqual(fit.correlation?["tau"]?["tau"], 1)
        XCTAssertEqual(r.parameters?["tau"], 7200, "the run's parameters are the starting values")
    }

    func testEveryKindOfBadRequestIsRefusedWithACodeAndAPointer() throws {
        let forecast = #"{"kind":"forecast","horizon":"1h","step":"1m"}"#
        let mc = #"{"kind":"monteCarlo","horizon":"1h","step":"1m","samples":10,"uncertain":{"tau":{"normal":[7200,600]}}}"#
        let cases: [(String, String, String, SimulatorLimits?, Int64?, String?)] = [
            (forecast.replacingOccurrences(of: "}", with: #","parameters":{"warp":1}}"#), "unknown_name", "/parameters/warp", nil, nil, nil),
            (forecast.replacingOccurrences(of: "}", with: #","parameters":{"tau":1}}"#), "out_of_range", "/parameters/tau", nil, nil, nil),
            (forecast.replacingOccurrences(of: "}", with: #","inputs":{"gravity":1}}"#), "unknown_name", "/inputs/gravity", nil, nil, nil),
            (forecast.replacingOccurrences(of: "}", with: #","initial":{"tau":1}}"#), "unknown_name", "/initial/tau", nil, nil, nil),
            (forecast.replacingOccurrences(of: "}", with: #","series":["temperature","mood"]}"#), "unknown_name", "/series/1", nil, nil, nil),
            (forecast.replacingOccurrences(of: "}", with: #","threshold":{"series":"mood","above":1}}"#), "unknown_name", "/threshold/series", nil, nil, nil),
            (forecast.replacingOccurrences(of: "}", with: #","inputs":{"P":{"schedule":[[-5,1]]}}}"#), "invalid_request", "/inputs/P/schedule/0/0", nil, nil, nil),
            (forecast.replacingOccurrences(of: "}", with: #","solver":{"rtol":0}}"#), "invalid_request", "/solver/rtol", nil, nil, nil),
            (forecast.replacingOccurrences(of: "1h", with: "400d"), "horizon_too_long", "/horizon", nil, nil, nil),
            (forecast.replacingOccurrences(of: "1m", with: "1s"), "too_many_values", "/step", SimulatorLimits(maxResultValues: 1_000), nil, nil),
            (forecast, "deadline_passed", "/deadline", nil, Self.now - 1, nil),
            (forecast, "unknown_model", "/twin/model", nil, nil, "room@99"),
            (mc.replacingOccurrences(of: "[7200,600]", with: "[7200,-1]"), "invalid_distribution", "/uncertain/tau", nil, nil, nil),
            (mc.replacingOccurrences(of: "[7200,600]", with: "[-100000,1]"), "invalid_distribution", "/uncertain/tau", nil, nil, nil),
            (mc.replacingOccurrences(of: #""tau""#, with: #""mood""#), "unknown_name", "/uncertain/mood", nil, nil, nil),
            (mc.replacingOccurrences(of: #""samples":10"#, with: #""samples":100000"#), "cost_exceeded", "/samples", SimulatorLimits(maxCost: 1e6), nil, nil),
            (#"{"kind":"sweep","horizon":"1h","sweep":{"mood":[1,2]}}"#, "unknown_name", "/sweep/mood", nil, nil, nil),
            (#"{"kind":"sweep","horizon":"1h","sweep":{"tau":[1,2]}}"#, "out_of_range", "/sweep/tau/0", nil, nil, nil),
            (#"{"kind":"calibrate","fit":["mood"],"history":{"temperature":[[0,1],[60,2]]}}"#, "unknown_name", "/fit/0", nil, nil, nil),
            (#"{"kind":"calibrate","fit":["tau"]}"#, "insufficient_data", "/history", nil, nil, nil),
            (#"{"kind":"calibrate","fit":["tau"],"history":{"mood":[[0,1]]}}"#, "unknown_name", "/history/mood", nil, nil, nil),
            (#"{"kind":"calibrate","fit":["tau"],"properties":["Ta"],"history":{"temperature":[[0,1]]}}"#, "unknown_name", "/properties/0", nil, nil, nil),
        ]
        for (body, code, pointer, limits, deadline, model) in cases {
            let r = try Self.request(body, model: model ?? "room@1", deadline: deadline)
            XCTAssertThrowsError(try plan(r, limits: limits ?? SimulatorLimits()), body) { error in
                let refusal = error as? SimulationRefusal
                XCTAssertEqual(refusal?.code, code, "\(body): \(error)")
                XCTAssertEqual(refusal?.pointer, pointer, "\(body): \(error)")
                XCTAssertFalse(refusal?.message.isEmpty ?? true)
            }
        }
        // Non-finite values (JSON cannot carry them, a service building a request can).
        var nan = try Self.request(forecast)
        nan.spec.parameters["C"] = .nan
        nan.spec.inputs["Ta"] = .constant(.infinity)
        XCTAssertThrowsError(try plan(nan)) {
            XCTAssertEqual(($0 as? SimulationRefusal)?.code, "not_finite")
            XCTAssertEqual(($0 as? SimulationRefusal)?.pointer, "/parameters/C")
        }
        // A model without behaviour.
        let still = try TwinModel(document: JSON(parsing: #"{"id":"rock","version":1,"reportingIntervalMs":1000,"telemetry":{"x":{"type":"number"}}}"#))
        XCTAssertThrowsError(try SimulationPlan(try Self.request(forecast, model: "rock@1"), model: still, limits: SimulatorLimits(), now: Self.now)) {
            XCTAssertEqual(($0 as? SimulationRefusal)?.code, "no_behaviour")
        }
        // Shape errors are the contract's, with pointers too: bad durations, unknown members, unknown distributions.
        for (body, pointer) in [(#"{"kind":"forecast","horizon":"soon"}"#, "/horizon"),
                                (#"{"kind":"forecast","horizon":"1h","horizn":"2h"}"#, "/horizn"),
                                (#"{"kind":"monteCarlo","horizon":"1h","samples":5,"uncertain":{"tau":{"gamma":[1,2]}}}"#, "/uncertain/tau")] {
            XCTAssertThrowsError(try SimulationSpec(object: try XCTUnwrap(JSON(parsing: body).objectValue), strict: true)) {
                XCTAssertEqual(($0 as? ContractError)?.pointer, pointer, body)
            }
        }
    }

    func testABlowUpFailsWithTheStateAndTheTime() throws {
        let model = try TwinModel(document: JSON(parsing: #"{"id":"probe","version":1,"reportingIntervalMs":1000,"telemetry":{"x":{"type":"number"}},"parameters":{"k":{"default":1}},"behaviour":{"states":{"x":{"initial":1,"derivative":"x * x"}}}}"#))
        let r = try Self.request(#"{"kind":"forecast","horizon":"10s","step":"1s"}"#, values: [:], model: "probe@1")
        let plan = try SimulationPlan(r, model: model, limits: SimulatorLimits(), now: Self.now)
        guard case .failure(let error) = SimulationRunner.run(plan) else { return XCTFail("x' = x² from 1 blows up at t = 1") }
        let reason = SimulationRunner.reason(error)
        XCTAssertTrue(["blow_up", "step_size_collapse"].contains(reason.code), reason.code)
        XCTAssertEqual(reason.state, "x")
        XCTAssertEqual(try XCTUnwrap(reason.time), 1, accuracy: 0.01)
    }

    func testACancelDuringARunStopsIt() throws {
        let plan = try plan(try Self.request(#"{"kind":"monteCarlo","horizon":"24h","step":"1m","samples":20000,"seed":3,"uncertain":{"tau":{"normal":[7200,600]}}}"#))
        let progressed = Atomic<Bool>(false)
        let control = RunControl(shouldStop: { progressed.load(ordering: .relaxed) },
                                 progress: { if $0 > 0 { progressed.store(true, ordering: .relaxed) } }, progressInterval: 0.05)
        let started = ContinuousClock.now
        guard case .failure(let error) = SimulationRunner.run(plan, control: control) else { return XCTFail("the run was not stopped") }
        XCTAssertEqual(error.code, .cancelled)
        XCTAssertTrue(progressed.load(ordering: .relaxed), "progress was reported before the cancel")
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(30), "stopped long before 20,000 samples")
    }
}
