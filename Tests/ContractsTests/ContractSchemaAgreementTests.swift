import Contracts
import Foundation
import JSON
import JSONSchema
import XCTest

/// Every contract's Swift type and its JSON Schema in `Schemas/contracts/` agree: what Swift writes
/// the schema accepts, and on sample documents both accept and reject the same things.
final class ContractSchemaAgreementTests: XCTestCase {
    private func schema(_ name: String) throws -> CompiledSchema {
        var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) {
            dir = dir.deletingLastPathComponent()
            guard dir.path != "/" else { XCTFail("repository root not found"); throw CocoaError(.fileNoSuchFile) }
        }
        let url = dir.appendingPathComponent("Schemas/contracts/\(name)/v1.json")
        let json = try JSON(parsing: Array(try Data(contentsOf: url)))
        return try JSONSchema.compile(json, options: JSONSchemaOptions(formatAssertion: true))
    }

    /// Asserts that the schema and `decode` agree on every sample.
    private func assertAgreement(_ schema: CompiledSchema, _ samples: [(String, Bool)], decode: (JSON) throws -> Void,
                                 file: StaticString = #filePath, line: UInt = #line) throws {
        for (text, valid) in samples {
            let json = try JSON(parsing: text)
            XCTAssertEqual(schema.isValid(json), valid, "schema on \(text)", file: file, line: line)
            let decoded = (try? decode(json)) != nil
            XCTAssertEqual(decoded, valid, "Swift type on \(text)", file: file, line: line)
        }
    }

    func testTelemetryEnvelope() throws {
        let schema = try schema("telemetry-envelope")
        let written = TelemetryEnvelope(eventId: "e1", tenant: "acme", twinId: "pump-17", model: "pump@1", eventTime: 1_795_248_000_250,
                                        ingestTime: 1_795_248_000_300, source: .init(kind: "kafka", ref: "telemetry.raw.v1/0/1"),
                                        values: ["temperature": 71.5, "on": true, "mode": "auto"], units: ["temperature": "degF"])
        XCTAssertTrue(schema.isValid(try JSON(parsing: written.encoded())))
        let good = #"{"eventId":"e","tenant":"t","twinId":"p-1","eventTime":"2026-11-21T08:00:00Z","ingestTime":"2026-11-21T08:00:00.5+01:00","source":{"kind":"http","ref":"r"},"values":{"x":1}}"#
        try assertAgreement(schema, [
            (good, true),
            (good.replacingOccurrences(of: #""values":{"x":1}"#, with: #""values":{"x":1},"extra":{"future":"minor"}"#), true),
            (good.replacingOccurrences(of: #""eventId":"e","#, with: ""), false),
            (good.replacingOccurrences(of: #""twinId":"p-1""#, with: #""twinId":"a/b""#), false),
            (good.replacingOccurrences(of: "2026-11-21T08:00:00Z", with: "yesterday"), false),
            (good.replacingOccurrences(of: #""values":{"x":1}"#, with: #""values":{"x":[1]}"#), false),
            (good.replacingOccurrences(of: #""ref":"r""#, with: #""ref":5"#), false),
            (good.replacingOccurrences(of: #""values":{"x":1}"#, with: #""values":{"x":1},"units":{"x":3}"#), false),
        ]) { _ = try TelemetryEnvelope(json: $0) }
    }

    func testDeadLetter() throws {
        let schema = try schema("dead-letter")
        let written = DeadLetter(stage: "validator", tenant: "t", twinId: "p", model: "pump@1", origin: .init(topic: "a", partition: 1, offset: 2),
                                 deadLetteredAt: 0, reasons: [.init(code: "out_of_range", pointer: "/values/t", message: "m", expected: "<= 5", actual: "7")],
                                 original: [0xFF])
        XCTAssertTrue(schema.isValid(try JSON(parsing: written.encoded())))
        let good = #"{"stage":"ingestor","tenant":"t","deadLetteredAt":"2026-11-21T08:00:00.000Z","reasons":[{"code":"invalid_json","pointer":"","message":"m"}],"original":{"encoding":"utf8","data":"x"}}"#
        try assertAgreement(schema, [
            (good, true),
            (good.replacingOccurrences(of: #""tenant":"t","#, with: ""), false),
            (good.replacingOccurrences(of: #""encoding":"utf8""#, with: #""encoding":"rot13""#), false),
            (good.replacingOccurrences(of: #""pointer":"","#, with: ""), false),
            (good.replacingOccurrences(of: #""tenant":"t","#, with: #""tenant":"t","source":{"kind":"http","ref":"req-1"},"#), true),
            (good.replacingOccurrences(of: #""tenant":"t","#, with: #""tenant":"t","source":{"kind":"http"},"#), false),
        ]) { _ = try DeadLetter(json: $0) }
        let fromHTTP = DeadLetter(stage: "ingestor", tenant: "t", source: .init(kind: "http", ref: "req-1"), deadLetteredAt: 0,
                                  reasons: [.init(code: "missing_field", pointer: "/3/ts", message: "m")], original: Array("[]".utf8))
        XCTAssertTrue(schema.isValid(try JSON(parsing: fromHTTP.encoded())))
        XCTAssertEqual(try DeadLetter(bytes: fromHTTP.encoded()), fromHTTP)
    }

    func testTwinState() throws {
        let schema = try schema("twin-state")
        let written = TwinState(tenant: "t", twinId: "pump-1", model: "pump@1", version: 3, updatedAt: 5,
                                properties: [("flow", .init(value: 2.5, unit: "m3/h", eventTime: 1, ingestTime: 2, eventId: "e"))],
                                missing: ["pressure", "rpm"])
        XCTAssertTrue(schema.isValid(try JSON(parsing: written.encoded())))
        XCTAssertEqual(try TwinState(bytes: written.encoded()), written)
        XCTAssertEqual(try JSON(parsing: written.encoded())["missing"], ["pressure", "rpm"])
        let good = #"{"tenant":"t","twinId":"p","version":1,"updatedAt":"2026-11-21T08:00:00Z","properties":{"x":{"value":1,"eventTime":"2026-11-21T08:00:00Z","ingestTime":"2026-11-21T08:00:00Z","eventId":"e"}}}"#
        try assertAgreement(schema, [
            (good, true),
            (good.replacingOccurrences(of: #""version":1"#, with: #""version":1.5"#), false),
            (good.replacingOccurrences(of: #""eventId":"e""#, with: #""eventid":"e""#), false),
            (good.replacingOccurrences(of: #""version":1"#, with: #""version":1,"missing":["flow","rpm"]"#), true),
            (good.replacingOccurrences(of: #""version":1"#, with: #""version":1,"missing":"flow""#), false),
            (good.replacingOccurrences(of: #""version":1"#, with: #""version":1,"missing":["flow",2]"#), false),
        ]) { _ = try TwinState(json: $0) }
    }

    func testTwinCommand() throws {
        let schema = try schema("twin-command")
        let written = TwinCommand(commandId: "c-1", tenant: "t", twinId: "room-1", kind: .relate, issuedAt: 1_795_248_000_000, ifVersion: 4,
                                  issuedBy: "key-1", relationship: .init(name: "adjacentTo", target: "room-2", targetModel: "room@1"))
        XCTAssertTrue(schema.isValid(try JSON(parsing: written.encoded())))
        let setParameters = TwinCommand(commandId: "c-2", tenant: "t", twinId: "room-1", kind: .setParameters, issuedAt: 0, parameters: ["tau": 3600],
                                        cause: "recal-0123456789abcdef01234567")
        XCTAssertTrue(schema.isValid(try JSON(parsing: setParameters.encoded())))
        XCTAssertEqual(try TwinCommand(bytes: setParameters.encoded()), setParameters)
        let good = #"{"commandId":"c","tenant":"t","twinId":"p-1","type":"create","issuedAt":"2026-11-21T08:00:00Z","model":"pump@1","metadata":{"site":"a"}}"#
        try assertAgreement(schema, [
            (good, true),
            (good.replacingOccurrences(of: #""commandId":"c","#, with: ""), false),
            (good.replacingOccurrences(of: #""type":"create""#, with: #""type":"explode""#), false),
            (good.replacingOccurrences(of: #""twinId":"p-1""#, with: #""twinId":"p 1""#), false),
            (good.replacingOccurrences(of: "2026-11-21T08:00:00Z", with: "soon"), false),
            (good.replacingOccurrences(of: #""model":"pump@1","#, with: #""model":"pump@1","parameters":{"tau":"slow"},"#), false),
            (good.replacingOccurrences(of: #""model":"pump@1","#, with: #""model":"pump@1","ifVersion":2.5,"#), false),
            (good.replacingOccurrences(of: #""model":"pump@1","#, with: #""model":"pump@1","cause":"recal-1","#), true),
            (good.replacingOccurrences(of: #""model":"pump@1","#, with: #""model":"pump@1","cause":"","#), false),
            (good.replacingOccurrences(of: #""model":"pump@1","#, with: #""model":"pump@1","cause":7,"#), false),
        ]) { _ = try TwinCommand(json: $0) }
    }

    func testTwinChange() throws {
        let schema = try schema("twin-change")
        let written = TwinChange(tenant: "t", twinId: "pump-1", model: "pump@1", version: 7, kind: .telemetry, at: 1_795_248_000_000,
                                 eventId: "e", eventTime: 1_795_247_999_000,
                                 changes: [.init(path: "/properties/flow", old: 1, new: 2, oldTime: 1_795_247_998_000, newTime: 1_795_247_999_000)])
        XCTAssertTrue(schema.isValid(try JSON(parsing: written.encoded())))
        let rejected = TwinChange(tenant: "t", twinId: "pump-1", model: nil, version: 7, kind: .rejected, at: 0, commandId: "c-9", commandType: "patch",
                                  reason: .init(code: "version_conflict", pointer: "/ifVersion", message: "m", expected: "6", actual: "7"))
        XCTAssertTrue(schema.isValid(try JSON(parsing: rejected.encoded())))
        let caused = TwinChange(tenant: "t", twinId: "room-1", model: "room@1", version: 8, kind: .command, at: 0, commandId: "cmd-recal-1",
                                commandType: "setParameters", cause: "recal-1", changes: [.init(path: "/parameters/tau", old: 7200, new: 3600)])
        XCTAssertTrue(schema.isValid(try JSON(parsing: caused.encoded())))
        XCTAssertEqual(try TwinChange(bytes: caused.encoded()).cause, "recal-1")
        let good = #"{"tenant":"t","twinId":"p","version":2,"kind":"telemetry","at":"2026-11-21T08:00:00Z","eventId":"e","eventTime":"2026-11-21T07:59:59Z","late":false,"changes":[{"path":"/properties/x","old":1,"new":2,"late":false}]}"#
        try assertAgreement(schema, [
            (good, true),
            (good.replacingOccurrences(of: #""version":2,"#, with: ""), false),
            (good.replacingOccurrences(of: #""version":2"#, with: #""version":-1"#), false),
            (good.replacingOccurrences(of: #""kind":"telemetry""#, with: #""kind":"rumour""#), false),
            (good.replacingOccurrences(of: #""path":"/properties/x""#, with: #""path":"properties/x""#), false),
            (good.replacingOccurrences(of: #""late":false,"changes""#, with: #""changes""#), false),
            (good.replacingOccurrences(of: #""eventId":"e","#, with: ""), false),
            (good.replacingOccurrences(of: #""kind":"telemetry""#, with: #""kind":"rejected""#), false),
            (good.replacingOccurrences(of: #""kind":"telemetry""#, with: #""kind":"rejected","commandId":"c","reason":{"code":"x","pointer":"","message":"m"}"#), true),
            (good.replacingOccurrences(of: #""kind":"telemetry""#, with: #""kind":"telemetry","cause":"recal-1""#), true),
            (good.replacingOccurrences(of: #""kind":"telemetry""#, with: #""kind":"telemetry","cause":1"#), false),
        ]) { _ = try TwinChange(json: $0) }
    }

    func testSimulationRequest() throws {
        let schema = try schema("simulation-request")
        let spec = SimulationSpec(kind: .monteCarlo, horizonMs: 21_600_000, stepMs: 300_000,
                                  inputs: ["P": .schedule([.init(0, 0), .init(3600, 2000)], linear: false), "Ta": .constant(5)],
                                  parameters: ["C": 4e6], initial: ["temperature": 21], samples: 2000, seed: 7,
                                  uncertain: ["tau": .init(.normal, 7200, 600), "Ta": .init(.uniform, 0, 10)],
                                  threshold: .init(series: "temperature", above: true, level: 24), solver: .init(method: "rk4", rtol: 1e-6))
        let written = SimulationRequest(simulationId: "sim-1", tenant: "acme", twinId: "room-1", requestedAt: 1_795_248_000_000, requestedBy: "key-1",
                                        deadline: 1_795_248_060_000, start: 1_795_248_000_000,
                                        twin: .init(model: "room@1", version: 12, values: ["temperature": 20.5, "hvacPower": 500], parameters: ["tau": 7000]),
                                        spec: spec)
        XCTAssertTrue(schema.isValid(try JSON(parsing: written.encoded())), String(decoding: written.encoded(), as: UTF8.self))
        XCTAssertEqual(try SimulationRequest(bytes: written.encoded()), written)
        let sweep = SimulationRequest(simulationId: "sim-2", tenant: "acme", twinId: "room-1", requestedAt: 0, start: 0, twin: .init(model: "room@1"),
                                      spec: SimulationSpec(kind: .sweep, horizonMs: 3_600_000, sweep: [.init(name: "P", values: [0, 500]), .init(name: "tau", values: [3600, 7200])]))
        XCTAssertEqual(try SimulationRequest(bytes: sweep.encoded()).spec.sweep.map(\.name), ["P", "tau"], "axis order is kept")
        let calibrate = SimulationRequest(simulationId: "sim-3", tenant: "acme", twinId: "room-1", requestedAt: 0, start: 0, twin: .init(model: "room@1"),
                                          spec: SimulationSpec(kind: .calibrate, fit: ["tau", "C"], properties: ["temperature"],
                                                               history: ["temperature": [.init(0, 20.1), .init(60, 20.3)]]))
        XCTAssertTrue(schema.isValid(try JSON(parsing: calibrate.encoded())))
        XCTAssertEqual(try SimulationRequest(bytes: calibrate.encoded()), calibrate)
        let good = #"{"simulationId":"s","tenant":"t","twinId":"room-1","requestedAt":"2026-11-21T08:00:00Z","start":"2026-11-21T08:00:00Z","twin":{"model":"room@1"},"kind":"forecast","horizon":"24h","step":"1m"}"#
        try assertAgreement(schema, [
            (good, true),
            (good.replacingOccurrences(of: #""horizon":"24h""#, with: #""horizon":86400000"#), true),
            (good.replacingOccurrences(of: #""step":"1m""#, with: #""step":"1m","inputs":{"Ta":5,"P":{"schedule":[[0,0],[3600,2000]],"interpolation":"previous"}}"#), true),
            (good.replacingOccurrences(of: #""horizon":"24h","#, with: ""), false),
            (good.replacingOccurrences(of: #""horizon":"24h""#, with: #""horizon":"soon""#), false),
            (good.replacingOccurrences(of: #""horizon":"24h""#, with: #""horizon":"0s""#), false),
            (good.replacingOccurrences(of: #""kind":"forecast""#, with: #""kind":"prophecy""#), false),
            (good.replacingOccurrences(of: #""simulationId":"s""#, with: #""simulationId":"a/b""#), false),
            (good.replacingOccurrences(of: #""twin":{"model":"room@1"},"#, with: ""), false),
            (good.replacingOccurrences(of: #""step":"1m""#, with: #""step":"1m","inputs":{"P":{"schedule":[[0]]}}"#), false),
            (good.replacingOccurrences(of: #""step":"1m""#, with: #""step":"1m","inputs":{"P":{"schedule":[[0,1]],"interpolation":"cubic"}}"#), false),
            (good.replacingOccurrences(of: #""step":"1m""#, with: #""step":"1m","parameters":{"tau":"slow"}"#), false),
            (good.replacingOccurrences(of: #""kind":"forecast""#, with: #""kind":"monteCarlo","samples":10,"uncertain":{"tau":{"normal":[7200,600]}}"#), true),
            (good.replacingOccurrences(of: #""kind":"forecast""#, with: #""kind":"monteCarlo","samples":10"#), false),
            (good.replacingOccurrences(of: #""kind":"forecast""#, with: #""kind":"monteCarlo","samples":10,"uncertain":{"tau":{"gamma":[1,2]}}"#), false),
            (good.replacingOccurrences(of: #""kind":"forecast""#, with: #""kind":"monteCarlo","samples":0,"uncertain":{"tau":{"normal":[1,2]}}"#), false),
            (good.replacingOccurrences(of: #""step":"1m""#, with: #""step":"1m","threshold":{"series":"temperature","above":24}"#), true),
            (good.replacingOccurrences(of: #""step":"1m""#, with: #""step":"1m","threshold":{"series":"temperature","above":24,"below":1}"#), false),
            (good.replacingOccurrences(of: #""kind":"forecast""#, with: #""kind":"sweep","sweep":{"P":[0,500],"tau":[1,2]}"#), true),
            (good.replacingOccurrences(of: #""kind":"forecast""#, with: #""kind":"sweep","sweep":{"P":[]}"#), false),
            (good.replacingOccurrences(of: #""kind":"forecast""#, with: #""kind":"sweep","sweep":{"a":[1],"b":[1],"c":[1]}"#), false),
            (good.replacingOccurrences(of: #""kind":"forecast","horizon":"24h","#, with: #""kind":"calibrate","fit":["tau"],"history":{"temperature":[[0,20.1],[60,20.3]]},"#), true),
            (good.replacingOccurrences(of: #""kind":"forecast","horizon":"24h","#, with: #""kind":"calibrate","#), false),
            (good.replacingOccurrences(of: #""step":"1m""#, with: #""step":"1m","solver":{"method":"euler"}"#), false),
        ]) { _ = try SimulationRequest(json: $0) }
    }

    func testSimulationShard() throws {
        let schema = try schema("simulation-shard")
        let request = SimulationRequest(simulationId: "sim-1", tenant: "acme", twinId: "room-1", requestedAt: 1_795_248_000_000, start: 1_795_248_000_000,
                                        twin: .init(model: "room@1", values: ["temperature": 20.5]),
                                        spec: SimulationSpec(kind: .monteCarlo, horizonMs: 86_400_000, stepMs: 60_000, samples: 10_000, seed: 7,
                                                             uncertain: ["tau": .init(.normal, 7200, 600)]))
        let written = SimulationShard(shard: 3, shards: 12, from: 2500, to: 3334, publishedAt: 1_795_248_000_500, request: request)
        XCTAssertTrue(schema.isValid(try JSON(parsing: written.encoded())), String(decoding: written.encoded(), as: UTF8.self))
        XCTAssertEqual(try SimulationShard(bytes: written.encoded()), written)
        XCTAssertEqual(written.key, "sim-1/3")
        let req = #"{"simulationId":"s","tenant":"t","twinId":"room-1","requestedAt":"2026-11-21T08:00:00Z","start":"2026-11-21T08:00:00Z","twin":{"model":"room@1"},"kind":"sweep","horizon":"1h","sweep":{"P":[0,500]}}"#
        let good = #"{"simulationId":"s","tenant":"t","shard":0,"shards":2,"from":0,"to":1,"publishedAt":"2026-11-21T08:00:01Z","request":REQ}"#
            .replacingOccurrences(of: "REQ", with: req)
        try assertAgreement(schema, [
            (good, true),
            (good.replacingOccurrences(of: #""shard":0,"#, with: ""), false),
            (good.replacingOccurrences(of: #""shards":2"#, with: #""shards":0"#), false),
            (good.replacingOccurrences(of: #""from":0"#, with: #""from":-1"#), false),
            (good.replacingOccurrences(of: #""publishedAt":"2026-11-21T08:00:01Z""#, with: #""publishedAt":"later""#), false),
            (good.replacingOccurrences(of: #""kind":"sweep""#, with: #""kind":"forecast""#), false),
            (good.replacingOccurrences(of: #","request":"#, with: #","extra":1,"request":"#), true),
            (good.replacingOccurrences(of: #""twin":{"model":"room@1"},"#, with: ""), false),
        ]) { _ = try SimulationShard(json: $0) }
    }

    func testSimulationShardResult() throws {
        let schema = try schema("simulation-shard-result")
        let mc = SimulationShardResult(simulationId: "sim-1", tenant: "acme", shard: 3, shards: 12, from: 2500, to: 3334, part: 1, parts: 2,
                                       status: .completed, worker: "w-1", runSeconds: 1.5,
                                       monteCarlo: .init(fingerprint: "ab12", cellsFrom: 700, cellsTo: 1441, crossings: 0, redraws: 0, data: [0, 1, 2, 255]))
        XCTAssertTrue(schema.isValid(try JSON(parsing: mc.encoded())), String(decoding: mc.encoded(), as: UTF8.self))
        XCTAssertEqual(try SimulationShardResult(bytes: mc.encoded()), mc)
        let sweep = SimulationShardResult(simulationId: "sim-2", tenant: "acme", shard: 0, shards: 6, from: 0, to: 2, status: .completed,
                                          points: [.init(index: 0, coordinates: [0, 3600], final: 20.1, minimum: 19.5, maximum: 21.25, secondsBeyond: 120),
                                                   .init(index: 1, coordinates: [0, 7200], final: 0.1 + 0.2, minimum: -1e-300, maximum: 1e300, secondsBeyond: nil)])
        XCTAssertTrue(schema.isValid(try JSON(parsing: sweep.encoded())))
        XCTAssertEqual(try SimulationShardResult(bytes: sweep.encoded()), sweep, "numbers come back bit for bit")
        let failed = SimulationShardResult(simulationId: "sim-3", tenant: "acme", shard: 1, shards: 6, from: 10, to: 20, status: .failed,
                                           reason: .init(code: "blow_up", message: "sample 12: state \"temperature\" became inf", state: "temperature", time: 3600))
        XCTAssertTrue(schema.isValid(try JSON(parsing: failed.encoded())))
        XCTAssertEqual(try SimulationShardResult(bytes: failed.encoded()), failed)
        let good = #"{"simulationId":"s","tenant":"t","shard":0,"shards":2,"from":0,"to":5,"part":0,"parts":1,"status":"completed","monteCarlo":{"fingerprint":"f","cells":[0,10],"crossings":1,"redraws":0,"data":"AAEC"}}"#
        try assertAgreement(schema, [
            (good, true),
            (good.replacingOccurrences(of: #""part":0,"#, with: ""), false),
            (good.replacingOccurrences(of: #""status":"completed""#, with: #""status":"running""#), false),
            (good.replacingOccurrences(of: #""status":"completed""#, with: #""status":"failed""#), false),
            (good.replacingOccurrences(of: #""status":"completed""#, with: #""status":"failed","reason":{"code":"c","message":"m"}"#), true),
            (good.replacingOccurrences(of: #""cells":[0,10]"#, with: #""cells":[0]"#), false),
            (good.replacingOccurrences(of: #""data":"AAEC""#, with: #""data":"not base64!""#), false),
            (good.replacingOccurrences(of: #""simulationId":"s""#, with: #""simulationId":"a b""#), false),
        ]) { _ = try SimulationShardResult(json: $0) }
    }

    func testSimulationResult() throws {
        let schema = try schema("simulation-result")
        var completed = SimulationResult(simulationId: "sim-1", tenant: "acme", twinId: "room-1", kind: .monteCarlo, status: .completed,
                                         start: 1_795_248_000_000, timings: .init(requestedAt: 1_795_248_000_000, acceptedAt: 1_795_248_000_100,
                                                                                  finishedAt: 1_795_248_001_000, runSeconds: 0.9))
        completed.model = "room@1"
        completed.twinVersion = 4
        completed.parameters = ["tau": 7200, "C": 5e6]
        completed.seed = 7
        completed.times = [0, 300, 600]
        completed.series = ["temperature": [20, 20.5, 21]]
        completed.bands = ["temperature": .init(p5: [20, 20.1, 20.2], p50: [20, 20.5, 21], p95: [20, 20.9, 21.8])]
        completed.probability = .init(value: 0.31, low: 0.29, high: 0.33, crossings: 620, samples: 2000)
        completed.samples = 2000
        completed.redraws = 3
        completed.threshold = .init(series: "temperature", above: true, level: 24)
        XCTAssertTrue(schema.isValid(try JSON(parsing: completed.encoded())))
        XCTAssertEqual(try SimulationResult(bytes: completed.encoded()), completed)
        var sweep = SimulationResult(simulationId: "sim-2", tenant: "acme", twinId: "room-1", kind: .sweep, status: .completed, start: 0)
        sweep.axes = ["P", "tau"]
        sweep.quantity = "temperature"
        sweep.points = [.init(coordinates: [("P", 0), ("tau", 3600)], final: 20, minimum: 19, maximum: 21, secondsBeyond: 0)]
        XCTAssertTrue(schema.isValid(try JSON(parsing: sweep.encoded())))
        XCTAssertEqual(try SimulationResult(bytes: sweep.encoded()), sweep)
        var calibrated = SimulationResult(simulationId: "sim-3", tenant: "acme", twinId: "room-1", kind: .calibrate, status: .completed, start: 0)
        calibrated.fit = .init(parameters: ["tau": 7100, "C": 5.1e6], standardErrors: ["tau": 40, "C": 1e4], correlation: ["tau": ["tau": 1, "C": -0.4], "C": ["tau": -0.4, "C": 1]],
                               rmsBefore: ["temperature": 0.9], rmsAfter: ["temperature": 0.2], noise: ["temperature": 0.2], iterations: 6,
                               converged: true, improved: true, points: 1441, message: "converged")
        XCTAssertTrue(schema.isValid(try JSON(parsing: calibrated.encoded())))
        XCTAssertEqual(try SimulationResult(bytes: calibrated.encoded()), calibrated)
        var refused = SimulationResult(simulationId: "sim-4", tenant: "acme", twinId: "room-1", kind: .forecast, status: .refused, start: 0)
        refused.reason = .init(code: "unknown_name", message: "no parameter 'warp'", pointer: "/parameters/warp")
        XCTAssertTrue(schema.isValid(try JSON(parsing: refused.encoded())))
        XCTAssertEqual(try SimulationResult(bytes: refused.encoded()), refused)
        let good = #"{"simulationId":"s","tenant":"t","twinId":"room-1","kind":"forecast","status":"running","progress":0.5,"start":"2026-11-21T08:00:00Z","timings":{}}"#
        try assertAgreement(schema, [
            (good, true),
            (good.replacingOccurrences(of: #""progress":0.5,"#, with: ""), false),
            (good.replacingOccurrences(of: #""progress":0.5"#, with: #""progress":1.5"#), false),
            (good.replacingOccurrences(of: #""status":"running""#, with: #""status":"dreaming""#), false),
            (good.replacingOccurrences(of: #""status":"running""#, with: #""status":"failed""#), false),
            (good.replacingOccurrences(of: #""status":"running""#, with: #""status":"failed","reason":{"code":"blow_up","message":"m","state":"temperature","time":3600}"#), true),
            (good.replacingOccurrences(of: #""status":"running""#, with: #""status":"completed","times":[0,60],"series":{"temperature":[1,2]}"#), true),
            (good.replacingOccurrences(of: #""status":"running""#, with: #""status":"completed","series":{"temperature":[1,"x"]}"#), false),
            (good.replacingOccurrences(of: #""status":"running""#, with: #""status":"completed","bands":{"temperature":{"p5":[1],"p50":[1]}}"#), false),
            (good.replacingOccurrences(of: #""timings":{}"#, with: #""timings":{"acceptedAt":"soon"}"#), false),
            (good.replacingOccurrences(of: #","timings":{}"#, with: ""), false),
        ]) { _ = try SimulationResult(json: $0) }
    }

    func testSimulationControl() throws {
        let schema = try schema("simulation-control")
        let written = SimulationControl(simulationId: "sim-1", tenant: "acme", issuedAt: 1_795_248_000_000, issuedBy: "key-1")
        XCTAssertTrue(schema.isValid(try JSON(parsing: written.encoded())))
        XCTAssertEqual(try SimulationControl(bytes: written.encoded()), written)
        let good = #"{"simulationId":"s","tenant":"t","action":"cancel","issuedAt":"2026-11-21T08:00:00Z"}"#
        try assertAgreement(schema, [
            (good, true),
            (good.replacingOccurrences(of: #""action":"cancel""#, with: #""action":"pause""#), false),
            (good.replacingOccurrences(of: #""tenant":"t","#, with: ""), false),
            (good.replacingOccurrences(of: #""simulationId":"s""#, with: #""simulationId":"""#), false),
        ]) { _ = try SimulationControl(json: $0) }
    }

    func testDriftAlert() throws {
        let schema = try schema("drift-alert")
        let written = DriftAlert(alertId: DriftAlert.id(tenant: "t", twinId: "room-1", kind: .residual, property: "temperature", raisedAt: 1_795_248_000_000),
                                 status: .resolved, kind: .residual, tenant: "t", twinId: "room-1", model: "room@1", property: "temperature",
                                 detector: "adwin", statistic: 0.2, threshold: 0.5, window: 50, changeStartedAt: 1_795_247_000_000,
                                 eventTime: 1_795_249_000_000, message: "m", scale: 0.05,
                                 story: [.init(step: "detected", at: 1_795_248_000_000, message: "d", details: ["cut": "2026-11-21T08:00:00Z"]),
                                         .init(step: "resolved", at: 1_795_249_000_000, message: "r")])
        XCTAssertTrue(schema.isValid(try JSON(parsing: written.encoded())))
        XCTAssertEqual(try DriftAlert(bytes: written.encoded()), written)
        var proposal = written
        proposal.status = .updated
        proposal.recalibration = .init(mode: "suggest", state: "suggested", simulationId: "recal-1", points: 100, parameters: ["tau": 3600],
                                       standardErrors: ["tau": 12], rmsBefore: 0.5, rmsAfter: 0.05)
        XCTAssertTrue(schema.isValid(try JSON(parsing: proposal.encoded())))
        XCTAssertEqual(try DriftAlert(bytes: proposal.encoded()), proposal)
        let stale = DriftAlert(alertId: "a", status: .raised, kind: .stale, tenant: "t", twinId: "room-1", detector: "freshness",
                               statistic: 200_000, threshold: 180_000, window: 60_000, eventTime: 0, message: "m")
        XCTAssertTrue(schema.isValid(try JSON(parsing: stale.encoded())))
        let good = #"{"alertId":"a","status":"raised","kind":"residual","tenant":"t","twinId":"r","property":"temperature","detector":"adwin","statistic":2.5,"threshold":0,"window":300,"eventTime":"2026-11-21T08:00:00Z","message":"m","story":[{"step":"detected","at":"2026-11-21T08:00:00Z","message":"m"}]}"#
        try assertAgreement(schema, [
            (good, true),
            (good.replacingOccurrences(of: #""alertId":"a","#, with: ""), false),
            (good.replacingOccurrences(of: #""status":"raised""#, with: #""status":"snoozed""#), false),
            (good.replacingOccurrences(of: #""kind":"residual""#, with: #""kind":"vibes""#), false),
            (good.replacingOccurrences(of: #""property":"temperature","#, with: ""), false),
            (good.replacingOccurrences(of: #""kind":"residual""#, with: #""kind":"stale""#), false),
            (good.replacingOccurrences(of: #""kind":"residual","tenant":"t","twinId":"r","property":"temperature","#, with: #""kind":"stale","tenant":"t","twinId":"r","#), true),
            (good.replacingOccurrences(of: #""window":300"#, with: #""window":-1"#), false),
            (good.replacingOccurrences(of: #""statistic":2.5"#, with: #""statistic":"high""#), false),
            (good.replacingOccurrences(of: #""step":"detected""#, with: #""step":"Detected""#), false),
            (good.replacingOccurrences(of: #""step":"detected""#, with: #""step":"applied","details":{"commandId":"c-1"}"#), true),
            (good.replacingOccurrences(of: #""eventTime":"2026-11-21T08:00:00Z""#, with: #""eventTime":"later""#), false),
            (good.replacingOccurrences(of: #""message":"m","story""#, with: #""story""#), false),
            (good.replacingOccurrences(of: #""status":"raised""#, with: #""status":"updated""#), true),
            (good.replacingOccurrences(of: #""message":"m","story""#, with: #""message":"m","recalibration":{"mode":"auto","state":"applied","simulationId":"recal-1","commandId":"cmd-recal-1","parameters":{"tau":3600}},"story""#), true),
            (good.replacingOccurrences(of: #""message":"m","story""#, with: #""message":"m","recalibration":{"mode":"auto"},"story""#), false),
            (good.replacingOccurrences(of: #""message":"m","story""#, with: #""message":"m","recalibration":{"mode":"auto","state":"applied","parameters":{"tau":"slow"}},"story""#), false),
        ]) { _ = try DriftAlert(json: $0) }
    }

    func testDriftState() throws {
        let schema = try schema("drift-state")
        let alert = DriftAlert(alertId: "a", status: .raised, kind: .data, tenant: "t", twinId: "room-1", property: "humidity",
                               detector: "kolmogorovSmirnov", statistic: 0.01, threshold: 0.05, window: 100, eventTime: 5, message: "m",
                               story: [.init(step: "detected", at: 5, message: "m")])
        let written = DriftState(tenant: "t", twinId: "room-1", model: "room@1", updatedAt: 7, lastEventTime: 5, stale: false,
                                 properties: [("humidity", .init(residual: .init(detector: "adwin", statistic: -0.3, threshold: 0, window: 40, residuals: 240,
                                                                                 warmup: 200, warmupNeeded: 200, center: 0.01, scale: 0.2, detections: 0),
                                                                 data: .init(reference: ["count": 100, "mean": .double(45.5)], current: ["count": 20],
                                                                             method: "kolmogorovSmirnov", statistic: 0.01, threshold: 0.05, evaluatedAt: 5)))],
                                 openAlerts: [alert], monitor: Array(#"{"x":1}"#.utf8))
        XCTAssertTrue(schema.isValid(try JSON(parsing: written.encoded())))
        XCTAssertEqual(try DriftState(bytes: written.encoded()), written)
        let good = #"{"tenant":"t","twinId":"r","updatedAt":"2026-11-21T08:00:00Z","stale":false,"properties":{"temperature":{"residual":{"detector":"adwin","statistic":0,"threshold":0,"window":0,"residuals":3,"warmup":3,"warmupNeeded":200,"detections":0}}},"openAlerts":[],"monitorFormat":1,"monitor":{}}"#
        try assertAgreement(schema, [
            (good, true),
            (good.replacingOccurrences(of: #""stale":false,"#, with: ""), false),
            (good.replacingOccurrences(of: #""detector":"adwin""#, with: #""detector":7"#), false),
            (good.replacingOccurrences(of: #""residuals":3"#, with: #""residuals":3.5"#), false),
            (good.replacingOccurrences(of: #""openAlerts":[]"#, with: #""openAlerts":[{"alertId":"a"}]"#), false),
            (good.replacingOccurrences(of: #""monitor":{}"#, with: #""monitor":[]"#), false),
            (good.replacingOccurrences(of: #""updatedAt":"2026-11-21T08:00:00Z""#, with: #""updatedAt":"then""#), false),
        ]) { _ = try DriftState(json: $0) }
    }
}
